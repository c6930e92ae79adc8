// The safetensors format (round trips, bf16 rounding, corrupted headers) and the Hugging Face
// export: tensor names and shapes, values, config, tokenizer files (a Hugging Face tokenizer.json
// checked with the `tokenizers` package when Python has it), factored weights exported as their
// dense W, LayerNorm Scaling folded into the norm gains, Mix-LN refused, and the export directory
// appearing only when complete.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>

#include <nlohmann/json.hpp>

#include "data/hf_tokenizer.h"
#include "launch/commands.h"
#include "launch/hf_export.h"
#include "model/safetensors.h"
#include "model/weights_io.h"
#include "tests/test_support.h"
#include "trainer/config.h"
#include "util/error.h"
#include "util/rng.h"

namespace cairn {
namespace {

namespace fs = std::filesystem;

class ExportTest : public ScratchDirTest {
 protected:
  void SetUp() override {
    ScratchDirTest::SetUp();
    cpu_set_threads(1);  // tiny models: threads only add scheduling noise on a loaded machine
  }

  // A safetensors file with this exact header text and `data_bytes` zero bytes of data.
  std::string raw_file(const std::string& header, size_t data_bytes, uint64_t claimed_len = 0) {
    const std::string p = path("raw.safetensors");
    std::ofstream out(p, std::ios::binary);
    const uint64_t n = claimed_len ? claimed_len : header.size();
    for (int i = 0; i < 8; ++i) out.put(char(n >> (8 * i)));
    out << header << std::string(data_bytes, '\0');
    return p;
  }
};

ModelConfig tiny_config() {
  ModelConfig c;
  c.vocab_size = 257;
  c.dim = 16;
  c.n_layers = 2;
  c.n_heads = 2;
  c.ffn_dim = 24;
  c.seq_len = 8;
  return c;
}

std::vector<float> random_values(size_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = rng.normal() * 3.0f;
  return v;
}

TEST_F(ExportTest, SafetensorsFp32RoundTripAndLayout) {
  const std::vector<TensorSpec> specs = {{"a.weight", {3, 5}}, {"scalar", {}}, {"empty", {0, 4}}, {"b", {7}}};
  std::vector<std::vector<float>> data;
  for (size_t i = 0; i < specs.size(); ++i) data.push_back(random_values(size_t(specs[i].numel()), i));
  const std::string p = path("x.safetensors");
  write_safetensors(p, specs, TensorDtype::f32, {{"format", "pt"}},
                    [&](size_t i, std::span<float> out) { std::copy(data[i].begin(), data[i].end(), out.begin()); });

  const SafetensorsFile f = SafetensorsFile::open(p);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.data_start() % 8, 0);  // header padded so data is aligned
  ASSERT_EQ(f.entries().size(), specs.size());
  int64_t offset = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    const auto& e = f.entries()[i];
    EXPECT_EQ(e.name, specs[i].name);  // header order is write order
    EXPECT_EQ(e.shape, specs[i].shape);
    EXPECT_EQ(e.dtype, TensorDtype::f32);
    EXPECT_EQ(e.begin, offset);
    EXPECT_EQ(e.end, offset + 4 * specs[i].numel());
    offset = e.end;
    EXPECT_EQ(f.read(e.name), data[i]) << e.name;  // bit-exact
  }
  EXPECT_EQ(int64_t(fs::file_size(p)), f.data_start() + offset);
  EXPECT_NE(error_of([&] { f.at("nope"); }).find("no tensor 'nope'"), std::string::npos);
}

TEST_F(ExportTest, Bf16RoundsToNearestEven) {
  EXPECT_EQ(bf16_from_f32(1.0f), 0x3f80);
  EXPECT_EQ(bf16_from_f32(-2.0f), 0xc000);
  // Exactly halfway between two bf16 values: to the even one.
  EXPECT_EQ(bf16_from_f32(std::bit_cast<float>(0x3f808000u)), 0x3f80);
  EXPECT_EQ(bf16_from_f32(std::bit_cast<float>(0x3f818000u)), 0x3f82);
  EXPECT_EQ(bf16_from_f32(std::bit_cast<float>(0x3f808001u)), 0x3f81);  // above half: up
  EXPECT_EQ(bf16_from_f32(std::numeric_limits<float>::max()), 0x7f80);  // overflows to +inf
  EXPECT_TRUE(std::isnan(f32_from_bf16(bf16_from_f32(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_TRUE(std::isnan(f32_from_bf16(bf16_from_f32(std::bit_cast<float>(0x7f800001u)))));  // NaN never becomes inf

  const auto values = random_values(1000, 9);
  const std::string p = path("h.safetensors");
  write_safetensors(p, {{"w", {10, 100}}}, TensorDtype::bf16, {},
                    [&](size_t, std::span<float> out) { std::copy(values.begin(), values.end(), out.begin()); });
  const SafetensorsFile f = SafetensorsFile::open(p);
  EXPECT_EQ(f.at("w").dtype, TensorDtype::bf16);
  EXPECT_EQ(f.at("w").end, 2000);
  const auto back = f.read("w");
  for (size_t i = 0; i < values.size(); ++i) {
    EXPECT_LE(std::abs(back[i] - values[i]), std::ldexp(std::abs(values[i]), -8)) << i;  // half an ulp of 8 bits
    EXPECT_EQ(bf16_from_f32(back[i]), bf16_from_f32(values[i]));
  }
}

// IEEE half precision (F16, read from Hugging Face checkpoints, written by export --dtype fp16):
// round to nearest even, subnormals, overflow, NaN; every one of the 65536 halves reads back to the
// same bits.
TEST_F(ExportTest, Fp16ConvertsExactly) {
  EXPECT_EQ(f16_from_f32(1.0f), 0x3c00);
  EXPECT_EQ(f16_from_f32(-2.0f), 0xc000);
  EXPECT_EQ(f16_from_f32(65504.0f), 0x7bff);
  EXPECT_EQ(f16_from_f32(65519.0f), 0x7bff);  // below the halfway point 65520
  EXPECT_EQ(f16_from_f32(65520.0f), 0x7c00);  // halfway, odd neighbour: up, to +inf
  EXPECT_EQ(f16_from_f32(std::ldexp(1.0f, -24)), 0x0001);  // the smallest subnormal
  EXPECT_EQ(f16_from_f32(std::ldexp(1.0f, -25)), 0x0000);  // half of it: to even (0)
  EXPECT_EQ(f16_from_f32(std::ldexp(3.0f, -26)), 0x0001);  // above half: up
  EXPECT_EQ(f16_from_f32(1.0f + std::ldexp(1.0f, -11)), 0x3c00);  // halfway above 1: to even
  EXPECT_EQ(f16_from_f32(1.0f + std::ldexp(3.0f, -11)), 0x3c02);  // halfway above 1 + ulp: to even
  EXPECT_EQ(f32_from_f16(0x8001), -std::ldexp(1.0f, -24));
  EXPECT_TRUE(std::isnan(f32_from_f16(f16_from_f32(std::numeric_limits<float>::quiet_NaN()))));
  for (uint32_t h = 0; h < 65536; ++h) {
    const float x = f32_from_f16(uint16_t(h));
    if (std::isnan(x)) continue;
    ASSERT_EQ(f16_from_f32(x), h) << h;
  }
  const auto values = random_values(1000, 11);
  write_safetensors(path("h16.safetensors"), {{"w", {1000}}}, TensorDtype::f16, {},
                    [&](size_t, std::span<float> out) { std::copy(values.begin(), values.end(), out.begin()); });
  const SafetensorsFile f = SafetensorsFile::open(path("h16.safetensors"));
  EXPECT_EQ(f.at("w").dtype, TensorDtype::f16);
  const auto back = f.read("w");
  for (size_t i = 0; i < values.size(); ++i) EXPECT_EQ(back[i], f32_from_f16(f16_from_f32(values[i]))) << i;
}

TEST_F(ExportTest, CorruptedSafetensorsAreRejected) {
  auto err = [&](const std::string& header, size_t data, uint64_t claimed = 0) {
    const std::string p = raw_file(header, data, claimed);
    return error_of([&] { SafetensorsFile::open(p); });
  };
  auto has = [](const std::string& msg, const char* what) { return msg.find(what) != std::string::npos; };
  const std::string ok = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  EXPECT_EQ(err(ok, 8), "");
  EXPECT_TRUE(has(err(ok, 8, 1ull << 40), "header length")) << err(ok, 8, 1ull << 40);
  EXPECT_TRUE(has(err(ok, 0, ok.size() + 5), "header length"));
  EXPECT_TRUE(has(err("[1, 2]", 0), "not a JSON object"));
  EXPECT_TRUE(has(err("{\"a\": ", 0), "not a JSON object"));
  EXPECT_TRUE(has(err(R"({"a":{"dtype":"F64","shape":[2],"data_offsets":[0,16]}})", 16), "dtype F64"));
  EXPECT_TRUE(has(err(R"({"a":{"shape":[2],"data_offsets":[0,8]}})", 8), "no dtype"));
  EXPECT_TRUE(has(err(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8), "non-negative"));
  EXPECT_TRUE(has(err(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}})", 8), "outside the data section"));
  EXPECT_TRUE(has(err(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8), "outside the data section"));
  EXPECT_TRUE(has(err(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8), "shape and dtype need 12"));
  EXPECT_TRUE(has(err(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}})", 8),
                  "shape and dtype need"));
  EXPECT_TRUE(has(err(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},
                        "b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12), "overlaps"));
  EXPECT_TRUE(has(err(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8), "belong to no tensor"));
  EXPECT_TRUE(has(err(ok, 12), "truncated or padded"));
  EXPECT_TRUE(has(err(R"({"__metadata__":{"format":1},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8),
                  "__metadata__"));
  {
    std::ofstream(path("short.safetensors")) << "abc";
    EXPECT_TRUE(has(error_of([&] { SafetensorsFile::open(path("short.safetensors")); }), "fewer than the 8-byte"));
  }
  EXPECT_TRUE(has(error_of([&] { SafetensorsFile::open(path("missing")); }), "cannot open"));
  // A truncated real file: its data no longer matches the header.
  write_safetensors(path("t.safetensors"), {{"w", {64}}}, TensorDtype::f32, {}, [](size_t, std::span<float>) {});
  fs::resize_file(path("t.safetensors"), fs::file_size(path("t.safetensors")) - 4);
  EXPECT_TRUE(has(error_of([&] { SafetensorsFile::open(path("t.safetensors")); }), "outside the data section"));
}

std::set<std::string> expected_hf_names(const ModelConfig& c) {
  std::set<std::string> names = {"model.embed_tokens.weight", "model.norm.weight"};
  if (!c.tie_embeddings) names.insert("lm_head.weight");
  for (int l = 0; l < c.n_layers; ++l)
    for (const char* n : {"input_layernorm", "post_attention_layernorm", "self_attn.q_proj", "self_attn.k_proj",
                          "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"})
      names.insert(str("model.layers.", l, ".", n, ".weight"));
  return names;
}

nlohmann::json read_json(const fs::path& p) { return nlohmann::json::parse(std::ifstream(p)); }

TEST_F(ExportTest, DenseExportHasExactlyTheHfNamesShapesAndValues) {
  for (bool tied : {false, true}) {
    ModelConfig c = tiny_config();
    c.tie_embeddings = tied;
    c.rope_theta = 500000.0f;
    LlamaModel model(c, cpu_backend(), 1);
    model.init_weights(5);
    const std::string out = path(tied ? "tied" : "untied");
    auto tok = make_byte_tokenizer();
    export_hf(model, *tok, out, TensorDtype::f32, "test");
    EXPECT_FALSE(fs::exists(out + ".tmp"));

    const SafetensorsFile f = SafetensorsFile::open(out + "/model.safetensors");
    EXPECT_EQ(f.metadata().at("format"), "pt");  // transformers refuses files without it
    std::set<std::string> names;
    for (const auto& e : f.entries()) names.insert(e.name);
    EXPECT_EQ(names, expected_hf_names(c));
    for (const auto& e : f.entries()) {
      const ParamRow& r = model.params().at(e.name);
      EXPECT_EQ(e.shape, r.shape) << e.name;
      const auto want = row_span(std::span<const float>(model.param_span()), r);
      EXPECT_EQ(f.read(e.name), std::vector<float>(want.begin(), want.end())) << e.name;
    }
    const auto cfg = read_json(out + "/config.json");
    EXPECT_EQ(cfg["architectures"][0], "LlamaForCausalLM");
    EXPECT_EQ(cfg["model_type"], "llama");
    EXPECT_EQ(cfg["hidden_size"], 16);
    EXPECT_EQ(cfg["intermediate_size"], 24);
    EXPECT_EQ(cfg["num_hidden_layers"], 2);
    EXPECT_EQ(cfg["num_attention_heads"], 2);
    EXPECT_EQ(cfg["num_key_value_heads"], 2);
    EXPECT_EQ(cfg["vocab_size"], 257);
    EXPECT_EQ(cfg["max_position_embeddings"], 8);
    EXPECT_EQ(cfg["rms_norm_eps"].get<double>(), 1e-5);
    EXPECT_EQ(cfg["rope_theta"].get<double>(), 500000.0);
    EXPECT_EQ(cfg["tie_word_embeddings"], tied);
    EXPECT_EQ(cfg["hidden_act"], "silu");
    EXPECT_EQ(cfg["torch_dtype"], "float32");
    EXPECT_EQ(cfg["eos_token_id"], 256);
    EXPECT_TRUE(fs::exists(out + "/generation_config.json"));
    EXPECT_FALSE(fs::exists(out + "/tokenizer.model"));  // byte tokenizer: a note instead
    std::stringstream readme;
    readme << std::ifstream(out + "/README.md").rdbuf();
    EXPECT_NE(readme.str().find("byte-level tokenizer"), std::string::npos);
  }
}

TEST_F(ExportTest, Bf16ExportIsTheRoundedWeights) {
  LlamaModel model(tiny_config(), cpu_backend(), 1);
  model.init_weights(2);
  auto tok = make_byte_tokenizer();
  export_hf(model, *tok, path("bf"), TensorDtype::bf16, "test");
  EXPECT_EQ(read_json(path("bf/config.json"))["torch_dtype"], "bfloat16");
  const SafetensorsFile f = SafetensorsFile::open(path("bf/model.safetensors"));
  const ParamRow& r = model.params().at("model.layers.1.mlp.down_proj.weight");
  EXPECT_EQ(f.at(r.name).dtype, TensorDtype::bf16);
  const auto got = f.read(r.name);
  for (int64_t i = 0; i < r.numel; ++i) EXPECT_EQ(got[size_t(i)], f32_from_bf16(bf16_from_f32(model.param_data()[r.offset + i])));
}

// Factored kinds export W = B·(s·A) (+ S) as "<prefix>.weight", equal to Linear::dense_weight.
void check_factored_export(LinearKind kind, const fs::path& out) {
  ModelConfig c = tiny_config();
  c.linear.kind = kind;
  c.linear.rank = 4;
  c.linear.density = 0.05f;
  try {
    make_linear(c.linear, "probe", 8, 8, 0);
  } catch (const Error&) {
    GTEST_SKIP() << linear_kind_name(kind) << " weights are not built into this cairn yet";
  }
  LlamaModel model(c, cpu_backend(), 1);
  model.init_weights(3);
  Rng rng(4);
  for (auto& p : model.param_span()) p += 0.1f * rng.normal();  // factors away from their init
  auto tok = make_byte_tokenizer();
  export_hf(model, *tok, out.string(), TensorDtype::f32, "test");
  const SafetensorsFile f = SafetensorsFile::open((out / "model.safetensors").string());
  std::set<std::string> names;
  for (const auto& e : f.entries()) names.insert(e.name);
  EXPECT_EQ(names, expected_hf_names(c));
  for (const auto& lin : model.linears()) {
    std::vector<float> W(size_t(lin->out_features() * lin->in_features()));
    lin->dense_weight(W.data(), model.param_span(), model.buffers());
    const auto& e = f.at(lin->name() + ".weight");
    EXPECT_EQ(e.shape, (std::vector<int64_t>{lin->out_features(), lin->in_features()}));
    EXPECT_EQ(f.read(e.name), W) << e.name;
  }
}

TEST_F(ExportTest, SLTrainExportEqualsDenseWeight) { check_factored_export(LinearKind::sltrain, dir_ / "sl"); }
TEST_F(ExportTest, LowRankExportEqualsDenseWeight) { check_factored_export(LinearKind::lowrank, dir_ / "lr"); }

TEST_F(ExportTest, SentencePieceTokenizerIsShipped) {
  std::vector<std::string> docs;
  Rng rng(1);
  const char* words[] = {"alpha", "beta", "gamma", "delta", "tree", "stone", "river", "cairn"};
  for (int d = 0; d < 40; ++d) {
    std::string doc;
    for (int w = 0; w < 30; ++w) doc += std::string(w ? " " : "") + words[rng.below(8)];
    docs.push_back(doc + "\n");
  }
  SentencePieceOptions opts;
  opts.vocab_size = 320;
  const auto tok = train_sentencepiece(docs, opts);
  ModelConfig c = tiny_config();
  c.vocab_size = tok->vocab_size();
  LlamaModel model(c, cpu_backend(), 1);
  model.init_weights(1);
  export_hf(model, *tok, path("sp"), TensorDtype::f32, "test");
  std::stringstream proto;
  proto << std::ifstream(path("sp/tokenizer.model"), std::ios::binary).rdbuf();
  EXPECT_EQ(proto.str(), tok->serialized());
  const auto t = read_json(path("sp/tokenizer_config.json"));
  EXPECT_EQ(t["tokenizer_class"], "LlamaTokenizer");
  EXPECT_EQ(t["eos_token"], "</s>");
  EXPECT_EQ(t["add_bos_token"], false);
  EXPECT_EQ(read_json(path("sp/config.json"))["eos_token_id"], tok->eos_id());
}

// The ids `tokenizers` (Python) gives with a tokenizer.json, as cairn encodes ("ids") and with a
// plain encode(text) ("default_ids"): tools/reference/hf_tokenizer_golden.py encode, with the
// Python of the .venv that tools/setup.sh makes. Without that .venv: python3, and empty when it
// lacks the tokenizers package; a .venv without the package is a failure (setup installs it).
nlohmann::json python_tokenizers_ids(const std::string& tokenizer_json, const std::string& text_file) {
  const std::string venv_python = str(CAIRN_SOURCE_DIR, "/.venv/bin/python3");
  const bool venv = fs::exists(venv_python);
  const std::string python = venv ? venv_python : "python3";
  if (std::system((python + " -c 'import tokenizers' > /dev/null 2>&1").c_str()) != 0) {
    if (venv) ADD_FAILURE() << venv_python << " has no tokenizers package: rerun tools/setup.sh";
    return {};
  }
  const std::string cmd = str(python, " ", CAIRN_SOURCE_DIR, "/tools/reference/hf_tokenizer_golden.py encode '",
                              tokenizer_json, "' '", text_file, "'");
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  EXPECT_EQ(pclose(p), 0) << cmd;
  return nlohmann::json::parse(out);
}

TEST_F(ExportTest, HfTokenizerIsShippedWithoutItsBos) {
  const std::string source = str(CAIRN_SOURCE_DIR, "/tests/golden/hf_llama3_style.json");
  const auto tok = load_hf_tokenizer(source + "#eos=<|eot_id|>");
  ModelConfig c = tiny_config();
  c.vocab_size = tok->vocab_size();
  LlamaModel model(c, cpu_backend(), 1);
  model.init_weights(1);
  export_hf(model, *tok, path("hf"), TensorDtype::f32, "test");

  // tokenizer.json is the prepared one without its post_processor (which added <|begin_of_text|>).
  auto want = read_json(source);
  ASSERT_FALSE(want["post_processor"].is_null());
  want["post_processor"] = nullptr;
  EXPECT_TRUE(read_json(path("hf/tokenizer.json")) == want) << "tokenizer.json is not the prepared one less its post_processor";
  const auto t = read_json(path("hf/tokenizer_config.json"));
  EXPECT_EQ(t["tokenizer_class"], "PreTrainedTokenizerFast");
  EXPECT_EQ(t["eos_token"], "<|eot_id|>");
  EXPECT_EQ(t["split_special_tokens"], true);
  EXPECT_EQ(read_json(path("hf/config.json"))["eos_token_id"], 2);
  EXPECT_FALSE(fs::exists(path("hf/tokenizer.model")));
  std::stringstream readme;
  readme << std::ifstream(path("hf/README.md")).rdbuf();
  EXPECT_NE(readme.str().find("`<|eot_id|>` (id 2)"), std::string::npos) << readme.str();

  // The exported files load back (EOS from tokenizer_config.json) and encode as before.
  const std::string text = "Hello world! Größe 東京 😀 it's 12345 <|end_of_text|>\n  done";
  const auto back = load_hf_tokenizer(path("hf/tokenizer.json"));
  EXPECT_EQ(back->eos_id(), 2u);
  EXPECT_EQ(back->encode(text), tok->encode(text));

  // The tokenizers package loads it and, with no BOS added any more, encodes plain text as cairn.
  std::ofstream(path("text.txt"), std::ios::binary) << text.substr(0, text.find(" <|"));
  const auto py = python_tokenizers_ids(path("hf/tokenizer.json"), path("text.txt"));
  if (py.is_null()) GTEST_SKIP() << "no .venv (tools/setup.sh) and python3 has no tokenizers package";
  const auto ids = tok->encode(text.substr(0, text.find(" <|")));
  EXPECT_EQ(py["ids"].get<std::vector<uint32_t>>(), ids);
  EXPECT_EQ(py["default_ids"].get<std::vector<uint32_t>>(), ids);
}

// A tokenizer that claims to be SentencePiece but whose model is damaged: the export fails after
// it has started writing.
class BrokenTokenizer final : public Tokenizer {
 public:
  std::vector<uint32_t> encode(std::string_view) const override { return {}; }
  std::string decode(std::span<const uint32_t>) const override { return {}; }
  int64_t vocab_size() const override { return 257; }
  uint32_t eos_id() const override { return 256; }
  std::string kind() const override { return "sentencepiece"; }
  std::string serialized() const override { return "not a model proto"; }
};

TEST_F(ExportTest, ExportDirectoryAppearsOnlyWhenComplete) {
  LlamaModel model(tiny_config(), cpu_backend(), 1);
  model.init_weights(1);
  // Failure in the middle of writing: neither the directory nor its temporary remains.
  const std::string out = path("failed");
  EXPECT_NE(error_of([&] { export_hf(model, BrokenTokenizer{}, out, TensorDtype::f32, "t"); }).find("does not load"),
            std::string::npos);
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(out + ".tmp"));
  // An unwritable target (its parent is a file): a clear error and nothing written.
  std::ofstream(path("file")) << "x";
  auto byte = make_byte_tokenizer();
  EXPECT_NE(error_of([&] { export_hf(model, *byte, path("file/sub"), TensorDtype::f32, "t"); }).find("cannot create"),
            std::string::npos);
  // A stale temporary from a crashed export is replaced; an existing target is never overwritten.
  fs::create_directories(out + ".tmp/junk");
  export_hf(model, *byte, out, TensorDtype::f32, "t");
  EXPECT_FALSE(fs::exists(out + ".tmp"));
  EXPECT_FALSE(fs::exists(out + "/junk"));
  EXPECT_NE(error_of([&] { export_hf(model, *byte, out, TensorDtype::f32, "t"); }).find("already exists"),
            std::string::npos);
}

// The exported gains of layer l are the trained ones times 1/sqrt(l + 1), and a plain Pre-LN
// model built from the exported tensors computes the LayerNorm Scaling model's logits.
TEST_F(ExportTest, NormScalingIsFoldedIntoTheNormGains) {
  ModelConfig c = tiny_config();
  c.n_layers = 3;
  c.norm_scaling = true;
  LlamaModel model(c, cpu_backend(), 1);
  model.init_weights(6);
  Rng rng(2);
  for (auto& p : model.param_span()) p += 0.2f * rng.normal();  // norm gains away from 1
  auto tok = make_byte_tokenizer();
  export_hf(model, *tok, path("scaled"), TensorDtype::f32, "test");
  const SafetensorsFile f = SafetensorsFile::open(path("scaled/model.safetensors"));
  std::set<std::string> names;
  for (const auto& e : f.entries()) names.insert(e.name);
  EXPECT_EQ(names, expected_hf_names(c));
  for (const auto& r : model.params().rows()) {
    if (r.role != ParamRole::norm) continue;
    const float s = r.layer >= 0 ? float(1.0 / std::sqrt(double(r.layer + 1))) : 1.0f;
    const auto got = f.read(r.name);
    for (int64_t i = 0; i < r.numel; ++i) EXPECT_EQ(got[size_t(i)], model.param_data()[r.offset + i] * s) << r.name;
  }
  std::stringstream readme;
  readme << std::ifstream(path("scaled/README.md")).rdbuf();
  EXPECT_NE(readme.str().find("LayerNorm Scaling"), std::string::npos);

  ModelConfig plain = c;
  plain.norm_scaling = false;
  LlamaModel hf(plain, cpu_backend(), 1);
  for (const auto& r : hf.params().rows()) {
    const auto v = f.read(r.name);
    std::copy(v.begin(), v.end(), hf.param_data() + r.offset);
  }
  const auto tokens = random_tokens(c.seq_len, c.vocab_size, 3);
  const auto a = model.forward_logits(tokens.data(), 1), b = hf.forward_logits(tokens.data(), 1);
  for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 1e-5 + 1e-5 * std::abs(a[i])) << i;
}

int run_export(std::vector<std::string> args) {
  args.insert(args.begin(), {"cairn", "export"});
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  return cmd_export(int(argv.size()), argv.data());
}

TEST_F(ExportTest, CommandRefusesIncompleteCheckpointsAndBadOptions) {
  fs::create_directories(path("ckpt"));
  std::ofstream(path("ckpt/model.h5")) << "x";
  std::string msg = error_of([&] { run_export({path("ckpt"), "--format", "hf", "--out", path("o")}); });
  EXPECT_NE(msg.find("incomplete"), std::string::npos) << msg;
  fs::create_directories(path("step_10.tmp"));
  msg = error_of([&] { run_export({path("step_10.tmp"), "--format", "hf", "--out", path("o")}); });
  EXPECT_NE(msg.find("incomplete"), std::string::npos) << msg;
  EXPECT_NE(error_of([&] { run_export({path("ckpt"), "--format", "gguf", "--out", path("o")}); }).find("hf"),
            std::string::npos);
  EXPECT_NE(error_of([&] { run_export({path("ckpt"), "--out", path("o"), "--dtype", "fp8"}); }).find("fp32, bf16 or fp16"),
            std::string::npos);
  EXPECT_NE(error_of([&] { run_export({path("ckpt")}); }).find("--out"), std::string::npos);
  EXPECT_FALSE(fs::exists(path("o")));
}

// Mix-LN's Post-LN layers have no LlamaForCausalLM form: export_hf and the command refuse, naming
// the key, before writing anything (the command before looking for a tokenizer). With no Post-LN
// layer (alpha·L < 1) the model is Pre-LN and exports.
TEST_F(ExportTest, MixLnIsRefusedNamingTheKey) {
  ModelConfig c = tiny_config();
  c.norm_layout = NormLayout::mix;
  LlamaModel model(c, cpu_backend(), 1);  // alpha 0.25 of 2 layers: no Post-LN layer
  model.init_weights(1);
  auto tok = make_byte_tokenizer();
  export_hf(model, *tok, path("pre"), TensorDtype::f32, "t");
  c.mix_ln_alpha = 0.5;
  LlamaModel mix(c, cpu_backend(), 1);
  mix.init_weights(1);
  const std::string e = error_of([&] { export_hf(mix, *tok, path("mix"), TensorDtype::f32, "t"); });
  EXPECT_NE(e.find("model.norm_layout = \"mix\""), std::string::npos) << e;
  EXPECT_NE(e.find("Post-LN"), std::string::npos) << e;
  EXPECT_FALSE(fs::exists(path("mix")));
  EXPECT_FALSE(fs::exists(path("mix.tmp")));
  TrainConfig stored;
  stored.model = c;
  stored.data.train = path("absent.h5");  // no tokenizer to find: the refusal must come first
  save_model_weights(mix, path("mix.h5"), config_to_toml(stored));
  const std::string cmd = error_of([&] { run_export({path("mix.h5"), "--out", path("o")}); });
  EXPECT_NE(cmd.find("model.norm_layout"), std::string::npos) << cmd;
  EXPECT_FALSE(fs::exists(path("o")));
}

}  // namespace
}  // namespace cairn
