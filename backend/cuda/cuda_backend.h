// The CUDA backend: every Backend op on device memory, in order on one stream that the backend
// owns. GEMMs go through cuBLAS (fp32, or TF32 tensor cores with CudaMath::tf32) or, with
// CudaMath::bf16, matmul through cuBLASLt on bf16 copies (backend/cuda/bf16_gemm.h); attention is an
// own fused kernel, or cuDNN's SDPA in bf16 mode; the other ops are own kernels, one .cu per op
// family (backend/cuda/*.cu), each read kernel → launcher → entry point. Host-facing calls that
// return data (copy_to_host, sum_squares) synchronize the stream, as does a copy_to_device larger
// than a pinned staging slot (4 MiB: loading weights); everything else is asynchronous, and a
// repeated sequence of ops can be replayed as a CUDA graph (graph_begin/graph_end).
// One host thread at a time. Included only by CUDA sources.
#pragma once

#include <cublas_v2.h>
#include <cusolverDn.h>
#include <cuda_runtime.h>

#include <initializer_list>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "backend/backend.h"
#include "util/error.h"

namespace cairn {

// Throw cairn::Error naming the failed expression, the library's message and file:line.
[[noreturn]] void cuda_fail(const char* expr, const char* what, const char* file, int line);
const char* cublas_status_name(cublasStatus_t s);

}  // namespace cairn

#define CUDA_CHECK(expr)                                                                        \
  do {                                                                                          \
    const cudaError_t cairn_err_ = (expr);                                                      \
    if (cairn_err_ != cudaSuccess)                                                              \
      ::cairn::cuda_fail(#expr, cudaGetErrorString(cairn_err_), __FILE__, __LINE__);            \
  } while (0)
#define CUBLAS_CHECK(expr)                                                                      \
  do {                                                                                          \
    const cublasStatus_t cairn_st_ = (expr);                                                    \
    if (cairn_st_ != CUBLAS_STATUS_SUCCESS)                                                     \
      ::cairn::cuda_fail(#expr, ::cairn::cublas_status_name(cairn_st_), __FILE__, __LINE__);    \
  } while (0)
// After every kernel launch: reports a bad launch configuration at the launch site.
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

namespace cairn {

// Set to 0, turns CUDA graphs off (Backend::graph_begin always runs the ops eagerly).
inline constexpr const char* kGraphsEnv = "CAIRN_CUDA_GRAPHS";

class CudnnSdpa;  // backend/cuda/attention_cudnn.h
class Bf16Gemm;

class CudaBackend final : public Backend {
 public:
  // Binds to the current device; creates the stream and the cuBLAS handle.
  explicit CudaBackend(CudaMath math);
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  std::string name() const override {
    return math_ == CudaMath::tf32 ? "cuda-tf32" : math_ == CudaMath::bf16 ? "cuda-bf16" : "cuda";
  }
  cudaStream_t stream() const { return stream_; }
  void* compute_stream() const override { return stream_; }
  std::string device_summary() const override;
  std::optional<DeviceMemory> device_memory() const override;
  int64_t parameter_copy_bytes(int64_t n) const override { return math_ == CudaMath::bf16 ? 2 * n : 0; }

  void matmul(float* out, const float* a, const float* b, int64_t M, int64_t N, int64_t K,
              bool trans_a, bool trans_b, float alpha, float beta) const override;
  void matmul_batched(float* out, const float* a, const float* b, int64_t M, int64_t N, int64_t K, bool trans_a,
                      bool trans_b, float alpha, float beta, int64_t batch, int64_t stride_out, int64_t stride_a,
                      int64_t stride_b) const override;
  void linear_backward(float* dw, float* dx, const float* dy, const float* x, const float* w, int64_t N, int64_t out,
                       int64_t in, int64_t k, bool accumulate_dx) const override;

  void embedding_forward(float* out, const int32_t* tokens, const float* table, int64_t N,
                         int64_t C) const override;
  void embedding_backward(float* dtable, const float* dout, const int32_t* tokens, int64_t N,
                          int64_t C, int64_t V) const override;
  void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int64_t N,
                       int64_t C, float eps) const override;
  void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp,
                        const float* weight, const float* rstd, int64_t N, int64_t C) const override;
  void rope_forward(float* x, const float* cos, const float* sin, int64_t B, int64_t T, int64_t NH,
                    int64_t HS) const override;
  void rope_backward(float* dx, const float* cos, const float* sin, int64_t B, int64_t T,
                     int64_t NH, int64_t HS) const override;
  // Attention (backend/cuda/attention.cu): saved starts with the rows' log-sum-exp [B,NH,T] on both
  // paths (own fused kernel; cuDNN SDPA in bf16 mode, where the forward's bf16 q, k, v and output
  // follow it for the backward); scratch holds D = rowsum(dout∘out) [B,NH,T].
  void attention_forward(float* out, float* saved, const float* q, const float* k, const float* v,
                         int64_t B, int64_t T, int64_t NH, int64_t HS) const override;
  void attention_backward(float* dq, float* dk, float* dv, float* scratch, const float* dout,
                          const float* q, const float* k, const float* v, const float* out,
                          const float* saved, int64_t B, int64_t T, int64_t NH, int64_t HS) const override;
  int64_t attention_saved_floats(int64_t B, int64_t T, int64_t NH, int64_t HS) const override;
  int64_t attention_scratch_floats(int64_t B, int64_t T, int64_t NH, int64_t) const override { return B * NH * T; }
  int64_t attention_workspace_bytes(int64_t B, int64_t T, int64_t NH, int64_t HS) const override;
  std::string attention_path() const override { return attention_path_; }
  void repeat_kv_forward(float* out, const float* inp, int64_t N, int64_t NKV, int64_t G,
                         int64_t HS) const override;
  void repeat_kv_backward(float* dinp, const float* dout, int64_t N, int64_t NKV, int64_t G,
                          int64_t HS) const override;
  void swiglu_forward(float* out, const float* gate, const float* up, int64_t n) const override;
  void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                       const float* up, int64_t n) const override;
  void crossentropy_forward_backward(float* losses, float* logits, const int32_t* targets, int64_t N,
                                     int64_t V, float dloss_scale) const override;
  void crossentropy_forward(float* losses, const float* logits, const int32_t* targets, int64_t N,
                            int64_t V) const override;
  void add_inplace(float* y, const float* x, int64_t n) const override;
  void scale_inplace(float* x, float s, int64_t n) const override;
  void scatter_add(float* dst, const int32_t* idx, const float* values, int64_t n) const override;
  void gather_add(float* dst, const float* src, const int32_t* idx, int64_t n) const override;
  void adam_direction(float* dir, float* m, float* v, const float* g, int64_t n, float beta1, float beta2,
                      float eps) const override;
  void norm_ratio(float* ratio, const float* a, const float* b, int64_t count, int64_t r,
                  bool by_row) const override;
  void scale_by(float* x, const float* s, int64_t m, int64_t n, bool by_row) const override;
  void apply_update(float* w, const float* u, int64_t n, float step, float decay) const override;
  void top_singular_vectors(float* proj, const float* g, int64_t m, int64_t n, int64_t r,
                            bool by_row) const override;
  double sum_squares(const float* x, int64_t n) const override;
  void limit_norm_growth(float* x, int64_t n, float* prev, float gamma, bool first) const override;
  void adamw_update(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1,
                    float beta2, float eps, float weight_decay, float bias_correction1,
                    float bias_correction2) const override;

  void* alloc(int64_t bytes) const override;
  void release(void* p) const override;
  void zero(void* p, int64_t bytes) const override;
  void copy_to_host(void* host, const void* dev, int64_t bytes) const override;
  void copy_to_device(void* dev, const void* host, int64_t bytes) const override;

  // The datasheet's dense peak for this device and math mode when the device is known (H100, H200,
  // A100), else many back-to-back GEMMs of the math mode timed with CUDA events; computed once.
  Peak peak_flops() const override;
  // CUDA graphs (Backend::graph_begin): a key seen for the first time runs eagerly (its warm-up:
  // plans, scratch sizes), the second time it is captured and launched, afterwards replayed.
  // CAIRN_CUDA_GRAPHS=0 turns graphs off; so does a failed capture or launch (graph_abort), once,
  // with a message.
  bool graph_begin(uint64_t key) const override;
  void graph_end(uint64_t key) const override;
  bool graph_abort(const std::string& why) const override;

  // CudaMath::bf16: a bf16 copy per registered buffer (see Backend); no-ops in the other modes.
  void register_parameters(const float* base, int64_t n) const override;
  void parameters_changed(const float* p, int64_t n) const override;

  // Row-major strided-batched GEMM on the backend's stream: for i < batch,
  // c_i[M,N] = alpha·op(a_i)·op(b_i) + beta·c_i with explicit leading dimensions (row strides)
  // and element strides between batch entries. matmul and attention are built on it.
  void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* a,
            int64_t lda, int64_t stride_a, const float* b, int64_t ldb, int64_t stride_b, float beta,
            float* c, int64_t ldc, int64_t stride_c, int64_t batch) const;

  // Device scratch of at least `floats` floats, owned by the backend and reused by every op that
  // needs temporary memory (RMSNorm's weight gradient, sum_squares, the embedding gradient's sort
  // by token, cuDNN attention's bf16 copies and workspace). It grows (synchronously) on the first
  // call that needs more — in practice the first training step — and never shrinks. Growing it
  // drops the captured graphs (they hold the old address).
  float* scratch(int64_t floats) const;

 private:
  // True when this call runs cuDNN SDPA (bf16 mode, cuDNN built in and a plan for the shape);
  // records the path in attention_path_ and prints it to stderr when it changes in bf16 mode.
  bool attention_uses_cudnn(int64_t B, int64_t T, int64_t NH, int64_t HS) const;
  // A registered parameter buffer and its bf16 copy (bit patterns, same element order).
  struct ParamShadow {
    const float* base;
    int64_t n;
    uint16_t* bf16;
  };
  void matmul_bf16(float* out, const float* a, const float* b, int64_t M, int64_t N, int64_t K, bool trans_a,
                   bool trans_b, float alpha, float beta, int64_t batch, int64_t stride_out, int64_t stride_a,
                   int64_t stride_b) const;
  // bf16 staging areas for GEMM operands (Bf16Gemm::staging; growth drops the graphs), and an
  // operand's bf16 values: its registered copy, or n values rounded to nearest into `stage`.
  void bf16_staging(std::initializer_list<int64_t> elems, uint16_t** areas) const;
  const uint16_t* bf16_operand(const ParamShadow* shadow, const float* p, int64_t n, uint16_t* stage) const;
  // Singular vectors where an SVD left them in the scratch: vector v's element e at
  // data[v·vec_stride + e·elem_stride]. top_singular_vectors tries svd_gesvdj (false: it did not
  // converge), then svd_gesvd (throws Error when it fails).
  struct SvdVectors {
    const float* data;
    int64_t vec_stride, elem_stride;
  };
  bool svd_gesvdj(SvdVectors& out, const float* g, int64_t m, int64_t n, bool by_row) const;
  SvdVectors svd_gesvd(const float* g, int64_t m, int64_t n, bool by_row) const;
  // The registered buffer holding all of [p, p + n) floats, or nullptr.
  const ParamShadow* shadow_containing(const float* p, int64_t n) const;
  // A backend op wrote `bytes` bytes at p: re-round the bf16 copy of every registered float among them.
  void params_written(const void* p, int64_t bytes) const;
  // Forgets every captured graph (memory they use was released or moved).
  void drop_graphs() const;
  // Drops the graphs and turns them off for good, saying why on stderr.
  void graphs_off(const std::string& why) const;
  // Releases what release() deferred during a capture.
  void release_deferred() const;
  // Times `reps` back-to-back GEMMs of n³ in this math mode with CUDA events: FLOP/s.
  double measure_gemm_peak(int64_t n, int reps) const;

  CudaMath math_;
  int device_ = 0;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  mutable cusolverDnHandle_t cusolver_ = nullptr;  // made on the first SVD
  mutable float* scratch_ = nullptr;
  mutable int64_t scratch_floats_ = 0;
  // Pinned host memory for copy_to_device calls up to kStagingBytes: a ring of slots, made on the
  // first such call; slot i's event marks when the stream has read the copy last staged there, so
  // a slot waits only for its own previous copy, kStagingSlots uploads back.
  static constexpr int64_t kStagingBytes = int64_t(4) << 20;
  static constexpr int kStagingSlots = 4;
  mutable char* staging_ = nullptr;
  mutable cudaEvent_t staging_read_[kStagingSlots] = {};
  mutable int staging_next_ = 0;
  // Captured graphs by key, keys seen once (run eagerly), and the capture in progress: capturing_
  // while the stream records, unrun_ until the recorded ops have been launched (graph_abort's
  // answer), and the releases that came during the capture (an op threw out of it).
  mutable std::unordered_map<uint64_t, cudaGraphExec_t> graphs_;
  mutable std::unordered_map<uint64_t, int> graph_seen_;
  mutable bool capturing_ = false;
  mutable bool unrun_ = false;
  mutable std::vector<void*> deferred_release_;
  mutable bool graphs_enabled_ = true;
  mutable Peak peak_;
  // cuDNN SDPA, created on the first bf16 attention call; null when unavailable (cudnn_why_ says why).
  mutable std::unique_ptr<CudnnSdpa> cudnn_;
  mutable bool cudnn_tried_ = false;
  mutable std::string cudnn_why_, attention_path_;
  std::unique_ptr<Bf16Gemm> bf16_;                            // CudaMath::bf16 only
  mutable std::vector<ParamShadow> shadows_;                  // registered parameter buffers
  mutable std::unordered_map<const void*, int64_t> alloc_bytes_;  // live allocations of alloc()
};

// Blocks of `threads` covering n items, capped for grid-stride loops.
inline unsigned grid_for(int64_t n, int threads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return unsigned(blocks < 1 ? 1 : (blocks > 65535 * 16 ? 65535 * 16 : blocks));
}

}  // namespace cairn
