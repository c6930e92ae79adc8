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
    state_offset_.push_back(n);
    n += table_.row(r).numel;
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
  for (size_t i = 0; i < rows_.size(); ++i) {
    const ParamRow& r = table_.row(rows_[i]);
    const float wd = decays(cfg_, r.role) ? cfg_.weight_decay : 0.0f;
    be_.adamw_update(params.data() + r.offset, grads.data() + r.offset, m_.data() + state_offset_[i],
                     v_.data() + state_offset_[i], r.numel, lr, cfg_.beta1, cfg_.beta2, cfg_.eps, wd, bc1, bc2);
  }
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
