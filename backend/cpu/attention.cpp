// CPU causal attention: per (batch, head) the scores, softmax and weighted sum go through BLAS
// (single-threaded inside the OpenMP loop over heads) block by block of query rows, skipping the
// masked keys beyond each block, with the probabilities saved for backward
// (the backend-defined `saved` state is P [B,NH,T,T]; backward does not need `out`); and the
// key/value head repetition of grouped-query attention.
#include <cblas.h>

#include <algorithm>
#include <cmath>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/fast_math.h"

namespace cairn {

// Causal attention skips most of the masked upper triangle: query rows go in blocks of kRowBlock,
// and a block [r0, r1) meets only keys [0, r1) (backward: a key block [c0, c1) meets only queries
// [c0, T)), so the products cost 17/32 of the full T×T ones at T = 256 (the model FLOP count,
// 12·L·C·T per token, still counts them whole). Blocks are aligned, so the masked entries a product
// reads lie in its diagonal block, where P and dS hold zeros.
constexpr int64_t kRowBlock = 16;

void CpuBackend::attention_forward(float* out, float* saved, const float* q, const float* k,
                                   const float* v, int64_t B, int64_t T, int64_t NH,
                                   int64_t HS) const {
  const int64_t C = NH * HS;
  const float scale = 1.0f / std::sqrt(float(HS));
#pragma omp parallel for schedule(dynamic)
  for (int64_t bh = 0; bh < B * NH; ++bh) {
    const int64_t b = bh / NH, h = bh % NH;
    const int64_t base = b * T * C + h * HS;
    float* P = saved + bh * T * T;
    for (int64_t r0 = 0; r0 < T; r0 += kRowBlock) {
      const int64_t r1 = std::min(T, r0 + kRowBlock), rows = r1 - r0;
      // S[r0:r1, 0:r1] = scale·Q[r0:r1]·K[0:r1]ᵀ
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(rows), int(r1), int(HS), scale, q + base + r0 * C,
                  int(C), k + base, int(C), 0.0f, P + r0 * T, int(T));
      for (int64_t t = r0; t < r1; ++t) {
        float* row = P + t * T;
        const int64_t n = t + 1;  // keys 0..t; `s < n`, not `s <= t`, so the loops vectorize
        float mx = row[0];
#pragma omp simd reduction(max : mx)
        for (int64_t s = 1; s < n; ++s) mx = std::max(mx, row[s]);
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int64_t s = 0; s < n; ++s) {
          row[s] = fast_exp(row[s] - mx);
          sum += row[s];
        }
        const float inv = 1.0f / sum;
#pragma omp simd
        for (int64_t s = 0; s < n; ++s) row[s] *= inv;
        for (int64_t s = n; s < T; ++s) row[s] = 0.0f;
      }
      // O[r0:r1] = P[r0:r1, 0:r1]·V[0:r1]  [rows,HS]
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(rows), int(HS), int(r1), 1.0f, P + r0 * T, int(T),
                  v + base, int(C), 0.0f, out + base + r0 * C, int(C));
    }
  }
}

void CpuBackend::attention_backward(float* dq, float* dk, float* dv, float* scratch,
                                    const float* dout, const float* q, const float* k,
                                    const float* v, const float*, const float* saved, int64_t B,
                                    int64_t T, int64_t NH, int64_t HS) const {
  const int64_t C = NH * HS;
  const float scale = 1.0f / std::sqrt(float(HS));
#pragma omp parallel for schedule(dynamic)
  for (int64_t bh = 0; bh < B * NH; ++bh) {
    const int64_t b = bh / NH, h = bh % NH;
    const int64_t base = b * T * C + h * HS;
    const float* P = saved + bh * T * T;
    float* dS = scratch + bh * T * T;
    for (int64_t r0 = 0; r0 < T; r0 += kRowBlock) {
      const int64_t r1 = std::min(T, r0 + kRowBlock), rows = r1 - r0;
      // dP[r0:r1, 0:r1] = dO[r0:r1]·V[0:r1]ᵀ
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(rows), int(r1), int(HS), 1.0f, dout + base + r0 * C,
                  int(C), v + base, int(C), 0.0f, dS + r0 * T, int(T));
      // Softmax backward: dS = P ⊙ (dP − Σ_s P·dP); masked entries have P = 0.
      for (int64_t t = r0; t < r1; ++t) {
        const float* p = P + t * T;
        float* d = dS + t * T;
        const int64_t n = t + 1;
        float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
        for (int64_t s = 0; s < n; ++s) dot += p[s] * d[s];
#pragma omp simd
        for (int64_t s = 0; s < n; ++s) d[s] = p[s] * (d[s] - dot);
        for (int64_t s = n; s < r1; ++s) d[s] = 0.0f;
      }
      // S = scale·Q·Kᵀ:  dQ[r0:r1] = scale·dS[r0:r1, 0:r1]·K[0:r1]
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(rows), int(HS), int(r1), scale, dS + r0 * T, int(T),
                  k + base, int(C), 0.0f, dq + base + r0 * C, int(C));
    }
    for (int64_t c0 = 0; c0 < T; c0 += kRowBlock) {
      const int64_t cols = std::min(T, c0 + kRowBlock) - c0, later = T - c0;
      // dV[c0:c1] = P[c0:T, c0:c1]ᵀ·dO[c0:T],  dK[c0:c1] = scale·dS[c0:T, c0:c1]ᵀ·Q[c0:T]
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(cols), int(HS), int(later), 1.0f, P + c0 * T + c0,
                  int(T), dout + base + c0 * C, int(C), 0.0f, dv + base + c0 * C, int(C));
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(cols), int(HS), int(later), scale, dS + c0 * T + c0,
                  int(T), q + base + c0 * C, int(C), 0.0f, dk + base + c0 * C, int(C));
    }
  }
}

void CpuBackend::repeat_kv_forward(float* out, const float* inp, int64_t N, int64_t NKV, int64_t G,
                                   int64_t HS) const {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t h = 0; h < NKV * G; ++h) {
      const float* src = inp + (n * NKV + h / G) * HS;
      float* dst = out + (n * NKV * G + h) * HS;
      for (int64_t d = 0; d < HS; ++d) dst[d] = src[d];
    }
}

void CpuBackend::repeat_kv_backward(float* dinp, const float* dout, int64_t N, int64_t NKV, int64_t G,
                                    int64_t HS) const {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t kh = 0; kh < NKV; ++kh) {
      float* dst = dinp + (n * NKV + kh) * HS;
      for (int64_t d = 0; d < HS; ++d) {
        float sum = 0.0f;
        for (int64_t g = 0; g < G; ++g) sum += dout[(n * NKV * G + kh * G + g) * HS + d];
        dst[d] = sum;
      }
    }
}

}  // namespace cairn
