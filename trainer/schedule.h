// Learning-rate schedules: a pure function of the optimizer step, so a resumed run gets the same
// LR as the uninterrupted one without saving anything but the step. A run's schedule is a list of
// stages laid end to end, each [start, end) with its own kind, warmup and peak counted from its
// first step: one stage [schedule.stage_start, training.steps) (a new stage of continual
// pre-training, resumed at its old step, starts its warmup at once), or with in-run growth the
// small model's stage and the grown model's, each from warmup.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "trainer/train_config.h"

namespace cairn {

// The LR of one stage.
class LrSchedule {
 public:
  virtual ~LrSchedule() = default;
  // LR of optimizer step `step` (0-based, counted from the stage's start).
  virtual float lr(int64_t step) const = 0;
  // In words, every position a run step: the stage's step 0 is the run's step first_step.
  virtual std::string describe(int64_t first_step) const = 0;
};

// Linear warmup from lr/W to lr over W steps, then cosine to lr·min_lr_ratio at total_steps.
class WarmupCosine final : public LrSchedule {
 public:
  WarmupCosine(float peak, float min_ratio, int64_t warmup_steps, int64_t total_steps);
  float lr(int64_t step) const override;
  std::string describe(int64_t first_step) const override;

 private:
  float peak_, min_;
  int64_t warmup_, total_;
};

// Linear warmup, then constant.
class WarmupConstant final : public LrSchedule {
 public:
  WarmupConstant(float peak, int64_t warmup_steps) : peak_(peak), warmup_(warmup_steps) {}
  float lr(int64_t step) const override;
  std::string describe(int64_t first_step) const override;

 private:
  float peak_;
  int64_t warmup_;
};

// Continual pre-training stage ("Simple and Scalable Strategies to Continually Pre-train LLMs"):
// linear re-warm from start_lr at step 0 to peak at step W (lr = start + (peak − start)·t/W), then
// cosine re-decay to min at total_steps.
class Rewarm final : public LrSchedule {
 public:
  Rewarm(float start, float peak, float min, int64_t warmup_steps, int64_t total_steps);
  float lr(int64_t step) const override;
  std::string describe(int64_t first_step) const override;

 private:
  float start_, peak_, min_;
  int64_t warmup_, total_;
};

// Infinite schedule: linear warmup to peak over W steps (as WarmupCosine); cooldown over D steps
// to c = const_lr with u = (t − W)/D:
//   cosine   c + (peak − c)·(1 + cos πu)/2
//   linear   peak + (c − peak)·u
//   inv_sqrt peak + (c − peak)·h(u)/h(1),  h(x) = 1/sqrt(1 + 10x) − 1;
// then constant c; from anneal_start (when ≥ 0) exponential anneal c·exp(−k(t − T_a)) with
// k = ln(c/min)/(total − T_a), reaching min at t = total.
class Infinite final : public LrSchedule {
 public:
  Infinite(float peak, float const_lr, float min, int64_t warmup_steps, int64_t cooldown_steps,
           CooldownShape shape, int64_t anneal_start, int64_t total_steps);
  float lr(int64_t step) const override;
  std::string describe(int64_t first_step) const override;

 private:
  float peak_, const_, min_;
  int64_t warmup_, cooldown_;
  CooldownShape shape_;
  int64_t anneal_start_, total_;
};

// One stage of a run: the steps [start, end), its LR counted from its first step.
struct ScheduleStage {
  int64_t start = 0, end = 0;
  int64_t warmup = 0;     // warmup steps of the stage
  std::string label;      // whose stage, for messages: "this run", "the small model", "the grown model"
  std::unique_ptr<LrSchedule> schedule;  // queried with step − start
  std::string describe() const;  // positions in run steps, as metrics and messages count them
};

// A run's LR: the stage holding a step gives it. A step before the first stage takes that stage's
// first LR; a step past the last stage's end, the last stage's (decayed) LR.
class StagedSchedule {
 public:
  explicit StagedSchedule(std::vector<ScheduleStage> stages);  // in order, adjacent, at least one
  float lr(int64_t step) const;  // step: the run's optimizer step (0-based)
  std::string describe() const;
  const std::vector<ScheduleStage>& stages() const { return stages_; }

 private:
  std::vector<ScheduleStage> stages_;
};

// schedule.warmup < 1 is a fraction of stage_steps, otherwise a step count; < 0 the kind's default.
int64_t warmup_steps(const ScheduleConfig& cfg, int64_t stage_steps);
// The stage [start, end) of cfg's kind, warmup and peak (cfg.stage_start is not used here).
ScheduleStage make_stage(const ScheduleConfig& cfg, int64_t start, int64_t end, std::string label);
// A run's schedule over [0, total_steps): the stage [cfg.stage_start, total_steps), or with
// growth_step > 0 (in-run growth) the small model's [0, growth_step) and the grown model's
// [growth_step, total_steps), each the configured schedule from warmup.
std::unique_ptr<StagedSchedule> make_schedule(const ScheduleConfig& cfg, int64_t total_steps,
                                              int64_t growth_step = -1);

}  // namespace cairn
