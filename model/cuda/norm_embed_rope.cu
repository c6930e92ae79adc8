// CUDA embedding, RMSNorm and rotary-embedding kernels, forward and backward side by side
// (model/cpu/norm_embed_rope.cpp is the oracle).
#include <cub/device/device_radix_sort.cuh>

#include "model/cuda/cuda_common.cuh"

namespace cairn {

// ---- embedding ----------------------------------------------------------------------------------

static __global__ void embedding_forward_kernel(float* out, const int32_t* tokens, const float* table,
                                                int64_t N, int64_t C) {
  CAIRN_GRID_STRIDE(i, N * C) out[i] = table[int64_t(tokens[i / C]) * C + i % C];
}

// Deterministic: positions are sorted by token with a stable radix sort (equal tokens keep their
// position order), then one block per run of equal tokens sums its dout rows in that order and adds
// the sum to the token's row once. No atomics, so the gradient is bitwise repeatable (what exact
// resume on the GPU needs); a frequent token's run is summed by one block, a bounded imbalance.
static __global__ void iota_kernel(int32_t* out, int64_t n) {
  CAIRN_GRID_STRIDE(i, n) out[i] = int32_t(i);
}

static __global__ void embedding_backward_sorted_kernel(float* dtable, const float* dout, const int32_t* sorted_tokens,
                                                        const int32_t* positions, int64_t N, int64_t C) {
  const int64_t first = blockIdx.x;
  const int32_t token = sorted_tokens[first];
  if (first > 0 && sorted_tokens[first - 1] == token) return;  // not the start of a run
  int64_t end = first + 1;
  while (end < N && sorted_tokens[end] == token) ++end;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    float sum = 0.0f;
    for (int64_t j = first; j < end; ++j) sum += dout[int64_t(positions[j]) * C + c];
    dtable[int64_t(token) * C + c] += sum;
  }
}

void CudaBackend::embedding_forward(float* out, const int32_t* tokens, const float* table, int64_t N,
                                    int64_t C) const {
  if (N * C == 0) return;
  embedding_forward_kernel<<<grid_for(N * C, 256), 256, 0, stream_>>>(out, tokens, table, N, C);
  CUDA_CHECK_LAUNCH();
}

void CudaBackend::embedding_backward(float* dtable, const float* dout, const int32_t* tokens, int64_t N,
                                     int64_t C) const {
  if (N * C == 0) return;
  CAIRN_ASSERT(N < (int64_t(1) << 31), "embedding_backward: ", N, " positions do not fit int32 indices");
  // Scratch: positions, sorted tokens, sorted positions, then CUB's temporary storage.
  size_t sort_bytes = 0;
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, sort_bytes, tokens, static_cast<int32_t*>(nullptr),
                                             static_cast<const int32_t*>(nullptr), static_cast<int32_t*>(nullptr),
                                             N, 0, 32, stream_));
  const int64_t ints = 3 * N;
  auto* base = reinterpret_cast<int32_t*>(scratch(ints + int64_t(sort_bytes + 3) / 4 + 1));
  int32_t* positions = base;
  int32_t* sorted_tokens = base + N;
  int32_t* sorted_positions = base + 2 * N;
  void* sort_storage = base + ints;
  iota_kernel<<<grid_for(N, 256), 256, 0, stream_>>>(positions, N);
  CUDA_CHECK_LAUNCH();
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(sort_storage, sort_bytes, tokens, sorted_tokens, positions,
                                             sorted_positions, N, 0, 32, stream_));
  const int threads = C >= 256 ? 256 : 32 * int((C + 31) / 32);
  embedding_backward_sorted_kernel<<<unsigned(N), threads, 0, stream_>>>(dtable, dout, sorted_tokens,
                                                                        sorted_positions, N, C);
  CUDA_CHECK_LAUNCH();
}

// ---- RMSNorm: one warp per row ------------------------------------------------------------------

constexpr int kRowsPerBlock = 8;  // warps per block, one row each

static __global__ void rmsnorm_forward_kernel(float* out, float* rstd, const float* inp, const float* weight,
                                              int64_t N, int64_t C, float eps) {
  const int64_t n = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (n >= N) return;
  const float* x = inp + n * C;
  float ss = 0.0f;
  for (int64_t c = lane; c < C; c += 32) ss += x[c] * x[c];
  ss = warp_sum(ss);
  const float r = 1.0f / sqrtf(ss / float(C) + eps);
  if (lane == 0) rstd[n] = r;
  float* o = out + n * C;
  for (int64_t c = lane; c < C; c += 32) o[c] = x[c] * r * weight[c];
}

// dx += r·(dy·w) − x·r³·mean(dy·w·x), per row.
static __global__ void rmsnorm_backward_dinp_kernel(float* dinp, const float* dout, const float* inp,
                                                    const float* weight, const float* rstd, int64_t N,
                                                    int64_t C) {
  const int64_t n = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (n >= N) return;
  const float* x = inp + n * C;
  const float* dy = dout + n * C;
  const float r = rstd[n];
  float dot = 0.0f;
  for (int64_t c = lane; c < C; c += 32) dot += dy[c] * weight[c] * x[c];
  dot = warp_sum(dot);
  const float k = dot * r * r * r / float(C);
  float* dx = dinp + n * C;
  for (int64_t c = lane; c < C; c += 32) dx[c] += r * dy[c] * weight[c] - k * x[c];
}

// dweight partials: block (32 columns × 8 row lanes) sums Σ dy·x·r over one chunk of rows into
// partial[chunk, c]. A second kernel adds the chunks in order: deterministic, no atomics.
static __global__ void rmsnorm_dweight_partial_kernel(float* partial, const float* dout, const float* inp,
                                                      const float* rstd, int64_t N, int64_t C,
                                                      int64_t rows_per_chunk) {
  __shared__ float acc[8][33];
  const int64_t c = int64_t(blockIdx.x) * 32 + threadIdx.x;
  const int64_t n0 = int64_t(blockIdx.y) * rows_per_chunk;
  const int64_t n1 = n0 + rows_per_chunk < N ? n0 + rows_per_chunk : N;
  float s = 0.0f;
  if (c < C)
    for (int64_t n = n0 + threadIdx.y; n < n1; n += 8) s += dout[n * C + c] * inp[n * C + c] * rstd[n];
  acc[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    float t = 0.0f;
    for (int j = 0; j < 8; ++j) t += acc[j][threadIdx.x];
    partial[int64_t(blockIdx.y) * C + c] = t;
  }
}

static __global__ void sum_chunks_kernel(float* dweight, const float* partial, int64_t chunks, int64_t C) {
  CAIRN_GRID_STRIDE(c, C) {
    float s = 0.0f;
    for (int64_t j = 0; j < chunks; ++j) s += partial[j * C + c];
    dweight[c] += s;
  }
}

void CudaBackend::rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int64_t N,
                                  int64_t C, float eps) const {
  if (N == 0) return;
  const unsigned blocks = unsigned((N + kRowsPerBlock - 1) / kRowsPerBlock);
  rmsnorm_forward_kernel<<<blocks, 32 * kRowsPerBlock, 0, stream_>>>(out, rstd, inp, weight, N, C, eps);
  CUDA_CHECK_LAUNCH();
}

void CudaBackend::rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp,
                                   const float* weight, const float* rstd, int64_t N, int64_t C) const {
  if (N == 0) return;
  const unsigned blocks = unsigned((N + kRowsPerBlock - 1) / kRowsPerBlock);
  rmsnorm_backward_dinp_kernel<<<blocks, 32 * kRowsPerBlock, 0, stream_>>>(dinp, dout, inp, weight, rstd, N, C);
  CUDA_CHECK_LAUNCH();
  const int64_t chunks = N < 64 ? N : 64;
  const int64_t rows_per_chunk = (N + chunks - 1) / chunks;
  float* partial = scratch(chunks * C);
  const dim3 grid(unsigned((C + 31) / 32), unsigned(chunks));
  rmsnorm_dweight_partial_kernel<<<grid, dim3(32, 8), 0, stream_>>>(partial, dout, inp, rstd, N, C, rows_per_chunk);
  CUDA_CHECK_LAUNCH();
  sum_chunks_kernel<<<grid_for(C, 256), 256, 0, stream_>>>(dweight, partial, chunks, C);
  CUDA_CHECK_LAUNCH();
}

// ---- RoPE: one thread per rotated pair (i, i+HS/2) ----------------------------------------------

static __global__ void rope_kernel(float* x, const float* cos, const float* sin, int64_t B, int64_t T,
                                   int64_t NH, int64_t HS, float sign) {
  const int64_t half = HS / 2;
  CAIRN_GRID_STRIDE(idx, B * T * NH * half) {
    const int64_t i = idx % half, h = (idx / half) % NH, bt = idx / (half * NH), t = bt % T;
    float* v = x + (bt * NH + h) * HS;
    const float c = cos[t * half + i], s = sign * sin[t * half + i];
    const float a = v[i], b = v[i + half];
    v[i] = a * c - b * s;
    v[i + half] = b * c + a * s;
  }
}

void CudaBackend::rope_forward(float* x, const float* cos, const float* sin, int64_t B, int64_t T, int64_t NH,
                               int64_t HS) const {
  if (B * T * NH == 0) return;
  rope_kernel<<<grid_for(B * T * NH * HS / 2, 256), 256, 0, stream_>>>(x, cos, sin, B, T, NH, HS, 1.0f);
  CUDA_CHECK_LAUNCH();
}

void CudaBackend::rope_backward(float* dx, const float* cos, const float* sin, int64_t B, int64_t T,
                                int64_t NH, int64_t HS) const {
  if (B * T * NH == 0) return;
  rope_kernel<<<grid_for(B * T * NH * HS / 2, 256), 256, 0, stream_>>>(dx, cos, sin, B, T, NH, HS, -1.0f);
  CUDA_CHECK_LAUNCH();
}

}  // namespace cairn
