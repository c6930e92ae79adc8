// AdamW over the rows this rank owns: two moments per owned row, decoupled weight decay (by
// default on matrices, embedding and LM head, not on norm gains), the PyTorch update order.
#pragma once

#include <vector>

#include "trainer/optim/optimizer.h"
#include "trainer/train_config.h"

namespace cairn {

// Whether weight decay applies to a row of this role under cfg.
bool decays(const OptimizerConfig& cfg, ParamRole role);

class AdamW final : public Optimizer {
 public:
  AdamW(const ParamTable& table, std::vector<int> owned_rows, const OptimizerConfig& cfg, const Backend& be);
  std::string name() const override { return "adamw"; }
  void step(std::span<float> params, std::span<const float> grads, float lr) override;
  std::vector<StateTensor> state() override;
  int64_t steps() const override { return steps_; }
  void set_steps(int64_t n) override { steps_ = n; }
  int64_t state_bytes() const override { return 4 * (m_.size() + v_.size()); }

 private:
  const ParamTable& table_;
  std::vector<int> rows_;
  std::vector<int64_t> state_offset_;  // per owned row, into m_ and v_
  // Owned rows adjacent in the flat buffer with the same weight decay, merged: one adamw_update
  // each (on a GPU, four launches per layer instead of nine: norm, q..o, norm, gate..down).
  struct Span {
    int64_t param_offset, state_offset, numel;
    float weight_decay;
  };
  std::vector<Span> spans_;
  OptimizerConfig cfg_;
  const Backend& be_;
  DeviceArray<float> m_, v_;
  int64_t steps_ = 0;
};

}  // namespace cairn
