// An exclusive, non-blocking flock() on a file, held while a FileLock lives. The kernel drops it
// when the process ends however it ends (crash, kill -9, a Slurm requeue), so a lock is never
// stale; the file itself stays and records the last holder.
#pragma once

#include <string>

namespace cairn {

class FileLock {
 public:
  enum class Status {
    acquired,        // this object holds the lock; the file records "pid P on host H"
    held_elsewhere,  // another open file (another process, or another FileLock) holds it
    unsupported,     // the file system has no flock() (e.g. Lustre mounted without -o flock)
  };
  // Opens `path` (creating it; its directory must exist) and tries to lock it without waiting.
  // Throws Error when the file cannot be opened.
  explicit FileLock(const std::string& path);
  ~FileLock();
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

  Status status() const { return status_; }
  // held_elsewhere: the holder as recorded in the file ("" if it wrote nothing yet);
  // unsupported: the system's reason.
  const std::string& detail() const { return detail_; }

 private:
  int fd_ = -1;
  Status status_ = Status::held_elsewhere;
  std::string detail_;
};

}  // namespace cairn
