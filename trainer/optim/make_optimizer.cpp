// Building the configured optimizer (see make_optimizer.h).
#include "trainer/optim/make_optimizer.h"

#include "trainer/optim/adamw.h"
#include "util/error.h"

namespace cairn {

std::unique_ptr<Optimizer> make_optimizer(const TrainConfig& cfg, const ParamTable& table,
                                          std::vector<int> owned_rows, const Backend& be) {
  const OptimizerConfig& o = cfg.optimizer;
  if (o.name == "adamw") return std::make_unique<AdamW>(table, std::move(owned_rows), o, be);
  if (o.name == "fira" || o.name == "galore") {
    const PlainAdamConfig plain{o.beta1, o.beta2, o.eps, o.weight_decay};
    return std::make_unique<FiraOptimizer>(table, std::move(owned_rows), lowrank_config(o), plain, be);
  }
  throw Error(str("optimizer.name = \"", o.name, "\" is not an optimizer: use \"adamw\", \"fira\" or \"galore\""));
}

LowRankConfig lowrank_config(const OptimizerConfig& o) {
  LowRankConfig c;
  c.rank = o.rank;
  c.update_gap = o.update_gap;
  c.alpha = o.alpha;
  c.limiter_gamma = o.limiter_gamma;
  c.residual = o.name == "fira";
  c.residual_form = o.residual_form == "paper" ? LowRankConfig::ResidualForm::paper : LowRankConfig::ResidualForm::code;
  c.beta1 = o.beta1;
  c.beta2 = o.beta2;
  c.eps = o.eps;
  c.weight_decay = o.weight_decay;
  validate(c);
  return c;
}

}  // namespace cairn
