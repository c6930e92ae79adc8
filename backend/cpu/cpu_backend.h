// The CPU backend: GEMMs through one library per math mode (backend/cpu/gemm.h; OpenBLAS and
// oneDNN are OpenMP builds, so a GEMM made inside one of our parallel regions runs
// single-threaded), everything else as OpenMP loops. Its methods are spread over the files of
// backend/cpu/ by op family. In bf16 mode (backend/cpu/matmul.cpp) matmul rounds its operands to bf16
// as the CUDA backend's CudaMath::bf16 does and keeps a bf16 copy of registered parameters; the
// copy and the operand staging are the mode's state, so one thread at a time calls a bf16 backend.
#pragma once

#include <memory>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/gemm.h"

namespace cairn {

class CpuBackend final : public Backend {
 public:
  // A backend multiplying with `gemm` (cpu_backend(math) uses cpu_gemm(math); tests pass others).
  explicit CpuBackend(const CpuGemm& gemm) : gemm_(gemm) {}
  std::string name() const override { return gemm_.math == CpuMath::bf16 ? "cpu-bf16" : "cpu"; }
  const CpuGemm& gemm() const { return gemm_; }
  // "CPU, fp32 GEMMs: onednn (CAIRN_CPU_GEMM_FP32 picks one of 'onednn', 'openblas')".
  std::string device_summary() const override;

  void matmul(float* out, const float* a, const float* b, int64_t M, int64_t N, int64_t K,
              bool trans_a, bool trans_b, float alpha, float beta) const override;
  // bf16 mode: the shared operand and dy, x are rounded once for all products; fp32: the loops.
  void matmul_batched(float* out, const float* a, const float* b, int64_t M, int64_t N, int64_t K, bool trans_a,
                      bool trans_b, float alpha, float beta, int64_t batch, int64_t stride_out, int64_t stride_a,
                      int64_t stride_b) const override;
  void linear_backward(float* dw, float* dx, const float* dy, const float* x, const float* w, int64_t N, int64_t out,
                       int64_t in, int64_t k, bool accumulate_dx) const override;
  int64_t parameter_copy_bytes(int64_t n) const override { return bf16() ? 2 * n : 0; }
  int64_t matmul_staging_bytes(int64_t floats) const override {
    return bf16() ? (2 + gemm_.extra_bytes_per_operand_float) * floats : 0;
  }
  void register_parameters(const float* base, int64_t n) const override;
  void parameters_changed(const float* p, int64_t n) const override { written(p, n * 4); }
  // Bytes the bf16 mode holds itself (parameter copies and operand staging), for memory plan tests.
  int64_t own_bytes() const;

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
  void attention_forward(float* out, float* saved, const float* q, const float* k, const float* v,
                         int64_t B, int64_t T, int64_t NH, int64_t HS) const override;
  void attention_backward(float* dq, float* dk, float* dv, float* scratch, const float* dout,
                          const float* q, const float* k, const float* v, const float* out,
                          const float* saved, int64_t B, int64_t T, int64_t NH, int64_t HS) const override;
  // Both are the probabilities' B·NH·T·T (saved: P; scratch: dS).
  int64_t attention_saved_floats(int64_t B, int64_t T, int64_t NH, int64_t) const override { return B * NH * T * T; }
  int64_t attention_scratch_floats(int64_t B, int64_t T, int64_t NH, int64_t) const override { return B * NH * T * T; }
  std::string attention_path() const override { return "cpu: BLAS with saved probabilities"; }
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
  void release(void* p) const override;  // also ends a registration at p
  void zero(void* p, int64_t bytes) const override;
  void copy_to_host(void* host, const void* dev, int64_t bytes) const override;
  void copy_to_device(void* dev, const void* host, int64_t bytes) const override;

 private:
  bool bf16() const { return gemm_.math == CpuMath::bf16; }
  // A registered parameter buffer and its bf16 copy: bf16_round_param(i, base[i]) at i.
  struct ParamCopy {
    const float* base;
    int64_t n;
    std::unique_ptr<uint16_t[]> bf16;
  };
  // The bf16 copy of p[0, n) when it lies wholly inside a registered buffer (bf16 mode): the copy
  // of p[0], and *first, p[0]'s index in the buffer; else null.
  uint16_t* param_copy(const float* p, int64_t n, int64_t* first) const;
  // An op wrote [p, p + bytes): re-round the copy of the registered floats among them (bf16 mode).
  void written(const void* p, int64_t bytes) const;
  // The bf16 values of the operand p[0, n): its registered copy, or rounded to nearest into
  // staging area `area` (0: first operands, 1: second ones), grown to n.
  const uint16_t* bf16_operand(const float* p, int64_t n, int area) const;

  const CpuGemm& gemm_;
  mutable std::vector<ParamCopy> copies_;
  mutable std::vector<uint16_t> staging_[2];  // sized by the first step's largest operands
};

}  // namespace cairn
