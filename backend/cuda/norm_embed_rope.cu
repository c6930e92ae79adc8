// CUDA embedding, RMSNorm and rotary-embedding kernels, forward and backward side by side
// (backend/cpu/norm_embed_rope.cpp is the oracle).
#include <cub/device/device_radix_sort.cuh>

#include "backend/cuda/cuda_common.cuh"

namespace cairn {

// ---- embedding ----------------------------------------------------------------------------------

static __global__ void embedding_forward_kernel(float* out, const int32_t* tokens, const float* table,
                                                int64_t N, int64_t C) {
  CAIRN_GRID_STRIDE(i, N * C) out[i] = table[int64_t(tokens[i / C]) * C + i % C];
}

// Deterministic, no atomics, and no token's rows summed by one block alone (a frequent token such
// as EOS would keep one SM busy for the whole batch): positions are sorted by token with CUB's
// stable radix sort on the bits V needs (equal tokens keep their position order), then cut into
// tiles of kEmbTile sorted positions. Phase 1, one block per tile: each run of equal tokens inside
// the tile is summed in order; a run wholly inside the tile is added to its token's row at once,
// the part of a run continuing from the previous tile is the tile's `head`, the part of a run
// begun in this tile that continues into the next its `tail`. Phase 2, one block per tile whose
// tail exists: tail + the following tiles' heads, in order, added to the row. The order of every
// sum depends only on the tokens, so the gradient is bitwise repeatable (exact resume on the GPU).
constexpr int64_t kEmbTile = 32;

static __global__ void iota_kernel(int32_t* out, int64_t n) {
  CAIRN_GRID_STRIDE(i, n) out[i] = int32_t(i);
}

static __global__ void embedding_backward_tiles_kernel(float* dtable, float* head, float* tail, const float* dout,
                                                       const int32_t* sorted, const int32_t* positions, int64_t N,
                                                       int64_t C) {
  const int64_t tile = blockIdx.x, start = tile * kEmbTile, end = start + kEmbTile < N ? start + kEmbTile : N;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    float sum = 0.0f;
    int64_t run_start = start;
    for (int64_t j = start; j < end; ++j) {
      sum += dout[int64_t(positions[j]) * C + c];
      const int32_t token = sorted[j];
      if (j + 1 < end && sorted[j + 1] == token) continue;  // the run goes on inside the tile
      const bool from_before = run_start == start && start > 0 && sorted[start - 1] == token;
      const bool into_next = j + 1 == end && end < N && sorted[end] == token;
      if (from_before)
        head[tile * C + c] = sum;  // also when it goes on into the next tile: a middle part
      else if (into_next)
        tail[tile * C + c] = sum;
      else
        dtable[int64_t(token) * C + c] += sum;
      sum = 0.0f;
      run_start = j + 1;
    }
  }
}

static __global__ void embedding_backward_runs_kernel(float* dtable, const float* head, const float* tail,
                                                      const int32_t* sorted, int64_t N, int64_t C) {
  const int64_t tile = blockIdx.x, start = tile * kEmbTile, end = start + kEmbTile < N ? start + kEmbTile : N;
  const int32_t token = sorted[end - 1];
  if (end >= N || sorted[end] != token) return;      // the tile's last run ends inside it
  if (start > 0 && sorted[start - 1] == token) return;  // it began in an earlier tile: that tile's block
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    float sum = tail[tile * C + c];
    for (int64_t k = tile + 1;; ++k) {
      sum += head[k * C + c];
      const int64_t k_end = (k + 1) * kEmbTile;
      if (k_end >= N || sorted[k_end] != token) break;
    }
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
                                     int64_t C, int64_t V) const {
  if (N * C == 0) return;
  CAIRN_ASSERT(N < (int64_t(1) << 31) && V > 0 && V <= (int64_t(1) << 31), "embedding_backward: ", N,
               " positions or a vocabulary of ", V, " do not fit int32 indices");
  int end_bit = 1;  // tokens are in [0, V): only their low bits need sorting
  while ((int64_t(1) << end_bit) < V) ++end_bit;
  // Scratch: positions, sorted tokens, sorted positions, then the tiles' heads and tails, then CUB's
  // temporary storage.
  size_t sort_bytes = 0;
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, sort_bytes, tokens, static_cast<int32_t*>(nullptr),
                                             static_cast<const int32_t*>(nullptr), static_cast<int32_t*>(nullptr),
                                             int(N), 0, end_bit, stream_));
  const int64_t tiles = (N + kEmbTile - 1) / kEmbTile;
  const int64_t ints = 3 * N + (3 * N) % 2;  // keeps the float areas 8-byte aligned
  auto* base = reinterpret_cast<int32_t*>(scratch(ints + 2 * tiles * C + int64_t(sort_bytes + 3) / 4 + 1));
  int32_t* positions = base;
  int32_t* sorted_tokens = base + N;
  int32_t* sorted_positions = base + 2 * N;
  float* head = reinterpret_cast<float*>(base + ints);
  float* tail = head + tiles * C;
  void* sort_storage = tail + tiles * C;
  iota_kernel<<<grid_for(N, 256), 256, 0, stream_>>>(positions, N);
  CUDA_CHECK_LAUNCH();
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(sort_storage, sort_bytes, tokens, sorted_tokens, positions,
                                             sorted_positions, int(N), 0, end_bit, stream_));
  const int threads = C >= 256 ? 256 : 32 * int((C + 31) / 32);
  CAIRN_ASSERT(tiles <= INT32_MAX);
  embedding_backward_tiles_kernel<<<unsigned(tiles), threads, 0, stream_>>>(dtable, head, tail, dout, sorted_tokens,
                                                                           sorted_positions, N, C);
  CUDA_CHECK_LAUNCH();
  embedding_backward_runs_kernel<<<unsigned(tiles), threads, 0, stream_>>>(dtable, head, tail, sorted_tokens, N, C);
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
