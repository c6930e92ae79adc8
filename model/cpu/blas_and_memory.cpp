// CPU GEMM (OpenBLAS), memory, and thread control.
#include <cblas.h>
#include <omp.h>

#include <cstdlib>
#include <cstring>

#include "model/cpu/cpu_backend.h"
#include "util/error.h"

namespace cairn {

const Backend& cpu_backend() {
  static const CpuBackend backend;
  return backend;
}

void cpu_set_threads(int n) {
  if (n <= 0) return;
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

int cpu_threads() { return omp_get_max_threads(); }

void CpuBackend::matmul(float* out, const float* a, const float* b, int64_t M, int64_t N, int64_t K,
                        bool trans_a, bool trans_b, float alpha, float beta) const {
  if (M == 0 || N == 0) return;
  const int64_t lda = trans_a ? M : K, ldb = trans_b ? K : N;
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              int(M), int(N), int(K), alpha, a, int(lda), b, int(ldb), beta, out, int(N));
}

void* CpuBackend::alloc(int64_t bytes) const {
  // 64-byte aligned for AVX-512 loads; aligned_alloc wants a multiple of the alignment.
  const size_t size = (size_t(bytes) + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, size ? size : 64);
  if (!p) throw Error(str("out of host memory allocating ", size, " bytes"));
  return p;
}

void CpuBackend::release(void* p) const { std::free(p); }

void CpuBackend::zero(void* p, int64_t bytes) const { std::memset(p, 0, size_t(bytes)); }

void CpuBackend::copy_to_host(void* host, const void* dev, int64_t bytes) const {
  std::memcpy(host, dev, size_t(bytes));
}

void CpuBackend::copy_to_device(void* dev, const void* host, int64_t bytes) const {
  std::memcpy(dev, host, size_t(bytes));
}

}  // namespace cairn
