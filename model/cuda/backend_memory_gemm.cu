// The CUDA backend's life cycle (device, stream, cuBLAS handle), its memory operations, its
// errors, and the row-major GEMM on cuBLAS that matmul and attention share.
#include <algorithm>
#include <cstring>
#include <mutex>

#include "model/cuda/attention_cudnn.h"
#include "model/cuda/bf16_gemm.h"
#include "model/cuda/cuda_backend.h"
#include "model/cuda/module_entry.h"

namespace cairn {

void cuda_fail(const char* expr, const char* what, const char* file, int line) {
  throw Error(str(expr, " failed: ", what, " (", file, ":", line, ")"));
}

const char* cublas_status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "cuBLAS error";
  }
}

}  // namespace cairn

int cairn_cuda_device_count() {
  int n = 0;
  // No driver, no device or a driver older than the runtime all read as "none".
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky error for later calls
    return 0;
  }
  return n;
}

const cairn::Backend* cairn_cuda_backend(cairn::CudaMath math) {
  using namespace cairn;
  static std::once_flag once[3];
  static CudaBackend* instance[3] = {nullptr, nullptr, nullptr};
  const int i = int(math);
  if (cairn_cuda_device_count() == 0)
    throw Error("device = \"cuda\" but no CUDA device is usable here (no GPU, no driver, or a driver "
                "older than the CUDA runtime cairn was built with): run on a machine with an NVIDIA GPU "
                "or use device = \"cpu\"");
  // Leaked on purpose: destroying CUDA objects after the runtime has shut down at exit fails.
  std::call_once(once[i], [&] { instance[i] = new CudaBackend(math); });
  return instance[i];
}

namespace cairn {

CudaBackend::CudaBackend(CudaMath math) : math_(math) {
  CUDA_CHECK(cudaGetDevice(&device_));
  CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  CUBLAS_CHECK(cublasCreate(&cublas_));
  CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
  // bf16 mode: matmul goes to cuBLASLt; attention's strided-batched GEMMs stay here, in TF32.
  CUBLAS_CHECK(cublasSetMathMode(cublas_, math == CudaMath::fp32 ? CUBLAS_DEFAULT_MATH : CUBLAS_TF32_TENSOR_OP_MATH));
  if (math == CudaMath::bf16) bf16_ = std::make_unique<Bf16Gemm>(stream_, cublas_);
}

CudaBackend::~CudaBackend() {
  cudnn_.reset();  // its handle is bound to stream_
  for (const ParamShadow& s : shadows_) cudaFree(s.bf16);
  bf16_.reset();
  if (scratch_) cudaFree(scratch_);
  if (staging_) cudaFreeHost(staging_);
  if (staging_read_) cudaEventDestroy(staging_read_);
  if (cusolver_) cusolverDnDestroy(cusolver_);
  if (cublas_) cublasDestroy(cublas_);
  if (stream_) cudaStreamDestroy(stream_);
}

void* CudaBackend::alloc(int64_t bytes) const {
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, size_t(bytes > 0 ? bytes : 1));
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    throw Error(str("out of GPU memory allocating ", bytes, " bytes (", free_b >> 20, " MiB free of ",
                    total_b >> 20, " MiB): lower training.micro_batch or model size"));
  }
  alloc_bytes_[p] = bytes;
  return p;
}

std::string CudaBackend::device_summary() const {
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, device_));
  int64_t mine = 0;
  for (const auto& entry : alloc_bytes_) mine += entry.second;
  size_t free_b = 0, total_b = 0;
  CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  return str("GPU ", device_, " (", prop.name, ", sm_", prop.major, prop.minor, "): ", double(mine) / 1e9,
             " GB in cairn's buffers (cudaMalloc at start), ", double(total_b - free_b) / 1e9, " GB in use of ",
             double(total_b) / 1e9, " GB");
}

std::optional<Backend::DeviceMemory> CudaBackend::device_memory() const {
  size_t free_b = 0, total_b = 0;
  CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  return DeviceMemory{int64_t(free_b), int64_t(total_b)};
}

void CudaBackend::release(void* p) const {
  if (!p) return;
  // Releasing a registered parameter buffer ends its registration (and frees its bf16 copy).
  for (size_t i = 0; i < shadows_.size(); ++i)
    if (shadows_[i].base == p) {
      uint16_t* copy = shadows_[i].bf16;
      shadows_.erase(shadows_.begin() + std::ptrdiff_t(i));
      release(copy);
      break;
    }
  alloc_bytes_.erase(p);
  // Pending kernels may still use p: cudaFree waits for the device, so this is safe.
  CUDA_CHECK(cudaFree(p));
}

void CudaBackend::zero(void* p, int64_t bytes) const {
  CUDA_CHECK(cudaMemsetAsync(p, 0, size_t(bytes), stream_));
  params_written(p, bytes);
}

void CudaBackend::copy_to_host(void* host, const void* dev, int64_t bytes) const {
  CUDA_CHECK(cudaMemcpyAsync(host, dev, size_t(bytes), cudaMemcpyDeviceToHost, stream_));
  CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaBackend::copy_to_device(void* dev, const void* host, int64_t bytes) const {
  // The caller may free or reuse the host buffer as soon as this returns. Small copies (a step's
  // tokens) go through pinned staging so they queue behind the running step instead of waiting
  // for it: only the previous staged copy must have been read before the buffer is refilled.
  if (bytes <= kStagingBytes) {
    if (!staging_) {
      CUDA_CHECK(cudaHostAlloc(&staging_, size_t(kStagingBytes), cudaHostAllocDefault));
      CUDA_CHECK(cudaEventCreateWithFlags(&staging_read_, cudaEventDisableTiming));
    } else {
      CUDA_CHECK(cudaEventSynchronize(staging_read_));
    }
    std::memcpy(staging_, host, size_t(bytes));
    CUDA_CHECK(cudaMemcpyAsync(dev, staging_, size_t(bytes), cudaMemcpyHostToDevice, stream_));
    CUDA_CHECK(cudaEventRecord(staging_read_, stream_));
    params_written(dev, bytes);
    return;
  }
  CUDA_CHECK(cudaMemcpyAsync(dev, host, size_t(bytes), cudaMemcpyHostToDevice, stream_));
  params_written(dev, bytes);
  CUDA_CHECK(cudaStreamSynchronize(stream_));
}

float* CudaBackend::scratch(int64_t floats) const {
  if (floats > scratch_floats_) {
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    if (scratch_) release(scratch_);  // also drops it from alloc_bytes_, which alloc() filled
    scratch_ = nullptr;
    scratch_floats_ = 0;
    scratch_ = static_cast<float*>(alloc(floats * 4));
    scratch_floats_ = floats;
  }
  return scratch_;
}

// Row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ: swap the operands and M/N, keep
// the transpose flags, and the row strides become cuBLAS's leading dimensions.
void CudaBackend::gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                       const float* a, int64_t lda, int64_t stride_a, const float* b, int64_t ldb,
                       int64_t stride_b, float beta, float* c, int64_t ldc, int64_t stride_c,
                       int64_t batch) const {
  if (M == 0 || N == 0 || batch == 0) return;
  // cuBLAS takes int dimensions, leading dimensions and batch counts.
  CAIRN_ASSERT(std::max({M, N, K, lda, ldb, ldc, batch}) <= INT32_MAX, "GEMM dimension beyond int: ", M, "x", N,
               "x", K, ", batch ", batch);
  const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  if (batch == 1) {
    CUBLAS_CHECK(cublasSgemm(cublas_, op_b, op_a, int(N), int(M), int(K), &alpha, b, int(ldb), a, int(lda),
                             &beta, c, int(ldc)));
  } else {
    CUBLAS_CHECK(cublasSgemmStridedBatched(cublas_, op_b, op_a, int(N), int(M), int(K), &alpha, b, int(ldb),
                                           stride_b, a, int(lda), stride_a, &beta, c, int(ldc), stride_c,
                                           int(batch)));
  }
}

void CudaBackend::matmul(float* out, const float* a, const float* b, int64_t M, int64_t N, int64_t K,
                         bool trans_a, bool trans_b, float alpha, float beta) const {
  if (math_ == CudaMath::bf16)
    matmul_bf16(out, a, b, M, N, K, trans_a, trans_b, alpha, beta);
  else
    gemm(trans_a, trans_b, M, N, K, alpha, a, trans_a ? M : K, 0, b, trans_b ? K : N, 0, beta, out, N, 0, 1);
  params_written(out, M * N * 4);
}

}  // namespace cairn
