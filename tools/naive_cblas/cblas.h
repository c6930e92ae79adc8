// A stand-in for the two OpenBLAS entry points the CPU backend calls (cblas_sgemm and
// openblas_set_num_threads), used only by the CAIRN_CUDA_ONLY build on machines without OpenBLAS
// (the GPU check machine): the CPU backend is then the oracle at small sizes, where speed is moot.
#pragma once

#ifdef __cplusplus
extern "C" {
#endif

enum CBLAS_ORDER { CblasRowMajor = 101, CblasColMajor = 102 };
enum CBLAS_TRANSPOSE { CblasNoTrans = 111, CblasTrans = 112 };

void cblas_sgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int M, int N, int K,
                 float alpha, const float* A, int lda, const float* B, int ldb, float beta, float* C, int ldc);
void openblas_set_num_threads(int n);

#ifdef __cplusplus
}
#endif
