// CUDA causal attention, the straightforward version: per batch entry, the heads' scores, weighted
// sums and their gradients are strided-batched cuBLAS GEMMs over the NH heads (head h of q, k, v
// starts at column h·HS with row stride C), and the causal softmax and its backward are one warp
// per score row. The [B,NH,T,T] probabilities are materialized, as the interface saves them.
// A fused (flash-style or cuDNN) kernel replaces this when the interface drops `probs`.
#include <cmath>

#include "model/cuda/cuda_common.cuh"

namespace cairn {

constexpr int kRowsPerBlock = 8;

// In place on S [rows, T] (row r is query t = r % T): p = softmax over s ≤ t, zero beyond.
static __global__ void causal_softmax_kernel(float* S, int64_t rows, int64_t T) {
  const int64_t r = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= rows) return;
  const int64_t t = r % T;
  float* row = S + r * T;
  float mx = -INFINITY;
  for (int64_t s = lane; s <= t; s += 32) mx = fmaxf(mx, row[s]);
  mx = warp_max(mx);
  float sum = 0.0f;
  for (int64_t s = lane; s <= t; s += 32) {
    const float e = expf(row[s] - mx);
    row[s] = e;
    sum += e;
  }
  const float inv = 1.0f / warp_sum(sum);
  for (int64_t s = lane; s < T; s += 32) row[s] = s <= t ? row[s] * inv : 0.0f;
}

// In place on dP [rows, T]: dS = P ⊙ (dP − Σ_s P·dP) for s ≤ t, zero beyond.
static __global__ void causal_softmax_backward_kernel(float* dP, const float* P, int64_t rows, int64_t T) {
  const int64_t r = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= rows) return;
  const int64_t t = r % T;
  const float* p = P + r * T;
  float* d = dP + r * T;
  float dot = 0.0f;
  for (int64_t s = lane; s <= t; s += 32) dot += p[s] * d[s];
  dot = warp_sum(dot);
  for (int64_t s = lane; s < T; s += 32) d[s] = s <= t ? p[s] * (d[s] - dot) : 0.0f;
}

static void launch_rows(void (*kernel)(float*, int64_t, int64_t), float* S, int64_t rows, int64_t T,
                        cudaStream_t stream) {
  kernel<<<unsigned((rows + kRowsPerBlock - 1) / kRowsPerBlock), 32 * kRowsPerBlock, 0, stream>>>(S, rows, T);
  CUDA_CHECK_LAUNCH();
}

void CudaBackend::attention_forward(float* out, float* probs, const float* q, const float* k, const float* v,
                                    int64_t B, int64_t T, int64_t NH, int64_t HS) const {
  if (B * T == 0) return;
  const int64_t C = NH * HS, TT = T * T;
  const float scale = 1.0f / std::sqrt(float(HS));
  // S = scale·Q·Kᵀ per head, then the causal softmax over all B·NH·T rows, then O = P·V.
  for (int64_t b = 0; b < B; ++b)
    gemm(false, true, T, T, HS, scale, q + b * T * C, C, HS, k + b * T * C, C, HS, 0.0f, probs + b * NH * TT,
         T, TT, NH);
  launch_rows(causal_softmax_kernel, probs, B * NH * T, T, stream_);
  for (int64_t b = 0; b < B; ++b)
    gemm(false, false, T, HS, T, 1.0f, probs + b * NH * TT, T, TT, v + b * T * C, C, HS, 0.0f, out + b * T * C,
         C, HS, NH);
}

void CudaBackend::attention_backward(float* dq, float* dk, float* dv, float* scratch, const float* dout,
                                     const float* q, const float* k, const float* v, const float* probs,
                                     int64_t B, int64_t T, int64_t NH, int64_t HS) const {
  if (B * T == 0) return;
  const int64_t C = NH * HS, TT = T * T;
  const float scale = 1.0f / std::sqrt(float(HS));
  // dP = dO·Vᵀ (into scratch), dV = Pᵀ·dO.
  for (int64_t b = 0; b < B; ++b) {
    const int64_t x = b * T * C, p = b * NH * TT;
    gemm(false, true, T, T, HS, 1.0f, dout + x, C, HS, v + x, C, HS, 0.0f, scratch + p, T, TT, NH);
    gemm(true, false, T, HS, T, 1.0f, probs + p, T, TT, dout + x, C, HS, 0.0f, dv + x, C, HS, NH);
  }
  const int64_t rows = B * NH * T;
  causal_softmax_backward_kernel<<<unsigned((rows + kRowsPerBlock - 1) / kRowsPerBlock), 32 * kRowsPerBlock, 0,
                                   stream_>>>(scratch, probs, rows, T);
  CUDA_CHECK_LAUNCH();
  // S = scale·Q·Kᵀ:  dQ = scale·dS·K,  dK = scale·dSᵀ·Q.
  for (int64_t b = 0; b < B; ++b) {
    const int64_t x = b * T * C, p = b * NH * TT;
    gemm(false, false, T, HS, T, scale, scratch + p, T, TT, k + x, C, HS, 0.0f, dq + x, C, HS, NH);
    gemm(true, false, T, HS, T, scale, scratch + p, T, TT, q + x, C, HS, 0.0f, dk + x, C, HS, NH);
  }
}

}  // namespace cairn
