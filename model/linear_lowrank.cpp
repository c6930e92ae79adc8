// Low-rank linear weight (see linear_lowrank.h). The x·Aᵀ product is recomputed in backward
// rather than saved: it costs one thin GEMM and keeps the per-layer saved activations unchanged.
#include "model/linear_lowrank.h"

#include <algorithm>
#include <cmath>

#include "util/error.h"

namespace cairn {

LowRankLinear::LowRankLinear(std::string name, int64_t out, int64_t in, int layer, int64_t rank, float alpha)
    : Linear(std::move(name), out, in, layer), rank_(rank), scale_(alpha / float(rank)) {
  CAIRN_ASSERT(rank > 0 && rank <= std::min(out, in), "rank ", rank, " for a ", out, "x", in, " weight");
}

void LowRankLinear::declare(ParamTable& params, BufferTable&) {
  offset_B_ = params.row(params.add(name_ + ".lora_B", {out_, rank_}, ParamRole::lowrank_factor, layer_)).offset;
  offset_A_ = params.row(params.add(name_ + ".lora_A", {rank_, in_}, ParamRole::lowrank_factor, layer_)).offset;
}

void LowRankLinear::init_factors(std::span<float> params, Rng& rng, bool zero_B) const {
  // Kaiming-uniform with a = sqrt 5 bounds a [rows, fan_in] weight by 1/sqrt(fan_in).
  const float a = 1.0f / std::sqrt(float(in_));
  float* A = params.data() + offset_A_;
  for (int64_t i = 0; i < rank_ * in_; ++i) A[i] = rng.uniform(-a, a);
  float* B = params.data() + offset_B_;
  if (zero_B) {
    std::fill_n(B, out_ * rank_, 0.0f);
    return;
  }
  const float b = 1.0f / std::sqrt(float(rank_));
  for (int64_t i = 0; i < out_ * rank_; ++i) B[i] = rng.uniform(-b, b);
}

void LowRankLinear::init(std::span<float> params, BufferTable&, Rng& rng) const {
  init_factors(params, rng, /*zero_B=*/false);
}

void LowRankLinear::lowrank_forward(const Backend& be, float* y, const float* x, int64_t N,
                                    const float* params, float* ws) const {
  const float* B = params + offset_B_;
  const float* A = params + offset_A_;
  be.matmul(ws, x, A, N, rank_, in_, false, true, 1.0f, 0.0f);     // t = x·Aᵀ   [N, r]
  be.matmul(y, ws, B, N, out_, rank_, false, true, scale_, 0.0f);  // y = s·t·Bᵀ [N, out]
}

void LowRankLinear::lowrank_backward(const Backend& be, float* dx, bool accumulate_dx, float* grads,
                                     const float* dy, const float* x, int64_t N, const float* params,
                                     float* ws) const {
  const float* B = params + offset_B_;
  const float* A = params + offset_A_;
  be.matmul(ws, x, A, N, rank_, in_, false, true, 1.0f, 0.0f);                    // t = x·Aᵀ
  be.matmul(grads + offset_B_, dy, ws, out_, rank_, N, true, false, scale_, 1.0f);  // dB += s·dyᵀ·t
  be.matmul(ws, dy, B, N, rank_, out_, false, false, 1.0f, 0.0f);                   // u = dy·B
  be.matmul(grads + offset_A_, ws, x, rank_, in_, N, true, false, scale_, 1.0f);    // dA += s·uᵀ·x
  be.matmul(dx, ws, A, N, in_, rank_, false, false, scale_, accumulate_dx ? 1.0f : 0.0f);  // dx = s·u·A
}

LinearFlops LowRankLinear::lowrank_flops(int64_t N) const {
  const double nr = 2.0 * double(N) * double(rank_), i = double(in_), o = double(out_);
  return {nr * (i + o), nr * (3.0 * i + 2.0 * o)};
}

LinearFlops LowRankLinear::flops(const Backend&, int64_t N) const { return lowrank_flops(N); }

void LowRankLinear::forward(const Backend& be, float* y, const float* x, int64_t N, const float* params,
                            const BufferTable&, float* workspace) const {
  lowrank_forward(be, y, x, N, params, workspace);
}

void LowRankLinear::backward(const Backend& be, float* dx, bool accumulate_dx, float* grads, const float* dy,
                             const float* x, int64_t N, const float* params, const BufferTable&,
                             float* workspace) const {
  lowrank_backward(be, dx, accumulate_dx, grads, dy, x, N, params, workspace);
}

void LowRankLinear::dense_weight(float* W, std::span<const float> params, const BufferTable&) const {
  // Plain loops in double: this is the reference the GEMM paths are tested against.
  const float* B = params.data() + offset_B_;
  const float* A = params.data() + offset_A_;
  for (int64_t i = 0; i < out_; ++i)
    for (int64_t j = 0; j < in_; ++j) {
      double s = 0;
      for (int64_t k = 0; k < rank_; ++k) s += double(B[i * rank_ + k]) * double(A[k * in_ + j]);
      W[i * in_ + j] = float(double(scale_) * s);
    }
}

}  // namespace cairn
