// CPU causal attention: per (batch, head) the scores, softmax and weighted sum go through BLAS
// (single-threaded inside the OpenMP loop over heads), with the probabilities saved for backward
// (the backend-defined `saved` state is P [B,NH,T,T]; backward does not need `out`); and the
// key/value head repetition of grouped-query attention.
#include <cblas.h>

#include <cmath>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/fast_math.h"

namespace cairn {

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
    // S = scale·Q·Kᵀ  [T,T]
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(T), int(T), int(HS), scale, q + base,
                int(C), k + base, int(C), 0.0f, P, int(T));
    for (int64_t t = 0; t < T; ++t) {
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
    // O = P·V  [T,HS]
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(T), int(HS), int(T), 1.0f, P, int(T),
                v + base, int(C), 0.0f, out + base, int(C));
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
    // dP = dO·Vᵀ, dV = Pᵀ·dO
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(T), int(T), int(HS), 1.0f, dout + base,
                int(C), v + base, int(C), 0.0f, dS, int(T));
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(T), int(HS), int(T), 1.0f, P, int(T),
                dout + base, int(C), 0.0f, dv + base, int(C));
    // Softmax backward: dS = P ⊙ (dP − Σ_s P·dP); masked entries have P = 0.
    for (int64_t t = 0; t < T; ++t) {
      const float* p = P + t * T;
      float* d = dS + t * T;
      float dot = 0.0f;
      for (int64_t s = 0; s <= t; ++s) dot += p[s] * d[s];
      for (int64_t s = 0; s <= t; ++s) d[s] = p[s] * (d[s] - dot);
      for (int64_t s = t + 1; s < T; ++s) d[s] = 0.0f;
    }
    // S = scale·Q·Kᵀ:  dQ = scale·dS·K,  dK = scale·dSᵀ·Q
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(T), int(HS), int(T), scale, dS, int(T),
                k + base, int(C), 0.0f, dq + base, int(C));
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(T), int(HS), int(T), scale, dS, int(T),
                q + base, int(C), 0.0f, dk + base, int(C));
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
