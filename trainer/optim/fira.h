// Fira (Chen et al. 2024) and GaLore (Zhao et al. 2024): Adam state kept in a rank-r subspace of
// each dense projection's gradient, refreshed by an SVD every `update_gap` steps. GaLore applies
// only the projected-back Adam direction; Fira adds the out-of-subspace residual scaled by the
// norm ratio Adam applied inside the subspace, with a norm-growth limiter. The math follows the
// official code (xichen-fy/Fira optimizer_torch/); trainer/optim/fira.cpp lists every deviation.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "model/param_table.h"
#include "trainer/optim/optimizer.h"
#include "trainer/train_config.h"

namespace cairn {

struct LowRankConfig {
  int64_t rank = 128;          // r; clamped to min(m, n) per matrix (see lowrank_shape)
  int64_t update_gap = 200;    // T: the projection is recomputed at steps 0, T, 2T, ...
  float alpha = 0.25f;         // scale of the projected-back update (and, code form, of back(R))
  float limiter_gamma = 1.01f; // ‖S_t‖ ≤ γ·‖S_{t-1}‖
  bool residual = true;        // false = GaLore (no residual S)
  // code: S = (G − alpha·back(R))·φ, as fira_adamw.py computes it; paper: S = (G − back(R))·φ.
  using ResidualForm = cairn::ResidualForm;  // optimizer.residual_form
  ResidualForm residual_form = ResidualForm::code;
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-6f;
  float weight_decay = 0.0f;   // decoupled, applied after the update: W −= lr·wd·W
};
// Throws Error naming the bad field (rank < 1, update_gap < 1, betas outside [0,1), ...).
void validate(const LowRankConfig& cfg);

// Per-matrix geometry. G is m×n row-major ([out, in]). right (m ≥ n): P is r×n (top-r right
// singular vectors as rows), R = G·Pᵀ is m×r. left (m < n): P is m×r (top-r left singular vectors
// as columns), R = Pᵀ·G is r×n. Moments have R's shape.
struct LowRankShape {
  int64_t m = 0, n = 0, r = 0;
  bool right = true;
  bool clamped = false;  // the configured rank exceeded min(m, n)
  int64_t proj_numel() const { return right ? r * n : m * r; }
  int64_t moment_numel() const { return right ? m * r : r * n; }
  // Floats of state: P, exp_avg, exp_avg_sq, and the limiter's previous norm when Fira.
  int64_t state_numel(bool residual) const { return proj_numel() + 2 * moment_numel() + (residual ? 1 : 0); }
};
LowRankShape lowrank_shape(const LowRankConfig& cfg, int64_t m, int64_t n);

// Floats of LowRankWorkspace's buffers that fit every shape passed to fit().
struct LowRankWorkspaceSize {
  int64_t low = 0, full = 0, phi = 0;
  void fit(const LowRankShape& s);
  int64_t floats() const { return low + full + phi; }
};

// Scratch for lowrank_step in one backend's memory, sized once for the largest matrix it will see;
// steps never allocate (a projection refresh's SVD does, every update_gap steps).
class LowRankWorkspace {
 public:
  explicit LowRankWorkspace(const Backend& backend = cpu_backend()) : be_(&backend) {}
  // Grows the buffers to fit a matrix of this shape (call for every shape before stepping).
  void reserve(const LowRankShape& s);
  const Backend& backend() const { return *be_; }

  // Used by lowrank_step only: R and Adam's direction, the full-rank update, the norm ratios.
  DeviceArray<float> low, full, phi;

 private:
  const Backend* be_;
};

// P (s.proj_numel() floats) from the fp32 SVD of g (m×n), in be's memory
// (Backend::top_singular_vectors: signs fixed so that backends agree).
void lowrank_refresh_projection(const Backend& be, float* proj, const float* g, const LowRankShape& s);

// One Fira/GaLore step on one matrix, in place on w (m×n) and the state pointers (shapes from s),
// all in the workspace's backend's memory.
// t is the number of steps taken before this one (0 on the first): the projection is refreshed
// when t % update_gap == 0, bias corrections use t+1, and the limiter is skipped at t == 0.
// limiter_norm (1 float) is unused when cfg.residual is false (may be null).
void lowrank_step(const LowRankConfig& cfg, const LowRankShape& s, float* w, const float* g,
                  float* proj, float* exp_avg, float* exp_avg_sq, float* limiter_norm, int64_t t,
                  float lr, LowRankWorkspace& ws);

// Adam for the rows Fira leaves alone (embeddings, norms, lm_head, factored weights), same LR.
struct PlainAdamConfig {
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-6f;
  float weight_decay = 0.0f;
};

// Fira (cfg.residual) or GaLore on the ParamRole::matrix rows among `owned_rows`, plain Adam on
// the other owned rows. State tensors are named "<kind>/<param name>" with kind one of
// proj, exp_avg, exp_avg_sq, limiter_norm (Fira only); plain rows have exp_avg and exp_avg_sq.
// Everything runs as backend ops (CPU or CUDA), the limiter included: a step never waits for the host.
class FiraOptimizer : public Optimizer {
 public:
  FiraOptimizer(const ParamTable& table, std::vector<int> owned_rows, const LowRankConfig& cfg,
                const PlainAdamConfig& plain, const Backend& backend);
  std::string name() const override { return cfg_.residual ? "fira" : "galore"; }
  void step(std::span<float> params, std::span<const float> grads, float lr) override;
  std::vector<StateTensor> state() override;
  int64_t steps() const override { return steps_; }
  void set_steps(int64_t n) override { steps_ = n; }
  int64_t state_bytes() const override { return int64_t(state_.size() * sizeof(float)); }

 private:
  struct Slot {
    int row = 0;
    bool lowrank = false;
    LowRankShape shape;
    int64_t offset = 0;  // into state_
  };
  const ParamTable& table_;
  LowRankConfig cfg_;
  PlainAdamConfig plain_;
  const Backend& backend_;
  std::vector<Slot> slots_;
  DeviceArray<float> state_;
  LowRankWorkspace ws_;
  int64_t steps_ = 0;
};

// Optimizer-state memory under "adamw", "galore" or "fira" (fp32 state): what AdamW and
// FiraOptimizer allocate for the same rows, so the memory plan can count it before they exist.
struct OptimizerStateMemory {
  int64_t matrix_rows = 0;          // rows with low-rank state (ParamRole::matrix)
  int64_t clamped_rows = 0;         // of those, rows whose rank was clamped to min(m, n)
  int64_t matrix_floats = 0;        // their state under this optimizer
  int64_t matrix_floats_adamw = 0;  // their state under AdamW (2·m·n each)
  int64_t other_floats = 0;         // AdamW state of every other row
  LowRankWorkspaceSize workspace;   // Fira/GaLore's step scratch for those matrices
  int64_t largest_matrix_m = 0, largest_matrix_n = 0;  // the largest of them (its SVD's scratch)
  int64_t bytes() const { return 4 * (matrix_floats + other_floats); }  // state only
};
// Of the whole table, or of `rows` (a rank's share under ZeRO-1).
OptimizerStateMemory optimizer_state_memory(const ParamTable& table, OptimizerName optimizer, const LowRankConfig& cfg);
OptimizerStateMemory optimizer_state_memory(const ParamTable& table, const std::vector<int>& rows,
                                            OptimizerName optimizer, const LowRankConfig& cfg);
// One line for the start of a run, e.g. "optimizer state (fira, r 128): 123.4 MiB = ...".
std::string describe_optimizer_state_memory(const OptimizerStateMemory& mem, OptimizerName optimizer,
                                            const LowRankConfig& cfg);

}  // namespace cairn
