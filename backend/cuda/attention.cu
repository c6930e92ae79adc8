// CUDA causal attention, flash-attention style in fp32, no [T,T] buffer: the forward streams key
// tiles through shared memory with an online softmax and saves each row's log-sum-exp (LSE); the
// backward recomputes P from q, k and the LSE in three atomic-free (deterministic) kernels: D =
// rowsum(dout∘out), dK/dV per key tile, dQ per query tile. bf16 mode hands over to cuDNN's SDPA
// when it has a plan (backend/cuda/attention_cudnn.cu); both paths save the same LSE. Grouped-query
// attention repeats the key/value heads for these kernels (repeat_kv, at the end).
#include <cmath>
#include <cstdio>

#include "backend/cuda/attention_cudnn.h"
#include "backend/cuda/cuda_common.cuh"

namespace cairn {
namespace {

// Per lane, a row of HS ≤ kMaxHS values is held as kMaxHS/32 registers (column lane + 32·r).
constexpr int kMaxHS = 128, kRegs = kMaxHS / 32;
constexpr int kWarps = 4, kThreads = 32 * kWarps;
// Row-owned kernels (forward, dQ): a block owns kRowTile query rows, kRowTile/kWarps per warp;
// key tiles of 32 (one key per lane when scoring).
constexpr int kRowTile = 16, kRowsPerWarp = kRowTile / kWarps, kKeyTile = 32;
// Key-owned kernel (dK, dV): a block owns kKeyOwn keys, kKeyOwn/kWarps per warp; query tiles of
// 32 (one query per lane when scoring).
constexpr int kKeyOwn = 16, kKeysPerWarp = kKeyOwn / kWarps, kQueryTile = 32;

struct Shape {
  int64_t T, NH, HS, C;  // C = NH·HS, the row stride of q, k, v, out
  float scale;
};

// Element (t, d) of head h in batch entry b of a [B,T,C] tensor: base(b, h) + t·C + d.
__device__ __forceinline__ int64_t head_base(const Shape& s, int64_t bh) {
  return (bh / s.NH) * s.T * s.C + (bh % s.NH) * s.HS;
}

// Rows [t0, t0+rows) of one head into shared [rows][ld] (zeros beyond T); all threads take part.
__device__ __forceinline__ void load_tile(float* dst, int ld, const float* src, const Shape& s, int64_t base,
                                          int64_t t0, int rows) {
  for (int i = threadIdx.x; i < rows * int(s.HS); i += blockDim.x) {
    const int r = i / int(s.HS), d = i % int(s.HS);
    const int64_t t = t0 + r;
    dst[r * ld + d] = t < s.T ? src[base + t * s.C + d] : 0.0f;
  }
}

// grid (B·NH, ceil(T/kRowTile)). Shared: Q [kRowTile][HS], K [kKeyTile][HS+1], V [kKeyTile][HS].
// Lane j scores key k0+j against the warp's rows; then each lane updates its output columns.
__global__ void __launch_bounds__(kThreads) flash_forward_kernel(float* out, float* lse, const float* q,
                                                                 const float* k, const float* v, Shape s) {
  extern __shared__ float smem[];
  const int HS = int(s.HS);
  float* sQ = smem;
  float* sK = sQ + kRowTile * HS;
  float* sV = sK + kKeyTile * (HS + 1);
  const int64_t bh = blockIdx.x, base = head_base(s, bh);
  const int64_t q0 = int64_t(blockIdx.y) * kRowTile;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  load_tile(sQ, HS, q, s, base, q0, kRowTile);

  float m[kRowsPerWarp], l[kRowsPerWarp], o[kRowsPerWarp][kRegs];
#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; ++rr) {
    m[rr] = -INFINITY;
    l[rr] = 0.0f;
#pragma unroll
    for (int r = 0; r < kRegs; ++r) o[rr][r] = 0.0f;
  }
  const int64_t q_last = (q0 + kRowTile < s.T ? q0 + kRowTile : s.T) - 1;
  for (int64_t k0 = 0; k0 <= q_last; k0 += kKeyTile) {  // causal: no tile wholly above the diagonal
    __syncthreads();  // the previous tile is consumed
    load_tile(sK, HS + 1, k, s, base, k0, kKeyTile);
    load_tile(sV, HS, v, s, base, k0, kKeyTile);
    __syncthreads();
    const int64_t key = k0 + lane;
#pragma unroll
    for (int rr = 0; rr < kRowsPerWarp; ++rr) {
      const int row = warp * kRowsPerWarp + rr;
      const int64_t t = q0 + row;
      if (t >= s.T) continue;  // warp-uniform
      float dot = 0.0f;
      for (int d = 0; d < HS; ++d) dot += sQ[row * HS + d] * sK[lane * (HS + 1) + d];
      const bool live = key <= t;  // also key < T, as t < T
      const float sc = live ? dot * s.scale : -INFINITY;
      const float m_new = fmaxf(m[rr], warp_max(sc));
      // m_new is finite (key k0 ≤ q0 ≤ t is live in every tile visited); kept safe regardless.
      const bool any = m_new != -INFINITY;
      const float p = live && any ? expf(sc - m_new) : 0.0f;
      const float alpha = m[rr] == -INFINITY ? 0.0f : expf(m[rr] - m_new);
      l[rr] = l[rr] * alpha + warp_sum(p);
#pragma unroll
      for (int r = 0; r < kRegs; ++r) o[rr][r] *= alpha;
      for (int j = 0; j < kKeyTile; ++j) {
        const float pj = __shfl_sync(0xffffffffu, p, j);
#pragma unroll
        for (int r = 0; r < kRegs; ++r) {
          const int d = lane + 32 * r;
          if (d < HS) o[rr][r] += pj * sV[j * HS + d];
        }
      }
      m[rr] = m_new;
    }
  }
#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; ++rr) {
    const int64_t t = q0 + warp * kRowsPerWarp + rr;
    if (t >= s.T) continue;
    const float inv = 1.0f / l[rr];  // l ≥ 1: the row's maximum contributes exp(0)
#pragma unroll
    for (int r = 0; r < kRegs; ++r) {
      const int d = lane + 32 * r;
      if (d < HS) out[base + t * s.C + d] = o[rr][r] * inv;
    }
    if (lane == 0) lse[bh * s.T + t] = m[rr] + logf(l[rr]);
  }
}

// D[bh, t] = Σ_d dout·out over the head's columns; one warp per row, rows = B·NH·T.
__global__ void __launch_bounds__(kThreads) row_dot_kernel(float* D, const float* dout, const float* out,
                                                           Shape s, int64_t rows) {
  const int64_t row = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const int64_t bh = row / s.T, t = row % s.T, at = head_base(s, bh) + t * s.C;
  float acc = 0.0f;
  for (int64_t d = lane; d < s.HS; d += 32) acc += dout[at + d] * out[at + d];
  acc = warp_sum(acc);
  if (lane == 0) D[row] = acc;
}

// grid (B·NH, ceil(T/kRowTile)). Shared: Q, dO [kRowTile][HS], K, V [kKeyTile][HS+1].
// dQ_t = scale·Σ_s dS_ts·K_s with P = exp(scale·q·k − LSE) and dS = P∘(dO·Vᵀ − D).
__global__ void __launch_bounds__(kThreads) flash_dq_kernel(float* dq, const float* dout, const float* q,
                                                            const float* k, const float* v, const float* lse,
                                                            const float* D, Shape s) {
  extern __shared__ float smem[];
  const int HS = int(s.HS);
  float* sQ = smem;
  float* sdO = sQ + kRowTile * HS;
  float* sK = sdO + kRowTile * HS;
  float* sV = sK + kKeyTile * (HS + 1);
  const int64_t bh = blockIdx.x, base = head_base(s, bh);
  const int64_t q0 = int64_t(blockIdx.y) * kRowTile;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  load_tile(sQ, HS, q, s, base, q0, kRowTile);
  load_tile(sdO, HS, dout, s, base, q0, kRowTile);

  float acc[kRowsPerWarp][kRegs], row_lse[kRowsPerWarp], row_D[kRowsPerWarp];
#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; ++rr) {
    const int64_t t = q0 + warp * kRowsPerWarp + rr;
    row_lse[rr] = t < s.T ? lse[bh * s.T + t] : 0.0f;
    row_D[rr] = t < s.T ? D[bh * s.T + t] : 0.0f;
#pragma unroll
    for (int r = 0; r < kRegs; ++r) acc[rr][r] = 0.0f;
  }
  const int64_t q_last = (q0 + kRowTile < s.T ? q0 + kRowTile : s.T) - 1;
  for (int64_t k0 = 0; k0 <= q_last; k0 += kKeyTile) {
    __syncthreads();
    load_tile(sK, HS + 1, k, s, base, k0, kKeyTile);
    load_tile(sV, HS + 1, v, s, base, k0, kKeyTile);
    __syncthreads();
    const int64_t key = k0 + lane;
#pragma unroll
    for (int rr = 0; rr < kRowsPerWarp; ++rr) {
      const int row = warp * kRowsPerWarp + rr;
      const int64_t t = q0 + row;
      if (t >= s.T) continue;  // warp-uniform
      float dot = 0.0f, dp = 0.0f;
      for (int d = 0; d < HS; ++d) {
        dot += sQ[row * HS + d] * sK[lane * (HS + 1) + d];
        dp += sdO[row * HS + d] * sV[lane * (HS + 1) + d];
      }
      const float p = key <= t ? expf(dot * s.scale - row_lse[rr]) : 0.0f;
      const float ds = p * (dp - row_D[rr]);
      for (int j = 0; j < kKeyTile; ++j) {
        const float dsj = __shfl_sync(0xffffffffu, ds, j);
#pragma unroll
        for (int r = 0; r < kRegs; ++r) {
          const int d = lane + 32 * r;
          if (d < HS) acc[rr][r] += dsj * sK[j * (HS + 1) + d];
        }
      }
    }
  }
#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; ++rr) {
    const int64_t t = q0 + warp * kRowsPerWarp + rr;
    if (t >= s.T) continue;
#pragma unroll
    for (int r = 0; r < kRegs; ++r) {
      const int d = lane + 32 * r;
      if (d < HS) dq[base + t * s.C + d] = acc[rr][r] * s.scale;
    }
  }
}

// grid (B·NH, ceil(T/kKeyOwn)). Shared: K, V [kKeyOwn][HS], Q, dO [kQueryTile][HS+1], LSE and D
// [kQueryTile]. Lane i scores query q0+i against the warp's keys; then each lane updates its
// columns of dV_s = Σ_t P_ts·dO_t and dK_s = scale·Σ_t dS_ts·Q_t.
__global__ void __launch_bounds__(kThreads) flash_dkv_kernel(float* dk, float* dv, const float* dout,
                                                             const float* q, const float* k, const float* v,
                                                             const float* lse, const float* D, Shape s) {
  extern __shared__ float smem[];
  const int HS = int(s.HS);
  float* sK = smem;
  float* sV = sK + kKeyOwn * HS;
  float* sQ = sV + kKeyOwn * HS;
  float* sdO = sQ + kQueryTile * (HS + 1);
  float* sL = sdO + kQueryTile * (HS + 1);
  float* sD = sL + kQueryTile;
  const int64_t bh = blockIdx.x, base = head_base(s, bh);
  const int64_t k0 = int64_t(blockIdx.y) * kKeyOwn;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  load_tile(sK, HS, k, s, base, k0, kKeyOwn);
  load_tile(sV, HS, v, s, base, k0, kKeyOwn);

  float gk[kKeysPerWarp][kRegs], gv[kKeysPerWarp][kRegs];
#pragma unroll
  for (int jj = 0; jj < kKeysPerWarp; ++jj)
#pragma unroll
    for (int r = 0; r < kRegs; ++r) gk[jj][r] = gv[jj][r] = 0.0f;
  // Causal: queries before k0 see none of these keys; start at the query tile holding k0.
  for (int64_t q0 = k0 / kQueryTile * kQueryTile; q0 < s.T; q0 += kQueryTile) {
    __syncthreads();
    load_tile(sQ, HS + 1, q, s, base, q0, kQueryTile);
    load_tile(sdO, HS + 1, dout, s, base, q0, kQueryTile);
    for (int i = threadIdx.x; i < kQueryTile; i += blockDim.x) {
      const int64_t t = q0 + i;
      sL[i] = t < s.T ? lse[bh * s.T + t] : 0.0f;
      sD[i] = t < s.T ? D[bh * s.T + t] : 0.0f;
    }
    __syncthreads();
    const int64_t t = q0 + lane;
#pragma unroll
    for (int jj = 0; jj < kKeysPerWarp; ++jj) {
      const int col = warp * kKeysPerWarp + jj;
      const int64_t key = k0 + col;
      if (key >= s.T) continue;  // warp-uniform
      float dot = 0.0f, dp = 0.0f;
      for (int d = 0; d < HS; ++d) {
        dot += sQ[lane * (HS + 1) + d] * sK[col * HS + d];
        dp += sdO[lane * (HS + 1) + d] * sV[col * HS + d];
      }
      const float p = t < s.T && key <= t ? expf(dot * s.scale - sL[lane]) : 0.0f;
      const float ds = p * (dp - sD[lane]);
      for (int i = 0; i < kQueryTile; ++i) {
        const float pi = __shfl_sync(0xffffffffu, p, i), dsi = __shfl_sync(0xffffffffu, ds, i);
#pragma unroll
        for (int r = 0; r < kRegs; ++r) {
          const int d = lane + 32 * r;
          if (d < HS) {
            gv[jj][r] += pi * sdO[i * (HS + 1) + d];
            gk[jj][r] += dsi * sQ[i * (HS + 1) + d];
          }
        }
      }
    }
  }
#pragma unroll
  for (int jj = 0; jj < kKeysPerWarp; ++jj) {
    const int64_t key = k0 + warp * kKeysPerWarp + jj;
    if (key >= s.T) continue;
#pragma unroll
    for (int r = 0; r < kRegs; ++r) {
      const int d = lane + 32 * r;
      if (d < HS) {
        dk[base + key * s.C + d] = gk[jj][r] * s.scale;
        dv[base + key * s.C + d] = gv[jj][r];
      }
    }
  }
}

// Shared-memory bytes of each kernel for head size HS.
size_t forward_smem(int64_t HS) { return sizeof(float) * size_t(kRowTile * HS + kKeyTile * (HS + 1) + kKeyTile * HS); }
size_t dq_smem(int64_t HS) { return sizeof(float) * size_t(2 * kRowTile * HS + 2 * kKeyTile * (HS + 1)); }
size_t dkv_smem(int64_t HS) {
  return sizeof(float) * size_t(2 * kKeyOwn * HS + 2 * kQueryTile * (HS + 1) + 2 * kQueryTile);
}

// Checks the shape against what the kernels support and returns the grid for `tile` rows per block.
dim3 fused_grid(int64_t B, int64_t T, int64_t NH, int64_t HS, int tile) {
  if (HS < 1 || HS > kMaxHS)
    throw Error(str("attention: head size ", HS, " (B=", B, " T=", T, " NH=", NH,
                    ") is not supported by the fused CUDA kernel, which takes head sizes 1..", kMaxHS,
                    ": choose model.dim / model.n_heads ≤ ", kMaxHS));
  const int64_t tiles = (T + tile - 1) / tile;
  if (B * NH > 0x7fffffff || tiles > 65535)
    throw Error(str("attention: B·NH = ", B * NH, " or T = ", T, " is too large for the fused CUDA kernel's grid"));
  return dim3(unsigned(B * NH), unsigned(tiles));
}

// Dynamic shared memory above the default 48 KiB needs an opt-in per kernel, within the device's limit.
template <typename Kernel>
void allow_smem(Kernel kernel, size_t bytes) {
  int device = 0, limit = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  CUDA_CHECK(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  if (bytes > size_t(limit))
    throw Error(str("attention: the fused kernel needs ", bytes, " bytes of shared memory, this GPU allows ", limit));
  if (bytes > 48 * 1024)
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

Shape make_shape(int64_t T, int64_t NH, int64_t HS) { return {T, NH, HS, NH * HS, 1.0f / std::sqrt(float(HS))}; }

}  // namespace

bool CudaBackend::attention_uses_cudnn(int64_t B, int64_t T, int64_t NH, int64_t HS) const {
  if (math_ != CudaMath::bf16) {
    attention_path_ = "own fused kernel (fp32)";
    return false;
  }
  if (!cudnn_tried_) {
    cudnn_tried_ = true;
    cudnn_ = make_cudnn_sdpa(*this, &cudnn_why_);
  }
  std::string why = cudnn_why_;
  const bool use = cudnn_ && cudnn_->supports(B, T, NH, HS, &why);
  const std::string path = use ? "cuDNN SDPA (bf16)" : "own fused kernel (fp32) because " + why;
  if (path != attention_path_) std::fprintf(stderr, "attention: %s\n", path.c_str());
  attention_path_ = path;
  return use;
}

int64_t CudaBackend::attention_saved_floats(int64_t B, int64_t T, int64_t NH, int64_t HS) const {
  return math_ == CudaMath::bf16 ? cudnn_sdpa_saved_floats(B, T, NH, HS) : B * NH * T;
}

int64_t CudaBackend::attention_workspace_bytes(int64_t B, int64_t T, int64_t NH, int64_t HS) const {
  if (B * T * NH == 0 || !attention_uses_cudnn(B, T, NH, HS)) return 0;  // the own kernel needs none
  return cudnn_->scratch_bytes(B, T, NH, HS);
}

void CudaBackend::attention_forward(float* out, float* saved, const float* q, const float* k, const float* v,
                                    int64_t B, int64_t T, int64_t NH, int64_t HS) const {
  if (B * T * NH == 0) return;
  if (attention_uses_cudnn(B, T, NH, HS)) {
    cudnn_->forward(out, saved, q, k, v, B, T, NH, HS);
    return;
  }
  const dim3 grid = fused_grid(B, T, NH, HS, kRowTile);
  const size_t smem = forward_smem(HS);
  allow_smem(flash_forward_kernel, smem);
  flash_forward_kernel<<<grid, kThreads, smem, stream_>>>(out, saved, q, k, v, make_shape(T, NH, HS));
  CUDA_CHECK_LAUNCH();
}

void CudaBackend::attention_backward(float* dq, float* dk, float* dv, float* scratch, const float* dout,
                                     const float* q, const float* k, const float* v, const float* out,
                                     const float* saved, int64_t B, int64_t T, int64_t NH, int64_t HS) const {
  if (B * T * NH == 0) return;
  if (attention_uses_cudnn(B, T, NH, HS)) {
    cudnn_->backward(dq, dk, dv, dout, saved, B, T, NH, HS);
    return;
  }
  const dim3 grid_q = fused_grid(B, T, NH, HS, kRowTile), grid_k = fused_grid(B, T, NH, HS, kKeyOwn);
  const Shape s = make_shape(T, NH, HS);
  float* D = scratch;  // [B,NH,T]
  const int64_t rows = B * NH * T;
  row_dot_kernel<<<unsigned((rows + kWarps - 1) / kWarps), kThreads, 0, stream_>>>(D, dout, out, s, rows);
  CUDA_CHECK_LAUNCH();
  const size_t smem_k = dkv_smem(HS), smem_q = dq_smem(HS);
  allow_smem(flash_dkv_kernel, smem_k);
  flash_dkv_kernel<<<grid_k, kThreads, smem_k, stream_>>>(dk, dv, dout, q, k, v, saved, D, s);
  CUDA_CHECK_LAUNCH();
  allow_smem(flash_dq_kernel, smem_q);
  flash_dq_kernel<<<grid_q, kThreads, smem_q, stream_>>>(dq, dout, q, k, v, saved, D, s);
  CUDA_CHECK_LAUNCH();
}

// ---- Grouped-query attention: key/value heads repeated per query head, one thread per element ----

static __global__ void repeat_kv_kernel(float* out, const float* inp, int64_t N, int64_t NKV, int64_t G, int64_t HS) {
  CAIRN_GRID_STRIDE(idx, N * NKV * G * HS) {
    const int64_t d = idx % HS, h = (idx / HS) % (NKV * G), n = idx / (HS * NKV * G);
    out[idx] = inp[(n * NKV + h / G) * HS + d];
  }
}

// One thread per element of dinp, summing its G copies in order (deterministic).
static __global__ void repeat_kv_backward_kernel(float* dinp, const float* dout, int64_t N, int64_t NKV, int64_t G,
                                                 int64_t HS) {
  CAIRN_GRID_STRIDE(idx, N * NKV * HS) {
    const int64_t d = idx % HS, kh = (idx / HS) % NKV, n = idx / (HS * NKV);
    const float* src = dout + ((n * NKV + kh) * G) * HS + d;
    float sum = 0.0f;
    for (int64_t g = 0; g < G; ++g) sum += src[g * HS];
    dinp[idx] = sum;
  }
}

void CudaBackend::repeat_kv_forward(float* out, const float* inp, int64_t N, int64_t NKV, int64_t G,
                                    int64_t HS) const {
  if (N * NKV * G * HS == 0) return;
  repeat_kv_kernel<<<grid_for(N * NKV * G * HS, 256), 256, 0, stream_>>>(out, inp, N, NKV, G, HS);
  CUDA_CHECK_LAUNCH();
}

void CudaBackend::repeat_kv_backward(float* dinp, const float* dout, int64_t N, int64_t NKV, int64_t G,
                                     int64_t HS) const {
  if (N * NKV * HS == 0) return;
  repeat_kv_backward_kernel<<<grid_for(N * NKV * HS, 256), 256, 0, stream_>>>(dinp, dout, N, NKV, G, HS);
  CUDA_CHECK_LAUNCH();
}

}  // namespace cairn
