// SLTrain linear weight W = s·B·A + S (Han et al., 2024; github.com/andyjm3/SLTrain): the low-rank
// part of LowRankLinear plus a sparse S with nnz = floor(δ·out·in) trainable values on a support
// drawn once, uniformly over all flat entries of the matrix, from the run seed — so every rank
// draws the identical support without communication — and saved with the weights.
//
// Rows: "<prefix>.lora_B" [out, r], "<prefix>.lora_A" [r, in] (lowrank_factor), "<prefix>.sparse_value"
// [nnz] (sparse_values); buffer "<prefix>.sparse_index" [nnz]: int32 flat indices i·in + j, sorted,
// unique. Names follow the official code's module attributes.
//
// Two compute paths, equal up to float rounding:
//  materialized — the official code's: form W in the workspace, one GEMM forward; backward forms
//    W for dx, then dW = dyᵀ·x in the same workspace, dB = s·dW·Aᵀ, dA = s·Bᵀ·dW, dvalues = dW at
//    the support. Nothing dense outlives the call. Workspace out·in floats.
//  factored — y = s·(x·Aᵀ)·Bᵀ + x·Sᵀ with a sparse product, dx = s·(dy·B)·A + dy·S, and dvalues as
//    the sampled product Σ_n dy[n, i_k]·x[n, j_k] at the support only. Workspace N·r floats.
// "auto" picks per call from the shape and N by a cost rule calibrated on measured timings
// (sltrain_auto_path below; bench/sltrain_bench measures both). The factored path's sparse kernels
// run on host memory (OpenMP): the CPU backend. Other backends (CUDA) take the materialized path,
// with the support copied to device memory and the scatter/gather as backend ops.
#pragma once

#include <vector>

#include "model/linear_lowrank.h"

namespace cairn {

enum class SLTrainPath { materialized, factored };

// floor(δ·out·in), with δ taken at the 7 significant digits a float carries, so that δ = 0.03
// from a config means 0.03 and not 0.0299999993 (which would lose one value when δ·out·in is whole).
int64_t sltrain_nnz(float density, int64_t out, int64_t in);

// nnz distinct flat indices in [0, out·in), uniform without replacement, sorted ascending. Floyd's
// sampling over a bitmap of out·in bits: O(nnz) draws and out·in/8 bytes, no permutation array.
// Throws Error when out·in does not fit in int32.
std::vector<int32_t> sltrain_support(int64_t out, int64_t in, int64_t nnz, Rng& rng);

// The path "auto" takes for one call on N rows: factored when its estimated time is below the
// materialized one (GEMM FLOPs of each, sparse work weighted by a measured cost per nonzero).
SLTrainPath sltrain_auto_path(int64_t out, int64_t in, int64_t rank, int64_t nnz, int64_t N);

// Whether `be` runs the sparse kernels on the host (the CPU backend itself): then the support is
// used where it lies; any other backend gets a copy of it in its own memory.
bool sltrain_host_backend(const Backend& be);

class SLTrainLinear final : public LowRankLinear {
 public:
  SLTrainLinear(std::string name, int64_t out, int64_t in, int layer, int64_t rank, float alpha,
                float density, SLTrainPathSetting path);

  void declare(ParamTable& params, BufferTable& buffers) override;
  // As the official code: A as LowRankLinear's, B = 0; then the support from a stream seeded by
  // one draw of rng, and values uniform in ±1/sqrt(in). So W = S at start.
  void init(std::span<float> params, BufferTable& buffers, Rng& rng) const override;
  void forward(const Backend& be, float* y, const float* x, int64_t N, const float* params,
               const BufferTable& buffers, float* workspace) const override;
  void backward(const Backend& be, float* dx, bool accumulate_dx, float* grads, const float* dy,
                const float* x, int64_t N, const float* params, const BufferTable& buffers,
                float* workspace) const override;
  int64_t workspace_floats(int64_t N) const override;
  // On the path taken on `be` for N rows. materialized: forward forms W (2·out·in·r + nnz) and
  // multiplies (2·N·out·in); backward forms W again, dx and dW (4·N·out·in), dB and dA from dW
  // (4·out·in·r), the gather (nnz). factored: the low-rank part's work plus 2·N·nnz for each of
  // x·Sᵀ, dy·S and the sampled value gradient.
  LinearFlops flops(const Backend& be, int64_t N) const override;
  void dense_weight(float* W, std::span<const float> params, const BufferTable& buffers) const override;

  // The path "auto" (or the configured one) takes on the CPU backend for N rows.
  SLTrainPath path_for(int64_t N) const;
  // The path taken on `be`: path_for on the CPU; materialized on other backends (Error for an
  // explicit "factored", whose sparse kernels are host code).
  SLTrainPath path_on(const Backend& be, int64_t N) const;
  int64_t nnz() const { return nnz_; }
  int64_t offset_values() const { return offset_values_; }
  const std::string& index_name() const { return index_name_; }

 private:
  const int32_t* support(const BufferTable& buffers) const;
  // The support in `be`'s memory: the host buffer on the CPU, else a device copy refreshed
  // whenever the buffer table changed since it was made (BufferTable::version).
  const int32_t* support_on(const Backend& be, const BufferTable& buffers) const;
  void form_weight(const Backend& be, float* W, const float* params, const int32_t* idx) const;

  int64_t nnz_;
  SLTrainPathSetting path_;
  std::string index_name_;
  int64_t offset_values_ = -1;
  int index_row_ = -1;
  mutable DeviceArray<int32_t> device_support_;
  mutable uint64_t device_support_version_ = 0;
};

}  // namespace cairn
