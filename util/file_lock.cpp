// FileLock (see file_lock.h).
#include "util/file_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>

#include "util/error.h"

namespace cairn {

FileLock::FileLock(const std::string& path) {
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw Error(str("cannot open lock file '", path, "': ", std::strerror(errno)));
  if (::flock(fd_, LOCK_EX | LOCK_NB) == 0) {
    status_ = Status::acquired;
    char host[HOST_NAME_MAX + 1] = {};
    ::gethostname(host, sizeof host - 1);
    const std::string who = str("pid ", ::getpid(), " on host ", host, "\n");
    // Best effort: the lock itself is what protects; the text only helps the user find the holder.
    [[maybe_unused]] const bool recorded =
        ::ftruncate(fd_, 0) == 0 && ::pwrite(fd_, who.data(), who.size(), 0) == ssize_t(who.size());
    return;
  }
  const int err = errno;
  if (err == EWOULDBLOCK) {
    status_ = Status::held_elsewhere;
    char buf[256];
    const ssize_t n = ::pread(fd_, buf, sizeof buf, 0);
    if (n > 0) detail_.assign(buf, size_t(n));
    while (!detail_.empty() && (detail_.back() == '\n' || detail_.back() == '\0')) detail_.pop_back();
  } else {
    status_ = Status::unsupported;
    detail_ = std::strerror(err);
  }
  ::close(fd_);
  fd_ = -1;
}

FileLock::~FileLock() {
  if (fd_ >= 0) ::close(fd_);  // closing the last descriptor releases the lock
}

}  // namespace cairn
