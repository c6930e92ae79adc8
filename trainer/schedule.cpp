// LR schedules (see schedule.h).
#include "trainer/schedule.h"

#include <algorithm>
#include <cmath>

#include "util/error.h"

namespace cairn {

static float warmup_lr(float peak, int64_t step, int64_t warmup) {
  return peak * float(step + 1) / float(warmup);
}

WarmupCosine::WarmupCosine(float peak, float min_ratio, int64_t warmup_steps, int64_t total_steps)
    : peak_(peak), min_(peak * min_ratio), warmup_(warmup_steps), total_(total_steps) {}

float WarmupCosine::lr(int64_t step) const {
  if (step < warmup_) return warmup_lr(peak_, step, warmup_);
  const int64_t span = std::max<int64_t>(1, total_ - warmup_);
  const double progress = std::min(1.0, double(step - warmup_) / double(span));
  return float(min_ + (peak_ - min_) * 0.5 * (1.0 + std::cos(M_PI * progress)));
}

std::string WarmupCosine::describe() const {
  return str("linear warmup over ", warmup_, " steps to ", peak_, ", cosine to ", min_, " at step ", total_);
}

float WarmupConstant::lr(int64_t step) const {
  return step < warmup_ ? warmup_lr(peak_, step, warmup_) : peak_;
}

std::string WarmupConstant::describe() const {
  return str("linear warmup over ", warmup_, " steps to ", peak_, ", then constant");
}

int64_t warmup_steps(const ScheduleConfig& cfg, int64_t total_steps) {
  return cfg.warmup < 1.0 ? int64_t(std::llround(cfg.warmup * double(total_steps))) : int64_t(cfg.warmup);
}

std::unique_ptr<LrSchedule> make_schedule(const ScheduleConfig& cfg, int64_t total_steps) {
  const int64_t w = warmup_steps(cfg, total_steps);
  if (cfg.kind == "cosine") return std::make_unique<WarmupCosine>(cfg.lr, cfg.min_lr_ratio, w, total_steps);
  if (cfg.kind == "constant") return std::make_unique<WarmupConstant>(cfg.lr, w);
  throw Error(str("schedule.kind = \"", cfg.kind, "\" is not a schedule: use \"cosine\" or \"constant\""));
}

}  // namespace cairn
