// The bf16 GEMM of the CUDA backend's CudaMath::bf16 mode: cuBLASLt with bf16 A/B, fp32 C/D,
// fp32 scale and accumulation (CUBLAS_COMPUTE_32F); one algorithm per (shape, transposition,
// operand alignment), chosen by cuBLASLt's heuristic on first use and cached; one workspace. A
// shape cuBLASLt has no algorithm for (e.g. operands only 2-byte aligned) goes to cublasGemmEx
// with the same types instead.
// Also the conversion launchers (fp32 → bf16 bit patterns, backend/bf16.h) and the bf16 staging
// buffer for activation operands. Included only by CUDA sources.
#pragma once

#include <cublasLt.h>

#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <tuple>

#include "backend/cuda/cuda_backend.h"

namespace cairn {

class Bf16Gemm {
 public:
  // Creates the cuBLASLt handle and allocates the workspace; all work runs on `stream`. `cublas`
  // (bound to the same stream, owned by the caller) serves the fallback.
  Bf16Gemm(cudaStream_t stream, cublasHandle_t cublas);
  ~Bf16Gemm();
  Bf16Gemm(const Bf16Gemm&) = delete;
  Bf16Gemm& operator=(const Bf16Gemm&) = delete;

  // Row-major out[M,N] = alpha·op(a)·op(b) + beta·out with a [M,K] ([K,M] when trans_a) and b
  // [K,N] ([N,K] when trans_b), both dense bf16 bit patterns; out dense fp32. M, N, K ≥ 1. With
  // batch > 1, `batch` such products at element strides stride_out, stride_a, stride_b (0 shares
  // the operand).
  void run(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* a,
           const uint16_t* b, float beta, float* out, int64_t batch, int64_t stride_out, int64_t stride_a,
           int64_t stride_b) const;

  // Device staging for operands that are not registered parameters: areas[i] gets elems[i] bf16
  // values (at most 3 areas), each 256-byte aligned. Grows (synchronously) when a call needs more —
  // in practice during the first step — and never shrinks; returns true when it moved (graphs
  // captured with the old address are stale). Stream order makes reuse safe.
  bool staging(std::initializer_list<int64_t> elems, uint16_t** areas) const;

 private:
  struct Plan;  // matmul descriptor, layouts and the chosen algorithm for one Key
  // (trans_a, trans_b, M, N, K, alignment of a, b, out in bytes, batch, stride_out, stride_a, stride_b)
  using Key = std::tuple<bool, bool, int64_t, int64_t, int64_t, uint32_t, uint32_t, uint32_t, int64_t, int64_t,
                         int64_t, int64_t>;
  const Plan& plan(const Key& key) const;

  cudaStream_t stream_;
  cublasHandle_t cublas_;
  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  mutable std::map<Key, std::unique_ptr<Plan>> plans_;
  mutable uint16_t* staging_ = nullptr;
  mutable int64_t staging_elems_ = 0;
};

// out[i] = bf16_round_nearest(in[i]) for i < n (activation operands).
void bf16_round_nearest_launch(uint16_t* out, const float* in, int64_t n, cudaStream_t stream);
// out[i] = bf16_round_param(first_index + i, in[i]) for i < n (the bf16 copy of parameters).
void bf16_round_params_launch(uint16_t* out, const float* in, int64_t first_index, int64_t n, cudaStream_t stream);

}  // namespace cairn
