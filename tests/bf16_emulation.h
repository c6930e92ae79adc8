// A CPU emulation of the CUDA backend's CudaMath::bf16 mode, for tests: the CPU backend, except
// that matmul first rounds its inputs as the bf16 mode does — operands inside a registered
// parameter buffer with bf16_round_param(index in the buffer, value), all others to nearest — and
// then multiplies the rounded values in fp32. The GPU's bf16 GEMMs must match it up to fp32
// summation order, a far tighter oracle than the fp32 result. Its "bf16 copy" is computed from the
// fp32 master on every matmul, so it is never stale: it checks roundings, not invalidation.
#pragma once

#include <cstdint>
#include <vector>

#include "model/backend.h"
#include "model/bf16.h"

namespace cairn {

class Bf16EmulationBackend final : public Backend {
 public:
  std::string name() const override { return "cpu-bf16-emulation"; }

  void matmul(float* out, const float* a, const float* b, int64_t M, int64_t N, int64_t K, bool trans_a,
              bool trans_b, float alpha, float beta) const override {
    const std::vector<float> ra = rounded(a, M * K), rb = rounded(b, K * N);
    cpu_.matmul(out, ra.data(), rb.data(), M, N, K, trans_a, trans_b, alpha, beta);
  }

  void register_parameters(const float* base, int64_t n) const override { registered_.push_back({base, n}); }
  void release(void* p) const override {
    for (size_t i = 0; i < registered_.size(); ++i)
      if (registered_[i].base == p) {
        registered_.erase(registered_.begin() + std::ptrdiff_t(i));
        break;
      }
    cpu_.release(p);
  }

  // Everything else is the CPU backend's.
  void embedding_forward(float* out, const int32_t* tokens, const float* table, int64_t N, int64_t C) const override {
    cpu_.embedding_forward(out, tokens, table, N, C);
  }
  void embedding_backward(float* dtable, const float* dout, const int32_t* tokens, int64_t N,
                          int64_t C) const override {
    cpu_.embedding_backward(dtable, dout, tokens, N, C);
  }
  void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int64_t N, int64_t C,
                       float eps) const override {
    cpu_.rmsnorm_forward(out, rstd, inp, weight, N, C, eps);
  }
  void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight,
                        const float* rstd, int64_t N, int64_t C) const override {
    cpu_.rmsnorm_backward(dinp, dweight, dout, inp, weight, rstd, N, C);
  }
  void rope_forward(float* x, const float* cos, const float* sin, int64_t B, int64_t T, int64_t NH,
                    int64_t HS) const override {
    cpu_.rope_forward(x, cos, sin, B, T, NH, HS);
  }
  void rope_backward(float* dx, const float* cos, const float* sin, int64_t B, int64_t T, int64_t NH,
                     int64_t HS) const override {
    cpu_.rope_backward(dx, cos, sin, B, T, NH, HS);
  }
  void attention_forward(float* out, float* probs, const float* q, const float* k, const float* v, int64_t B,
                         int64_t T, int64_t NH, int64_t HS) const override {
    cpu_.attention_forward(out, probs, q, k, v, B, T, NH, HS);
  }
  void attention_backward(float* dq, float* dk, float* dv, float* scratch, const float* dout, const float* q,
                          const float* k, const float* v, const float* probs, int64_t B, int64_t T, int64_t NH,
                          int64_t HS) const override {
    cpu_.attention_backward(dq, dk, dv, scratch, dout, q, k, v, probs, B, T, NH, HS);
  }
  void swiglu_forward(float* out, const float* gate, const float* up, int64_t n) const override {
    cpu_.swiglu_forward(out, gate, up, n);
  }
  void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                       int64_t n) const override {
    cpu_.swiglu_backward(dgate, dup, dout, gate, up, n);
  }
  void crossentropy_forward_backward(float* losses, float* logits, const int32_t* targets, int64_t N, int64_t V,
                                     float dloss_scale) const override {
    cpu_.crossentropy_forward_backward(losses, logits, targets, N, V, dloss_scale);
  }
  void crossentropy_forward(float* losses, const float* logits, const int32_t* targets, int64_t N,
                            int64_t V) const override {
    cpu_.crossentropy_forward(losses, logits, targets, N, V);
  }
  void add_inplace(float* y, const float* x, int64_t n) const override { cpu_.add_inplace(y, x, n); }
  void scale_inplace(float* x, float s, int64_t n) const override { cpu_.scale_inplace(x, s, n); }
  double sum_squares(const float* x, int64_t n) const override { return cpu_.sum_squares(x, n); }
  void adamw_update(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1, float beta2,
                    float eps, float weight_decay, float bias_correction1, float bias_correction2) const override {
    cpu_.adamw_update(p, g, m, v, n, lr, beta1, beta2, eps, weight_decay, bias_correction1, bias_correction2);
  }
  void* alloc(int64_t bytes) const override { return cpu_.alloc(bytes); }
  void zero(void* p, int64_t bytes) const override { cpu_.zero(p, bytes); }
  void copy_to_host(void* host, const void* dev, int64_t bytes) const override { cpu_.copy_to_host(host, dev, bytes); }
  void copy_to_device(void* dev, const void* host, int64_t bytes) const override {
    cpu_.copy_to_device(dev, host, bytes);
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

  const Backend& cpu_ = cpu_backend();
  mutable std::vector<Range> registered_;
};

}  // namespace cairn
