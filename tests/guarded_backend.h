// A CPU backend whose memory the host cannot touch: every allocation is an mmap'd region kept
// PROT_NONE except while one of the backend's own ops runs. It stands in for a GPU in tests of
// code above the backend (trainer, optimizers, checkpoints, growth): a host dereference of
// parameter, gradient, state or activation memory, which on CUDA would read device pointers,
// faults at once instead of waiting for a GPU run. The fault handler names the address.
#pragma once

#include <execinfo.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>

#include "model/cpu/cpu_backend.h"
#include "util/error.h"

namespace cairn {

class GuardedBackend final : public CpuBackend {
 public:
  GuardedBackend() { install_fault_handler(); }
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

#define CAIRN_GUARDED_OP(ret, op, params, args) \
  ret op params const override {                \
    const Open open(*this);                     \
    return CpuBackend::op args;                 \
  }
  CAIRN_GUARDED_OP(void, zero, (void* p, int64_t bytes), (p, bytes))
  CAIRN_GUARDED_OP(void, copy_to_host, (void* host, const void* dev, int64_t bytes), (host, dev, bytes))
  CAIRN_GUARDED_OP(void, copy_to_device, (void* dev, const void* host, int64_t bytes), (dev, host, bytes))
  CAIRN_GUARDED_OP(void, matmul,
                   (float* out, const float* a, const float* b, int64_t M, int64_t N, int64_t K, bool ta, bool tb,
                    float alpha, float beta),
                   (out, a, b, M, N, K, ta, tb, alpha, beta))
  CAIRN_GUARDED_OP(void, embedding_forward, (float* out, const int32_t* t, const float* table, int64_t N, int64_t C),
                   (out, t, table, N, C))
  CAIRN_GUARDED_OP(void, embedding_backward, (float* dt, const float* dout, const int32_t* t, int64_t N, int64_t C),
                   (dt, dout, t, N, C))
  CAIRN_GUARDED_OP(void, rmsnorm_forward,
                   (float* out, float* rstd, const float* inp, const float* w, int64_t N, int64_t C, float eps),
                   (out, rstd, inp, w, N, C, eps))
  CAIRN_GUARDED_OP(void, rmsnorm_backward,
                   (float* dinp, float* dw, const float* dout, const float* inp, const float* w, const float* rstd,
                    int64_t N, int64_t C),
                   (dinp, dw, dout, inp, w, rstd, N, C))
  CAIRN_GUARDED_OP(void, rope_forward,
                   (float* x, const float* c, const float* s, int64_t B, int64_t T, int64_t NH, int64_t HS),
                   (x, c, s, B, T, NH, HS))
  CAIRN_GUARDED_OP(void, rope_backward,
                   (float* dx, const float* c, const float* s, int64_t B, int64_t T, int64_t NH, int64_t HS),
                   (dx, c, s, B, T, NH, HS))
  CAIRN_GUARDED_OP(void, attention_forward,
                   (float* out, float* saved, const float* q, const float* k, const float* v, int64_t B, int64_t T,
                    int64_t NH, int64_t HS),
                   (out, saved, q, k, v, B, T, NH, HS))
  CAIRN_GUARDED_OP(void, attention_backward,
                   (float* dq, float* dk, float* dv, float* scratch, const float* dout, const float* q, const float* k,
                    const float* v, const float* out, const float* saved, int64_t B, int64_t T, int64_t NH,
                    int64_t HS),
                   (dq, dk, dv, scratch, dout, q, k, v, out, saved, B, T, NH, HS))
  CAIRN_GUARDED_OP(void, swiglu_forward, (float* out, const float* g, const float* u, int64_t n), (out, g, u, n))
  CAIRN_GUARDED_OP(void, swiglu_backward,
                   (float* dg, float* du, const float* dout, const float* g, const float* u, int64_t n),
                   (dg, du, dout, g, u, n))
  CAIRN_GUARDED_OP(void, crossentropy_forward_backward,
                   (float* losses, float* logits, const int32_t* t, int64_t N, int64_t V, float scale),
                   (losses, logits, t, N, V, scale))
  CAIRN_GUARDED_OP(void, crossentropy_forward,
                   (float* losses, const float* logits, const int32_t* t, int64_t N, int64_t V),
                   (losses, logits, t, N, V))
  CAIRN_GUARDED_OP(void, add_inplace, (float* y, const float* x, int64_t n), (y, x, n))
  CAIRN_GUARDED_OP(void, scale_inplace, (float* x, float s, int64_t n), (x, s, n))
  CAIRN_GUARDED_OP(void, scatter_add, (float* dst, const int32_t* idx, const float* v, int64_t n), (dst, idx, v, n))
  CAIRN_GUARDED_OP(void, gather_add, (float* dst, const float* src, const int32_t* idx, int64_t n), (dst, src, idx, n))
  CAIRN_GUARDED_OP(void, adam_direction,
                   (float* dir, float* m, float* v, const float* g, int64_t n, float b1, float b2, float eps),
                   (dir, m, v, g, n, b1, b2, eps))
  CAIRN_GUARDED_OP(void, norm_ratio,
                   (float* ratio, const float* a, const float* b, int64_t count, int64_t r, bool by_row),
                   (ratio, a, b, count, r, by_row))
  CAIRN_GUARDED_OP(void, scale_by, (float* x, const float* s, int64_t m, int64_t n, bool by_row), (x, s, m, n, by_row))
  CAIRN_GUARDED_OP(void, apply_update, (float* w, const float* u, int64_t n, float step, float decay),
                   (w, u, n, step, decay))
  CAIRN_GUARDED_OP(void, top_singular_vectors,
                   (float* proj, const float* g, int64_t m, int64_t n, int64_t r, bool by_row),
                   (proj, g, m, n, r, by_row))
  CAIRN_GUARDED_OP(double, sum_squares, (const float* x, int64_t n), (x, n))
  CAIRN_GUARDED_OP(void, adamw_update,
                   (float* p, const float* g, float* m, float* v, int64_t n, float lr, float b1, float b2, float eps,
                    float wd, float bc1, float bc2),
                   (p, g, m, v, n, lr, b1, b2, eps, wd, bc1, bc2))
#undef CAIRN_GUARDED_OP

 private:
  // Makes every region accessible for the duration of an op (ops may call other ops).
  class Open {
   public:
    explicit Open(const GuardedBackend& be) : be_(be) {
      if (be_.open_depth_++ == 0) be_.protect(PROT_READ | PROT_WRITE);
    }
    ~Open() {
      if (--be_.open_depth_ == 0) be_.protect(PROT_NONE);
    }
    Open(const Open&) = delete;
    Open& operator=(const Open&) = delete;

   private:
    const GuardedBackend& be_;
  };

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
