// A CPU emulation of the CUDA backend's CudaMath::bf16 mode, for tests: the CPU backend (wrapped,
// so every other op is the CPU's), except that matmul first rounds its inputs as the bf16 mode
// does — operands inside a registered parameter buffer with bf16_round_param(index in the buffer,
// value), all others to nearest — and then multiplies the rounded values in fp32. The GPU's bf16
// GEMMs must match it up to fp32 summation order, a far tighter oracle than the fp32 result. Its "bf16 copy" is computed from the
// fp32 master on every matmul, so it is never stale: it checks roundings, not invalidation.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/bf16.h"
#include "backend/forwarding_backend.h"

namespace cairn {

class Bf16EmulationBackend final : public ForwardingBackend {
 public:
  Bf16EmulationBackend() : ForwardingBackend(cpu_backend()) {}
  std::string name() const override { return "cpu-bf16-emulation"; }

  void matmul(float* out, const float* a, const float* b, int64_t M, int64_t N, int64_t K, bool trans_a,
              bool trans_b, float alpha, float beta) const override {
    const std::vector<float> ra = rounded(a, M * K), rb = rounded(b, K * N);
    inner().matmul(out, ra.data(), rb.data(), M, N, K, trans_a, trans_b, alpha, beta);
  }

  // The composite GEMM ops as their default loops over this matmul (not the inner backend's).
  void matmul_batched(float* out, const float* a, const float* b, int64_t M, int64_t N, int64_t K, bool ta, bool tb,
                      float alpha, float beta, int64_t batch, int64_t so, int64_t sa, int64_t sb) const override {
    Backend::matmul_batched(out, a, b, M, N, K, ta, tb, alpha, beta, batch, so, sa, sb);
  }
  void linear_backward(float* dw, float* dx, const float* dy, const float* x, const float* w, int64_t N, int64_t out,
                       int64_t in, int64_t k, bool acc) const override {
    Backend::linear_backward(dw, dx, dy, x, w, N, out, in, k, acc);
  }

  void register_parameters(const float* base, int64_t n) const override { registered_.push_back({base, n}); }
  void release(void* p) const override {
    for (size_t i = 0; i < registered_.size(); ++i)
      if (registered_[i].base == p) {
        registered_.erase(registered_.begin() + std::ptrdiff_t(i));
        break;
      }
    inner().release(p);
  }

 private:
  struct Range {
    const float* base;
    int64_t n;
  };

  std::vector<float> rounded(const float* p, int64_t n) const {
    std::vector<float> out(static_cast<size_t>(n));
    const auto at = reinterpret_cast<uintptr_t>(p);
    for (const Range& r : registered_) {
      const auto b = reinterpret_cast<uintptr_t>(r.base);
      if (at >= b && at + uintptr_t(n) * 4 <= b + uintptr_t(r.n) * 4) {
        const int64_t first = p - r.base;
        for (int64_t i = 0; i < n; ++i) out[size_t(i)] = bf16_to_float(bf16_round_param(first + i, p[i]));
        return out;
      }
    }
    for (int64_t i = 0; i < n; ++i) out[size_t(i)] = bf16_to_float(bf16_round_nearest(p[i]));
    return out;
  }

  mutable std::vector<Range> registered_;
};

}  // namespace cairn
