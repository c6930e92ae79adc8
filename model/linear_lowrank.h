// Low-rank linear weight W = s·B·A (the SLTrain and GaLore papers' low-rank baseline: factors
// trained from scratch, no full-rank weight): B [out, r], A [r, in], s = alpha / r fixed. The dense W is never formed
// in training: y = s·(x·Aᵀ)·Bᵀ through two GEMMs; the [N, r] intermediate lives in the workspace.
// Rows (names as the official SLTrain code's module attributes): "<prefix>.lora_B" [out, r] and
// "<prefix>.lora_A" [r, in], both ParamRole::lowrank_factor.
#pragma once

#include "model/linear.h"

namespace cairn {

class LowRankLinear : public Linear {
 public:
  LowRankLinear(std::string name, int64_t out, int64_t in, int layer, int64_t rank, float alpha);

  void declare(ParamTable& params, BufferTable& buffers) override;
  // Both factors Kaiming-uniform (a = sqrt 5, PyTorch's nn.Linear default): A uniform in
  // ±1/sqrt(in), then B uniform in ±1/sqrt(r) — as ReLoRA's code (Guitaricet/relora) inits its
  // low-rank-only layers. LoRA's B = 0 would make every projection exactly zero: with no S or
  // frozen weight beside it, no gradient would reach any factor and the blocks would never train.
  void init(std::span<float> params, BufferTable& buffers, Rng& rng) const override;
  void forward(const Backend& be, float* y, const float* x, int64_t N, const float* params,
               const BufferTable& buffers, float* workspace) const override;
  void backward(const Backend& be, float* dx, bool accumulate_dx, float* grads, const float* dy,
                const float* x, int64_t N, const float* params, const BufferTable& buffers,
                float* workspace) const override;
  int64_t workspace_floats(int64_t N) const override { return N * rank_; }
  // Forward x·Aᵀ, ·Bᵀ: 2·N·r·(in + out); backward x·Aᵀ again, dB, dy·B, dA, dx: 2·N·r·(3·in + 2·out).
  LinearFlops flops(const Backend& be, int64_t N) const override;
  void dense_weight(float* W, std::span<const float> params, const BufferTable& buffers) const override;

  int64_t rank() const { return rank_; }
  float scale() const { return scale_; }
  int64_t offset_B() const { return offset_B_; }
  int64_t offset_A() const { return offset_A_; }

 protected:
  // A uniform in ±1/sqrt(in) from rng; B uniform in ±1/sqrt(r) after it, or 0 when zero_B.
  void init_factors(std::span<float> params, Rng& rng, bool zero_B) const;
  // y = s·(x·Aᵀ)·Bᵀ + beta·y; workspace: N·r floats.
  void lowrank_forward(const Backend& be, float* y, const float* x, int64_t N, const float* params,
                       float* workspace) const;
  // dB += s·dyᵀ·(x·Aᵀ), dA += s·(dy·B)ᵀ·x, dx (+)= s·(dy·B)·A; workspace: N·r floats.
  // lowrank_flops counts both.
  LinearFlops lowrank_flops(int64_t N) const;
  void lowrank_backward(const Backend& be, float* dx, bool accumulate_dx, float* grads, const float* dy,
                        const float* x, int64_t N, const float* params, float* workspace) const;

  int64_t rank_;
  float scale_;
  int64_t offset_B_ = -1, offset_A_ = -1;
};

}  // namespace cairn
