// CPU causal attention: per (batch, head), in blocks of query rows, the scores, softmax and
// weighted sum go through BLAS (single-threaded inside the OpenMP loop over heads). A block of
// queries only meets the keys up to its last row, so the causal upper triangle is mostly skipped
// (about 5/8 of the full T×T work at four blocks). Probabilities are saved for backward.
#include <cblas.h>

#include <algorithm>
#include <cmath>

#include "model/cpu/cpu_backend.h"
#include "model/cpu/fast_math.h"

namespace cairn {

// Query rows per block: small enough to skip most of the triangle, large enough for BLAS.
static int64_t query_block(int64_t T) { return std::max<int64_t>(32, T / 4); }

void CpuBackend::attention_forward(float* out, float* probs, const float* q, const float* k,
                                   const float* v, int64_t B, int64_t T, int64_t NH,
                                   int64_t HS) const {
  const int64_t C = NH * HS, bs = query_block(T);
  const float scale = 1.0f / std::sqrt(float(HS));
#pragma omp parallel for schedule(dynamic)
  for (int64_t bh = 0; bh < B * NH; ++bh) {
    const int64_t b = bh / NH, h = bh % NH;
    const int64_t base = b * T * C + h * HS;
    float* P = probs + bh * T * T;
    for (int64_t i0 = 0; i0 < T; i0 += bs) {
      const int64_t rows = std::min(bs, T - i0), keys = i0 + rows;
      // S = scale·Q_i·K[0:keys]ᵀ  [rows, keys]
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(rows), int(keys), int(HS), scale,
                  q + base + i0 * C, int(C), k + base, int(C), 0.0f, P + i0 * T, int(T));
      for (int64_t t = i0; t < i0 + rows; ++t) {
        float* row = P + t * T;
        float mx = row[0];
        for (int64_t s = 1; s <= t; ++s) mx = row[s] > mx ? row[s] : mx;
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int64_t s = 0; s <= t; ++s) {
          row[s] = fast_exp(row[s] - mx);
          sum += row[s];
        }
        const float inv = 1.0f / sum;
        for (int64_t s = 0; s <= t; ++s) row[s] *= inv;
        for (int64_t s = t + 1; s < T; ++s) row[s] = 0.0f;
      }
      // O_i = P_i·V[0:keys]  [rows, HS]
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(rows), int(HS), int(keys), 1.0f,
                  P + i0 * T, int(T), v + base, int(C), 0.0f, out + base + i0 * C, int(C));
    }
  }
}

void CpuBackend::attention_backward(float* dq, float* dk, float* dv, float* scratch,
                                    const float* dout, const float* q, const float* k,
                                    const float* v, const float* probs, int64_t B, int64_t T,
                                    int64_t NH, int64_t HS) const {
  const int64_t C = NH * HS, bs = query_block(T);
  const float scale = 1.0f / std::sqrt(float(HS));
#pragma omp parallel for schedule(dynamic)
  for (int64_t bh = 0; bh < B * NH; ++bh) {
    const int64_t b = bh / NH, h = bh % NH;
    const int64_t base = b * T * C + h * HS;
    const float* P = probs + bh * T * T;
    float* dS = scratch + bh * T * T;
    // dK and dV accumulate over query blocks.
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = 0; i < HS; ++i) dk[base + t * C + i] = dv[base + t * C + i] = 0.0f;
    for (int64_t i0 = 0; i0 < T; i0 += bs) {
      const int64_t rows = std::min(bs, T - i0), keys = i0 + rows;
      const float* dO = dout + base + i0 * C;
      // dP_i = dO_i·V[0:keys]ᵀ,  dV[0:keys] += P_iᵀ·dO_i
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(rows), int(keys), int(HS), 1.0f, dO, int(C),
                  v + base, int(C), 0.0f, dS + i0 * T, int(T));
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(keys), int(HS), int(rows), 1.0f, P + i0 * T,
                  int(T), dO, int(C), 1.0f, dv + base, int(C));
      // Softmax backward: dS = P ⊙ (dP − Σ_s P·dP); masked entries have P = 0.
      for (int64_t t = i0; t < i0 + rows; ++t) {
        const float* p = P + t * T;
        float* d = dS + t * T;
        float dot = 0.0f;
        for (int64_t s = 0; s <= t; ++s) dot += p[s] * d[s];
        for (int64_t s = 0; s <= t; ++s) d[s] = p[s] * (d[s] - dot);
        for (int64_t s = t + 1; s < keys; ++s) d[s] = 0.0f;
      }
      // S = scale·Q·Kᵀ:  dQ_i = scale·dS_i·K[0:keys],  dK[0:keys] += scale·dS_iᵀ·Q_i
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(rows), int(HS), int(keys), scale, dS + i0 * T,
                  int(T), k + base, int(C), 0.0f, dq + base + i0 * C, int(C));
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(keys), int(HS), int(rows), scale, dS + i0 * T,
                  int(T), q + base + i0 * C, int(C), 1.0f, dk + base, int(C));
    }
  }
}

}  // namespace cairn
