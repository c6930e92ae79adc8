// Dense linear weight (see linear_dense.h).
#include "model/linear_dense.h"

#include <algorithm>

#include "util/error.h"

namespace cairn {

void DenseLinear::declare(ParamTable& params, BufferTable&) {
  offset_ = params.row(params.add(name_ + ".weight", {out_, in_}, role_, layer_)).offset;
}

void DenseLinear::init(std::span<float> params, BufferTable&, Rng& rng) const {
  // Hugging Face LLaMA init: normal(0, 0.02) for every projection.
  float* w = params.data() + offset_;
  for (int64_t i = 0; i < out_ * in_; ++i) w[i] = 0.02f * rng.normal();
}

void DenseLinear::forward(const Backend& be, float* y, const float* x, int64_t N, const float* params,
                          const BufferTable&, float*) const {
  be.matmul(y, x, params + offset_, N, out_, in_, false, true, 1.0f, 0.0f);
}

void DenseLinear::backward(const Backend& be, float* dx, bool accumulate_dx, float* grads,
                           const float* dy, const float* x, int64_t N, const float* params,
                           const BufferTable&, float*) const {
  // dW[out,in] += dyᵀ·x ;  dx[N,in] (+)= dy·W
  be.linear_backward(grads + offset_, dx, dy, x, params + offset_, N, out_, in_, 1, accumulate_dx);
}

LinearFlops DenseLinear::flops(const Backend&, int64_t N) const {
  const double y = 2.0 * double(N) * double(out_) * double(in_);
  return {y, 2.0 * y};
}

void DenseLinear::dense_weight(float* W, std::span<const float> params, const BufferTable&) const {
  std::copy_n(params.data() + offset_, out_ * in_, W);
}

}  // namespace cairn
