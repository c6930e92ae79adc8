// G_stack growth: grown layer i equals source layer i mod L bit for bit (every parameter and
// buffer row), non-layer tensors equal, the grown weights run forward, growth through weights
// files and `model.init_from`, in-run growth (growth.at_tokens) in a short training run, refusals
// of bad requests, the paper's growth-timing formula, and the norm keys (Mix-LN, LayerNorm
// Scaling) kept by growth, weights files, checkpoints and init_from.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "comm/communicator.h"
#include "launch/commands.h"
#include "model/growth.h"
#include "model/weights_io.h"
#include "tests/test_support.h"
#include "trainer/config.h"
#include "trainer/run.h"
#include "trainer/trainer.h"
#include "util/error.h"
#include "util/rng.h"

namespace cairn {
namespace {

ModelConfig small_config() {
  ModelConfig c;
  c.vocab_size = 64;
  c.dim = 16;
  c.n_layers = 3;
  c.n_heads = 2;
  c.ffn_dim = 40;
  c.seq_len = 8;
  return c;
}

std::vector<float> host_params(LlamaModel& m) {
  std::vector<float> h(size_t(m.params().total()));
  m.backend().copy_to_host(h.data(), m.param_data(), m.params().total() * 4);
  return h;
}

std::string layer_name(const std::string& name, int layer) {  // "model.layers.{i}.<rest>" with i = layer
  const size_t start = std::strlen("model.layers."), dot = name.find('.', start);
  return "model.layers." + std::to_string(layer) + name.substr(dot);
}

TEST(Growth, LayersRepeatInOrderBitForBit) {
  const Backend& be = cpu_backend();
  for (int64_t g : {1, 2, 4}) {
    LlamaModel src(small_config(), be, 2);
    src.init_weights(7);
    LlamaModel dst(grown_config(small_config(), g), be, 2);
    dst.init_weights(99);
    grow_depthwise(src, dst);
    ASSERT_EQ(dst.config().n_layers, 3 * g);
    const auto s = host_params(src), d = host_params(dst);
    int64_t checked = 0;
    for (const auto& r : dst.params().rows()) {
      const std::string from = r.layer >= 0 ? layer_name(r.name, r.layer % 3) : r.name;
      const ParamRow& sr = src.params().at(from);
      ASSERT_EQ(sr.shape, r.shape) << r.name;
      EXPECT_EQ(std::memcmp(s.data() + sr.offset, d.data() + r.offset, size_t(r.numel) * 4), 0)
          << r.name << " differs from " << from;
      ++checked;
    }
    EXPECT_EQ(checked, int64_t(dst.params().rows().size()));
    EXPECT_GT(int64_t(dst.params().rows().size()), int64_t(src.params().rows().size()) * (g > 1));
    // The grown weights run forward.
    std::vector<int32_t> tokens(16), targets(16);
    for (int i = 0; i < 16; ++i) tokens[size_t(i)] = i * 5 % 64, targets[size_t(i)] = (i * 5 + 1) % 64;
    const float loss = dst.forward_loss(tokens.data(), targets.data(), 2);
    EXPECT_TRUE(std::isfinite(loss));
    if (g == 1) {
      EXPECT_EQ(loss, src.forward_loss(tokens.data(), targets.data(), 2));
    }
  }
}

TEST(Growth, SLTrainSupportsAndValuesGrowWithTheirLayer) {
  const Backend& be = cpu_backend();
  ModelConfig c = small_config();
  c.linear.kind = LinearKind::sltrain;
  c.linear.rank = 4;
  c.linear.density = 0.1f;
  LlamaModel src(c, be, 1);
  src.init_weights(3);
  LlamaModel dst(grown_config(c, 2), be, 1);
  dst.init_weights(4);
  grow_depthwise(src, dst);
  ASSERT_FALSE(dst.buffers().rows().empty());
  for (const auto& b : dst.buffers().rows()) {
    const std::string from = b.layer >= 0 ? layer_name(b.name, b.layer % 3) : b.name;
    const int i = src.buffers().find(from);
    ASSERT_GE(i, 0) << from;
    EXPECT_EQ(b.data, src.buffers().rows()[size_t(i)].data) << b.name;
  }
  const auto s = host_params(src), d = host_params(dst);
  for (const auto& r : dst.params().rows()) {
    const ParamRow& sr = src.params().at(r.layer >= 0 ? layer_name(r.name, r.layer % 3) : r.name);
    EXPECT_EQ(std::memcmp(s.data() + sr.offset, d.data() + r.offset, size_t(r.numel) * 4), 0) << r.name;
  }
  std::vector<int32_t> tokens(8, 5), targets(8, 6);
  EXPECT_TRUE(std::isfinite(dst.forward_loss(tokens.data(), targets.data(), 1)));
}

// Mix-LN 4 layers, alpha 0.25 (layer 0 Post-LN) grown x2: 8 layers, alpha kept, so layers 0, 1
// are Post-LN. Layer 1 (Post) comes from Pre-LN layer 1 and layer 4 (Pre) from Post-LN layer 0:
// each takes its source's first and second norm gains as its own first and second.
TEST(Growth, MixLnKeepsAlphaAndTakesNormGainsBySlot) {
  const Backend& be = cpu_backend();
  ModelConfig c = small_config();
  c.n_layers = 4;
  c.norm_layout = "mix";
  c.mix_ln_alpha = 0.25;
  LlamaModel src(c, be, 1);
  src.init_weights(3);
  Rng rng(5);
  for (auto& p : src.param_span()) p += 0.1f * rng.normal();  // distinct norm gains
  const ModelConfig grown = grown_config(c, 2);
  EXPECT_EQ(grown.mix_ln_alpha, 0.25);
  EXPECT_EQ(grown.post_ln_layers(), 2);
  EXPECT_EQ(layers_changing_layout(c, 2), (std::vector<int64_t>{1, 4}));
  LlamaModel dst(grown, be, 1);
  grow_depthwise(src, dst);
  const auto s = host_params(src), d = host_params(dst);
  auto same = [&](const std::string& to, const std::string& from) {
    const ParamRow &a = dst.params().at(to), &b = src.params().at(from);
    return std::memcmp(d.data() + a.offset, s.data() + b.offset, size_t(a.numel) * 4) == 0;
  };
  EXPECT_TRUE(same("model.layers.1.post_attention_layernorm.weight", "model.layers.1.input_layernorm.weight"));
  EXPECT_TRUE(same("model.layers.1.post_feedforward_layernorm.weight", "model.layers.1.post_attention_layernorm.weight"));
  EXPECT_TRUE(same("model.layers.4.input_layernorm.weight", "model.layers.0.post_attention_layernorm.weight"));
  EXPECT_TRUE(same("model.layers.4.post_attention_layernorm.weight", "model.layers.0.post_feedforward_layernorm.weight"));
  EXPECT_TRUE(same("model.layers.0.post_feedforward_layernorm.weight", "model.layers.0.post_feedforward_layernorm.weight"));
  EXPECT_TRUE(same("model.layers.5.input_layernorm.weight", "model.layers.1.input_layernorm.weight"));
  EXPECT_TRUE(same("model.layers.4.mlp.up_proj.weight", "model.layers.0.mlp.up_proj.weight"));
  // Every row came from somewhere: the grown model equals none of its fresh init.
  std::vector<int32_t> tokens(8, 5), targets(8, 6);
  EXPECT_TRUE(std::isfinite(dst.forward_loss(tokens.data(), targets.data(), 1)));
  // Growth cannot change the norm keys.
  ModelConfig scaled = grown;
  scaled.norm_layout = "pre";
  scaled.norm_scaling = true;
  LlamaModel other(scaled, be, 1);
  EXPECT_NE(error_of([&] { grow_depthwise(src, other); }).find("model.norm_layout"), std::string::npos);
  EXPECT_TRUE(layers_changing_layout(small_config(), 4).empty());
}

TEST(Growth, BufferRowsGrowWithTheirLayer) {
  // Buffers (SLTrain supports) are copied by the same name rule; exercise it on planted rows.
  const Backend& be = cpu_backend();
  LlamaModel src(small_config(), be, 1);
  LlamaModel dst(grown_config(small_config(), 2), be, 1);
  for (int l = 0; l < 3; ++l) src.buffers().add("model.layers." + std::to_string(l) + ".x.support", {2}, l).data = {l, 10 * l};
  src.buffers().add("extra.table", {1}, -1).data = {42};
  for (int l = 0; l < 6; ++l) dst.buffers().add("model.layers." + std::to_string(l) + ".x.support", {2}, l).data = {0, 0};
  dst.buffers().add("extra.table", {1}, -1).data = {0};
  grow_depthwise(src, dst);
  for (int l = 0; l < 6; ++l)
    EXPECT_EQ(dst.buffers().rows()[size_t(l)].data, (std::vector<int32_t>{l % 3, 10 * (l % 3)}));
  EXPECT_EQ(dst.buffers().rows()[6].data, std::vector<int32_t>{42});
}

TEST(Growth, IncompatibleRequestsAreRefused) {
  const Backend& be = cpu_backend();
  EXPECT_THROW(grown_config(small_config(), 0), Error);
  EXPECT_THROW(grown_config(small_config(), -2), Error);
  LlamaModel src(small_config(), be, 1);
  auto wider = grown_config(small_config(), 2);
  wider.dim = 32;
  wider.ffn_dim = 80;
  LlamaModel w(wider, be, 1);
  try {
    grow_depthwise(src, w);
    FAIL() << "a width change was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.dim"), std::string::npos) << e.what();
  }
  auto odd = small_config();
  odd.n_layers = 4;  // not a multiple of 3
  LlamaModel o(odd, be, 1);
  EXPECT_THROW(grow_depthwise(src, o), Error);
  EXPECT_THROW(resolve_weights_path("/nonexistent/cairn/model.h5"), Error);
}

TEST(Growth, PlanFormulaMatchesThePaperExample) {
  // N = 7e9, D = 2e12: d ≈ 11.1B tokens.
  EXPECT_NEAR(gstack_growth_tokens(7e9, 2e12) / 1e9, 11.1, 0.05);
  EXPECT_THROW(gstack_growth_tokens(0, 1e9), Error);
}

class GrowthRunTest : public ScratchDirTest {
 protected:
  void SetUp() override {
    ScratchDirTest::SetUp();
    write_byte_dataset(path("d.h5"), 60, 10, [](int d) {
      std::vector<uint32_t> doc(40);
      for (size_t i = 0; i < doc.size(); ++i) doc[i] = uint32_t((d * 7 + i * 3) % 200);
      return doc;
    });
    config_apply_file(cfg_, std::string(CAIRN_SOURCE_DIR) + "/configs/tiny-test.toml");
    cfg_.data.train = path("d.h5");
    cfg_.model.seq_len = 16;
    cfg_.model.dim = 16;
    cfg_.model.ffn_dim = 40;
    cfg_.training.threads = 1;
    cfg_.training.peak_flops = 1e10;
    cfg_.output.plot = false;
    cfg_.output.run_dir = path("run");
  }
  TrainConfig cfg_;
};

TEST_F(GrowthRunTest, InRunGrowthDeepensTheModelAndKeepsTraining) {
  cfg_.training.steps = 12;
  cfg_.growth.at_tokens = 5 * 4 * 16 + 1;  // crossed by step 6 (4 sequences of 16 tokens per step)
  cfg_.growth.factor = 3;
  cfg_.schedule.warmup = 0.5;              // 3 of the grown stage's 6 steps
  auto comm = make_self_communicator();
  Trainer t(cfg_, *comm);
  for (int s = 0; s < 5; ++s) t.train_step();
  EXPECT_EQ(t.config().model.n_layers, 2);
  t.train_step();  // crosses at_tokens: grows after this step's update
  EXPECT_EQ(t.config().model.n_layers, 6);
  EXPECT_EQ(t.model().config().n_layers, 6);
  EXPECT_EQ(t.state().tokens, 6 * 4 * 16);
  // Right after growth, layers 1, 3 and 5 are the same small layer 1; layer 0 is another one.
  const auto p = host_params(t.model());
  const auto& table = t.model().params();
  auto row = [&](int layer) {
    const auto& r = table.at("model.layers." + std::to_string(layer) + ".self_attn.q_proj.weight");
    return std::vector<float>(p.begin() + r.offset, p.begin() + r.offset + r.numel);
  };
  EXPECT_EQ(row(1), row(3));
  EXPECT_EQ(row(1), row(5));
  EXPECT_NE(row(0), row(1));
  // The grown stage restarts from warmup: step 6 is its first.
  EXPECT_NEAR(t.lr_at(6), cfg_.schedule.lr / 3, 1e-9);
  const double peak = cfg_.schedule.lr, min = peak * cfg_.schedule.min_lr_ratio;  // small stage: 6 steps
  EXPECT_NEAR(t.lr_at(5), min + (peak - min) * 0.5 * (1 + std::cos(M_PI * 2 / 3)), 1e-8);
  for (int s = 6; s < 12; ++s) EXPECT_TRUE(std::isfinite(t.train_step().loss));
  EXPECT_EQ(t.state().step, 12);
  EXPECT_EQ(t.config().model.n_layers, 6);
}

// What a user plotting metrics.jsonl sees at the growth: the growth step ends a record of the
// small model (its loss and a val_loss of its own, even off log_every and eval_every), the next
// record is the grown model's, and the messages count run steps as the records do.
TEST_F(GrowthRunTest, TheGrowthStepRecordIsTheSmallModelsAndMessagesCountRunSteps) {
  cfg_.training.steps = 12;
  cfg_.growth.at_tokens = 5 * 4 * 16 + 1;  // grows after step 6
  cfg_.training.log_every = 4;             // records at 4, 8, 12
  cfg_.training.eval_every = 5;            // validation at 5, 10, 12
  struct Run {
    std::map<int64_t, nlohmann::json> records;
    std::string out;
  };
  auto run = [&](int64_t factor) {
    TrainConfig c = cfg_;
    c.growth.factor = factor;
    c.output.run_dir = path(str("run_g", factor));
    auto comm = make_self_communicator();
    Trainer t(c, *comm);
    TrainingRun t_run(t);
    Run r;
    testing::internal::CaptureStdout();
    t_run.run();
    r.out = testing::internal::GetCapturedStdout();
    std::ifstream in(c.output.run_dir + "/metrics.jsonl");
    for (std::string line; std::getline(in, line);) {
      const auto j = nlohmann::json::parse(line);
      r.records[j["step"].get<int64_t>()] = j;
    }
    return r;
  };
  // Growing by 1 keeps the small model: its step-6 values are the small model's whatever the order.
  const Run same = run(1), grown = run(2);
  ASSERT_TRUE(grown.records.count(6)) << grown.out;
  const auto& at = grown.records.at(6);
  ASSERT_TRUE(at.contains("val_loss")) << at.dump();
  EXPECT_EQ(at["val_loss"].get<double>(), same.records.at(6)["val_loss"].get<double>());
  EXPECT_EQ(at["loss"].get<double>(), same.records.at(6)["loss"].get<double>());  // steps 5 and 6 only
  EXPECT_FALSE(grown.records.count(7));
  EXPECT_NE(grown.records.at(8)["loss"].get<double>(), same.records.at(8)["loss"].get<double>());
  // The record line comes before the growth message, and the grown stage's LR is said in run steps.
  const size_t record = grown.out.find("step 6/12"), message = grown.out.find("G_stack: grew to 4 layers at step 6 (");
  ASSERT_NE(message, std::string::npos) << grown.out;
  EXPECT_LT(record, message) << grown.out;
  EXPECT_NE(grown.out.find("LR from step 6: linear warmup over 1 steps to 0.003, cosine to 0.0003 at step 12",
                           message),
            std::string::npos)
      << grown.out;
}

TEST_F(GrowthRunTest, CheckpointAfterGrowthResumesExactly) {
  cfg_.training.steps = 12;
  cfg_.growth.at_tokens = 5 * 4 * 16 + 1;  // grows after step 6
  cfg_.growth.factor = 2;
  auto comm = make_self_communicator();
  Trainer a(cfg_, *comm);
  for (int s = 0; s < 8; ++s) a.train_step();
  const std::string ckpt = TrainingRun(a).save_checkpoint();
  std::vector<float> expected;
  for (int s = 8; s < 12; ++s) expected.push_back(a.train_step().loss);

  Trainer b(cfg_, *comm);  // the run's own config: 2 layers, growth configured
  TrainingRun(b).load_checkpoint(ckpt);
  EXPECT_EQ(b.config().model.n_layers, 4);
  std::vector<float> got;
  for (int s = 8; s < 12; ++s) got.push_back(b.train_step().loss);
  EXPECT_EQ(got, expected);
  EXPECT_EQ(b.config().model.n_layers, 4);  // resumed after the growth step: no second growth

  // training.reset_optimizer: same weights and step, fresh optimizer, so the next step differs.
  cfg_.training.reset_optimizer = true;
  Trainer c(cfg_, *comm);
  TrainingRun(c).load_checkpoint(ckpt);
  EXPECT_EQ(c.state().step, 8);
  EXPECT_NE(c.train_step().loss, 0.0f);
  EXPECT_NE(host_params(c.model()), host_params(b.model()));
}

TEST_F(GrowthRunTest, ResumingPastTheGrowthDoesNotClaimAGrowthNow) {
  cfg_.training.steps = 12;
  cfg_.growth.at_tokens = 5 * 4 * 16 + 1;  // grows after step 6
  cfg_.growth.factor = 2;
  auto comm = make_self_communicator();
  std::string ckpt;
  {
    Trainer a(cfg_, *comm);
    for (int s = 0; s < 8; ++s) a.train_step();
    ckpt = TrainingRun(a).save_checkpoint();
  }
  Trainer b(cfg_, *comm);
  testing::internal::CaptureStdout();
  TrainingRun(b).load_checkpoint(ckpt);
  const std::string out = testing::internal::GetCapturedStdout();
  EXPECT_EQ(out.find("grew to"), std::string::npos) << out;  // it grew at step 6, in the earlier run
  EXPECT_NE(out.find("past this run's growth at step 6"), std::string::npos) << out;
  EXPECT_NE(out.find("grown 4-layer model"), std::string::npos) << out;
  EXPECT_EQ(b.state().step, 8);
  EXPECT_EQ(b.config().model.n_layers, 4);
}

TEST_F(GrowthRunTest, GrownWeightsFileStartsANewRun) {
  cfg_.training.steps = 3;
  auto comm = make_self_communicator();
  {
    Trainer t(cfg_, *comm);
    TrainingRun t_run(t);
    t_run.run();
  }
  // What `cairn grow` does: load, grow, save with the updated config.
  TrainConfig stored;
  config_apply_toml(stored, read_weights_config(path("run/model.h5")), "stored");
  LlamaModel src(stored.model, cpu_backend(), 1);
  load_model_weights(src, resolve_weights_path(path("run")));
  stored.model = grown_config(stored.model, 2);
  LlamaModel dst(stored.model, cpu_backend(), 1);
  grow_depthwise(src, dst);
  save_model_weights(dst, path("grown.h5"), config_to_toml(stored));

  cfg_.model.n_layers = 4;
  cfg_.init_from = path("grown.h5");
  cfg_.output.run_dir = path("run2");
  Trainer t2(cfg_, *comm);
  EXPECT_EQ(host_params(t2.model()), host_params(dst));
  EXPECT_TRUE(std::isfinite(t2.train_step().loss));
  cfg_.model.n_layers = 2;  // shapes disagree with the file: refused, naming both values
  const std::string e = error_of([&] { Trainer t(cfg_, *comm); });
  EXPECT_NE(e.find("model.n_layers = 4"), std::string::npos) << e;
  EXPECT_NE(e.find("model.n_layers = 2"), std::string::npos) << e;
}

// The norm keys are stored with the weights, kept by `cairn grow`, checked by init_from and by
// --resume (a model cannot silently change what its norms do).
TEST_F(GrowthRunTest, NormKeysTravelWithWeightsGrowthCheckpointsAndInitFrom) {
  cfg_.training.steps = 2;
  cfg_.model.n_layers = 4;
  cfg_.model.norm_layout = "mix";
  cfg_.model.mix_ln_alpha = 0.5;
  auto comm = make_self_communicator();
  std::string ckpt;
  {
    Trainer t(cfg_, *comm);
    t.train_step();
    ckpt = TrainingRun(t).save_checkpoint();
  }
  TrainConfig finished = cfg_;
  finished.output.run_dir = path("finished");
  {
    Trainer trainer(finished, *comm);
    TrainingRun(trainer).run();
  }
  std::vector<std::string> args{"cairn", "grow", "--from", path("finished"), "--factor", "2", "--out", path("grown.h5")};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  testing::internal::CaptureStdout();
  ASSERT_EQ(cmd_grow(int(argv.size()), argv.data()), 0);
  const std::string out = testing::internal::GetCapturedStdout();
  EXPECT_NE(out.find("keeps model.mix_ln_alpha = 0.5 (4 Post-LN layers)"), std::string::npos) << out;
  TrainConfig stored;
  config_apply_toml(stored, read_weights_config(path("grown.h5")), "stored");
  EXPECT_EQ(stored.model.n_layers, 8);
  EXPECT_EQ(stored.model.norm_layout, "mix");
  EXPECT_EQ(stored.model.mix_ln_alpha, 0.5);
  LlamaModel grown(stored.model, cpu_backend(), 1);
  load_model_weights(grown, path("grown.h5"));
  EXPECT_GE(grown.params().find("model.layers.3.post_feedforward_layernorm.weight"), 0);

  // Resuming with another layout, alpha or scaling is refused, naming the key.
  for (const char* change : {"model.norm_layout=\"pre\"", "model.mix_ln_alpha=0.25"}) {
    TrainConfig other = cfg_;
    config_apply_override(other, change);
    Trainer t(other, *comm);
    const std::string e = error_of([&] { TrainingRun(t).load_checkpoint(ckpt); });
    EXPECT_NE(e.find(std::string(change).substr(0, std::string(change).find('='))), std::string::npos) << e;
  }
  // init_from with a different norm_scaling: the weights would mean something else.
  TrainConfig scaled = cfg_;
  scaled.model.norm_layout = "pre";
  scaled.model.norm_scaling = true;
  scaled.output.run_dir = path("run_scaled");
  scaled.training.steps = 1;
  {
    Trainer trainer(scaled, *comm);
    TrainingRun(trainer).run();
  }
  TrainConfig plain = scaled;
  plain.model.norm_scaling = false;
  plain.init_from = path("run_scaled");
  plain.output.run_dir = path("run_plain");
  const std::string e = error_of([&] { Trainer t(plain, *comm); });
  EXPECT_NE(e.find("model.norm_scaling = true"), std::string::npos) << e;
  TrainConfig stored_scaled;
  config_apply_toml(stored_scaled, read_weights_config(path("run_scaled/model.h5")), "stored");
  EXPECT_TRUE(stored_scaled.model.norm_scaling);
}

TEST_F(GrowthRunTest, GrowRefusesAnExistingOutputLikeExport) {
  namespace fs = std::filesystem;
  cfg_.training.steps = 2;
  auto comm = make_self_communicator();
  {
    Trainer trainer(cfg_, *comm);
    TrainingRun(trainer).run();
  }
  auto grow = [&](const std::string& out) {
    std::vector<std::string> args{"cairn", "grow", "--from", path("run"), "--factor", "2", "--out", out};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    return cmd_grow(int(argv.size()), argv.data());
  };
  ASSERT_EQ(grow(path("grown.h5")), 0);
  const auto size = fs::file_size(path("grown.h5"));
  const auto written = fs::last_write_time(path("grown.h5"));
  const std::string e = error_of([&] { grow(path("grown.h5")); });
  EXPECT_NE(e.find("'" + path("grown.h5") + "' already exists"), std::string::npos) << e;
  EXPECT_EQ(fs::file_size(path("grown.h5")), size);
  EXPECT_EQ(fs::last_write_time(path("grown.h5")), written);
  // The source itself is an existing file too: growing onto it is refused, not a clobbered run.
  EXPECT_NE(error_of([&] { grow(path("run/model.h5")); }).find("already exists"), std::string::npos);
}

}  // namespace
}  // namespace cairn
