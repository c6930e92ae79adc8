// Hugging Face LLaMA import (see hf_import.h).
#include "model/hf_import.h"

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/safetensors.h"
#include "util/error.h"

namespace cairn {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

json read_json(const fs::path& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(str("cannot read the ", what, " '", path.string(), "'"));
  std::stringstream ss;
  ss << in.rdbuf();
  json j = json::parse(ss.str(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) throw Error(str("'", path.string(), "' is not a JSON object"));
  return j;
}

// config.json's fields, each read with its type checked and its name in every error.
class ConfigFields {
 public:
  ConfigFields(const json& j, std::string origin) : j_(j), origin_(std::move(origin)) {}
  bool has(const char* key) const { return j_.contains(key) && !j_[key].is_null(); }
  int64_t integer(const char* key, std::optional<int64_t> fallback = std::nullopt) const {
    if (!has(key)) return missing(key, fallback);
    if (!j_[key].is_number_integer()) throw Error(str(origin_, ": ", key, " = ", j_[key].dump(), " is not an integer"));
    return j_[key].get<int64_t>();
  }
  double number(const char* key, std::optional<double> fallback = std::nullopt) const {
    if (!has(key)) return missing(key, fallback);
    if (!j_[key].is_number()) throw Error(str(origin_, ": ", key, " = ", j_[key].dump(), " is not a number"));
    return j_[key].get<double>();
  }
  bool boolean(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    if (!j_[key].is_boolean()) throw Error(str(origin_, ": ", key, " = ", j_[key].dump(), " is not true or false"));
    return j_[key].get<bool>();
  }
  std::string string(const char* key, const std::string& fallback) const {
    if (!has(key)) return fallback;
    if (!j_[key].is_string()) throw Error(str(origin_, ": ", key, " = ", j_[key].dump(), " is not a string"));
    return j_[key].get<std::string>();
  }
  const json& at(const char* key) const { return j_[key]; }
  const std::string& origin() const { return origin_; }

 private:
  template <typename T>
  T missing(const char* key, std::optional<T> fallback) const {
    if (!fallback) throw Error(str(origin_, " has no ", key, ": a LLaMA config.json names it"));
    return *fallback;
  }
  const json& j_;
  std::string origin_;
};

// rope_type "default" or "llama3" with its parameters, from an object holding rope_type (or the
// older spelling type) and, for llama3, factor, low/high_freq_factor and the original context.
void read_rope_scaling(ModelConfig& m, const ConfigFields& r, const std::string& where) {
  const std::string type = r.has("rope_type") ? r.string("rope_type", "") : r.string("type", "default");
  if (type == "default") return;
  if (type != "llama3")
    throw Error(str(r.origin(), ": ", where, ".rope_type = \"", type, "\" is not supported: cairn implements the "
                    "\"default\" rotary embedding and \"llama3\" frequency scaling"));
  m.rope_type = "llama3";
  m.rope_factor = r.number("factor");
  m.rope_low_freq_factor = r.number("low_freq_factor");
  m.rope_high_freq_factor = r.number("high_freq_factor");
  m.rope_original_context = r.integer("original_max_position_embeddings");
}

template <typename T>
std::string value_text(const T& v) {
  if constexpr (std::is_same_v<T, bool>) {
    return v ? "true" : "false";
  } else if constexpr (std::is_same_v<T, std::string>) {
    return "\"" + v + "\"";
  } else if constexpr (std::is_floating_point_v<T>) {
    char buf[64];
    return std::string(buf, std::to_chars(buf, buf + sizeof buf, v).ptr);
  } else {
    return std::to_string(v);
  }
}

// One model key an HF config fixes: its value as text (for comparing and messages) and the copy
// from the checkpoint's config into the run's.
struct MergedKey {
  const char* name;
  std::function<std::string(const ModelConfig&)> value;
  std::function<void(ModelConfig&, const ModelConfig&)> take;
  bool llama3_only = false;  // meaningful only with rope_type = "llama3"
};

#define CAIRN_MERGED(key, expr, field, ...)                                              \
  MergedKey {                                                                            \
    "model." key, [](const ModelConfig& c) { return value_text(c.expr); },               \
        [](ModelConfig& d, const ModelConfig& s) { d.field = s.field; }, ##__VA_ARGS__ \
  }

const std::vector<MergedKey>& merged_keys() {
  static const std::vector<MergedKey> keys = {
      CAIRN_MERGED("vocab_size", vocab_size, vocab_size),
      CAIRN_MERGED("dim", dim, dim),
      CAIRN_MERGED("n_layers", n_layers, n_layers),
      CAIRN_MERGED("n_heads", n_heads, n_heads),
      CAIRN_MERGED("n_kv_heads", kv_heads(), n_kv_heads),
      CAIRN_MERGED("head_dim", head_size(), head_dim),
      CAIRN_MERGED("ffn_dim", ffn_dim, ffn_dim),
      CAIRN_MERGED("norm_eps", norm_eps, norm_eps),
      CAIRN_MERGED("rope_theta", rope_theta, rope_theta),
      CAIRN_MERGED("tie_embeddings", tie_embeddings, tie_embeddings),
      CAIRN_MERGED("rope_type", rope_type, rope_type),
      CAIRN_MERGED("rope_factor", rope_factor, rope_factor, true),
      CAIRN_MERGED("rope_low_freq_factor", rope_low_freq_factor, rope_low_freq_factor, true),
      CAIRN_MERGED("rope_high_freq_factor", rope_high_freq_factor, rope_high_freq_factor, true),
      CAIRN_MERGED("rope_original_context", rope_original_context, rope_original_context, true),
  };
  return keys;
}
#undef CAIRN_MERGED

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += str(i ? ", " : "", shape[i]);
  return s + "]";
}

// Tensors a checkpoint may hold that are no parameter: the rotary tables older transformers saved.
bool is_skipped_buffer(const std::string& name) { return name.ends_with(".rotary_emb.inv_freq"); }

}  // namespace

std::string hf_dir_of(const std::string& spec) { return spec.starts_with("hf:") ? spec.substr(3) : std::string(); }

ModelConfig hf_read_model_config(const std::string& dir) {
  const fs::path path = fs::path(dir) / "config.json";
  if (!fs::is_directory(dir)) throw Error(str("hf:", dir, " is not a directory (a Hugging Face model directory)"));
  const json j = read_json(path, "Hugging Face config");
  const ConfigFields f(j, "'" + path.string() + "'");

  // What cairn's model cannot represent, each named by its field.
  const std::string model_type = f.string("model_type", "llama");
  if (model_type != "llama")
    throw Error(str(f.origin(), ": model_type = \"", model_type, "\" is not a LLaMA model: cairn imports "
                    "LlamaForCausalLM checkpoints"));
  if (f.has("architectures")) {
    const json& a = f.at("architectures");
    if (!a.is_array() || a.size() != 1 || a[0] != "LlamaForCausalLM")
      throw Error(str(f.origin(), ": architectures = ", a.dump(), " is not [\"LlamaForCausalLM\"]"));
  }
  if (const std::string act = f.string("hidden_act", "silu"); act != "silu")
    throw Error(str(f.origin(), ": hidden_act = \"", act, "\": cairn's MLP is SwiGLU (silu)"));
  if (f.boolean("attention_bias", false))
    throw Error(str(f.origin(), ": attention_bias = true: cairn's q, k, v and o projections have no bias"));
  if (f.boolean("mlp_bias", false))
    throw Error(str(f.origin(), ": mlp_bias = true: cairn's MLP projections have no bias"));
  if (f.has("sliding_window") && f.boolean("use_sliding_window", true))
    throw Error(str(f.origin(), ": sliding_window = ", f.at("sliding_window").dump(),
                    ": cairn's attention is full causal attention, without a window"));

  ModelConfig m;
  m.vocab_size = f.integer("vocab_size");
  m.dim = f.integer("hidden_size");
  m.n_layers = f.integer("num_hidden_layers");
  m.n_heads = f.integer("num_attention_heads");
  m.n_kv_heads = f.integer("num_key_value_heads", m.n_heads);
  if (m.n_heads <= 0) throw Error(str(f.origin(), ": num_attention_heads = ", m.n_heads, " must be positive"));
  m.head_dim = f.integer("head_dim", m.dim / m.n_heads);
  m.ffn_dim = f.integer("intermediate_size");
  m.norm_eps = float(f.number("rms_norm_eps", 1e-6));
  m.tie_embeddings = f.boolean("tie_word_embeddings", false);
  if (f.has("rope_parameters")) {  // transformers 5.x
    if (!f.at("rope_parameters").is_object()) throw Error(str(f.origin(), ": rope_parameters is not an object"));
    const ConfigFields r(f.at("rope_parameters"), f.origin());
    m.rope_theta = float(r.number("rope_theta", 10000.0));
    read_rope_scaling(m, r, "rope_parameters");
  } else {
    m.rope_theta = float(f.number("rope_theta", 10000.0));
    if (f.has("rope_scaling")) {
      if (!f.at("rope_scaling").is_object()) throw Error(str(f.origin(), ": rope_scaling is not an object"));
      read_rope_scaling(m, ConfigFields(f.at("rope_scaling"), f.origin()), "rope_scaling");
    }
  }
  try {
    m.validate();
  } catch (const Error& e) {
    throw Error(str(f.origin(), " describes a model cairn cannot build: ", e.what()));
  }
  return m;
}

void hf_merge_model_config(ModelConfig& run, const ModelConfig& ckpt, const std::set<std::string>& set_keys,
                           const std::string& dir) {
  if (run.linear.kind != LinearKind::dense)
    throw Error(str("model.init_from = \"hf:", dir, "\" loads dense weights: model.linear = \"",
                    linear_kind_name(run.linear.kind), "\" has no place for them (use \"dense\")"));
  if (run.norm_layout != NormLayout::pre || run.norm_scaling)
    throw Error(str("model.init_from = \"hf:", dir, "\" is a Pre-LN LLaMA: model.norm_layout = \"", choice_name(run.norm_layout),
                    "\" and model.norm_scaling = ", run.norm_scaling ? "true" : "false",
                    " would change what its weights compute (use \"pre\" and false)"));
  for (const MergedKey& k : merged_keys()) {
    if (k.llama3_only && ckpt.rope_type != "llama3") continue;
    // model.vocab_size = 0 means "the dataset's": here, the checkpoint's.
    const bool vocab_auto = std::string(k.name) == "model.vocab_size" && run.vocab_size == 0;
    if (!set_keys.count(k.name) || vocab_auto) {
      k.take(run, ckpt);
    } else if (k.value(run) != k.value(ckpt)) {
      throw Error(str(k.name, " = ", k.value(run), " in the run's config, but the checkpoint hf:", dir, " has ",
                      k.value(ckpt), ": remove the key (it is taken from config.json) or make it match"));
    }
  }
}

std::map<std::string, std::string> hf_weight_files(const std::string& dir) {
  const fs::path index = fs::path(dir) / "model.safetensors.index.json", single = fs::path(dir) / "model.safetensors";
  std::map<std::string, std::string> files;
  if (fs::exists(index)) {
    const json j = read_json(index, "safetensors index");
    if (!j.contains("weight_map") || !j["weight_map"].is_object())
      throw Error(str("'", index.string(), "' has no weight_map object"));
    for (const auto& [name, file] : j["weight_map"].items()) {
      if (!file.is_string() || file.get<std::string>().find('/') != std::string::npos)
        throw Error(str("'", index.string(), "': weight_map[\"", name, "\"] = ", file.dump(),
                        " is not a file name in the directory"));
      const fs::path shard = fs::path(dir) / file.get<std::string>();
      if (!fs::exists(shard))
        throw Error(str("'", index.string(), "' puts tensor '", name, "' in '", shard.string(), "', which does not exist"));
      files[name] = shard.string();
    }
    return files;
  }
  if (!fs::exists(single))
    throw Error(str("hf:", dir, " has neither model.safetensors nor model.safetensors.index.json (cairn reads "
                    "safetensors only: save with save_pretrained(..., safe_serialization=True))"));
  const SafetensorsFile file = SafetensorsFile::open(single.string());
  for (const auto& e : file.entries()) files[e.name] = single.string();
  return files;
}

int64_t hf_load_weights(LlamaModel& model, const std::string& dir) {
  const ParamTable& table = model.params();
  for (const auto& r : table.rows())
    if (r.role != ParamRole::embedding && r.role != ParamRole::lm_head && r.role != ParamRole::norm &&
        r.role != ParamRole::matrix)
      throw Error(str("hf:", dir, " holds dense weights, but parameter '", r.name, "' is not one (model.linear = \"",
                      linear_kind_name(model.config().linear.kind), "\")"));
  const std::map<std::string, std::string> where = hf_weight_files(dir);
  std::map<std::string, std::unique_ptr<SafetensorsFile>> shards;
  auto entry = [&](const std::string& name) -> std::pair<const SafetensorsFile*, const SafetensorsEntry*> {
    const std::string& file = where.at(name);
    auto& f = shards[file];
    if (!f) f = std::make_unique<SafetensorsFile>(SafetensorsFile::open(file));
    if (!f->has(name))
      throw Error(str("'", file, "' has no tensor '", name, "' although the index puts it there"));
    return {f.get(), &f->at(name)};
  };

  // Every check before the first write.
  const ModelConfig& cfg = model.config();
  int64_t largest = 0;
  for (const auto& r : table.rows()) {
    if (!where.count(r.name))
      throw Error(str("hf:", dir, " has no tensor '", r.name, "', which its config.json's architecture needs"));
    const SafetensorsEntry* e = entry(r.name).second;
    if (e->shape != r.shape)
      throw Error(str("hf:", dir, ": tensor '", r.name, "' has shape ", shape_text(e->shape), " but the model expects ",
                      shape_text(r.shape)));
    largest = std::max(largest, r.numel);
  }
  bool tied_head = false;
  for (const auto& [name, file] : where) {
    if (table.find(name) >= 0 || is_skipped_buffer(name)) continue;
    if (name == "lm_head.weight" && cfg.tie_embeddings) {
      tied_head = true;
      continue;
    }
    throw Error(str("hf:", dir, ": tensor '", name, "' (in ", file, ") has no place in cairn's LLaMA (",
                    name.ends_with(".bias") ? "no projection has a bias" : "not a parameter of this architecture",
                    ")"));
  }
  if (tied_head) {  // a copy of the embedding saved beside it: it must be one
    const auto [file, e] = entry("lm_head.weight");
    const auto [embed_file, embed] = entry("model.embed_tokens.weight");
    if (e->shape != embed->shape)
      throw Error(str("hf:", dir, ": lm_head.weight has shape ", shape_text(e->shape),
                      " but tie_word_embeddings = true makes it the embedding ", shape_text(embed->shape)));
    if (file->read("lm_head.weight") != embed_file->read("model.embed_tokens.weight"))
      throw Error(str("hf:", dir, ": tie_word_embeddings = true but lm_head.weight differs from "
                      "model.embed_tokens.weight: set tie_word_embeddings to false in config.json"));
  }

  std::vector<float> buf(static_cast<size_t>(largest));
  int64_t bytes = 0;
  for (const auto& r : table.rows()) {
    const auto [file, e] = entry(r.name);
    const std::span<float> values(buf.data(), size_t(r.numel));
    file->read_into(r.name, values);
    model.backend().copy_to_device(model.param_data() + r.offset, values.data(), r.numel * 4);
    bytes += e->end - e->begin;
  }
  return bytes;
}

}  // namespace cairn
