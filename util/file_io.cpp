// Checked file output (see file_io.h). Plain POSIX calls: errno gives the reason a C++ stream hides.
#include "util/file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "util/error.h"

namespace cairn {

OutputFile::OutputFile(const std::string& path, Mode mode) : mode_(mode), path_(path) {
  const int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (mode == Mode::append ? O_APPEND : O_TRUNC);
  fd_ = ::open(path.c_str(), flags, 0644);
  if (fd_ < 0) fail("open", errno);
}

OutputFile::~OutputFile() {
  if (fd_ >= 0) ::close(fd_);
}

void OutputFile::fail(const char* what, int err) {
  throw Error(str("cannot ", what, " '", path_, "': ", std::strerror(err)));
}

void OutputFile::write(const void* data, size_t n) {
  CAIRN_ASSERT(fd_ >= 0, "write to closed file ", path_);
  struct stat before {};
  const bool rollback = mode_ == Mode::append && ::fstat(fd_, &before) == 0 && S_ISREG(before.st_mode);
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd_, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      const int err = w < 0 ? errno : ENOSPC;  // write() returning 0 for n > 0 means no room
      // Best effort: if even that fails, readers drop an incomplete last record.
      if (rollback) (void)!::ftruncate(fd_, before.st_size);
      fail("write", err);
    }
    p += w;
    n -= size_t(w);
  }
}

void OutputFile::sync() {
  if (::fsync(fd_) != 0 && errno != EINVAL) fail("flush to disk", errno);  // EINVAL: a device (/dev/null)
}

void OutputFile::close() {
  if (fd_ < 0) return;
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0 && errno != EINTR) fail("close", errno);
}

void write_file_atomic(const std::string& path, std::string_view content) {
  const std::string tmp = path + ".tmp";
  try {
    OutputFile out(tmp, OutputFile::Mode::truncate);
    out.write(content);
    out.sync();
    out.close();
    rename_file(tmp, path);
  } catch (const Error&) {
    std::remove(tmp.c_str());  // frees what it held on a full disk
    throw;
  }
}

void rename_file(const std::string& from, const std::string& to) {
  if (std::rename(from.c_str(), to.c_str()) != 0)
    throw Error(str("cannot rename '", from, "' to '", to, "': ", std::strerror(errno)));
}

void fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY | O_CLOEXEC : O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(str("cannot open '", path, "' to flush it: ", std::strerror(errno)));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) throw Error(str("cannot flush '", path, "' to disk: ", std::strerror(err)));
}

}  // namespace cairn
