// LR schedules against their closed forms: warmup ends, cosine midpoints, the re-warm stage, the
// infinite schedule's cooldown shapes, constant phase and exponential anneal, a run's stages
// (continual stage_start, in-run growth), and the config keys that select them.
#include <gtest/gtest.h>

#include <cmath>

#include "tests/test_support.h"
#include "trainer/config.h"
#include "trainer/schedule.h"
#include "util/error.h"

namespace cairn {
namespace {

constexpr float kTol = 1e-6f;

TEST(Schedule, CosineWarmupAndMidpoint) {
  WarmupCosine s(1e-3f, 0.1f, 10, 110);
  EXPECT_NEAR(s.lr(0), 1e-4f, kTol);
  EXPECT_NEAR(s.lr(9), 1e-3f, kTol);
  EXPECT_NEAR(s.lr(10), 1e-3f, kTol);
  EXPECT_NEAR(s.lr(60), 0.55e-3f, kTol);  // halfway: (peak + min) / 2
  EXPECT_NEAR(s.lr(110), 1e-4f, kTol);
}

TEST(Schedule, RewarmStartsAtStartLrAndReDecays) {
  Rewarm s(1e-4f, 1e-3f, 1e-4f, 10, 110);
  EXPECT_NEAR(s.lr(0), 1e-4f, kTol);                   // continues the old stage's end
  EXPECT_NEAR(s.lr(5), 1e-4f + 0.5f * 9e-4f, kTol);    // linear
  EXPECT_NEAR(s.lr(10), 1e-3f, kTol);                  // peak after W steps
  EXPECT_NEAR(s.lr(60), 0.55e-3f, kTol);               // cosine midpoint
  EXPECT_NEAR(s.lr(110), 1e-4f, kTol);
}

TEST(Schedule, RewarmFromConfigDefaultsToOnePercentAndTheMinimum) {
  ScheduleConfig c;
  c.kind = ScheduleKind::rewarm;
  c.lr = 2e-3f;
  c.min_lr_ratio = 0.1f;
  c.stage_start = 1000;  // a new stage on a run resumed at step 1000
  EXPECT_EQ(warmup_steps(c, 1000), 10);
  auto s = make_schedule(c, 2000);
  EXPECT_NEAR(s->lr(1000), 2e-4f, kTol);
  EXPECT_NEAR(s->lr(1005), 2e-4f + 0.5f * 1.8e-3f, kTol);
  EXPECT_NEAR(s->lr(1010), 2e-3f, kTol);
  EXPECT_NEAR(s->lr(1010 + 495), 1.1e-3f, kTol);
  EXPECT_NEAR(s->lr(2000), 2e-4f, kTol);
  c.start_lr = 0;
  EXPECT_NEAR(make_schedule(c, 2000)->lr(1000), 0.0f, kTol);
}

TEST(Schedule, InfiniteCooldownShapes) {
  const float peak = 1e-3f, c = 4e-4f, min = 1e-5f;
  auto make = [&](CooldownShape shape) { return Infinite(peak, c, min, 10, 100, shape, -1, 1000); };
  // u = 0.5 at step 10 + 50.
  EXPECT_NEAR(make(CooldownShape::cosine).lr(60), (peak + c) / 2, kTol);
  EXPECT_NEAR(make(CooldownShape::linear).lr(60), (peak + c) / 2, kTol);
  const double h_half = 1 / std::sqrt(1 + 5.0) - 1, h_one = 1 / std::sqrt(11.0) - 1;
  EXPECT_NEAR(make(CooldownShape::inv_sqrt).lr(60), peak + (c - peak) * h_half / h_one, kTol);
  for (auto shape : {CooldownShape::cosine, CooldownShape::linear, CooldownShape::inv_sqrt}) {
    const Infinite s = make(shape);
    EXPECT_NEAR(s.lr(9), peak, kTol);   // warmup end
    EXPECT_NEAR(s.lr(10), peak, kTol);  // cooldown start
    EXPECT_NEAR(s.lr(110), c, kTol);    // constant phase
    EXPECT_NEAR(s.lr(999), c, kTol);    // no anneal unless configured
  }
}

TEST(Schedule, InfiniteExponentialAnnealEndsAtTheMinimum) {
  const float peak = 1e-3f, c = 4e-4f, min = 1e-5f;
  const Infinite s(peak, c, min, 10, 100, CooldownShape::cosine, 600, 1000);
  EXPECT_NEAR(s.lr(599), c, kTol);
  EXPECT_NEAR(s.lr(600), c, kTol);
  const double k = std::log(double(c) / min) / 400.0;
  EXPECT_NEAR(s.lr(800), c * std::exp(-k * 200), kTol);
  EXPECT_NEAR(s.lr(1000), min, 1e-9);
}

TEST(Schedule, InfiniteFromConfig) {
  TrainConfig cfg;
  config_apply_toml(cfg, R"(
[schedule]
kind = "infinite"
lr = 1e-3
warmup = 10
cooldown = 100
cooldown_shape = "inv_sqrt"
const_lr_ratio = 0.4
anneal_start = 600
min_lr_ratio = 0.01
)", "test");
  auto s = make_schedule(cfg.schedule, 1000);
  EXPECT_NEAR(s->lr(300), 4e-4f, kTol);
  EXPECT_NEAR(s->lr(1000), 1e-5f, 1e-9);
  EXPECT_NE(error_of([&] { config_apply_override(cfg, "schedule.cooldown_shape=square"); })
                .find("is \"square\": use \"cosine\", \"linear\" or \"inv_sqrt\""),
            std::string::npos);
  cfg.schedule.cooldown_shape = CooldownShape::linear;
  cfg.schedule.anneal_start = 1000;
  EXPECT_THROW(make_schedule(cfg.schedule, 1000), Error);
}

TEST(Schedule, DefaultWarmupDependsOnTheKind) {
  ScheduleConfig c;
  EXPECT_EQ(warmup_steps(c, 1000), 100);
  c.kind = ScheduleKind::rewarm;
  EXPECT_EQ(warmup_steps(c, 1000), 10);
  c.warmup = 25;
  EXPECT_EQ(warmup_steps(c, 1000), 25);
}

TEST(Schedule, AStageStartShiftsTheWholeScheduleAndEarlierStepsTakeItsFirstLr) {
  ScheduleConfig c;  // cosine, warmup 10% of the stage
  c.lr = 1e-3f;
  c.stage_start = 100;
  auto s = make_schedule(c, 210);
  ASSERT_EQ(s->stages().size(), 1u);
  EXPECT_EQ(s->stages()[0].start, 100);
  EXPECT_EQ(s->stages()[0].end, 210);
  EXPECT_EQ(s->stages()[0].warmup, 11);
  const WarmupCosine alone(1e-3f, 0.1f, 11, 110);
  for (int64_t t : {0, 5, 10, 11, 60, 110}) EXPECT_EQ(s->lr(100 + t), alone.lr(t)) << t;
  EXPECT_EQ(s->lr(40), alone.lr(0));      // before the stage
  EXPECT_EQ(s->lr(500), alone.lr(400));   // past the end: the decayed end
  // Positions in run steps, as metrics count them: the cosine ends at the run's step 210.
  EXPECT_EQ(s->describe(), "from step 100: linear warmup over 11 steps to 0.001, cosine to 0.0001 at step 210");
  c.stage_start = 210;
  EXPECT_THROW(make_schedule(c, 210), Error);
}

TEST(Schedule, GrowthGivesTheSmallAndTheGrownModelEachAStageFromWarmup) {
  ScheduleConfig c;
  c.lr = 2e-3f;
  c.warmup = 0.5;
  auto s = make_schedule(c, 12, 4);  // small model: steps [0, 4), grown: [4, 12)
  ASSERT_EQ(s->stages().size(), 2u);
  EXPECT_EQ(s->stages()[0].label, "the small model");
  EXPECT_EQ(s->stages()[1].label, "the grown model");
  EXPECT_EQ(s->stages()[0].warmup, 2);
  EXPECT_EQ(s->stages()[1].warmup, 4);
  const WarmupCosine small(2e-3f, 0.1f, 2, 4), grown(2e-3f, 0.1f, 4, 8);
  for (int64_t t = 0; t < 4; ++t) EXPECT_EQ(s->lr(t), small.lr(t)) << t;
  for (int64_t t = 4; t < 12; ++t) EXPECT_EQ(s->lr(t), grown.lr(t - 4)) << t;
  EXPECT_NEAR(s->lr(4), 5e-4f, kTol);  // the grown stage re-warms
  EXPECT_EQ(s->describe(), "linear warmup over 2 steps to 0.002, cosine to 0.0002 at step 4; then from step 4: "
                           "linear warmup over 4 steps to 0.002, cosine to 0.0002 at step 12");
  c.stage_start = 2;
  EXPECT_THROW(make_schedule(c, 12, 4), Error);  // growth and a stage start do not combine
}

TEST(Schedule, UnknownKindIsRefused) {
  TrainConfig c;
  EXPECT_NE(error_of([&] { config_apply_override(c, "schedule.kind=triangle"); })
                .find("is \"triangle\": use \"cosine\", \"constant\", \"rewarm\" or \"infinite\""),
            std::string::npos);
}

}  // namespace
}  // namespace cairn
