// The CPU backend's instances, memory, and thread control (its GEMMs: matmul.cpp).
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "backend/cpu/cpu_backend.h"
#include "util/error.h"

namespace cairn {

const Backend& cpu_backend(CpuMath math) {
  // Each mode's instance made on first use, so a bad CAIRN_CPU_GEMM_BF16 stops only bf16 runs.
  if (math == CpuMath::bf16) {
    static const CpuBackend bf16(cpu_gemm(CpuMath::bf16));
    return bf16;
  }
  static const CpuBackend fp32(cpu_gemm(CpuMath::fp32));
  return fp32;
}

std::string CpuBackend::device_summary() const {
  std::string names;
  for (const CpuGemm& g : cpu_gemms())
    if (g.math == gemm_.math) names += str(names.empty() ? "'" : ", '", g.name, "'");
  return str("CPU, ", cpu_math_name(gemm_.math), " GEMMs: ", gemm_.name, " (", cpu_gemm_variable(gemm_.math),
             " picks one of ", names, ")");
}

void cpu_set_threads(int n) {
  if (n <= 0) return;
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

int cpu_threads() { return omp_get_max_threads(); }

void* CpuBackend::alloc(int64_t bytes) const {
  // 64-byte aligned for AVX-512 loads; aligned_alloc wants a multiple of the alignment.
  const size_t size = (size_t(bytes) + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, size ? size : 64);
  if (!p) throw Error(str("out of host memory allocating ", size, " bytes"));
  return p;
}

void CpuBackend::release(void* p) const {
  copies_.erase(std::remove_if(copies_.begin(), copies_.end(), [&](const ParamCopy& c) { return c.base == p; }),
                copies_.end());
  std::free(p);
}

void CpuBackend::zero(void* p, int64_t bytes) const {
  std::memset(p, 0, size_t(bytes));
  written(p, bytes);
}

void CpuBackend::copy_to_host(void* host, const void* dev, int64_t bytes) const {
  std::memcpy(host, dev, size_t(bytes));
}

void CpuBackend::copy_to_device(void* dev, const void* host, int64_t bytes) const {
  std::memcpy(dev, host, size_t(bytes));
  written(dev, bytes);
}

}  // namespace cairn
