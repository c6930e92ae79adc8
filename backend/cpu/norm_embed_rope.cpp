// CPU embedding, RMSNorm and rotary-embedding kernels (forward and backward side by side).
#include <cmath>

#include "backend/cpu/cpu_backend.h"

namespace cairn {

void CpuBackend::embedding_forward(float* out, const int32_t* tokens, const float* table, int64_t N,
                                   int64_t C) const {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float* row = table + int64_t(tokens[n]) * C;
    float* o = out + n * C;
    for (int64_t c = 0; c < C; ++c) o[c] = row[c];
  }
}

void CpuBackend::embedding_backward(float* dtable, const float* dout, const int32_t* tokens,
                                    int64_t N, int64_t C, int64_t) const {
  // Parallel over columns: two positions with the same token never race, and the summation
  // order per entry is the position order, so the result is deterministic.
#pragma omp parallel for schedule(static)
  for (int64_t c0 = 0; c0 < C; c0 += 16) {
    const int64_t c1 = c0 + 16 < C ? c0 + 16 : C;
    for (int64_t n = 0; n < N; ++n) {
      float* d = dtable + int64_t(tokens[n]) * C;
      const float* g = dout + n * C;
      for (int64_t c = c0; c < c1; ++c) d[c] += g[c];
    }
  }
}

void CpuBackend::rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight,
                                 int64_t N, int64_t C, float eps) const {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float* x = inp + n * C;
    float ss = 0.0f;
    // Vectorized sums (a fixed order per C, whatever the threads): the scalar chain was the norms'
    // bottleneck once bf16 halved the GEMMs' share.
#pragma omp simd reduction(+ : ss)
    for (int64_t c = 0; c < C; ++c) ss += x[c] * x[c];
    const float r = 1.0f / std::sqrt(ss / float(C) + eps);
    rstd[n] = r;
    float* o = out + n * C;
    for (int64_t c = 0; c < C; ++c) o[c] = x[c] * r * weight[c];
  }
}

void CpuBackend::rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp,
                                  const float* weight, const float* rstd, int64_t N, int64_t C) const {
  // y = x·r·w with r = (mean(x²)+eps)^(-1/2):  dx = r·(dy·w) − x·r³·mean(dy·w·x).
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float* x = inp + n * C;
    const float* dy = dout + n * C;
    const float r = rstd[n];
    float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
    for (int64_t c = 0; c < C; ++c) dot += dy[c] * weight[c] * x[c];
    const float k = dot * r * r * r / float(C);
    float* dx = dinp + n * C;
    for (int64_t c = 0; c < C; ++c) dx[c] += r * dy[c] * weight[c] - k * x[c];
  }
  // dweight[c] = Σ_n dy·x·r, parallel over columns (deterministic order over n).
#pragma omp parallel for schedule(static)
  for (int64_t c0 = 0; c0 < C; c0 += 16) {
    const int64_t c1 = c0 + 16 < C ? c0 + 16 : C;
    float acc[16] = {};
    for (int64_t n = 0; n < N; ++n) {
      const float* x = inp + n * C;
      const float* dy = dout + n * C;
      const float r = rstd[n];
      for (int64_t c = c0; c < c1; ++c) acc[c - c0] += dy[c] * x[c] * r;
    }
    for (int64_t c = c0; c < c1; ++c) dweight[c] += acc[c - c0];
  }
}

// Rotates pairs (i, i+HS/2) of every head by angle ±θ(t, i): sign = +1 forward, −1 backward
// (the transpose of a rotation is the rotation by the opposite angle).
static void rope_rotate(float* x, const float* cos, const float* sin, int64_t B, int64_t T,
                        int64_t NH, int64_t HS, float sign) {
  const int64_t half = HS / 2;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) {
      const float* ct = cos + t * half;
      const float* st = sin + t * half;
      for (int64_t h = 0; h < NH; ++h) {
        float* v = x + ((b * T + t) * NH + h) * HS;
        for (int64_t i = 0; i < half; ++i) {
          const float a = v[i], c = v[i + half], s = sign * st[i];
          v[i] = a * ct[i] - c * s;
          v[i + half] = c * ct[i] + a * s;
        }
      }
    }
}

void CpuBackend::rope_forward(float* x, const float* cos, const float* sin, int64_t B, int64_t T,
                              int64_t NH, int64_t HS) const {
  rope_rotate(x, cos, sin, B, T, NH, HS, 1.0f);
}

void CpuBackend::rope_backward(float* dx, const float* cos, const float* sin, int64_t B, int64_t T,
                               int64_t NH, int64_t HS) const {
  rope_rotate(dx, cos, sin, B, T, NH, HS, -1.0f);
}

}  // namespace cairn
