// The TOML config key table: files, --set overrides, unknown keys and wrong types named in the
// error, and a printed config that reads back to the same config.
#include <gtest/gtest.h>

#include "tests/test_support.h"
#include "trainer/config.h"
#include "util/error.h"

namespace cairn {
namespace {

TEST(Config, FileAndOverridesApply) {
  TrainConfig c;
  config_apply_toml(c, "[model]\ndim = 64\nlinear = \"sltrain\"\n[schedule]\nlr = 1e-3\n", "test.toml");
  EXPECT_EQ(c.model.dim, 64);
  EXPECT_EQ(c.model.linear.kind, LinearKind::sltrain);
  EXPECT_FLOAT_EQ(c.schedule.lr, 1e-3f);
  config_apply_override(c, "training.steps=7");
  config_apply_override(c, "optimizer.name=fira");  // a bare word is a string
  config_apply_override(c, "output.plot=false");
  EXPECT_EQ(c.training.steps, 7);
  EXPECT_EQ(c.optimizer.name, OptimizerName::fira);
  EXPECT_FALSE(c.output.plot);
}

// The choice keys are enums parsed once, where the config is read: every allowed name reads back
// from the printed config, any other name or type is refused listing the allowed ones.
TEST(Config, ChoiceKeysTakeTheirNamesAndListThemWhenRefused) {
  const std::vector<std::pair<std::string, std::vector<std::string>>> choices = {
      {"device", {"cpu", "cuda"}},
      {"optimizer.name", {"adamw", "fira", "galore"}},
      {"optimizer.residual_form", {"code", "paper"}},
      {"schedule.kind", {"cosine", "constant", "rewarm", "infinite"}},
      {"schedule.cooldown_shape", {"cosine", "linear", "inv_sqrt"}},
      {"training.precision", {"fp32", "tf32", "bf16"}},
      {"training.grad_wire", {"fp32", "bf16"}},
      {"model.norm_layout", {"pre", "mix"}},
      {"model.sltrain_path", {"auto", "materialized", "factored"}},
      {"model.linear", {"dense", "lowrank", "sltrain"}}};
  for (const auto& [key, names] : choices) {
    SCOPED_TRACE(key);
    std::string allowed;
    for (size_t i = 0; i < names.size(); ++i)
      allowed += (i == 0 ? "" : i + 1 == names.size() ? " or " : ", ") + ("\"" + names[i] + "\"");
    for (const auto& name : names) {
      TrainConfig c;
      config_apply_override(c, key + "=" + name);
      EXPECT_NE(config_to_toml(c).find(key.substr(key.find('.') + 1) + " = \"" + name + "\""), std::string::npos);
      TrainConfig back;
      config_apply_toml(back, config_to_toml(c), "printed");
      EXPECT_TRUE(config_diff(c, back, {key}).empty()) << name;
    }
    TrainConfig c;
    std::string e = error_of([&] { config_apply_override(c, key + "=bogus"); });
    EXPECT_NE(e.find("is \"bogus\": use " + allowed), std::string::npos) << e;
    e = error_of([&] { config_apply_override(c, key + "=3"); });
    EXPECT_NE(e.find("must be one of the strings " + allowed), std::string::npos) << e;
  }
}

TEST(Config, DiffNamesTheKeysThatDifferInTheGivenOrder) {
  TrainConfig a, b;
  b.model.dim = 64;
  b.optimizer.name = OptimizerName::fira;
  const auto d = config_diff(a, b, {"optimizer.name", "model.n_layers", "model.dim"});
  ASSERT_EQ(d.size(), 2u);
  EXPECT_EQ(d[0].key, "optimizer.name");
  EXPECT_EQ(d[0].a, "\"adamw\"");
  EXPECT_EQ(d[0].b, "\"fira\"");
  EXPECT_EQ(d[1].key, "model.dim");
  EXPECT_EQ(d[1].a, "128");
  EXPECT_EQ(d[1].b, "64");
  EXPECT_TRUE(config_diff(a, a, config_key_names()).empty());
}

TEST(Config, UnknownKeyIsNamedWithTheSectionsKeys) {
  TrainConfig c;
  const std::string msg = error_of([&] { config_apply_toml(c, "[model]\ndimm = 3\n", "run.toml"); });
  EXPECT_NE(msg.find("model.dimm"), std::string::npos) << msg;
  EXPECT_NE(msg.find("run.toml"), std::string::npos) << msg;
  EXPECT_NE(msg.find("model.dim"), std::string::npos) << msg;  // the valid keys are listed
  EXPECT_NE(error_of([&] { config_apply_override(c, "trainig.steps=3"); }).find("trainig.steps"), std::string::npos);
}

// `--config runs/x` (a directory) read as an empty file: training went on with the defaults.
TEST(Config, AConfigPathThatIsNotAFileIsRefused) {
  TrainConfig c;
  const std::string dir = std::string(CAIRN_SOURCE_DIR) + "/configs";
  const std::string msg = error_of([&] { config_apply_file(c, dir); });
  EXPECT_NE(msg.find("is a directory"), std::string::npos) << msg;
  EXPECT_NE(error_of([&] { config_apply_file(c, dir + "/missing.toml"); }).find("no such file"), std::string::npos);
}

TEST(Config, WrongTypesAreNamed) {
  TrainConfig c;
  EXPECT_NE(error_of([&] { config_apply_toml(c, "[model]\ndim = \"wide\"\n", "t"); }).find("'model.dim'"), std::string::npos);
  EXPECT_NE(error_of([&] { config_apply_override(c, "output.plot=3"); }).find("boolean"), std::string::npos);
  EXPECT_NE(error_of([&] { config_apply_override(c, "data.seed=-1"); }).find("non-negative"), std::string::npos);
  EXPECT_NE(error_of([&] { config_apply_override(c, "model.linear=sparse"); }).find("sltrain"), std::string::npos);
  EXPECT_NE(error_of([&] { config_apply_override(c, "justakey"); }).find("section.key=value"), std::string::npos);
  EXPECT_NE(error_of([&] { config_apply_toml(c, "[model\ndim = 3", "broken.toml"); }).find("broken.toml line 1"), std::string::npos);
}

TEST(Config, ValidationNamesTheKey) {
  TrainConfig c;
  c.data.train = "x.h5";
  c.model.n_heads = 5;
  EXPECT_NE(error_of([&] { config_validate(c); }).find("model.n_heads"), std::string::npos);
  c = TrainConfig();
  EXPECT_NE(error_of([&] { config_validate(c); }).find("data.train"), std::string::npos);
  c.data.train = "x.h5";
  c.training.micro_batch = 0;
  EXPECT_NE(error_of([&] { config_validate(c); }).find("training.micro_batch"), std::string::npos);
  EXPECT_NE(error_of([&] { config_load("/nonexistent/run.toml", {}); }).find("no such file"), std::string::npos);
}

// Values no run can use are refused up front, naming the key, instead of a NaN loss some steps
// later with advice to lower the LR, or a silently negative MFU.
TEST(Config, OutOfRangeOptimizerAndTrainingValuesAreNamed) {
  for (const std::string kv : {"schedule.lr=inf", "optimizer.beta1=1.5", "optimizer.beta2=-1", "optimizer.eps=0",
                               "optimizer.weight_decay=-1", "optimizer.grad_clip=-1", "training.threads=-2",
                               "training.comm_timeout_s=0", "training.peak_flops=-1"}) {
    const std::string e = error_of([&] { config_load("", {"data.train=x.h5", kv}); });
    EXPECT_NE(e.find(kv.substr(0, kv.find('='))), std::string::npos) << kv << ": " << e;
  }
  EXPECT_NO_THROW(config_load("", {"data.train=x.h5", "optimizer.beta1=0", "optimizer.grad_clip=0",
                                   "optimizer.weight_decay=0", "training.threads=0", "training.peak_flops=0"}));
}

// tf32 needs the CUDA backend (bf16 runs on either); anything else is not a precision. Both errors
// say what to set.
TEST(Config, PrecisionIsCheckedAgainstTheDevice) {
  TrainConfig c;
  c.data.train = "x.h5";
  config_validate(c);  // fp32 on the CPU
  c.training.precision = Precision::bf16;
  config_validate(c);  // bf16 on the CPU
  c.training.precision = Precision::tf32;
  const std::string t = error_of([&] { config_validate(c); });
  EXPECT_NE(t.find("needs device = \"cuda\""), std::string::npos) << t;
  EXPECT_NE(t.find("tf32"), std::string::npos) << t;
  const std::string e = error_of([&] { config_apply_override(c, "training.precision=fp16"); });
  EXPECT_NE(e.find("config key 'training.precision' in --set training.precision=fp16 is \"fp16\": use \"fp32\", "
                   "\"tf32\" or \"bf16\""),
            std::string::npos)
      << e;
  config_apply_override(c, "training.precision=bf16");
  EXPECT_EQ(c.training.precision, Precision::bf16);
}

// Configs written before training.eval_windows (presets people copied, configs stored in
// checkpoints and weights files) still load: eval_batches is read and rewritten as the windows it
// meant, with a note; it is never written again, and both together are refused.
TEST(Config, TheDeprecatedEvalBatchesOfOldConfigsBecomesEvalWindows) {
  TrainConfig c;
  config_apply_toml(c, "[training]\nmicro_batch = 4\neval_batches = 3\n", "old.toml");
  c.data.train = "x.h5";
  config_validate(c);
  const auto notes = config_upgrade(c);
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("set training.eval_windows = 12 instead"), std::string::npos) << notes[0];
  EXPECT_EQ(c.training.eval_windows, 12);
  EXPECT_TRUE(config_upgrade(c).empty());
  const std::string text = config_to_toml(c);
  EXPECT_EQ(text.find("eval_batches"), std::string::npos) << text;
  EXPECT_NE(text.find("eval_windows = 12\n"), std::string::npos) << text;
  EXPECT_EQ(config_describe().find("eval_batches"), std::string::npos);

  TrainConfig both;
  config_apply_toml(both, "[training]\neval_batches = 3\neval_windows = 10\n", "both.toml");
  both.data.train = "x.h5";
  EXPECT_NE(error_of([&] { config_validate(both); }).find("remove eval_batches"), std::string::npos);
}

TEST(Config, PrintedConfigReadsBackIdentically) {
  TrainConfig c;
  config_apply_toml(c, "[optimizer]\nbeta2 = 0.95\n[schedule]\nlr = 0.0003\n[model]\nlinear = \"lowrank\"\n", "t");
  const std::string text = config_to_toml(c);
  EXPECT_NE(text.find("beta2 = 0.95\n"), std::string::npos) << text;  // floats print shortest
  TrainConfig back;
  config_apply_toml(back, text, "printed");
  EXPECT_EQ(config_to_toml(back), text);
}

}  // namespace
}  // namespace cairn
