// Checked file output. Every write, flush, sync, close and rename either succeeds or throws
// cairn::Error naming the file and the operating system's reason ("cannot write 'run/metrics.jsonl':
// No space left on device"), so a full disk or a vanished directory is never silently ignored.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace cairn {

class OutputFile {
 public:
  enum class Mode {
    truncate,  // a new file, or an existing one emptied
    append,    // records added at the end; a failed write() is cut back off (see write)
  };
  // Opens (creating) `path`. Throws Error when it cannot be opened.
  OutputFile(const std::string& path, Mode mode);
  ~OutputFile();  // closes without checking: call close() where the outcome matters
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  // Writes all n bytes (retrying short writes). On failure throws Error; in append mode the file is
  // first cut back to its length before this call, so a record is either whole or absent.
  void write(const void* data, size_t n);
  void write(std::string_view text) { write(text.data(), text.size()); }
  // fsync: the data is on disk (a network file system may report a full disk only here).
  void sync();
  // Checked close (some file systems report write errors only at close).
  void close();
  const std::string& path() const { return path_; }

 private:
  [[noreturn]] void fail(const char* what, int err);
  int fd_ = -1;
  Mode mode_;
  std::string path_;
};

// Writes `content` to `path` through "<path>.tmp", fsync and rename, so readers see the old file or
// the whole new one, never a part. On failure the .tmp file is removed and Error thrown.
void write_file_atomic(const std::string& path, std::string_view content);
// Renames `from` to `to` (replacing it); throws Error naming both and the reason.
void rename_file(const std::string& from, const std::string& to);
// fsync of a file, or of a directory (its entries: a rename in it is then durable).
void fsync_path(const std::string& path, bool directory);

}  // namespace cairn
