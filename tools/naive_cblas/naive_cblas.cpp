// Plain row-major sgemm with a float accumulator per output, parallel over rows when called
// outside an OpenMP region (see cblas.h beside this for why it exists).
#include "cblas.h"

#include <omp.h>

extern "C" void cblas_sgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int M, int N,
                            int K, float alpha, const float* A, int lda, const float* B, int ldb, float beta,
                            float* C, int ldc) {
  // Column-major C = op(A)·op(B) is row-major Cᵀ = op(B)ᵀ·op(A)ᵀ.
  if (order == CblasColMajor) {
    cblas_sgemm(CblasRowMajor, tb, ta, N, M, K, alpha, B, ldb, A, lda, beta, C, ldc);
    return;
  }
  const bool at = ta == CblasTrans, bt = tb == CblasTrans;
#pragma omp parallel for schedule(static) if (!omp_in_parallel())
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      float acc = 0.0f;
      for (int k = 0; k < K; ++k)
        acc += (at ? A[k * lda + i] : A[i * lda + k]) * (bt ? B[j * ldb + k] : B[k * ldb + j]);
      float& c = C[i * ldc + j];
      c = beta == 0.0f ? alpha * acc : alpha * acc + beta * c;
    }
}

extern "C" void openblas_set_num_threads(int) {}
