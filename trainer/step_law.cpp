// Step Law suggestions (see step_law.h). Reference: arXiv 2503.04715, eq. (1)-(2); step-law.github.io.
#include "trainer/step_law.h"

#include <cmath>
#include <cstdio>

#include "util/error.h"

namespace cairn {

namespace {

std::string g3(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", x);
  return buf;
}

}  // namespace

StepLaw step_law(double n, double d) {
  if (!(n > 0) || !std::isfinite(n) || !(d > 0) || !std::isfinite(d))
    throw Error(str("Step Law needs a positive parameter count N and token count D, got N = ", n, ", D = ", d));
  return {1.79 * std::pow(n, -0.713) * std::pow(d, 0.307), 0.58 * std::pow(d, 0.571)};
}

double run_tokens(const TrainConfig& cfg, int64_t ranks) {
  const auto& t = cfg.training;
  return double(t.steps) * double(t.micro_batch) * double(t.grad_accum) * double(ranks) * double(cfg.model.seq_len);
}

std::string step_law_hint(const TrainConfig& cfg, int64_t ranks) {
  const double n = double(non_embedding_param_count(cfg.model)), d = run_tokens(cfg, ranks);
  const StepLaw s = step_law(n, d);
  const double ratio = double(cfg.schedule.lr) / s.lr;
  if (ratio <= 3 && ratio >= 1.0 / 3) return "";
  const bool low_rank = cfg.model.linear.kind != LinearKind::dense || cfg.optimizer.name != OptimizerName::adamw;
  return str("hint: schedule.lr = ", g3(cfg.schedule.lr), " is ", g3(ratio > 1 ? ratio : 1 / ratio), "x ",
             ratio > 1 ? "above" : "below", " the Step Law suggestion ", g3(s.lr), " for N = ", g3(n),
             " non-embedding parameters and D = ", g3(d), " tokens (its batch size: ", g3(s.batch_tokens),
             " tokens; this run's: ", g3(d / double(cfg.training.steps)), "). Step Law was fitted on dense models "
             "trained with AdamW",
             low_rank ? "; this run's low-rank or sparse weights or Fira/GaLore optimizer follow their papers' own "
                        "LRs (e.g. 0.003 for SLTrain, 0.01 for Fira), which may rightly differ"
                      : "",
             ". See `cairn plan --config`.");
}

}  // namespace cairn
