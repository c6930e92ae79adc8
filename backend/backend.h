// A backend is one set of kernels behind one interface. Layers call these and never know which
// backend runs: the CPU backend (backend/cpu/) is the oracle that every other backend is tested
// against. Pointers are backend memory (host memory for the CPU backend).
//
// Dimension names used throughout: B batch (micro-batch), T sequence, C model width, NH heads,
// HS head size (C = NH·HS), F feed-forward width, V vocabulary, N = B·T rows of activations.
// Layouts are row-major; activations are [N, width], i.e. (B, T, C).
//
// Gradient contract: every *_backward ACCUMULATES into parameter gradients (dweight += ...), so
// micro-step gradient accumulation needs no extra pass. Input gradients are OVERWRITTEN unless the
// function says "accumulates" (the residual stream's gradients accumulate).
#pragma once

#include <cstdint>
#include <exception>
#include <functional>
#include <optional>
#include <string>

namespace cairn {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  // out[M,N] = alpha·op(a)·op(b) + beta·out, op(a) [M,K], op(b) [K,N]; a is [K,M] when trans_a.
  virtual void matmul(float* out, const float* a, const float* b, int64_t M, int64_t N, int64_t K,
                      bool trans_a, bool trans_b, float alpha, float beta) const = 0;

  // `batch` products in one call: for i < batch, matmul(out + i·stride_out, a + i·stride_a,
  // b + i·stride_b, ...) with the other arguments shared. A stride of 0 reuses one operand for the
  // whole batch: the model multiplies one activation by the adjacent q, k, v (or gate, up) weights,
  // so a device backend reads (and, in bf16, rounds) that activation once. Same results as the
  // loop, which is the default.
  virtual void matmul_batched(float* out, const float* a, const float* b, int64_t M, int64_t N, int64_t K,
                              bool trans_a, bool trans_b, float alpha, float beta, int64_t batch,
                              int64_t stride_out, int64_t stride_a, int64_t stride_b) const {
    for (int64_t i = 0; i < batch; ++i)
      matmul(out + i * stride_out, a + i * stride_a, b + i * stride_b, M, N, K, trans_a, trans_b, alpha, beta);
  }

  // The backward of k adjacent dense projections y_i = x·W_iᵀ (x [N,in]; W_i [out,in] at
  // w + i·out·in; dy_i [N,out] at dy + i·N·out): dW_i += dy_iᵀ·x (dw laid out as w), then
  // dx = Σ_i dy_i·W_i, added to dx when accumulate_dx. The default is exactly those matmuls in that
  // order; a bf16 backend rounds dy and x once for both products instead of once per product.
  virtual void linear_backward(float* dw, float* dx, const float* dy, const float* x, const float* w, int64_t N,
                               int64_t out, int64_t in, int64_t k, bool accumulate_dx) const {
    matmul_batched(dw, dy, x, out, in, N, true, false, 1.0f, 1.0f, k, out * in, N * out, 0);
    for (int64_t i = 0; i < k; ++i)
      matmul(dx, dy + i * N * out, w + i * out * in, N, in, out, false, false, 1.0f,
             accumulate_dx || i > 0 ? 1.0f : 0.0f);
  }

  // out[N,C] = table[tokens[n], :]. backward accumulates into dtable [V,C]; tokens are in [0, V).
  virtual void embedding_forward(float* out, const int32_t* tokens, const float* table, int64_t N,
                                 int64_t C) const = 0;
  virtual void embedding_backward(float* dtable, const float* dout, const int32_t* tokens, int64_t N,
                                  int64_t C, int64_t V) const = 0;

  // out = inp·rstd·weight with rstd[n] = 1/sqrt(mean(inp[n]²)+eps), saved for backward.
  // backward accumulates into dinp (a residual stream) and dweight.
  virtual void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight,
                               int64_t N, int64_t C, float eps) const = 0;
  virtual void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp,
                                const float* weight, const float* rstd, int64_t N, int64_t C) const = 0;

  // In-place rotary embedding of x [B,T,NH,HS] with the Hugging Face LLaMA convention (the pairs
  // are (i, i+HS/2)); cos/sin are [T, HS/2]. backward applies the inverse rotation to dx in place.
  virtual void rope_forward(float* x, const float* cos, const float* sin, int64_t B, int64_t T,
                            int64_t NH, int64_t HS) const = 0;
  virtual void rope_backward(float* dx, const float* cos, const float* sin, int64_t B, int64_t T,
                             int64_t NH, int64_t HS) const = 0;

  // Causal softmax attention. q, k, v, out are [B,T,C] with head h at columns [h·HS, (h+1)·HS),
  // scores scaled by 1/sqrt(HS). `saved` is backend-defined state kept for backward, of
  // attention_saved_floats(B,T,NH,HS) floats (the CPU backend: the probabilities [B,NH,T,T]; the
  // CUDA backend: the rows' log-sum-exp [B,NH,T], in bf16 mode followed by bf16 copies of q, k, v
  // and out for the backward). Unsupported shapes throw Error.
  virtual void attention_forward(float* out, float* saved, const float* q, const float* k,
                                 const float* v, int64_t B, int64_t T, int64_t NH, int64_t HS) const = 0;
  // out and saved are attention_forward's, unchanged since; scratch holds
  // attention_scratch_floats(B,T,NH,HS) floats whose contents are ignored and clobbered.
  virtual void attention_backward(float* dq, float* dk, float* dv, float* scratch, const float* dout,
                                  const float* q, const float* k, const float* v, const float* out,
                                  const float* saved, int64_t B, int64_t T, int64_t NH, int64_t HS) const = 0;
  // Buffer sizes (floats) the caller allocates once for the largest shape it will run.
  virtual int64_t attention_saved_floats(int64_t B, int64_t T, int64_t NH, int64_t HS) const = 0;
  virtual int64_t attention_scratch_floats(int64_t B, int64_t T, int64_t NH, int64_t HS) const = 0;
  // Bytes of backend-owned scratch that attention at this shape uses on top of the caller's
  // buffers (bf16 copies, a library's workspace), for memory planning; 0 on the CPU.
  virtual int64_t attention_workspace_bytes(int64_t /*B*/, int64_t /*T*/, int64_t /*NH*/, int64_t /*HS*/) const {
    return 0;
  }
  // Which implementation the last attention_forward ran, for logs and tests ("" before the first).
  virtual std::string attention_path() const = 0;

  // Grouped-query attention: out [N, NKV·G·HS] holds each of the NKV heads of inp [N, NKV·HS] G
  // times in a row (query head h reads key/value head h / G, Hugging Face's repeat_kv). backward
  // OVERWRITES dinp with the sum of each head's G copies in dout.
  virtual void repeat_kv_forward(float* out, const float* inp, int64_t N, int64_t NKV, int64_t G,
                                 int64_t HS) const = 0;
  virtual void repeat_kv_backward(float* dinp, const float* dout, int64_t N, int64_t NKV, int64_t G,
                                  int64_t HS) const = 0;

  // out = silu(gate)·up, elementwise over n.
  virtual void swiglu_forward(float* out, const float* gate, const float* up, int64_t n) const = 0;
  virtual void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                               const float* up, int64_t n) const = 0;

  // Fused softmax + cross-entropy over logits [N,V]. Writes losses[N] and overwrites logits with
  // dloss/dlogits·dloss_scale (the caller's mean over tokens and micro-steps). Targets < 0 are
  // ignored (loss 0, gradient 0).
  virtual void crossentropy_forward_backward(float* losses, float* logits, const int32_t* targets,
                                             int64_t N, int64_t V, float dloss_scale) const = 0;
  // Loss only (validation), logits untouched.
  virtual void crossentropy_forward(float* losses, const float* logits, const int32_t* targets,
                                    int64_t N, int64_t V) const = 0;

  // y += x, elementwise.
  virtual void add_inplace(float* y, const float* x, int64_t n) const = 0;
  // x *= s.
  virtual void scale_inplace(float* x, float s, int64_t n) const = 0;
  // Sparse matrices on a fixed support (SLTrain): dst[idx[k]] += values[k] for k < n, the indices
  // distinct; and dst[k] += src[idx[k]]. idx is backend memory.
  virtual void scatter_add(float* dst, const int32_t* idx, const float* values, int64_t n) const = 0;
  virtual void gather_add(float* dst, const float* src, const int32_t* idx, int64_t n) const = 0;

  // Pieces of the low-rank optimizers (Fira, GaLore; trainer/optim/fira.h).
  // Adam's moments without bias correction: m = β1·m + (1−β1)·g, v = β2·v + (1−β2)·g²,
  // dir = m/(sqrt(v)+eps).
  virtual void adam_direction(float* dir, float* m, float* v, const float* g, int64_t n, float beta1,
                              float beta2, float eps) const = 0;
  // ratio[i] = ‖a_i‖/(‖b_i‖ + 1e-8) for `count` vectors of length r: the rows of [count, r] when
  // by_row, else the columns of [r, count]. Norms accumulate in double.
  virtual void norm_ratio(float* ratio, const float* a, const float* b, int64_t count, int64_t r,
                          bool by_row) const = 0;
  // x[i, j] *= by_row ? s[i] : s[j] for x [m, n].
  virtual void scale_by(float* x, const float* s, int64_t m, int64_t n, bool by_row) const = 0;
  // w −= step·u, then w −= decay·w (decoupled weight decay applied after the update).
  virtual void apply_update(float* w, const float* u, int64_t n, float step, float decay) const = 0;
  // The top r singular vectors of g [m, n]: by_row, the right ones as the rows of proj [r, n];
  // else the left ones as the columns of proj [m, r]. Each vector's sign is fixed so that its
  // largest-magnitude entry is positive (the first such entry on ties), so backends agree. Throws
  // Error for a g holding NaN or Inf (checked first: solvers may loop forever on NaN) or an SVD
  // that does not converge. Synchronizes; allocates host or
  // scratch memory, so it belongs in rare calls (a projection refresh), not in every step.
  virtual void top_singular_vectors(float* proj, const float* g, int64_t m, int64_t n, int64_t r,
                                    bool by_row) const = 0;
  // Σ x², accumulated in double. Returns to the host, so it synchronizes a device backend.
  virtual double sum_squares(const float* x, int64_t n) const = 0;
  // Fira's norm-growth limiter on x [n], without a host round trip: with norm = ‖x‖ (summed as
  // sum_squares sums), on the first step prev = norm; afterwards
  // limiter = max(norm/(prev + 1e-8), gamma)/gamma, x /= limiter when limiter > 1, and
  // prev = norm/limiter. prev is one float of backend memory carried from step to step.
  virtual void limit_norm_growth(float* x, int64_t n, float* prev, float gamma, bool first) const = 0;

  // AdamW as PyTorch orders it, bias corrections passed in (1-β1^t, 1-β2^t):
  // p *= 1 − lr·wd, then p −= lr·m̂/(sqrt(v̂)+eps).
  virtual void adamw_update(float* p, const float* g, float* m, float* v, int64_t n, float lr,
                            float beta1, float beta2, float eps, float weight_decay,
                            float bias_correction1, float bias_correction2) const = 0;

  // The stream this backend's ops are queued on in order (a cudaStream_t for CUDA), so that other
  // work, e.g. a gradient all-reduce, can wait for them on the device; nullptr for a backend whose
  // ops have completed when they return (CPU).
  virtual void* compute_stream() const { return nullptr; }
  // One line on the device for the start-up report; "" when there is nothing to add. CPU: the
  // GEMM library and how to pick another. CUDA: the GPU, the bytes this backend's alloc holds, and
  // the device's use and size.
  virtual std::string device_summary() const { return {}; }
  // Free and total bytes of the device memory alloc takes from, for the memory plan (trainer/
  // memory_plan.h); nullopt for a backend whose alloc takes host memory (CPU). CUDA: cudaMemGetInfo.
  struct DeviceMemory {
    int64_t free_bytes = 0, total_bytes = 0;
  };
  virtual std::optional<DeviceMemory> device_memory() const { return std::nullopt; }
  // Bytes this backend allocates itself when a buffer of n floats is registered with
  // register_parameters (below): the bf16 copy of the CUDA backend's CudaMath::bf16 and of the CPU
  // backend's CpuMath::bf16 (2·n), else 0.
  virtual int64_t parameter_copy_bytes(int64_t /*n*/) const { return 0; }
  // Bytes this backend keeps itself to stage matmul operands that are not registered parameters,
  // when the largest first and the largest second operand hold `floats` floats together: the bf16
  // copies of the CPU backend's CpuMath::bf16 (2·floats), else 0 (the CUDA backend's staging is not
  // counted).
  virtual int64_t matmul_staging_bytes(int64_t /*floats*/) const { return 0; }

  // The peak dense GEMM rate of this backend's matmul (FLOP/s) for MFU, and where the number comes
  // from (a datasheet entry for the device and math mode, or a measurement on the device); flops 0
  // when the backend has no better answer than timing matmul from the host (the CPU: the trainer
  // measures, trainer/metrics.h).
  struct Peak {
    double flops = 0;
    std::string source;
  };
  virtual Peak peak_flops() const { return {}; }

  // Steady-state replay (CUDA graphs). A caller that repeats one sequence of ops on the same buffers
  // with the same arguments brackets it: `if (!graph_begin(key)) { ops...; graph_end(key); }`.
  // graph_begin returns true when it has launched the sequence recorded under `key` (the caller
  // skips the ops); otherwise the caller runs them, and a backend may be recording them (stream
  // capture records without running: graph_end then launches what it recorded). So the key must
  // change whenever anything the ops were called with changes: shapes, pointers, scalars. Inside
  // the bracket no op may return data to the host or upload from it (copy_to_host/_device,
  // sum_squares, top_singular_vectors), nor allocate or release. Backends without graphs: graph_begin
  // returns false and graph_end does nothing. A device backend drops its graphs when memory they
  // use is released or moves.
  virtual bool graph_begin(uint64_t /*key*/) const { return false; }
  virtual void graph_end(uint64_t /*key*/) const {}
  // After an exception out of a bracket (an op, or graph_end itself): ends a capture still open and
  // discards what it recorded. Returns true when the ops since graph_begin did not run (a capture
  // records without running), having turned graphs off for the rest of the process and said so once
  // on stderr with `why`; the caller must then run the ops again. False when nothing was being
  // captured: the exception is the ops' own.
  virtual bool graph_abort(const std::string& /*why*/) const { return false; }
  // The bracket with its failure path: `ops` (the same ops with the same arguments for a key) run
  // through graph_begin/graph_end, and when they throw inside a capture, graph_abort and then `ops`
  // once more, eagerly. So a capture that fails costs one message, never the run.
  void run_graph(uint64_t key, const std::function<void()>& ops) const {
    if (graph_begin(key)) return;
    try {
      ops();
      graph_end(key);
    } catch (const std::exception& e) {
      if (!graph_abort(e.what())) throw;
      ops();
    }
  }

  // Parameter registration, for backends that compute GEMMs in a lower precision (the CUDA
  // backend's CudaMath::bf16 and the CPU backend's CpuMath::bf16; a no-op everywhere else). The
  // model registers its flat fp32 parameter buffer once: base is a pointer returned by this
  // backend's alloc, n floats of it.
  // The backend then keeps a rounded copy of the range (the fp32 values stay the master copy:
  // what checkpoints save) and uses it whenever a matmul operand lies inside the range, instead of
  // rounding the operand again. The copy is a function of the master alone and is kept current by
  // every write that goes through the backend: copy_to_device and zero into the range,
  // adamw_update, apply_update, add_inplace, scale_inplace and matmul outputs there. Anything else that writes
  // the range (another op used on parameters, a collective gathering parameters on device memory)
  // must call parameters_changed(p, n) on the written part before the next matmul reads it.
  // release(base) ends the registration.
  virtual void register_parameters(const float* /*base*/, int64_t /*n*/) const {}
  virtual void parameters_changed(const float* /*p*/, int64_t /*n*/) const {}

  // Memory (bytes): allocated once at start, never inside a step. Use DeviceArray below.
  virtual void* alloc(int64_t bytes) const = 0;
  virtual void release(void* p) const = 0;
  virtual void zero(void* p, int64_t bytes) const = 0;
  virtual void copy_to_host(void* host, const void* dev, int64_t bytes) const = 0;
  virtual void copy_to_device(void* dev, const void* host, int64_t bytes) const = 0;
};

// A move-only array of n elements of T in a backend's memory.
template <typename T>
class DeviceArray {
 public:
  DeviceArray() = default;
  DeviceArray(const Backend& be, int64_t n)
      : be_(&be), data_(static_cast<T*>(be.alloc(n * int64_t(sizeof(T))))), n_(n) {}
  DeviceArray(DeviceArray&& o) noexcept : be_(o.be_), data_(o.data_), n_(o.n_) { o.data_ = nullptr; o.n_ = 0; }
  DeviceArray& operator=(DeviceArray&& o) noexcept {
    if (this != &o) { reset(); be_ = o.be_; data_ = o.data_; n_ = o.n_; o.data_ = nullptr; o.n_ = 0; }
    return *this;
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() { reset(); }

  T* data() const { return data_; }
  int64_t size() const { return n_; }
  void zero() { if (n_) be_->zero(data_, n_ * int64_t(sizeof(T))); }
  void reset() { if (data_) be_->release(data_); data_ = nullptr; n_ = 0; }

 private:
  const Backend* be_ = nullptr;
  T* data_ = nullptr;
  int64_t n_ = 0;
};

// The CPU backend (BLAS GEMMs, OpenMP elsewhere), one instance per math mode: fp32 GEMMs, or
// bf16 GEMMs with the CUDA backend's CudaMath::bf16 recipe (matmul inputs rounded to bf16 —
// registered parameters stochastically, from a kept copy; activations to nearest — fp32
// accumulation and outputs; every other op, the parameters, gradients and optimizer state fp32).
// The GEMM library of each mode is fixed per build (backend/cpu/gemm.h says which and why).
enum class CpuMath { fp32, bf16 };
const Backend& cpu_backend(CpuMath math = CpuMath::fp32);

// The CUDA backend (backend/cuda/) on the current device, one instance per math mode: fp32 GEMMs,
// TF32 tensor-core GEMMs (10-bit mantissa inputs, fp32 accumulation), or bf16 tensor-core GEMMs
// (matmul inputs rounded to bf16 — registered parameters stochastically, activations to nearest —
// fp32 accumulation and fp32 outputs; attention is cuDNN's fused SDPA on bf16 copies of q, k, v
// when cuDNN is built in, else the own fused kernel in fp32). Other ops stay fp32 in every mode.
// Throws Error when cairn was built without CUDA or no device is usable; check first with
// cuda_device_available(), which never throws.
enum class CudaMath { fp32, tf32, bf16 };
const Backend& cuda_backend(CudaMath math = CudaMath::fp32);
bool cuda_device_available();
// Usable CUDA devices on this host (0 where cuda_device_available() is false); never throws.
int cuda_device_count();
// Why no CUDA device is usable, "" when one is: built without CUDA, the CUDA module failed to open
// (the loader's message: a missing or mismatched library), the CUDA runtime's error (no driver, a
// driver older than the runtime), or no device. Never throws.
std::string cuda_unavailable_reason();
// The CUDA libraries the module loaded, by their own version calls: runtime and driver, cuBLAS,
// cuDNN and NCCL (or "not built in"). Throws Error when the module cannot be opened.
std::string cuda_library_versions();
// Threads used by CPU kernels and BLAS; 0 keeps the OpenMP default.
void cpu_set_threads(int n);
int cpu_threads();

}  // namespace cairn
