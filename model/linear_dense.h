// The dense linear weight: one [out, in] row, y = x·Wᵀ through one GEMM.
#pragma once

#include "model/linear.h"

namespace cairn {

class DenseLinear final : public Linear {
 public:
  DenseLinear(std::string name, int64_t out, int64_t in, int layer, ParamRole role = ParamRole::matrix)
      : Linear(std::move(name), out, in, layer), role_(role) {}

  void declare(ParamTable& params, BufferTable& buffers) override;
  void init(std::span<float> params, BufferTable& buffers, Rng& rng) const override;
  void forward(const Backend& be, float* y, const float* x, int64_t N, const float* params,
               const BufferTable& buffers, float* workspace) const override;
  void backward(const Backend& be, float* dx, bool accumulate_dx, float* grads, const float* dy,
                const float* x, int64_t N, const float* params, const BufferTable& buffers,
                float* workspace) const override;
  int64_t workspace_floats(int64_t) const override { return 0; }
  // Forward y: 2·N·out·in; backward dW and dx: 4·N·out·in (the 6 of 6·N per token).
  LinearFlops flops(const Backend& be, int64_t N) const override;
  void dense_weight(float* W, std::span<const float> params, const BufferTable& buffers) const override;

  int64_t offset() const { return offset_; }

 private:
  ParamRole role_;
  int64_t offset_ = -1;
};

}  // namespace cairn
