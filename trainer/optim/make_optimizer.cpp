// Building the configured optimizer (see make_optimizer.h).
#include "trainer/optim/make_optimizer.h"

#include "trainer/optim/adamw.h"

namespace cairn {

std::unique_ptr<Optimizer> make_optimizer(const TrainConfig& cfg, const ParamTable& table,
                                          std::vector<int> owned_rows, const Backend& be) {
  const OptimizerConfig& o = cfg.optimizer;
  if (o.name == OptimizerName::adamw) return std::make_unique<AdamW>(table, std::move(owned_rows), o, be);
  const PlainAdamConfig plain{o.beta1, o.beta2, o.eps, o.weight_decay};
  return std::make_unique<FiraOptimizer>(table, std::move(owned_rows), lowrank_config(o), plain, be);
}

LowRankConfig lowrank_config(const OptimizerConfig& o) {
  LowRankConfig c;
  c.rank = o.rank;
  c.update_gap = o.update_gap;
  c.alpha = o.alpha;
  c.limiter_gamma = o.limiter_gamma;
  c.residual = o.name == OptimizerName::fira;
  c.residual_form = o.residual_form;
  c.beta1 = o.beta1;
  c.beta2 = o.beta2;
  c.eps = o.eps;
  c.weight_decay = o.weight_decay;
  validate(c);
  return c;
}

}  // namespace cairn
