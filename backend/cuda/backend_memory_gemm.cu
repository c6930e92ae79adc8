// The CUDA backend's life cycle (device, stream, cuBLAS handle), its memory operations, its
// errors, the row-major GEMM on cuBLAS behind matmul, CUDA graphs, and the GEMM peak for MFU.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <cstdio>
#include <mutex>

#include "backend/cuda/attention_cudnn.h"
#include "backend/cuda/bf16_gemm.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/module_entry.h"

#include <vector>

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

int cairn_cuda_device_count(const char** why) {
  static std::string reason;  // what *why points to
  int n = 0;
  // No driver, no device or a driver older than the runtime all read as "none", with the reason.
  if (const cudaError_t e = cudaGetDeviceCount(&n); e != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky error for later calls
    reason = cairn::str("cudaGetDeviceCount: ", cudaGetErrorName(e), ": ", cudaGetErrorString(e));
    n = 0;
  } else if (n == 0) {
    reason = "the CUDA runtime sees no device";
  }
  if (why) *why = n > 0 ? "" : reason.c_str();
  return n;
}

const cairn::Backend* cairn_cuda_backend(cairn::CudaMath math) {
  using namespace cairn;
  static std::once_flag once[3];
  static CudaBackend* instance[3] = {nullptr, nullptr, nullptr};
  const int i = int(math);
  const char* why = nullptr;
  if (cairn_cuda_device_count(&why) == 0)
    throw Error(str("device = \"cuda\" but no CUDA device is usable here (", why, "; no GPU, no driver, or a "
                    "driver older than the CUDA runtime cairn was built with): run on a machine with an NVIDIA "
                    "GPU or use device = \"cpu\""));
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
  // fp32 and TF32 modes: matmul is cublasSgemm here. bf16 mode: matmul goes to cuBLASLt, and this
  // handle only serves cublasGemmEx where cuBLASLt has no algorithm (bf16 inputs: TF32 is moot).
  CUBLAS_CHECK(cublasSetMathMode(cublas_, math == CudaMath::fp32 ? CUBLAS_DEFAULT_MATH : CUBLAS_TF32_TENSOR_OP_MATH));
  if (math == CudaMath::bf16) bf16_ = std::make_unique<Bf16Gemm>(stream_, cublas_);
  const char* graphs = std::getenv(kGraphsEnv);
  graphs_enabled_ = !(graphs && std::string(graphs) == "0");
}

CudaBackend::~CudaBackend() {
  drop_graphs();
  cudnn_.reset();  // its handle is bound to stream_
  for (const ParamShadow& s : shadows_) cudaFree(s.bf16);
  bf16_.reset();
  if (scratch_) cudaFree(scratch_);
  if (staging_) cudaFreeHost(staging_);
  for (cudaEvent_t e : staging_read_)
    if (e) cudaEventDestroy(e);
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
  // Never throws: it runs in destructors (~DeviceArray), also while an exception unwinds. Inside a
  // capture (an op threw out of it) cudaFree would end the capture: freed when the capture ends.
  if (capturing_) {
    deferred_release_.push_back(p);
    return;
  }
  drop_graphs();  // a graph may use p
  // Releasing a registered parameter buffer ends its registration (and frees its bf16 copy).
  for (size_t i = 0; i < shadows_.size(); ++i)
    if (shadows_[i].base == p) {
      uint16_t* copy = shadows_[i].bf16;
      shadows_.erase(shadows_.begin() + std::ptrdiff_t(i));
      release(copy);
      break;
    }
  alloc_bytes_.erase(p);
  // Pending kernels may still use p: cudaFree waits for the device, so this is safe. It fails only
  // after an earlier error broke the context; that error is the one to report, not this one.
  if (const cudaError_t e = cudaFree(p); e != cudaSuccess) {
    static bool said = false;
    if (!said) std::fprintf(stderr, "cudaFree failed (%s): device memory is not released\n", cudaGetErrorString(e));
    said = true;
  }
}

void CudaBackend::zero(void* p, int64_t bytes) const {
  CUDA_CHECK(cudaMemsetAsync(p, 0, size_t(bytes), stream_));
  params_written(p, bytes);
}

void CudaBackend::copy_to_host(void* host, const void* dev, int64_t bytes) const {
  CAIRN_ASSERT(!capturing_, "copy_to_host inside a graph capture");
  CUDA_CHECK(cudaMemcpyAsync(host, dev, size_t(bytes), cudaMemcpyDeviceToHost, stream_));
  CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaBackend::copy_to_device(void* dev, const void* host, int64_t bytes) const {
  // The caller may free or reuse the host buffer as soon as this returns. Small copies (a step's
  // inputs and targets) go through pinned staging so they queue behind the running step instead of
  // waiting for it: a slot is refilled once the copy staged there kStagingSlots uploads ago has
  // been read, so the uploads of one micro-step never wait for each other.
  CAIRN_ASSERT(!capturing_, "copy_to_device inside a graph capture (a replay would copy stale staging)");
  if (bytes <= kStagingBytes) {
    if (!staging_) {
      CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&staging_), size_t(kStagingBytes) * kStagingSlots,
                               cudaHostAllocDefault));
      for (cudaEvent_t& e : staging_read_) CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
      for (cudaEvent_t e : staging_read_) CUDA_CHECK(cudaEventRecord(e, stream_));  // every slot free
    }
    const int slot = staging_next_;
    staging_next_ = (staging_next_ + 1) % kStagingSlots;
    CUDA_CHECK(cudaEventSynchronize(staging_read_[slot]));
    char* buf = staging_ + int64_t(slot) * kStagingBytes;
    std::memcpy(buf, host, size_t(bytes));
    CUDA_CHECK(cudaMemcpyAsync(dev, buf, size_t(bytes), cudaMemcpyHostToDevice, stream_));
    CUDA_CHECK(cudaEventRecord(staging_read_[slot], stream_));
    params_written(dev, bytes);
    return;
  }
  CUDA_CHECK(cudaMemcpyAsync(dev, host, size_t(bytes), cudaMemcpyHostToDevice, stream_));
  params_written(dev, bytes);
  CUDA_CHECK(cudaStreamSynchronize(stream_));
}

float* CudaBackend::scratch(int64_t floats) const {
  if (floats > scratch_floats_) {
    if (capturing_)
      throw Error(str("CUDA graph capture: the backend's scratch must grow to ", floats * 4, " bytes, which the "
                      "eager warm-up run did not need: the captured ops differ from the warm-up's"));
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
  matmul_batched(out, a, b, M, N, K, trans_a, trans_b, alpha, beta, 1, 0, 0, 0);
}

void CudaBackend::matmul_batched(float* out, const float* a, const float* b, int64_t M, int64_t N, int64_t K,
                                 bool trans_a, bool trans_b, float alpha, float beta, int64_t batch,
                                 int64_t stride_out, int64_t stride_a, int64_t stride_b) const {
  if (batch <= 0) return;
  if (math_ == CudaMath::bf16) {
    matmul_bf16(out, a, b, M, N, K, trans_a, trans_b, alpha, beta, batch, stride_out, stride_a, stride_b);
  } else {
    gemm(trans_a, trans_b, M, N, K, alpha, a, trans_a ? M : K, stride_a, b, trans_b ? K : N, stride_b, beta, out, N,
         stride_out, batch);
  }
  params_written(out, ((batch - 1) * stride_out + M * N) * 4);
}

// ---- CUDA graphs --------------------------------------------------------------------------------

bool CudaBackend::graph_begin(uint64_t key) const {
  CAIRN_ASSERT(!capturing_, "graph_begin inside a graph capture");
  if (!graphs_enabled_) return false;
  if (const auto it = graphs_.find(key); it != graphs_.end()) {
    if (const cudaError_t e = cudaGraphLaunch(it->second, stream_); e != cudaSuccess) {
      (void)cudaGetLastError();
      graphs_off(str("cudaGraphLaunch: ", cudaGetErrorString(e)));
      return false;  // the caller runs the ops eagerly; a broken context fails there, with its error
    }
    return true;
  }
  // The first time eagerly: cuBLASLt and cuDNN choose their plans and the scratch buffers reach
  // their sizes, none of which may happen during a capture.
  if (graph_seen_[key]++ == 0) return false;
  if (const cudaError_t e = cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal); e != cudaSuccess) {
    (void)cudaGetLastError();
    graphs_off(str("cudaStreamBeginCapture: ", cudaGetErrorString(e)));
    return false;
  }
  capturing_ = true;
  unrun_ = true;
  return false;
}

void CudaBackend::graph_end(uint64_t key) const {
  if (!capturing_) return;
  cudaGraph_t graph = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(stream_, &graph);
  capturing_ = false;
  const bool released = !deferred_release_.empty();
  release_deferred();
  CUDA_CHECK(ended);  // e.g. an op the capture refused: graph_abort then reruns the ops
  if (released) {
    cudaGraphDestroy(graph);
    throw Error("memory was released inside a graph capture: the graph would use freed memory");
  }
  cudaGraphExec_t exec = nullptr;
  const cudaError_t made = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  CUDA_CHECK(made);
  constexpr size_t kMaxGraphs = 16;  // a few models or micro-batch sizes; older keys are re-captured
  if (graphs_.size() >= kMaxGraphs) drop_graphs();
  graphs_[key] = exec;
  CUDA_CHECK(cudaGraphLaunch(exec, stream_));  // the capture recorded the ops without running them
  unrun_ = false;
}

bool CudaBackend::graph_abort(const std::string& why) const {
  if (capturing_) {
    cudaGraph_t graph = nullptr;
    if (cudaStreamEndCapture(stream_, &graph) == cudaSuccess && graph) cudaGraphDestroy(graph);
    (void)cudaGetLastError();  // an invalidated capture's error is not sticky: clear it
    capturing_ = false;
    release_deferred();
  }
  if (!unrun_) return false;
  unrun_ = false;
  graphs_off(why);
  return true;
}

void CudaBackend::graphs_off(const std::string& why) const {
  drop_graphs();
  graphs_enabled_ = false;
  std::fprintf(stderr, "CUDA graphs: off for the rest of this process: %s. Micro-steps run eagerly (%s=0 skips "
               "graphs from the start)\n", why.c_str(), kGraphsEnv);
}

void CudaBackend::release_deferred() const {
  std::vector<void*> ps;
  ps.swap(deferred_release_);
  for (void* p : ps) release(p);
}

// Keeps graph_seen_: the keys' eager warm-up (plans, scratch sizes) still holds when memory moved,
// so the next bracket of a key seen once captures (a warm-up that grew the scratch would otherwise
// delay every capture by one step).
void CudaBackend::drop_graphs() const {
  for (const auto& entry : graphs_) cudaGraphExecDestroy(entry.second);
  graphs_.clear();
}

// ---- GEMM peak ----------------------------------------------------------------------------------

// Dense (not sparse) tensor-core and fp32 peaks from NVIDIA's datasheets, by device name and math
// mode: bf16, TF32, fp32 FLOP/s.
namespace {
struct DatasheetPeak {
  const char* name_part;
  double bf16, tf32, fp32;
};
constexpr DatasheetPeak kDatasheet[] = {
    {"H100 PCIe", 756e12, 378e12, 51.2e12},  {"H100 NVL", 835e12, 417.5e12, 60e12},
    {"H200 NVL", 835e12, 417.5e12, 60e12},   {"H100", 989.4e12, 494.7e12, 66.9e12},  // SXM
    {"H200", 989.4e12, 494.7e12, 66.9e12},   {"GH200", 989.4e12, 494.7e12, 66.9e12},
    {"A100", 312e12, 156e12, 19.5e12},
};
}  // namespace

CudaBackend::Peak CudaBackend::peak_flops() const {
  if (peak_.flops > 0) return peak_;
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, device_));
  const std::string name = prop.name;
  const char* mode = math_ == CudaMath::bf16 ? "bf16" : math_ == CudaMath::tf32 ? "TF32" : "fp32";
  for (const DatasheetPeak& d : kDatasheet)  // the table lists specific names before general ones
    if (name.find(d.name_part) != std::string::npos) {
      peak_.flops = math_ == CudaMath::bf16 ? d.bf16 : math_ == CudaMath::tf32 ? d.tf32 : d.fp32;
      peak_.source = str("datasheet ", mode, " dense peak of ", name);
      return peak_;
    }
  peak_.flops = measure_gemm_peak(4096, 30);
  peak_.source = str("measured: 30 back-to-back ", mode, " GEMMs of 4096^3 on ", name, " (not in the datasheet table)");
  return peak_;
}

double CudaBackend::measure_gemm_peak(int64_t n, int reps) const {
  CAIRN_ASSERT(!capturing_);
  DeviceArray<float> a(*this, n * n), b(*this, n * n), c(*this, n * n);
  const std::vector<float> host(size_t(n * n), 0.01f);
  CUDA_CHECK(cudaMemcpy(a.data(), host.data(), size_t(n * n) * 4, cudaMemcpyHostToDevice));
  CUDA_CHECK(cudaMemcpy(b.data(), host.data(), size_t(n * n) * 4, cudaMemcpyHostToDevice));
  matmul(c.data(), a.data(), b.data(), n, n, n, false, true, 1.0f, 0.0f);  // warm-up: plans, staging
  cudaEvent_t start = nullptr, stop = nullptr;
  CUDA_CHECK(cudaEventCreate(&start));
  CUDA_CHECK(cudaEventCreate(&stop));
  // bf16: both operands would be rounded before each GEMM; round once, time the GEMMs alone.
  uint16_t *a16 = nullptr, *b16 = nullptr;
  if (bf16_) {
    uint16_t* stage[2];
    bf16_staging({n * n, n * n}, stage);
    a16 = stage[0];
    b16 = stage[1];
    bf16_round_nearest_launch(a16, a.data(), n * n, stream_);
    bf16_round_nearest_launch(b16, b.data(), n * n, stream_);
  }
  CUDA_CHECK(cudaEventRecord(start, stream_));
  for (int r = 0; r < reps; ++r) {
    if (bf16_)
      bf16_->run(false, true, n, n, n, 1.0f, a16, b16, 0.0f, c.data(), 1, 0, 0, 0);
    else
      gemm(false, true, n, n, n, 1.0f, a.data(), n, 0, b.data(), n, 0, 0.0f, c.data(), n, 0, 1);
  }
  CUDA_CHECK(cudaEventRecord(stop, stream_));
  CUDA_CHECK(cudaEventSynchronize(stop));
  float ms = 0;
  CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return 2.0 * double(n) * double(n) * double(n) * reps / (double(ms) * 1e-3);
}

}  // namespace cairn
