// LR schedules (see schedule.h).
#include "trainer/schedule.h"

#include <algorithm>
#include <cmath>

#include "util/error.h"

namespace cairn {

static float warmup_lr(float peak, int64_t step, int64_t warmup) {
  return peak * float(step + 1) / float(warmup);
}

static double cosine_between(double from, double to, double progress) {
  return to + (from - to) * 0.5 * (1.0 + std::cos(M_PI * progress));
}

WarmupCosine::WarmupCosine(float peak, float min_ratio, int64_t warmup_steps, int64_t total_steps)
    : peak_(peak), min_(peak * min_ratio), warmup_(warmup_steps), total_(total_steps) {}

float WarmupCosine::lr(int64_t step) const {
  if (step < warmup_) return warmup_lr(peak_, step, warmup_);
  const int64_t span = std::max<int64_t>(1, total_ - warmup_);
  const double progress = std::min(1.0, double(step - warmup_) / double(span));
  return float(cosine_between(peak_, min_, progress));
}

std::string WarmupCosine::describe(int64_t first_step) const {
  return str("linear warmup over ", warmup_, " steps to ", peak_, ", cosine to ", min_, " at step ", first_step + total_);
}

float WarmupConstant::lr(int64_t step) const {
  return step < warmup_ ? warmup_lr(peak_, step, warmup_) : peak_;
}

std::string WarmupConstant::describe(int64_t) const {
  return str("linear warmup over ", warmup_, " steps to ", peak_, ", then constant");
}

Rewarm::Rewarm(float start, float peak, float min, int64_t warmup_steps, int64_t total_steps)
    : start_(start), peak_(peak), min_(min), warmup_(warmup_steps), total_(total_steps) {}

float Rewarm::lr(int64_t step) const {
  // Starting exactly at start_lr (not one warmup increment above it) continues the previous
  // stage's final LR without a jump.
  if (step < warmup_) return float(start_ + (double(peak_) - start_) * double(step) / double(warmup_));
  const int64_t span = std::max<int64_t>(1, total_ - warmup_);
  return float(cosine_between(peak_, min_, std::min(1.0, double(step - warmup_) / double(span))));
}

std::string Rewarm::describe(int64_t first_step) const {
  return str("re-warm from ", start_, " over ", warmup_, " steps to ", peak_, ", cosine re-decay to ", min_,
             " at step ", first_step + total_);
}

Infinite::Infinite(float peak, float const_lr, float min, int64_t warmup_steps, int64_t cooldown_steps,
                   CooldownShape shape, int64_t anneal_start, int64_t total_steps)
    : peak_(peak), const_(const_lr), min_(min), warmup_(warmup_steps), cooldown_(cooldown_steps), shape_(shape),
      anneal_start_(anneal_start), total_(total_steps) {}

float Infinite::lr(int64_t step) const {
  if (step < warmup_) return warmup_lr(peak_, step, warmup_);
  if (anneal_start_ >= 0 && step >= anneal_start_ && total_ > anneal_start_) {
    const double k = std::log(double(const_) / double(min_)) / double(total_ - anneal_start_);
    return float(double(const_) * std::exp(-k * double(step - anneal_start_)));
  }
  if (step >= warmup_ + cooldown_) return const_;
  const double u = double(step - warmup_) / double(cooldown_);
  switch (shape_) {
    case CooldownShape::cosine: return float(cosine_between(peak_, const_, u));
    case CooldownShape::linear: return float(peak_ + (double(const_) - peak_) * u);
    case CooldownShape::inv_sqrt: {
      auto h = [](double x) { return 1.0 / std::sqrt(1.0 + 10.0 * x) - 1.0; };
      return float(peak_ + (double(const_) - peak_) * h(u) / h(1.0));
    }
  }
  return const_;
}

std::string Infinite::describe(int64_t first_step) const {
  static const char* names[] = {"cosine", "linear", "inv_sqrt"};
  return str("linear warmup over ", warmup_, " steps to ", peak_, ", ", names[int(shape_)], " cooldown over ",
             cooldown_, " steps to ", const_, ", constant",
             anneal_start_ >= 0 ? str(", exponential anneal from step ", first_step + anneal_start_, " to ", min_,
                                      " at step ", first_step + total_)
                                : std::string(""));
}

static int64_t steps_of(double value, int64_t stage_steps) {
  return value < 1.0 ? int64_t(std::llround(value * double(stage_steps))) : int64_t(value);
}

int64_t warmup_steps(const ScheduleConfig& cfg, int64_t stage_steps) {
  const double w = cfg.warmup >= 0 ? cfg.warmup : cfg.kind == ScheduleKind::rewarm ? 0.01 : 0.1;
  return steps_of(w, stage_steps);
}

ScheduleStage make_stage(const ScheduleConfig& cfg, int64_t start, int64_t end, std::string label) {
  const int64_t stage = end - start;
  const int64_t w = warmup_steps(cfg, stage);
  const float min = cfg.lr * cfg.min_lr_ratio;
  std::unique_ptr<LrSchedule> s;
  switch (cfg.kind) {
    case ScheduleKind::cosine:
      s = std::make_unique<WarmupCosine>(cfg.lr, cfg.min_lr_ratio, w, stage);
      break;
    case ScheduleKind::constant:
      s = std::make_unique<WarmupConstant>(cfg.lr, w);
      break;
    case ScheduleKind::rewarm:
      s = std::make_unique<Rewarm>(cfg.start_lr >= 0 ? cfg.start_lr : min, cfg.lr, min, w, stage);
      break;
    case ScheduleKind::infinite: {
      const int64_t anneal = cfg.anneal_start < 0 ? -1 : cfg.anneal_start - start;
      if (cfg.anneal_start >= 0 && (anneal < 0 || anneal >= stage))
        throw Error(str("schedule.anneal_start = ", cfg.anneal_start, " must lie in the stage [", start, ", ", end, ")"));
      if (cfg.anneal_start >= 0 && !(min > 0))
        throw Error("the exponential anneal needs schedule.min_lr_ratio > 0");
      s = std::make_unique<Infinite>(cfg.lr, cfg.lr * cfg.const_lr_ratio, min, w,
                                     std::max<int64_t>(1, steps_of(cfg.cooldown, stage)), cfg.cooldown_shape, anneal,
                                     stage);
      break;
    }
  }
  return {start, end, w, std::move(label), std::move(s)};
}

std::string ScheduleStage::describe() const {
  return start == 0 ? schedule->describe(0) : str("from step ", start, ": ", schedule->describe(start));
}

StagedSchedule::StagedSchedule(std::vector<ScheduleStage> stages) : stages_(std::move(stages)) {
  CAIRN_ASSERT(!stages_.empty(), "a schedule needs a stage");
  for (size_t i = 1; i < stages_.size(); ++i) CAIRN_ASSERT(stages_[i].start == stages_[i - 1].end, "stage ", i);
}

float StagedSchedule::lr(int64_t step) const {
  size_t i = 0;
  while (i + 1 < stages_.size() && step >= stages_[i + 1].start) ++i;
  return stages_[i].schedule->lr(std::max<int64_t>(0, step - stages_[i].start));
}

std::string StagedSchedule::describe() const {
  std::string out;
  for (const auto& s : stages_) {
    if (!out.empty()) out += "; then ";
    out += s.describe();
  }
  return out;
}

std::unique_ptr<StagedSchedule> make_schedule(const ScheduleConfig& cfg, int64_t total_steps, int64_t growth_step) {
  std::vector<ScheduleStage> stages;
  if (growth_step > 0) {
    if (cfg.stage_start != 0) throw Error("growth.at_tokens and schedule.stage_start cannot be combined");
    stages.push_back(make_stage(cfg, 0, growth_step, "the small model"));
    stages.push_back(make_stage(cfg, growth_step, total_steps, "the grown model"));
  } else {
    if (total_steps - cfg.stage_start <= 0)
      throw Error(str("schedule.stage_start = ", cfg.stage_start, " leaves no steps before training.steps = ", total_steps));
    stages.push_back(make_stage(cfg, cfg.stage_start, total_steps, "this run"));
  }
  return std::make_unique<StagedSchedule>(std::move(stages));
}

}  // namespace cairn
