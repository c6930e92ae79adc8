// Learning-rate schedules: a pure function of the optimizer step, so a resumed run gets the same
// LR as the uninterrupted one without saving anything but the step. New kinds (re-warming
// stages, infinite schedules) plug in through make_schedule.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "trainer/train_config.h"

namespace cairn {

class LrSchedule {
 public:
  virtual ~LrSchedule() = default;
  // LR of optimizer step `step` (0-based).
  virtual float lr(int64_t step) const = 0;
  virtual std::string describe() const = 0;
};

// Linear warmup from lr/W to lr over W steps, then cosine to lr·min_lr_ratio at total_steps.
class WarmupCosine final : public LrSchedule {
 public:
  WarmupCosine(float peak, float min_ratio, int64_t warmup_steps, int64_t total_steps);
  float lr(int64_t step) const override;
  std::string describe() const override;

 private:
  float peak_, min_;
  int64_t warmup_, total_;
};

// Linear warmup, then constant.
class WarmupConstant final : public LrSchedule {
 public:
  WarmupConstant(float peak, int64_t warmup_steps) : peak_(peak), warmup_(warmup_steps) {}
  float lr(int64_t step) const override;
  std::string describe() const override;

 private:
  float peak_;
  int64_t warmup_;
};

// schedule.warmup < 1 is a fraction of total_steps, otherwise a step count.
int64_t warmup_steps(const ScheduleConfig& cfg, int64_t total_steps);
std::unique_ptr<LrSchedule> make_schedule(const ScheduleConfig& cfg, int64_t total_steps);

}  // namespace cairn
