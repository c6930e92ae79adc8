// CUDA pieces of the low-rank optimizers (Fira, GaLore), against backend/cpu/lowrank.cpp: Adam's
// direction, per-vector norm ratios (one thread per vector: count is a matrix side, r a rank),
// row/column scaling, the weight update, and the top singular vectors through cuSOLVER (gesvdj,
// falling back to gesvd, as torch.linalg.svd does on CUDA).
#include <cusolverDn.h>

#include <cmath>
#include <cstdio>

#include "backend/cuda/cuda_common.cuh"

#define CUSOLVER_CHECK(expr)                                                                        \
  do {                                                                                              \
    const cusolverStatus_t cairn_cs_ = (expr);                                                      \
    if (cairn_cs_ != CUSOLVER_STATUS_SUCCESS)                                                       \
      ::cairn::cuda_fail(#expr, ::cairn::str("cusolver status ", int(cairn_cs_)).c_str(), __FILE__, \
                         __LINE__);                                                                 \
  } while (0)

namespace cairn {

static __global__ void adam_direction_kernel(float* dir, float* m, float* v, const float* g, int64_t n, float b1,
                                             float b2, float eps) {
  CAIRN_GRID_STRIDE(i, n) {
    const float mi = m[i] * b1 + g[i] * (1.0f - b1);
    const float vi = v[i] * b2 + g[i] * g[i] * (1.0f - b2);
    m[i] = mi;
    v[i] = vi;
    dir[i] = mi / (sqrtf(vi) + eps);
  }
}

static __global__ void norm_ratio_kernel(float* ratio, const float* a, const float* b, int64_t count, int64_t r,
                                         bool by_row) {
  CAIRN_GRID_STRIDE(i, count) {
    double aa = 0, bb = 0;
    for (int64_t k = 0; k < r; ++k) {
      const int64_t e = by_row ? i * r + k : k * count + i;
      aa += double(a[e]) * a[e];
      bb += double(b[e]) * b[e];
    }
    ratio[i] = float(sqrt(aa) / (sqrt(bb) + 1e-8));
  }
}

static __global__ void scale_by_kernel(float* x, const float* s, int64_t m, int64_t n, bool by_row) {
  CAIRN_GRID_STRIDE(i, m * n) x[i] *= by_row ? s[i / n] : s[i % n];
}

static __global__ void apply_update_kernel(float* w, const float* u, int64_t n, float step, float decay) {
  CAIRN_GRID_STRIDE(i, n) {
    float wi = w[i] - step * u[i];
    if (decay != 0.0f) wi -= decay * wi;
    w[i] = wi;
  }
}

// Column-major copy of a row-major rows×cols matrix: out[i + j·rows] = in[i·cols + j].
static __global__ void transpose_kernel(float* out, const float* in, int64_t rows, int64_t cols) {
  CAIRN_GRID_STRIDE(e, rows * cols) {
    const int64_t i = e / cols, j = e % cols;
    out[i + j * rows] = in[e];
  }
}

// proj from r singular vectors of length len stored in a column-major array: element e of vector
// v is src[v·vec_stride + e·elem_stride] (VT, k×k: strides 1 and k; U, len×k: strides len and 1).
// by_row: proj [r, len] holds vector v as row v; else proj [len, r] as column v.
static __global__ void take_vectors_kernel(float* proj, const float* src, int64_t len, int64_t r, int64_t vec_stride,
                                           int64_t elem_stride, bool by_row) {
  CAIRN_GRID_STRIDE(x, r * len) {
    const int64_t v = by_row ? x / len : x % r, e = by_row ? x % len : x / r;
    proj[x] = src[v * vec_stride + e * elem_stride];
  }
}

// One block per vector: find its largest-|entry| (the first on ties) and flip the vector when that
// entry is negative.
static __global__ void fix_signs_kernel(float* proj, int64_t len, int64_t stride, int64_t step) {
  __shared__ float best_abs[256];
  __shared__ int64_t best_at[256];
  float* x = proj + int64_t(blockIdx.x) * step;
  float my_abs = -1.0f;
  int64_t my_at = 0;
  for (int64_t e = threadIdx.x; e < len; e += blockDim.x) {
    const float a = fabsf(x[e * stride]);
    if (a > my_abs) {  // strictly greater: each thread keeps its first maximum
      my_abs = a;
      my_at = e;
    }
  }
  best_abs[threadIdx.x] = my_abs;
  best_at[threadIdx.x] = my_at;
  __syncthreads();
  for (unsigned half = blockDim.x / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) {
      const float oa = best_abs[threadIdx.x + half];
      const int64_t ot = best_at[threadIdx.x + half];
      if (oa > best_abs[threadIdx.x] || (oa == best_abs[threadIdx.x] && ot < best_at[threadIdx.x])) {
        best_abs[threadIdx.x] = oa;
        best_at[threadIdx.x] = ot;
      }
    }
    __syncthreads();
  }
  // Every thread reads the sign before any thread flips: the element at best_at[0] is flipped by
  // its owner, and a warp reading it after that flip would leave its own elements unflipped.
  const bool flip = x[best_at[0] * stride] < 0.0f;
  __syncthreads();
  if (flip)
    for (int64_t e = threadIdx.x; e < len; e += blockDim.x) x[e * stride] = -x[e * stride];
}

void CudaBackend::adam_direction(float* dir, float* m, float* v, const float* g, int64_t n, float beta1,
                                 float beta2, float eps) const {
  if (n == 0) return;
  adam_direction_kernel<<<grid_for(n, 256), 256, 0, stream_>>>(dir, m, v, g, n, beta1, beta2, eps);
  CUDA_CHECK_LAUNCH();
}

void CudaBackend::norm_ratio(float* ratio, const float* a, const float* b, int64_t count, int64_t r,
                             bool by_row) const {
  if (count == 0) return;
  norm_ratio_kernel<<<grid_for(count, 128), 128, 0, stream_>>>(ratio, a, b, count, r, by_row);
  CUDA_CHECK_LAUNCH();
}

void CudaBackend::scale_by(float* x, const float* s, int64_t m, int64_t n, bool by_row) const {
  if (m * n == 0) return;
  scale_by_kernel<<<grid_for(m * n, 256), 256, 0, stream_>>>(x, s, m, n, by_row);
  CUDA_CHECK_LAUNCH();
}

void CudaBackend::apply_update(float* w, const float* u, int64_t n, float step, float decay) const {
  if (n == 0) return;
  apply_update_kernel<<<grid_for(n, 256), 256, 0, stream_>>>(w, u, n, step, decay);
  CUDA_CHECK_LAUNCH();
  params_written(w, n * 4);  // Fira's and GaLore's weight update: keep a bf16 copy current
}

// Jacobi SVD (gesvdj), what PyTorch's torch.linalg.svd runs first on CUDA and so what Fira's and
// GaLore's code get: on A = Gᵀ as it lies (G row-major m×n is column-major n×m), economy size. A's
// left vectors (U, n×k) are G's right ones, A's right vectors (V, m×k) G's left ones. Returns
// false when gesvdj did not converge (PyTorch then falls back to gesvd, and so does the caller) or
// refused the call.
bool CudaBackend::svd_gesvdj(SvdVectors& out, const float* g, int64_t m, int64_t n, bool by_row) const {
  const int64_t k = std::min(m, n);
  gesvdjInfo_t params = nullptr;
  CUSOLVER_CHECK(cusolverDnCreateGesvdjInfo(&params));
  struct Destroy {
    gesvdjInfo_t p;
    ~Destroy() { cusolverDnDestroyGesvdjInfo(p); }
  } destroy{params};
  // Scratch: A (n·m), S (k), U (n·k), V (m·k), then work (lwork) and info (1 int in a float slot).
  // The work size needs the pointers, and growing the scratch may move it: take them twice.
  const int64_t fixed = n * m + k + n * k + m * k;
  auto layout = [&](float* base, float*& a, float*& s, float*& u, float*& v) {
    a = base;
    s = a + n * m;
    u = s + k;
    v = u + n * k;
  };
  float *a, *s, *u, *v;
  layout(scratch(fixed), a, s, u, v);
  // A shape or argument gesvdj refuses is not fatal: gesvd computes the same vectors. Said once.
  auto refused = [&](const char* why) {
    static bool said = false;
    if (!said) std::fprintf(stderr, "top_singular_vectors: gesvdj %s on a %lldx%lld gradient; using gesvd\n", why,
                            (long long)m, (long long)n);
    said = true;
    return false;
  };
  int lwork = 0;
  if (cusolverDnSgesvdj_bufferSize(cusolver_, CUSOLVER_EIG_MODE_VECTOR, 1, int(n), int(m), a, int(n), s, u, int(n), v,
                                   int(m), &lwork, params) != CUSOLVER_STATUS_SUCCESS)
    return refused("gave no workspace size");
  float* base = scratch(fixed + lwork + 1);
  layout(base, a, s, u, v);
  float* work = base + fixed;
  int* info = reinterpret_cast<int*>(work + lwork);
  CUDA_CHECK(cudaMemcpyAsync(a, g, size_t(m * n) * sizeof(float), cudaMemcpyDeviceToDevice, stream_));
  if (cusolverDnSgesvdj(cusolver_, CUSOLVER_EIG_MODE_VECTOR, 1, int(n), int(m), a, int(n), s, u, int(n), v, int(m),
                        work, lwork, info, params) != CUSOLVER_STATUS_SUCCESS)
    return refused("failed to start");
  int host_info = 0;
  CUDA_CHECK(cudaMemcpyAsync(&host_info, info, sizeof(int), cudaMemcpyDeviceToHost, stream_));
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  if (host_info < 0) return refused("refused an argument");
  if (host_info != 0) return false;  // k + 1: no convergence within the sweeps (PyTorch's fallback case)
  out = by_row ? SvdVectors{u, n, 1} : SvdVectors{v, m, 1};
  return true;
}

// QR-iteration SVD (gesvd), PyTorch's fallback. gesvd wants a column-major matrix A with at least
// as many rows as columns. G row-major m×n is column-major Gᵀ (n×m): A = Gᵀ as it lies when m < n;
// when m ≥ n, A = G transposed into column-major. The wanted vectors have length
// (by_row ? n : m): when A = G (m ≥ n) G's right vectors are A's right ones (rows of VT, length k)
// and G's left ones A's left ones (columns of U, length rows); when A = Gᵀ it is the other way
// round. So VT serves exactly when by_row == (m ≥ n) (Fira's and GaLore's choice), U otherwise.
// Throws Error when it fails too.
CudaBackend::SvdVectors CudaBackend::svd_gesvd(const float* g, int64_t m, int64_t n, bool by_row) const {
  const int64_t k = std::min(m, n), rows = std::max(m, n);
  const bool a_is_g = m >= n, use_vt = by_row == a_is_g;
  int lwork = 0;
  CUSOLVER_CHECK(cusolverDnSgesvd_bufferSize(cusolver_, int(rows), int(k), &lwork));
  // Scratch: A (rows·k), S (k), the vectors (VT k·k or U rows·k), work (lwork), rwork (k), info
  // (1 int in a float slot). One scratch() call: no pointer is taken before a reallocation.
  const int64_t vec_floats = use_vt ? k * k : rows * k;
  float* a = scratch(rows * k + k + vec_floats + lwork + k + 1);
  float* s = a + rows * k;
  float* vec = s + k;
  float* work = vec + vec_floats;
  float* rwork = work + lwork;
  int* info = reinterpret_cast<int*>(rwork + k);
  if (a_is_g) {
    transpose_kernel<<<grid_for(m * n, 256), 256, 0, stream_>>>(a, g, m, n);
    CUDA_CHECK_LAUNCH();
  } else {
    CUDA_CHECK(cudaMemcpyAsync(a, g, size_t(m * n) * sizeof(float), cudaMemcpyDeviceToDevice, stream_));
  }
  // Leading dimensions valid for both factors even when one is not computed: cuSOLVER documents
  // INVALID_VALUE for ldu < max(1, rows) or ldvt < max(1, k) without exempting jobu/jobvt = 'N'.
  CUSOLVER_CHECK(cusolverDnSgesvd(cusolver_, use_vt ? 'N' : 'S', use_vt ? 'S' : 'N', int(rows), int(k), a, int(rows),
                                  s, use_vt ? nullptr : vec, int(rows), use_vt ? vec : nullptr, int(k), work, lwork,
                                  rwork, info));
  int host_info = 0;
  CUDA_CHECK(cudaMemcpyAsync(&host_info, info, sizeof(int), cudaMemcpyDeviceToHost, stream_));
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  if (host_info != 0)
    throw Error(str("the SVD (cusolverDnSgesvdj, then cusolverDnSgesvd) did not converge on a ", m, "x", n,
                    " gradient (info ", host_info, ")"));
  // VT (k×k): vector v is row v, element e at v + e·k; U (rows×k): column v, at v·rows + e.
  return use_vt ? SvdVectors{vec, 1, k} : SvdVectors{vec, rows, 1};
}

void CudaBackend::top_singular_vectors(float* proj, const float* g, int64_t m, int64_t n, int64_t r,
                                       bool by_row) const {
  const int64_t k = std::min(m, n), rows = std::max(m, n);
  CAIRN_ASSERT(r >= 1 && r <= k, "top_singular_vectors: rank ", r, " of a ", m, "x", n, " matrix");
  CAIRN_ASSERT(rows < (int64_t(1) << 31) / k, "top_singular_vectors: a ", m, "x", n, " matrix is too large for cuSOLVER");
  if (!cusolver_) {
    CUSOLVER_CHECK(cusolverDnCreate(&cusolver_));
    CUSOLVER_CHECK(cusolverDnSetStream(cusolver_, stream_));
  }
  // Solvers may loop or return garbage on NaN: refuse a non-finite gradient first (a reduction,
  // cheap beside the SVD).
  if (!std::isfinite(sum_squares(g, m * n)))
    throw Error(str("top_singular_vectors: the ", m, "x", n, " gradient holds NaN or Inf; no SVD of it is defined"));
  SvdVectors vectors{};
  if (!svd_gesvdj(vectors, g, m, n, by_row)) vectors = svd_gesvd(g, m, n, by_row);
  const int64_t len = by_row ? n : m;
  take_vectors_kernel<<<grid_for(r * len, 256), 256, 0, stream_>>>(proj, vectors.data, len, r, vectors.vec_stride,
                                                                    vectors.elem_stride, by_row);
  CUDA_CHECK_LAUNCH();
  // by_row: vector v is row v of [r, n] (stride 1, step n); else column v of [m, r] (stride r, step 1).
  fix_signs_kernel<<<unsigned(r), 256, 0, stream_>>>(proj, len, by_row ? 1 : r, by_row ? n : 1);
  CUDA_CHECK_LAUNCH();
}

}  // namespace cairn
