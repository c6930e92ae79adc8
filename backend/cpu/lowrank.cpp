// CPU pieces of the low-rank optimizers (Fira, GaLore): Adam's direction in the subspace, the
// per-vector norm ratio, row/column scaling, the weight update, Fira's norm-growth limiter, and
// the top singular vectors
// through LAPACK's sgesdd (OpenBLAS ships LAPACK).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "util/error.h"

extern "C" void sgesdd_(const char* jobz, const int* m, const int* n, float* a, const int* lda,
                        float* s, float* u, const int* ldu, float* vt, const int* ldvt, float* work,
                        const int* lwork, int* iwork, int* info, size_t jobz_len);

namespace cairn {

// Below this many elements a loop runs on one thread: waking the pool costs more than it saves.
constexpr int64_t kParallelMin = 1 << 15;

void CpuBackend::adam_direction(float* dir, float* m, float* v, const float* g, int64_t n, float beta1,
                                float beta2, float eps) const {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    m[i] = m[i] * beta1 + g[i] * (1.0f - beta1);
    v[i] = v[i] * beta2 + g[i] * g[i] * (1.0f - beta2);
    dir[i] = m[i] / (std::sqrt(v[i]) + eps);
  }
}

void CpuBackend::norm_ratio(float* ratio, const float* a, const float* b, int64_t count, int64_t r,
                            bool by_row) const {
#pragma omp parallel for schedule(static) if (count * r >= kParallelMin)
  for (int64_t i = 0; i < count; ++i) {
    double aa = 0, bb = 0;
    for (int64_t k = 0; k < r; ++k) {
      const int64_t e = by_row ? i * r + k : k * count + i;
      aa += double(a[e]) * a[e];
      bb += double(b[e]) * b[e];
    }
    ratio[i] = float(std::sqrt(aa) / (std::sqrt(bb) + 1e-8));
  }
}

void CpuBackend::scale_by(float* x, const float* s, int64_t m, int64_t n, bool by_row) const {
#pragma omp parallel for schedule(static) if (m * n >= kParallelMin)
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) x[i * n + j] *= by_row ? s[i] : s[j];
}

void CpuBackend::apply_update(float* w, const float* u, int64_t n, float step, float decay) const {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    w[i] -= step * u[i];
    if (decay != 0.0f) w[i] -= decay * w[i];
  }
  written(w, n * 4);
}

void CpuBackend::limit_norm_growth(float* x, int64_t n, float* prev, float gamma, bool first) const {
  const double norm = std::sqrt(sum_squares(x, n));
  if (first) {
    *prev = float(norm);
    return;
  }
  const double limiter = std::max(norm / (double(*prev) + 1e-8), double(gamma)) / double(gamma);
  if (limiter > 1.0) scale_inplace(x, float(1.0 / limiter), n);
  *prev = float(norm / limiter);
}

void CpuBackend::top_singular_vectors(float* proj, const float* g, int64_t m, int64_t n, int64_t r,
                                      bool by_row) const {
  const int64_t k = std::min(m, n);
  CAIRN_ASSERT(r >= 1 && r <= k, "top_singular_vectors: rank ", r, " of a ", m, "x", n, " matrix");
  // LAPACK's SVDs may loop forever on NaN: refuse a non-finite gradient before calling it.
  if (!std::isfinite(sum_squares(g, m * n)))
    throw Error(str("top_singular_vectors: the ", m, "x", n, " gradient holds NaN or Inf; no SVD of it is defined"));
  // sgesdd on Gᵀ: G row-major m×n is column-major n×m, so no transpose copy is needed.
  std::vector<float> a(g, g + m * n), s(static_cast<size_t>(k)), u(static_cast<size_t>(n * k)),
      vt(static_cast<size_t>(k * m));
  std::vector<int> iwork(static_cast<size_t>(8 * k));
  const int lm = int(n), ln = int(m), lk = int(k);
  int info = 0, lwork = -1;
  float query = 0;
  sgesdd_("S", &lm, &ln, a.data(), &lm, s.data(), u.data(), &lm, vt.data(), &lk, &query, &lwork, iwork.data(),
          &info, 1);
  CAIRN_ASSERT(info == 0, "sgesdd workspace query failed, info ", info);
  std::vector<float> work(static_cast<size_t>(query) + 1);
  lwork = int(work.size());
  sgesdd_("S", &lm, &ln, a.data(), &lm, s.data(), u.data(), &lm, vt.data(), &lk, work.data(), &lwork,
          iwork.data(), &info, 1);
  if (info != 0)
    throw Error(str("the SVD (sgesdd) failed on a ", m, "x", n, " gradient (info ", info,
                    "): the gradient probably holds NaN or Inf"));
  // Column-major U' (n×k) of Gᵀ holds G's right singular vectors as contiguous columns; VT' (k×m)
  // holds G's left singular vectors as its rows, i.e. element (j, i) of U at vt[i + j·k].
  if (by_row) {
    std::copy(u.begin(), u.begin() + r * n, proj);
  } else {
    for (int64_t j = 0; j < m; ++j)
      for (int64_t i = 0; i < r; ++i) proj[j * r + i] = vt[size_t(i + j * k)];
  }
  const int64_t len = by_row ? n : m, stride = by_row ? 1 : r, step = by_row ? n : 1;
  for (int64_t v = 0; v < r; ++v) {
    float* x = proj + v * step;
    int64_t best = 0;
    for (int64_t e = 1; e < len; ++e)
      if (std::fabs(x[e * stride]) > std::fabs(x[best * stride])) best = e;
    if (x[best * stride] < 0)
      for (int64_t e = 0; e < len; ++e) x[e * stride] = -x[e * stride];
  }
}

}  // namespace cairn
