// CPU elementwise kernels: SwiGLU, fused softmax cross-entropy, vector helpers and AdamW.
#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/bf16.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/fast_math.h"

namespace cairn {

void CpuBackend::swiglu_forward(float* out, const float* gate, const float* up, int64_t n) const {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + fast_exp(-g)) * up[i];
  }
}

void CpuBackend::swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                                 const float* up, int64_t n) const {
  // silu(g) = g·σ(g), silu'(g) = σ(g)·(1 + g·(1 − σ(g))).
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    const float sig = 1.0f / (1.0f + fast_exp(-g));
    dup[i] = dout[i] * g * sig;
    dgate[i] = dout[i] * up[i] * sig * (1.0f + g * (1.0f - sig));
  }
}

// One row: returns the loss and, when dlogits is given, writes (softmax − onehot)·scale into it
// (dlogits may be logits). The exponentials are computed once: dlogits holds exp(logit − max)
// until the sum is known, then is scaled by scale/sum (a row of the vocabulary stays in L2).
static float crossentropy_row(const float* logits, float* dlogits, int32_t target, int64_t V,
                              float scale) {
  float mx = logits[0];
#pragma omp simd reduction(max : mx)
  for (int64_t j = 1; j < V; ++j) mx = std::max(mx, logits[j]);
  const float target_logit = logits[target];
  float sum = 0.0f;
  if (dlogits) {
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < V; ++j) {
      dlogits[j] = fast_exp(logits[j] - mx);
      sum += dlogits[j];
    }
    const float k = scale / sum;
#pragma omp simd
    for (int64_t j = 0; j < V; ++j) dlogits[j] *= k;
    dlogits[target] -= scale;
  } else {
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < V; ++j) sum += fast_exp(logits[j] - mx);
  }
  return mx + std::log(sum) - target_logit;
}

void CpuBackend::crossentropy_forward_backward(float* losses, float* logits, const int32_t* targets,
                                               int64_t N, int64_t V, float dloss_scale) const {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    float* row = logits + n * V;
    if (targets[n] < 0) {
      losses[n] = 0.0f;
      for (int64_t j = 0; j < V; ++j) row[j] = 0.0f;
    } else {
      losses[n] = crossentropy_row(row, row, targets[n], V, dloss_scale);
    }
  }
}

void CpuBackend::crossentropy_forward(float* losses, const float* logits, const int32_t* targets,
                                      int64_t N, int64_t V) const {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n)
    losses[n] = targets[n] < 0 ? 0.0f : crossentropy_row(logits + n * V, nullptr, targets[n], V, 0.0f);
}

void CpuBackend::add_inplace(float* y, const float* x, int64_t n) const {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
  written(y, n * 4);
}

void CpuBackend::scale_inplace(float* x, float s, int64_t n) const {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
  written(x, n * 4);
}

void CpuBackend::scatter_add(float* dst, const int32_t* idx, const float* values, int64_t n) const {
#pragma omp parallel for schedule(static)
  for (int64_t k = 0; k < n; ++k) dst[idx[k]] += values[k];
}

void CpuBackend::gather_add(float* dst, const float* src, const int32_t* idx, int64_t n) const {
#pragma omp parallel for schedule(static)
  for (int64_t k = 0; k < n; ++k) dst[k] += src[idx[k]];
}

double CpuBackend::sum_squares(const float* x, int64_t n) const {
  // Fixed blocks, each summed by 8 interleaved accumulators (independent chains, so the loop
  // vectorizes without reassociating), then the blocks' sums added in block order: the result
  // does not depend on the thread count. The partials buffer grows once, not every step.
  constexpr int64_t block = 1 << 14, lanes = 8;
  const int64_t nb = (n + block - 1) / block;
  static thread_local std::vector<double> partial;
  if (int64_t(partial.size()) < nb) partial.resize(size_t(nb));
  double* sums = partial.data();
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t begin = b * block, end = std::min(n, begin + block);
    const int64_t whole = begin + (end - begin) / lanes * lanes;
    double acc[lanes] = {};
    for (int64_t i = begin; i < whole; i += lanes)
      for (int64_t k = 0; k < lanes; ++k) acc[k] += double(x[i + k]) * double(x[i + k]);
    double s = 0.0;
    for (int64_t k = 0; k < lanes; ++k) s += acc[k];
    for (int64_t i = whole; i < end; ++i) s += double(x[i]) * double(x[i]);
    sums[b] = s;
  }
  double total = 0.0;
  for (int64_t b = 0; b < nb; ++b) total += sums[b];
  return total;
}

void CpuBackend::adamw_update(float* p, const float* g, float* m, float* v, int64_t n, float lr,
                              float beta1, float beta2, float eps, float weight_decay,
                              float bias_correction1, float bias_correction2) const {
  // The PyTorch AdamW order: decay first, then the Adam step with bias-corrected moments.
  const float step = lr / bias_correction1;
  const float inv_sqrt_bc2 = 1.0f / std::sqrt(bias_correction2);
  const auto update = [=](int64_t i) {
    const float gi = g[i];
    m[i] = beta1 * m[i] + (1.0f - beta1) * gi;
    v[i] = beta2 * v[i] + (1.0f - beta2) * gi * gi;
    p[i] *= 1.0f - lr * weight_decay;
    p[i] -= step * m[i] / (std::sqrt(v[i]) * inv_sqrt_bc2 + eps);
  };
  // bf16 mode, parameters inside a registered buffer: their copy re-rounded in the same pass.
  int64_t first = 0;
  if (uint16_t* copy = param_copy(p, n, &first)) {
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      update(i);
      copy[i] = bf16_round_param(first + i, p[i]);
    }
    return;
  }
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) update(i);
  written(p, n * 4);
}

}  // namespace cairn
