// A CPU backend whose memory the host cannot touch: every allocation is an mmap'd region kept
// PROT_NONE except while one of the backend's own ops runs. It stands in for a GPU in tests of
// code above the backend (trainer, optimizers, checkpoints, growth): a host dereference of
// parameter, gradient, state or activation memory, which on CUDA would read device pointers,
// faults at once instead of waiting for a GPU run. The fault handler names the address. It wraps
// cpu_backend() (a ForwardingBackend), so it is not the CPU backend to code that checks.
#pragma once

#include <execinfo.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>

#include "backend/forwarding_backend.h"
#include "util/error.h"

namespace cairn {

class GuardedBackend final : public ForwardingBackend {
 public:
  GuardedBackend() : ForwardingBackend(cpu_backend()) { install_fault_handler(); }
  std::string name() const override { return "cpu-guarded"; }

  void* alloc(int64_t bytes) const override {
    const size_t len = round_to_page(size_t(bytes > 0 ? bytes : 1));
    void* p = mmap(nullptr, len, open_depth_ ? PROT_READ | PROT_WRITE : PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    CAIRN_ASSERT(p != MAP_FAILED, "mmap of ", len, " bytes");
    regions_[p] = len;
    return p;
  }
  void release(void* p) const override {
    const auto it = regions_.find(p);
    CAIRN_ASSERT(it != regions_.end(), "release of memory this backend did not allocate");
    munmap(p, it->second);
    regions_.erase(it);
  }


 protected:
  // Every region is accessible while an op runs (the inner backend's ops call only its own).
  void enter(const char*) const override {
    if (open_depth_++ == 0) protect(PROT_READ | PROT_WRITE);
  }
  void leave(const char*) const override {
    if (--open_depth_ == 0) protect(PROT_NONE);
  }

 private:
  void protect(int prot) const {
    for (const auto& [p, len] : regions_) CAIRN_ASSERT(mprotect(p, len, prot) == 0, "mprotect");
  }
  static size_t round_to_page(size_t n) {
    const size_t page = size_t(sysconf(_SC_PAGESIZE));
    return (n + page - 1) / page * page;
  }
  static void on_fault(int, siginfo_t* info, void*) {
    char line[160];
    const int len = std::snprintf(line, sizeof line,
                                  "\nhost access to backend memory at %p outside a backend op (on a GPU this "
                                  "would read a device pointer); stack:\n",
                                  info->si_addr);
    (void)!write(STDERR_FILENO, line, size_t(len));
    void* frames[48];
    backtrace_symbols_fd(frames, backtrace(frames, 48), STDERR_FILENO);
    _exit(99);
  }
  static void install_fault_handler() {
    struct sigaction sa {};
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, nullptr);
  }

  mutable std::map<void*, size_t> regions_;
  mutable int open_depth_ = 0;
};

}  // namespace cairn
