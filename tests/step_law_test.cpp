// Step Law (trainer/step_law.h) against hand-computed values, the start-up hint's threshold and
// caveat, and `cairn plan` (from --params/--tokens and from a config) with its refusals; the
// cluster step model (trainer/comm_plan.h) against hand-computed bytes and times, and
// `cairn plan --nodes` printing it.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "launch/commands.h"
#include "tests/test_support.h"
#include "trainer/comm_plan.h"
#include "trainer/config.h"
#include "trainer/step_law.h"
#include "trainer/run.h"
#include "trainer/trainer.h"
#include "util/error.h"

namespace cairn {
namespace {

TEST(StepLaw, HandComputedValues) {
  // N = 1e8, D = 1e10: log10 η = log10 1.79 − 0.713·8 + 0.307·10 = 0.25285 − 5.704 + 3.07 = −2.38115,
  // η = 4.1577e-3; B = 0.58·10^(0.571·10) = 0.58·512861.4 = 297459.6 tokens.
  const StepLaw s = step_law(1e8, 1e10);
  EXPECT_NEAR(s.lr, 4.1577e-3, 1e-7);
  EXPECT_NEAR(s.batch_tokens, 297459.6, 0.1);
  // D alone sets B: another N, same D, same batch.
  EXPECT_EQ(step_law(7e9, 1e10).batch_tokens, s.batch_tokens);
  EXPECT_THROW(step_law(0, 1e9), Error);
  EXPECT_THROW(step_law(1e8, -1), Error);
  EXPECT_THROW(step_law(1e8, INFINITY), Error);
}

// configs/tiny.toml: 4 layers of 4·128² + 3·128·352 + 2·128 = 200960, + final norm 128:
// N = 803968; D = 1000 steps · 16 sequences · 128 tokens = 2048000.
TrainConfig tiny_preset() {
  TrainConfig c;
  config_apply_file(c, std::string(CAIRN_SOURCE_DIR) + "/configs/tiny.toml");
  c.model.vocab_size = 257;
  return c;
}

TEST(StepLaw, NonEmbeddingParametersAndRunTokens) {
  TrainConfig c = tiny_preset();
  EXPECT_EQ(non_embedding_param_count(c.model), 803968);
  EXPECT_EQ(model_param_count(c.model), 803968 + 2 * 257 * 128);
  c.model.tie_embeddings = true;
  EXPECT_EQ(non_embedding_param_count(c.model), 803968);
  EXPECT_EQ(run_tokens(c, 1), 2048000.0);
  EXPECT_EQ(run_tokens(c, 4), 4 * 2048000.0);
}

// η(803968, 2048000) = 9.550e-3 and B = 2329 tokens: the preset's 3e-3 is 1/3.18 of it.
TEST(StepLaw, HintOnlyWhenMoreThanThreeTimesAway) {
  TrainConfig c = tiny_preset();
  EXPECT_NEAR(step_law(803968, 2048000).lr, 9.5498e-3, 1e-6);
  EXPECT_NEAR(step_law(803968, 2048000).batch_tokens, 2329.15, 0.01);
  std::string h = step_law_hint(c, 1);
  EXPECT_NE(h.find("schedule.lr = 0.003 is 3.18x below the Step Law suggestion 0.00955"), std::string::npos) << h;
  EXPECT_NE(h.find("batch size: 2.33e+03 tokens; this run's: 2.05e+03"), std::string::npos) << h;
  EXPECT_NE(h.find("fitted on dense models trained with AdamW"), std::string::npos) << h;
  EXPECT_EQ(h.find("Fira"), std::string::npos) << h;
  for (float lr : {3.2e-3f, 1e-2f, 2.8e-2f}) {  // 0.335x, 1.05x, 2.93x: within 3x
    c.schedule.lr = lr;
    EXPECT_EQ(step_law_hint(c, 1), "") << lr;
  }
  c.schedule.lr = 3e-2f;
  EXPECT_NE(step_law_hint(c, 1).find("3.14x above"), std::string::npos);
  c.optimizer.name = "fira";
  EXPECT_NE(step_law_hint(c, 1).find("Fira/GaLore"), std::string::npos);
  // 8 ranks: D = 1.64e7, η = 9.550e-3·8^0.307 = 1.808e-2, so 1e-2 is within 3x and 5e-3 is not.
  c.optimizer.name = "adamw";
  c.schedule.lr = 1e-2f;
  EXPECT_EQ(step_law_hint(c, 8), "");
  c.schedule.lr = 5e-3f;
  EXPECT_NE(step_law_hint(c, 8).find("3.62x below the Step Law suggestion 0.0181"), std::string::npos) << step_law_hint(c, 8);
}

class StepLawRun : public ScratchDirTest {};

// Training prints the hint at start (rank 0), and only when the LR is far off.
TEST_F(StepLawRun, TrainingStartPrintsTheHint) {
  TrainConfig c = tiny_train_config(write_byte_dataset(path("d.h5"), 20, 4, random_letter_docs(1, 40, 20)), path("run"));
  c.training.steps = 1;
  auto comm = make_self_communicator();
  for (float lr : {1e-6f, 5e-3f}) {  // the suggestion for N = 20640, D = 32 is 4.35e-3
    c.schedule.lr = lr;
    c.output.run_dir = path(str("run", lr));
    testing::internal::CaptureStdout();
    {
      Trainer trainer(c, *comm);
      TrainingRun(trainer).run();
    }
    const std::string out = testing::internal::GetCapturedStdout();
    EXPECT_EQ(out.find("hint: schedule.lr") != std::string::npos, lr == 1e-6f) << out;
  }
}

std::string run_plan(std::vector<std::string> args) {
  args.insert(args.begin(), {"cairn", "plan"});
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  testing::internal::CaptureStdout();
  try {
    cmd_plan(int(argv.size()), argv.data());
  } catch (...) {
    testing::internal::GetCapturedStdout();
    throw;
  }
  return testing::internal::GetCapturedStdout();
}

TEST(StepLaw, PlanCommandPrintsStepLawBesideTheGrowthPlan) {
  const std::string out = run_plan({"--params", "1e8", "--tokens", "1e10"});
  EXPECT_NE(out.find("= 0.00416"), std::string::npos) << out;
  EXPECT_NE(out.find("= 2.975e+05 tokens"), std::string::npos) << out;
  EXPECT_NE(out.find("G_stack growth (factor 4)"), std::string::npos) << out;
  EXPECT_NE(out.find("grow after d ="), std::string::npos) << out;

  const std::string cfg = run_plan({"--config", std::string(CAIRN_SOURCE_DIR) + "/configs/tiny.toml", "--set",
                                    "model.vocab_size=257"});
  EXPECT_NE(cfg.find("N = 8.04e+05 non-embedding parameters"), std::string::npos) << cfg;
  EXPECT_NE(cfg.find("D = 2.048e+06 tokens"), std::string::npos) << cfg;
  EXPECT_NE(cfg.find("= 0.00955"), std::string::npos) << cfg;
  EXPECT_NE(cfg.find("schedule.lr = 0.003 (0.31x the suggestion), batch 2048 tokens (0.88x)"), std::string::npos) << cfg;
  EXPECT_NE(cfg.find("1 layers (grown to 4)"), std::string::npos) << cfg;  // the configured depth is the target

  EXPECT_NE(error_of([&] { run_plan({"--params", "1e8"}); }).find("--tokens"), std::string::npos);
  EXPECT_NE(error_of([&] { run_plan({"--config", "x.toml", "--params", "1"}); }).find("either"), std::string::npos);
  EXPECT_NE(error_of([&] { run_plan({"--params", "1e8", "--tokens", "1e10", "--factor", "2.5"}); }).find("--factor"),
            std::string::npos);
}

CommPlanInput input() {
  CommPlanInput in;
  in.params = 1000000;     // 4 MB of fp32 gradients
  in.last_rows = 250000;   // a quarter final only at backward's end
  in.compute_s = 3.0;
  in.tokens_per_rank = 2048;
  in.nodes = 2;
  in.link_gbps = 1;
  return in;
}

const double kRate = 1e9 / 8 * kLinkPayloadShare;  // bytes/s of payload on a 1 Gbit/s link

TEST(CommPlan, LinkBytesFollowTheAlgorithm) {
  CommPlanInput in = input();
  // 2 nodes x 1 rank: 2(N-1)/N of 4 MB each way.
  CommPlan p = plan_data_parallel(in);
  EXPECT_DOUBLE_EQ(p.wire_bytes, 4e6);
  EXPECT_DOUBLE_EQ(p.link_bytes, 4e6);
  EXPECT_DOUBLE_EQ(p.comm_s, 4e6 / kRate);
  // 4 nodes: 1.5x; bf16 halves it.
  in.nodes = 4;
  EXPECT_DOUBLE_EQ(plan_data_parallel(in).link_bytes, 6e6);
  in.bf16_wire = true;
  EXPECT_DOUBLE_EQ(plan_data_parallel(in).link_bytes, 3e6);
  // 2 ranks per node: flat sends each rank's share across, hierarchical once per host.
  in = input();
  in.ranks_per_node = 2;
  EXPECT_DOUBLE_EQ(plan_data_parallel(in).link_bytes, 8e6);
  in.hierarchical = true;
  EXPECT_DOUBLE_EQ(plan_data_parallel(in).link_bytes, 4e6);
  // ZeRO-1's gather adds the other hosts' fp32 rows for every rank on the host.
  in.zero1 = true;
  EXPECT_DOUBLE_EQ(plan_data_parallel(in).link_bytes, 4e6 + 0.5 * 4e6 * 2);
  // One node: nothing crosses a link.
  in = input();
  in.nodes = 1;
  p = plan_data_parallel(in);
  EXPECT_EQ(p.link_bytes, 0);
  EXPECT_EQ(p.exposed_s, 0);
  EXPECT_DOUBLE_EQ(p.step_s, 3.0);
  EXPECT_DOUBLE_EQ(p.efficiency, 1.0);
}

TEST(CommPlan, OverlapHidesUpToTheLastBackward) {
  CommPlanInput in = input();
  // comm 0.0337 s is well inside backward (2 s): only the embedding's quarter waits.
  CommPlan p = plan_data_parallel(in);
  EXPECT_DOUBLE_EQ(p.hideable_s, 2.0);
  EXPECT_DOUBLE_EQ(p.exposed_s, 0.25 * p.comm_s);
  // A slow link: what backward cannot hide is exposed.
  in.link_gbps = 0.01;
  p = plan_data_parallel(in);
  EXPECT_DOUBLE_EQ(p.comm_s, 4e6 / (1e7 / 8 * kLinkPayloadShare));
  EXPECT_DOUBLE_EQ(p.exposed_s, p.comm_s - 2.0);
  EXPECT_DOUBLE_EQ(p.step_s, 3.0 + p.exposed_s);
  EXPECT_DOUBLE_EQ(p.tokens_per_s, 2 * 2048 / p.step_s);
  EXPECT_DOUBLE_EQ(p.efficiency, 3.0 / p.step_s);
  // Accumulation: only the last micro-step's backward hides communication.
  in.grad_accum = 4;
  EXPECT_DOUBLE_EQ(plan_data_parallel(in).hideable_s, 0.5);
}

TEST(CommPlan, PlanCommandPrintsTheClusterStep) {
  const std::string config = std::string(CAIRN_SOURCE_DIR) + "/configs/llama-60m.toml";
  const std::string out = run_plan({"--config", config, "--set", "training.grad_accum=1", "--set", "training.zero1=false",
                                    "--nodes", "2", "--link-gbps", "1", "--step-seconds", "3"});
  // 58.07M parameters: 232.3 MB, all of it each way over each link at 2 nodes.
  EXPECT_NE(out.find("Data parallel on 2 nodes x 1 rank, 1 Gbit/s links (fp32 wire, flat)"), std::string::npos) << out;
  EXPECT_NE(out.find("232.3 MB per all-reduce; each host link carries 232.3 MB each way"), std::string::npos) << out;
  EXPECT_NE(out.find("compute per step    3.000 s"), std::string::npos) << out;
  EXPECT_NE(out.find("scaling efficiency"), std::string::npos) << out;
  EXPECT_NE(error_of([&] { run_plan({"--params", "1e8", "--tokens", "1e10", "--nodes", "2"}); }).find("--config"),
            std::string::npos);
  EXPECT_NE(error_of([&] { run_plan({"--config", config, "--nodes", "2", "--link-gbps", "0"}); }).find("--link-gbps"),
            std::string::npos);
  EXPECT_NE(error_of([&] { run_plan({"--config", config, "--nodes", "2", "--step-seconds", "-1"}); }).find("--step-seconds"),
            std::string::npos);
}

}  // namespace
}  // namespace cairn
