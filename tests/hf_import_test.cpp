// Hugging Face import (model/hf_import.h) against the committed checkpoints of
// tests/golden/hf/ (written by transformers' save_pretrained, tools/reference/hf_fixtures.py):
// cairn's logits on the imported weights equal transformers' golden logits; import then export
// gives back every tensor bit for bit in its own dtype and the same config; config.json's two
// rope spellings; refusals naming the field; the run config's unset keys taking the checkpoint's
// values and set keys that disagree refused; load errors that change nothing; and the model
// directory's tokenizer with its EOS.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "data/hf_tokenizer.h"
#include "launch/hf_export.h"
#include "model/hf_import.h"
#include "model/safetensors.h"
#include "tests/test_support.h"
#include "trainer/config.h"

namespace cairn {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string fixture(const std::string& name) { return std::string(CAIRN_SOURCE_DIR) + "/tests/golden/hf/" + name; }

const std::vector<std::string> kFixtures = {"mha", "gqa_tied", "gqa_llama3_bf16", "sharded"};

class HfFixture : public ScratchDirTest, public ::testing::WithParamInterface<std::string> {
 protected:
  void SetUp() override {
    ScratchDirTest::SetUp();
    cpu_set_threads(1);
  }
};
INSTANTIATE_TEST_SUITE_P(Golden, HfFixture, ::testing::ValuesIn(kFixtures));

// The fixture's golden input ids [B, T] and transformers' float64 logits [B, T, V] (as F32).
struct GoldenLogits {
  int64_t B, T;
  std::vector<int32_t> ids;
  std::vector<float> logits;
};
GoldenLogits golden_logits(const std::string& dir) {
  const SafetensorsFile f = SafetensorsFile::open(dir + "/logits.safetensors");
  GoldenLogits g;
  g.B = f.at("input_ids").shape[0];
  g.T = f.at("input_ids").shape[1];
  for (float x : f.read("input_ids")) g.ids.push_back(int32_t(x));
  g.logits = f.read("logits");
  return g;
}

TEST_P(HfFixture, ImportedModelGivesTransformersLogits) {
  const std::string dir = fixture(GetParam());
  const GoldenLogits g = golden_logits(dir);
  ModelConfig cfg = hf_read_model_config(dir);
  cfg.seq_len = g.T;
  LlamaModel m(cfg, cpu_backend(), g.B);
  hf_load_weights(m, dir);
  const std::vector<float> logits = m.forward_logits(g.ids.data(), g.B);
  ASSERT_EQ(logits.size(), g.logits.size());
  double worst = 0, largest = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    ASSERT_NEAR(logits[i], g.logits[i], 2e-5 + 1e-4 * std::abs(g.logits[i])) << i;
    worst = std::max(worst, double(std::abs(logits[i] - g.logits[i])));
    largest = std::max(largest, double(std::abs(g.logits[i])));
  }
  std::cout << GetParam() << ": max |logit difference| " << worst << " (max |logit| " << largest << ")\n";
}

TEST_P(HfFixture, ImportThenExportGivesBackEveryTensorAndTheConfig) {
  const std::string dir = fixture(GetParam());
  const ModelConfig original = hf_read_model_config(dir);
  ModelConfig cfg = original;
  cfg.seq_len = 16;
  LlamaModel m(cfg, cpu_backend(), 1);
  hf_load_weights(m, dir);

  const std::map<std::string, std::string> files = hf_weight_files(dir);
  const TensorDtype dtype = SafetensorsFile::open(files.begin()->second).entries().front().dtype;
  const bool has_tokenizer = fs::exists(dir + "/tokenizer.json");
  const auto tok = has_tokenizer ? load_hf_tokenizer(dir) : make_byte_tokenizer();
  export_hf(m, *tok, path("export"), dtype, "hf:" + dir);

  const SafetensorsFile out = SafetensorsFile::open(path("export/model.safetensors"));
  std::set<std::string> exported;
  for (const auto& e : out.entries()) exported.insert(e.name);
  std::set<std::string> originals;
  for (const auto& [name, file] : files) {
    originals.insert(name);
    const SafetensorsFile in = SafetensorsFile::open(file);
    ASSERT_TRUE(out.has(name)) << name;
    EXPECT_EQ(out.at(name).dtype, in.at(name).dtype) << name;
    EXPECT_EQ(out.at(name).shape, in.at(name).shape) << name;
    const std::vector<float> a = in.read(name), b = out.read(name);
    ASSERT_EQ(a.size(), b.size());
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * 4), 0) << name << " differs";
  }
  EXPECT_EQ(exported, originals);
  // The exported config.json describes the same model: every key set, so any difference throws.
  ModelConfig back = hf_read_model_config(path("export"));
  std::set<std::string> all;
  for (const char* k : {"model.vocab_size", "model.dim", "model.n_layers", "model.n_heads", "model.n_kv_heads",
                        "model.head_dim", "model.ffn_dim", "model.norm_eps", "model.rope_theta",
                        "model.tie_embeddings", "model.rope_type", "model.rope_factor", "model.rope_low_freq_factor",
                        "model.rope_high_freq_factor", "model.rope_original_context"})
    all.insert(k);
  EXPECT_NO_THROW(hf_merge_model_config(back, original, all, dir));
}

// A config.json in the scratch directory from the mha fixture's with `edit` applied.
class HfConfig : public ScratchDirTest {
 protected:
  json base() {
    std::ifstream in(fixture("mha") + "/config.json");
    return json::parse(in);
  }
  std::string write(const json& j, const std::string& name = "m") {
    fs::create_directories(path(name));
    std::ofstream(path(name + "/config.json")) << j.dump(2);
    return path(name);
  }
};

TEST_F(HfConfig, ReadsBothRopeSpellings) {
  json top = base();
  top.erase("rope_parameters");
  top["rope_theta"] = 500000.0;
  top["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 32.0}, {"low_freq_factor", 1.0},
                         {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  json nested = base();
  nested.erase("rope_theta");
  nested.erase("rope_scaling");
  nested["rope_parameters"] = {{"rope_type", "llama3"}, {"rope_theta", 500000.0}, {"factor", 32.0},
                               {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                               {"original_max_position_embeddings", 8192}};
  json old_type = top;  // transformers 4.3x's "type"
  old_type["rope_scaling"].erase("rope_type");
  old_type["rope_scaling"]["type"] = "llama3";
  for (const json& j : {top, nested, old_type}) {
    const ModelConfig c = hf_read_model_config(write(j));
    EXPECT_EQ(c.rope_type, "llama3");
    EXPECT_EQ(c.rope_theta, 500000.0f);
    EXPECT_EQ(c.rope_factor, 32.0);
    EXPECT_EQ(c.rope_high_freq_factor, 4.0);
    EXPECT_EQ(c.rope_original_context, 8192);
  }
  json plain = base();
  plain.erase("rope_scaling");
  plain.erase("rope_parameters");
  plain["rope_theta"] = 1234.0;
  EXPECT_EQ(hf_read_model_config(write(plain)).rope_type, "default");
  EXPECT_EQ(hf_read_model_config(write(plain)).rope_theta, 1234.0f);
}

TEST_F(HfConfig, RefusesWhatTheModelCannotRepresentNamingTheField) {
  const std::vector<std::pair<std::function<void(json&)>, std::string>> cases = {
      {[](json& j) { j["attention_bias"] = true; }, "attention_bias"},
      {[](json& j) { j["mlp_bias"] = true; }, "mlp_bias"},
      {[](json& j) { j["sliding_window"] = 4096; }, "sliding_window"},
      {[](json& j) { j["model_type"] = "mistral"; }, "model_type"},
      {[](json& j) { j["architectures"] = {"Qwen2ForCausalLM"}; }, "architectures"},
      {[](json& j) { j["hidden_act"] = "gelu"; }, "hidden_act"},
      {[](json& j) {
         j.erase("rope_parameters");
         j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
       }, "rope_type = \"yarn\""},
      {[](json& j) {
         j.erase("rope_scaling");
         j["rope_parameters"] = {{"rope_type", "dynamic"}, {"rope_theta", 10000.0}};
       }, "rope_type = \"dynamic\""},
      {[](json& j) { j.erase("hidden_size"); }, "hidden_size"},
      {[](json& j) { j["num_key_value_heads"] = 3; }, "n_kv_heads"},
  };
  for (const auto& [edit, field] : cases) {
    json j = base();
    edit(j);
    const std::string err = error_of([&] { hf_read_model_config(write(j)); });
    EXPECT_NE(err.find(field), std::string::npos) << field << ": " << err;
  }
}

TEST_F(HfConfig, UnsetRunKeysTakeTheCheckpointsAndSetOnesMustAgree) {
  const std::string dir = fixture("gqa_tied");
  const ModelConfig ckpt = hf_read_model_config(dir);
  ModelConfig run;  // defaults everywhere
  run.seq_len = 32;
  hf_merge_model_config(run, ckpt, {"model.seq_len"}, dir);
  EXPECT_EQ(run.dim, ckpt.dim);
  EXPECT_EQ(run.kv_heads(), 2);
  EXPECT_EQ(run.n_heads, 8);
  EXPECT_TRUE(run.tie_embeddings);
  EXPECT_EQ(run.seq_len, 32);
  ModelConfig agreeing;
  agreeing.dim = ckpt.dim;
  EXPECT_NO_THROW(hf_merge_model_config(agreeing, ckpt, {"model.dim"}, dir));
  ModelConfig wrong;
  wrong.n_kv_heads = 4;
  const std::string err = error_of([&] { hf_merge_model_config(wrong, ckpt, {"model.n_kv_heads"}, dir); });
  EXPECT_NE(err.find("model.n_kv_heads = 4"), std::string::npos) << err;
  EXPECT_NE(err.find("has 2"), std::string::npos) << err;
  ModelConfig lowrank;
  lowrank.linear.kind = LinearKind::lowrank;
  lowrank.linear.rank = 4;
  EXPECT_NE(error_of([&] { hf_merge_model_config(lowrank, ckpt, {}, dir); }).find("model.linear"), std::string::npos);

  // Through config_load: the file sets model.init_from and one key that disagrees.
  std::ofstream(path("run.toml")) << "[model]\ninit_from = \"hf:" << dir << "\"\nffn_dim = 7\n[data]\ntrain = \"x\"\n";
  const std::string load_err = error_of([&] { config_load(path("run.toml"), {}); });
  EXPECT_NE(load_err.find("model.ffn_dim = 7"), std::string::npos) << load_err;
  const TrainConfig ok = config_load(path("run.toml"), {str("model.ffn_dim=", ckpt.ffn_dim)});
  EXPECT_EQ(ok.model.n_kv_heads, 2);
  EXPECT_EQ(ok.model.vocab_size, ckpt.vocab_size);
}

// The mha fixture's tensors rewritten into a scratch checkpoint with one change.
class HfLoadErrors : public HfConfig {
 protected:
  std::string rewrite(const std::function<void(std::vector<TensorSpec>&)>& edit, const std::string& name) {
    const std::string dir = write(base(), name);
    const SafetensorsFile src = SafetensorsFile::open(fixture("mha") + "/model.safetensors");
    std::vector<TensorSpec> specs;
    for (const auto& e : src.entries()) specs.push_back({e.name, e.shape});
    edit(specs);
    write_safetensors(dir + "/model.safetensors", specs, TensorDtype::f32, {}, [&](size_t i, std::span<float> out) {
      if (src.has(specs[i].name) && src.at(specs[i].name).shape == specs[i].shape) src.read_into(specs[i].name, out);
    });
    return dir;
  }
};

TEST_F(HfLoadErrors, EveryProblemIsNamedAndChangesNothing) {
  const ModelConfig cfg = hf_read_model_config(fixture("mha"));
  LlamaModel m(cfg, cpu_backend(), 1);
  m.init_weights(3);
  const std::vector<float> before(m.param_data(), m.param_data() + m.params().total());
  const std::vector<std::pair<std::string, std::string>> cases = {
      {rewrite([](auto& s) { s.push_back({"model.layers.0.self_attn.q_proj.bias", {64}}); }, "bias"),
       "'model.layers.0.self_attn.q_proj.bias'"},
      {rewrite([](auto& s) { s.erase(s.begin()); }, "missing"), "has no tensor"},
      {rewrite([](auto& s) { s.back().shape[0] += 1; }, "shape"), "but the model expects"},
  };
  for (const auto& [dir, what] : cases) {
    const std::string err = error_of([&] { hf_load_weights(m, dir); });
    EXPECT_NE(err.find(what), std::string::npos) << err;
    EXPECT_EQ(std::vector<float>(m.param_data(), m.param_data() + m.params().total()), before) << err;
  }
  // A shard the index names but that is missing.
  const std::string sharded = write(base(), "sharded");
  std::ofstream(sharded + "/model.safetensors.index.json")
      << R"({"metadata": {}, "weight_map": {"model.norm.weight": "model-00001-of-00002.safetensors"}})";
  EXPECT_NE(error_of([&] { hf_load_weights(m, sharded); }).find("does not exist"), std::string::npos);
}

// The command line end to end: prepare with the model's tokenizer, train from the checkpoint
// (model keys from config.json) with a learning rate too small to move a bf16 value, export in
// bf16: every tensor of the original comes back bit for bit, so the trainer loaded each one into
// its own place. A config key that disagrees with the checkpoint stops the run by name.
TEST_F(HfConfig, TrainFromCheckpointThenExportGivesItBack) {
  const std::string dir = fixture("gqa_llama3_bf16");
  fs::create_directories(path("corpus"));
  Rng rng(4);
  for (int d = 0; d < 12; ++d) {
    std::ofstream doc(path(str("corpus/", d, ".txt")));
    for (int w = 0; w < 120; ++w) doc << (rng.next_u64() % 3 ? "the model " : "continues ") << w % 7 << " ";
  }
  std::string out;
  ASSERT_EQ(run_cairn(str("prepare --input ", path("corpus"), " --out ", path("ds"), " --tokenizer hf:", dir),
                      path("prepare.log"), out), 0) << out;
  std::ofstream(path("run.toml")) << "[model]\nseq_len = 16\ninit_from = \"hf:" << dir << "\"\n"
                                  << "[schedule]\nlr = 1e-9\n[training]\nmicro_batch = 2\nsteps = 3\nlog_every = 1\n"
                                  << "eval_every = 0\n[output]\nplot = false\ntensorboard = false\nrun_dir = \""
                                  << path("run") << "\"\n[data]\ntrain = \"" << path("ds") << "\"\n";
  ASSERT_EQ(run_cairn(str("train --config ", path("run.toml")), path("train.log"), out), 0) << out;
  EXPECT_NE(out.find("heads 4 (2 key/value)"), std::string::npos) << out;
  EXPECT_NE(out.find("rope_type = 'llama3'"), std::string::npos) << out;
  ASSERT_EQ(run_cairn(str("export ", path("run"), " --format hf --dtype bf16 --out ", path("exp")), path("export.log"),
                      out), 0) << out;
  const SafetensorsFile a = SafetensorsFile::open(dir + "/model.safetensors");
  const SafetensorsFile b = SafetensorsFile::open(path("exp/model.safetensors"));
  ASSERT_EQ(a.entries().size(), b.entries().size());
  for (const auto& e : a.entries()) EXPECT_EQ(a.read(e.name), b.read(e.name)) << e.name;
  // The exported tokenizer is the model's, with its EOS.
  EXPECT_EQ(load_hf_tokenizer(path("exp"))->eos_id(), load_hf_tokenizer(dir)->eos_id());

  EXPECT_NE(run_cairn(str("train --config ", path("run.toml"), " --set model.n_heads=8 --set output.run_dir=",
                          path("run2")), path("bad.log"), out), 0);
  EXPECT_NE(out.find("model.n_heads = 8"), std::string::npos) << out;
}

TEST(HfTokenizer, ModelDirectoryGivesItsTokenizerAndGenerationEos) {
  const std::string dir = fixture("gqa_llama3_bf16");
  const auto tok = load_hf_tokenizer(dir);
  std::ifstream in(dir + "/generation_config.json");
  const json gen = json::parse(in);
  EXPECT_EQ(int64_t(tok->eos_id()), gen["eos_token_id"].get<int64_t>());
  EXPECT_LE(tok->vocab_size(), hf_read_model_config(dir).vocab_size);
}

}  // namespace
}  // namespace cairn
