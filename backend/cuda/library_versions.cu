// The versions of the CUDA libraries this module actually loaded (not the headers it was compiled
// against), by the libraries' own version calls: a mismatch between the machine's libraries and
// the build shows up here before it shows up as an error.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>

#include "backend/cuda/module_entry.h"
#include "util/error.h"

#if CAIRN_HAVE_CUDNN
#include <cudnn.h>
#endif
#if CAIRN_HAVE_NCCL
#include <nccl.h>
#endif

namespace {

// CUDA's d·1000 + m·10; cuDNN 9's and NCCL's M·10000 + m·100 + p.
std::string cuda_version(int v) { return cairn::str(v / 1000, ".", v % 1000 / 10); }
std::string dotted(long v) { return cairn::str(v / 10000, ".", v % 10000 / 100, ".", v % 100); }

}  // namespace

const char* cairn_cuda_library_versions() {
  static const std::string versions = [] {
    using cairn::str;
    int runtime = 0, driver = 0;
    (void)cudaRuntimeGetVersion(&runtime);
    (void)cudaDriverGetVersion(&driver);  // 0 without a driver
    (void)cudaGetLastError();
    int major = 0, minor = 0, patch = 0;
    (void)cublasGetProperty(MAJOR_VERSION, &major);
    (void)cublasGetProperty(MINOR_VERSION, &minor);
    (void)cublasGetProperty(PATCH_LEVEL, &patch);
    std::string out = str("CUDA runtime ", cuda_version(runtime), " (built with ", cuda_version(CUDART_VERSION),
                          "), driver ", driver ? cuda_version(driver) : std::string("none"), ", cuBLAS ", major,
                          ".", minor, ".", patch);
#if CAIRN_HAVE_CUDNN
    out += str(", cuDNN ", dotted(long(cudnnGetVersion())), " (built with ", dotted(CUDNN_VERSION), ")");
#else
    out += ", cuDNN not built in";
#endif
#if CAIRN_HAVE_NCCL
    int nccl = 0;
    out += ncclGetVersion(&nccl) == ncclSuccess ? str(", NCCL ", dotted(nccl)) : std::string(", NCCL unknown");
#else
    out += ", NCCL not built in";
#endif
    return out;
  }();
  return versions.c_str();
}
