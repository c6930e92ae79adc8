// AdamW (see adamw.h).
#include "trainer/optim/adamw.h"

#include <cmath>

namespace cairn {

bool decays(const OptimizerConfig& cfg, ParamRole role) {
  switch (role) {
    case ParamRole::norm: return cfg.decay_norms;
    case ParamRole::embedding:
    case ParamRole::lm_head: return cfg.decay_embeddings;
    default: return true;
  }
}

AdamW::AdamW(const ParamTable& table, std::vector<int> owned_rows, const OptimizerConfig& cfg, const Backend& be)
    : table_(table), rows_(std::move(owned_rows)), cfg_(cfg), be_(be) {
  int64_t n = 0;
  for (int r : rows_) {
    const ParamRow& row = table_.row(r);
    const float wd = decays(cfg_, row.role) ? cfg_.weight_decay : 0.0f;
    if (!spans_.empty() && spans_.back().param_offset + spans_.back().numel == row.offset &&
        spans_.back().weight_decay == wd)
      spans_.back().numel += row.numel;
    else
      spans_.push_back({row.offset, n, row.numel, wd});
    state_offset_.push_back(n);
    n += row.numel;
  }
  m_ = DeviceArray<float>(be_, n);
  v_ = DeviceArray<float>(be_, n);
  m_.zero();
  v_.zero();
}

void AdamW::step(std::span<float> params, std::span<const float> grads, float lr) {
  ++steps_;
  const float bc1 = 1.0f - std::pow(cfg_.beta1, float(steps_));
  const float bc2 = 1.0f - std::pow(cfg_.beta2, float(steps_));
  for (const Span& s : spans_)
    be_.adamw_update(params.data() + s.param_offset, grads.data() + s.param_offset, m_.data() + s.state_offset,
                     v_.data() + s.state_offset, s.numel, lr, cfg_.beta1, cfg_.beta2, cfg_.eps, s.weight_decay, bc1,
                     bc2);
}

std::vector<StateTensor> AdamW::state() {
  std::vector<StateTensor> out;
  for (size_t i = 0; i < rows_.size(); ++i) {
    const ParamRow& r = table_.row(rows_[i]);
    out.push_back({"exp_avg/" + r.name, r.shape, {m_.data() + state_offset_[i], size_t(r.numel)}});
    out.push_back({"exp_avg_sq/" + r.name, r.shape, {v_.data() + state_offset_[i], size_t(r.numel)}});
  }
  return out;
}

}  // namespace cairn
