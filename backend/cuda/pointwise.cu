// CUDA elementwise and row-reduction kernels: SwiGLU, fused softmax cross-entropy, vector helpers,
// the deterministic sum of squares, Fira's norm-growth limiter built on it, and AdamW
// (backend/cpu/pointwise.cpp and lowrank.cpp are the oracle).
#include <cmath>

#include "backend/bf16.h"
#include "backend/cuda/cuda_common.cuh"

namespace cairn {

// ---- SwiGLU -------------------------------------------------------------------------------------

static __global__ void swiglu_forward_kernel(float* out, const float* gate, const float* up, int64_t n) {
  CAIRN_GRID_STRIDE(i, n) {
    const float g = gate[i];
    out[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

// silu(g) = g·σ(g), silu'(g) = σ(g)·(1 + g·(1 − σ(g))).
static __global__ void swiglu_backward_kernel(float* dgate, float* dup, const float* dout, const float* gate,
                                              const float* up, int64_t n) {
  CAIRN_GRID_STRIDE(i, n) {
    const float g = gate[i];
    const float sig = 1.0f / (1.0f + expf(-g));
    dup[i] = dout[i] * g * sig;
    dgate[i] = dout[i] * up[i] * sig * (1.0f + g * (1.0f - sig));
  }
}

void CudaBackend::swiglu_forward(float* out, const float* gate, const float* up, int64_t n) const {
  if (n == 0) return;
  swiglu_forward_kernel<<<grid_for(n, 256), 256, 0, stream_>>>(out, gate, up, n);
  CUDA_CHECK_LAUNCH();
}

void CudaBackend::swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                                  const float* up, int64_t n) const {
  if (n == 0) return;
  swiglu_backward_kernel<<<grid_for(n, 256), 256, 0, stream_>>>(dgate, dup, dout, gate, up, n);
  CUDA_CHECK_LAUNCH();
}

// ---- cross-entropy: one block per row ------------------------------------------------------------

constexpr int kCeThreads = 512;

static __device__ float block_max(float v, float* shared) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = warp_max(v);
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  float m = lane < warps ? shared[lane] : -INFINITY;
  m = warp_max(m);
  __syncthreads();
  return m;
}

// losses[n] = logsumexp(row) − row[target]; with dlogits, row := (softmax − onehot)·scale in place.
static __global__ void crossentropy_kernel(float* losses, float* dlogits, const float* logits,
                                           const int32_t* targets, int64_t V, float scale) {
  __shared__ float shared[32];
  const int64_t n = blockIdx.x;
  const float* row = logits + n * V;
  const int32_t target = targets[n];
  if (target < 0) {  // ignored position: loss 0, gradient 0 (uniform over the block)
    if (threadIdx.x == 0) losses[n] = 0.0f;
    if (dlogits)
      for (int64_t j = threadIdx.x; j < V; j += blockDim.x) dlogits[n * V + j] = 0.0f;
    return;
  }
  const float target_logit = row[target];  // read before the in-place write below
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) mx = fmaxf(mx, row[j]);
  mx = block_max(mx, shared);
  float sum = 0.0f;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) sum += expf(row[j] - mx);
  sum = block_sum(sum, shared);  // ends with a barrier: every thread has read target_logit
  const float lse = mx + logf(sum);
  if (threadIdx.x == 0) losses[n] = lse - target_logit;
  if (dlogits) {
    float* d = dlogits + n * V;
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
      const float p = expf(row[j] - lse) * scale;
      d[j] = j == target ? p - scale : p;
    }
  }
}

void CudaBackend::crossentropy_forward_backward(float* losses, float* logits, const int32_t* targets, int64_t N,
                                                int64_t V, float dloss_scale) const {
  if (N == 0) return;
  crossentropy_kernel<<<unsigned(N), kCeThreads, 0, stream_>>>(losses, logits, logits, targets, V, dloss_scale);
  CUDA_CHECK_LAUNCH();
}

void CudaBackend::crossentropy_forward(float* losses, const float* logits, const int32_t* targets, int64_t N,
                                       int64_t V) const {
  if (N == 0) return;
  crossentropy_kernel<<<unsigned(N), kCeThreads, 0, stream_>>>(losses, nullptr, logits, targets, V, 0.0f);
  CUDA_CHECK_LAUNCH();
}

// ---- vector helpers -----------------------------------------------------------------------------

static __global__ void add_kernel(float* y, const float* x, int64_t n) { CAIRN_GRID_STRIDE(i, n) y[i] += x[i]; }
static __global__ void scale_kernel(float* x, float s, int64_t n) { CAIRN_GRID_STRIDE(i, n) x[i] *= s; }

// Distinct indices: no two threads write one element, so no atomics.
static __global__ void scatter_add_kernel(float* dst, const int32_t* idx, const float* values, int64_t n) {
  CAIRN_GRID_STRIDE(k, n) dst[idx[k]] += values[k];
}

static __global__ void gather_add_kernel(float* dst, const float* src, const int32_t* idx, int64_t n) {
  CAIRN_GRID_STRIDE(k, n) dst[k] += src[idx[k]];
}

void CudaBackend::add_inplace(float* y, const float* x, int64_t n) const {
  if (n == 0) return;
  add_kernel<<<grid_for(n, 256), 256, 0, stream_>>>(y, x, n);
  CUDA_CHECK_LAUNCH();
  params_written(y, n * 4);
}

void CudaBackend::scale_inplace(float* x, float s, int64_t n) const {
  if (n == 0) return;
  scale_kernel<<<grid_for(n, 256), 256, 0, stream_>>>(x, s, n);
  CUDA_CHECK_LAUNCH();
  params_written(x, n * 4);
}

void CudaBackend::scatter_add(float* dst, const int32_t* idx, const float* values, int64_t n) const {
  if (n == 0) return;
  scatter_add_kernel<<<grid_for(n, 256), 256, 0, stream_>>>(dst, idx, values, n);
  CUDA_CHECK_LAUNCH();
}

void CudaBackend::gather_add(float* dst, const float* src, const int32_t* idx, int64_t n) const {
  if (n == 0) return;
  gather_add_kernel<<<grid_for(n, 256), 256, 0, stream_>>>(dst, src, idx, n);
  CUDA_CHECK_LAUNCH();
}

// Σ x² in double, in two passes with a fixed grid: a fixed launch shape fixes the summation
// order, so the result is bitwise reproducible (it differs from the CPU's order by rounding only).
constexpr int kSumBlocks = 1024, kSumThreads = 256;

static __global__ void sum_squares_partial_kernel(double* partial, const float* x, int64_t n) {
  __shared__ double shared[32];
  double acc = 0.0;
  CAIRN_GRID_STRIDE(i, n) acc += double(x[i]) * double(x[i]);
  acc = block_sum(acc, shared);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

static __global__ void sum_partials_kernel(double* out, const double* partial) {
  __shared__ double shared[32];
  const double s = block_sum(partial[threadIdx.x], shared);  // blockDim.x == kSumBlocks
  if (threadIdx.x == 0) *out = s;
}

// Queues Σ x² into partial[kSumBlocks]; partial holds kSumBlocks + 1 doubles of device memory.
static void sum_squares_into(double* partial, const float* x, int64_t n, cudaStream_t stream) {
  sum_squares_partial_kernel<<<kSumBlocks, kSumThreads, 0, stream>>>(partial, x, n);
  CUDA_CHECK_LAUNCH();
  sum_partials_kernel<<<1, kSumBlocks, 0, stream>>>(partial + kSumBlocks, partial);
  CUDA_CHECK_LAUNCH();
}

double CudaBackend::sum_squares(const float* x, int64_t n) const {
  if (n == 0) return 0.0;
  double* partial = reinterpret_cast<double*>(scratch(2 * (kSumBlocks + 1)));
  sum_squares_into(partial, x, n, stream_);
  double result = 0.0;
  copy_to_host(&result, partial + kSumBlocks, sizeof(double));
  return result;
}

// ---- Fira's norm-growth limiter -----------------------------------------------------------------

// One thread: the limiter from Σ x² and the previous norm, in double as on the CPU (max written
// as the CPU's std::max, so a NaN norm propagates alike). *scale is what x is multiplied by.
static __global__ void norm_growth_kernel(float* scale, float* prev, const double* sum_sq, float gamma, bool first) {
  const double norm = sqrt(*sum_sq);
  if (first) {
    *prev = float(norm);
    *scale = 1.0f;
    return;
  }
  const double growth = norm / (double(*prev) + 1e-8), g = double(gamma);
  const double limiter = (growth < g ? g : growth) / g;
  *scale = limiter > 1.0 ? float(1.0 / limiter) : 1.0f;
  *prev = float(norm / limiter);
}

static __global__ void scale_by_device_scalar_kernel(float* x, const float* scale, int64_t n) {
  const float s = *scale;
  if (s == 1.0f) return;
  CAIRN_GRID_STRIDE(i, n) x[i] *= s;
}

void CudaBackend::limit_norm_growth(float* x, int64_t n, float* prev, float gamma, bool first) const {
  double* partial = reinterpret_cast<double*>(scratch(2 * (kSumBlocks + 1) + 1));
  float* scale = reinterpret_cast<float*>(partial + kSumBlocks + 1);
  sum_squares_into(partial, x, n, stream_);
  norm_growth_kernel<<<1, 1, 0, stream_>>>(scale, prev, partial + kSumBlocks, gamma, first);
  CUDA_CHECK_LAUNCH();
  scale_by_device_scalar_kernel<<<grid_for(n, 256), 256, 0, stream_>>>(x, scale, n);
  CUDA_CHECK_LAUNCH();
}

// ---- AdamW --------------------------------------------------------------------------------------

// The PyTorch order, as the CPU backend: decay first, then the bias-corrected Adam step. With a
// bf16 copy of p (bf16 mode, p registered), the new value's rounding is written in the same pass;
// p[0] is element first_index of its registered buffer.
static __global__ void adamw_kernel(float* p, const float* g, float* m, float* v, int64_t n, float lr,
                                    float beta1, float beta2, float eps, float weight_decay, float step,
                                    float inv_sqrt_bc2, uint16_t* p_bf16, int64_t first_index) {
  CAIRN_GRID_STRIDE(i, n) {
    const float gi = g[i];
    const float mi = beta1 * m[i] + (1.0f - beta1) * gi;
    const float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    float pi = p[i] * (1.0f - lr * weight_decay);
    pi -= step * mi / (sqrtf(vi) * inv_sqrt_bc2 + eps);
    p[i] = pi;
    if (p_bf16) p_bf16[i] = bf16_round_param(first_index + i, pi);
  }
}

void CudaBackend::adamw_update(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1,
                               float beta2, float eps, float weight_decay, float bias_correction1,
                               float bias_correction2) const {
  if (n == 0) return;
  const float step = lr / bias_correction1;
  const float inv_sqrt_bc2 = 1.0f / std::sqrt(bias_correction2);
  const ParamShadow* s = shadow_containing(p, n);
  const int64_t first = s ? p - s->base : 0;
  adamw_kernel<<<grid_for(n, 256), 256, 0, stream_>>>(p, g, m, v, n, lr, beta1, beta2, eps, weight_decay, step,
                                                      inv_sqrt_bc2, s ? s->bf16 + first : nullptr, first);
  CUDA_CHECK_LAUNCH();
  if (!s) params_written(p, n * 4);  // a range only partly inside a registered buffer
}

}  // namespace cairn
