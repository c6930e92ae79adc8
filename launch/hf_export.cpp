// Hugging Face export (see hf_export.h).
#include "launch/hf_export.h"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <filesystem>

#include <nlohmann/json.hpp>
#include <sentencepiece_processor.h>

#include "data/hf_tokenizer.h"
#include "launch/cli.h"
#include "util/error.h"
#include "util/file_io.h"

namespace cairn {

namespace fs = std::filesystem;
using ordered_json = nlohmann::ordered_json;

namespace {

bool is_projection_part(ParamRole role) {
  return role == ParamRole::matrix || role == ParamRole::lowrank_factor || role == ParamRole::sparse_values;
}

// One exported tensor: a ParamTable row copied as is, or a projection's dense weight.
struct ExportItem {
  TensorSpec spec;
  const ParamRow* row = nullptr;
  const Linear* linear = nullptr;
};

std::vector<ExportItem> export_items(const LlamaModel& model) {
  std::vector<ExportItem> items;
  std::vector<const Linear*> done;
  for (const auto& r : model.params().rows()) {
    if (!is_projection_part(r.role)) {
      items.push_back({{r.name, r.shape}, &r, nullptr});
      continue;
    }
    // The projection owning this row; its dense W is exported once, where its first row was.
    const Linear* owner = nullptr;
    for (const auto& lin : model.linears())
      if (r.name.starts_with(lin->name() + ".")) owner = lin.get();
    CAIRN_ASSERT(owner, "parameter row ", r.name, " belongs to no projection");
    if (std::find(done.begin(), done.end(), owner) != done.end()) continue;
    done.push_back(owner);
    items.push_back({{owner->name() + ".weight", {owner->out_features(), owner->in_features()}}, nullptr, owner});
  }
  CAIRN_ASSERT(done.size() == model.linears().size(), "some projections own no parameter rows");
  return items;
}

void write_text(const fs::path& path, const std::string& text) {
  OutputFile out(path.string(), OutputFile::Mode::truncate);
  out.write(text);
  out.close();
}

// A float config value as the double with the float's shortest decimal (1e-05, not 9.99999974e-06).
double shortest(float x) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, x);
  return std::strtod(std::string(buf, r.ptr).c_str(), nullptr);
}

std::string torch_dtype(TensorDtype d) {
  return d == TensorDtype::bf16 ? "bfloat16" : d == TensorDtype::f16 ? "float16" : "float32";
}

struct SpecialIds {
  int64_t bos, eos;
};

// config.json: what LlamaConfig needs to rebuild exactly this architecture.
std::string config_json(const ModelConfig& c, TensorDtype dtype, SpecialIds ids) {
  ordered_json j;
  j["architectures"] = {"LlamaForCausalLM"};
  j["model_type"] = "llama";
  j["hidden_size"] = c.dim;
  j["intermediate_size"] = c.ffn_dim;
  j["num_hidden_layers"] = c.n_layers;
  j["num_attention_heads"] = c.n_heads;
  j["num_key_value_heads"] = c.kv_heads();
  j["head_dim"] = c.head_size();
  j["vocab_size"] = c.vocab_size;
  j["max_position_embeddings"] = c.seq_len;
  j["rms_norm_eps"] = shortest(c.norm_eps);
  j["rope_theta"] = shortest(c.rope_theta);
  if (c.rope_type == "llama3") {
    ordered_json r;
    r["rope_type"] = "llama3";
    r["factor"] = c.rope_factor;
    r["low_freq_factor"] = c.rope_low_freq_factor;
    r["high_freq_factor"] = c.rope_high_freq_factor;
    r["original_max_position_embeddings"] = c.rope_original_context;
    j["rope_scaling"] = r;
  } else {
    j["rope_scaling"] = nullptr;
  }
  j["tie_word_embeddings"] = c.tie_embeddings;
  j["hidden_act"] = "silu";
  j["attention_bias"] = false;
  j["attention_dropout"] = 0.0;
  j["mlp_bias"] = false;
  j["initializer_range"] = shortest(c.init_std);
  j["pretraining_tp"] = 1;
  j["use_cache"] = true;
  j["torch_dtype"] = torch_dtype(dtype);
  j["bos_token_id"] = ids.bos;
  j["eos_token_id"] = ids.eos;
  return j.dump(2) + "\n";
}

std::string generation_config_json(const ModelConfig& c, SpecialIds ids) {
  ordered_json j;
  j["bos_token_id"] = ids.bos;
  j["eos_token_id"] = ids.eos;
  j["do_sample"] = true;
  j["temperature"] = 0.8;
  j["top_k"] = 40;
  j["top_p"] = 0.95;
  j["max_length"] = c.seq_len;
  return j.dump(2) + "\n";
}

// tokenizer.json as cairn encodes with it: without the post_processor, which would add a BOS
// (LLaMA-3's <|begin_of_text|>) that the model never saw in training; tokenizer_config.json so that
// AutoTokenizer loads it, with split_special_tokens because cairn never reads special tokens from
// text. Returns the README's note.
std::string write_hf_tokenizer(const fs::path& dir, const Tokenizer& tokenizer, int64_t seq_len) {
  ordered_json tj = ordered_json::parse(tokenizer.serialized());
  std::string eos;
  for (const auto& t : tj.at("added_tokens"))
    if (t.at("id") == tokenizer.eos_id()) eos = t.at("content").get<std::string>();
  const bool had_post_processor = !tj["post_processor"].is_null();
  tj["post_processor"] = nullptr;
  write_text(dir / "tokenizer.json", had_post_processor ? tj.dump() : tokenizer.serialized());
  ordered_json t;
  t["tokenizer_class"] = "PreTrainedTokenizerFast";
  t["eos_token"] = eos;
  t["model_max_length"] = seq_len;
  t["clean_up_tokenization_spaces"] = false;
  t["split_special_tokens"] = true;
  write_text(dir / "tokenizer_config.json", t.dump(2) + "\n");
  return str("the Hugging Face byte-level BPE it was prepared with (`tokenizer.json`, loaded by\n`AutoTokenizer`",
             had_post_processor ? "; its post_processor is removed" : "",
             "; special tokens are never read from text and no BOS or EOS is added, as in\ntraining). "
             "Documents end with EOS `", eos, "` (id ", tokenizer.eos_id(), ").\n");
}

}  // namespace

void hf_check_exportable(const ModelConfig& cfg) {
  if (cfg.post_ln_layers() > 0)
    throw Error(str("model.norm_layout = \"mix\" (Mix-LN, ", cfg.post_ln_layers(), " Post-LN layers) cannot be "
                    "exported to Hugging Face: transformers' LlamaForCausalLM normalizes only before attention and "
                    "MLP (Pre-LN), so it has no form for the Post-LN layers' post_attention_layernorm and "
                    "post_feedforward_layernorm; use the model with cairn eval and cairn generate instead"));
}

std::vector<TensorSpec> hf_tensor_specs(const LlamaModel& model) {
  std::vector<TensorSpec> specs;
  for (auto& item : export_items(model)) specs.push_back(std::move(item.spec));
  return specs;
}

// Removes the temporary export directory unless the export was committed.
class TmpDirGuard {
 public:
  explicit TmpDirGuard(fs::path p) : path_(std::move(p)) {}
  ~TmpDirGuard() {
    std::error_code ec;
    if (!committed_) fs::remove_all(path_, ec);
  }
  void commit() { committed_ = true; }
 private:
  fs::path path_;
  bool committed_ = false;
};

void export_hf(LlamaModel& model, const Tokenizer& tokenizer, const std::string& out_dir, TensorDtype dtype,
               const std::string& source) {
  const ModelConfig& cfg = model.config();
  hf_check_exportable(cfg);
  const fs::path out = fs::path(out_dir).lexically_normal();
  if (out.empty() || out.filename().empty()) throw Error(str("--out '", out_dir, "' is not a directory name"));
  require_new_output(out_dir);
  std::error_code ec;
  if (tokenizer.vocab_size() > cfg.vocab_size)
    throw Error(str("the tokenizer has vocabulary ", tokenizer.vocab_size(), " but the model ", cfg.vocab_size));
  const fs::path tmp = out.string() + ".tmp";
  fs::remove_all(tmp, ec);
  if (!out.parent_path().empty()) fs::create_directories(out.parent_path(), ec);
  if (!fs::create_directory(tmp, ec) || ec)
    throw Error(str("cannot create '", tmp.string(), "': ", ec ? ec.message() : "it exists",
                    " (is the parent of --out a writable directory?)"));
  TmpDirGuard guard(tmp);

  // The tokenizer first: it is small and most likely to fail (a damaged model proto).
  const bool sp = tokenizer.kind() == "sentencepiece";
  SpecialIds ids{int64_t(tokenizer.eos_id()), int64_t(tokenizer.eos_id())};
  std::string tokenizer_note;
  if (sp) {
    const std::string proto = tokenizer.serialized();
    sentencepiece::SentencePieceProcessor proc;
    if (!proc.LoadFromSerializedProto(proto).ok()) throw Error("the SentencePiece tokenizer's model does not load");
    if (proc.bos_id() >= 0) ids.bos = proc.bos_id();
    write_text(tmp / "tokenizer.model", proto);
    auto piece = [&](int id) { return id >= 0 ? ordered_json(proc.IdToPiece(id)) : ordered_json(nullptr); };
    ordered_json t;
    // cairn encodes without BOS or EOS, with the model's own normalization. transformers converts
    // tokenizer.model into its LlamaTokenizer, which then encodes like SentencePiece except for
    // text that starts with a space (tools/reference/check_hf_export.py counts the matches).
    t["tokenizer_class"] = "LlamaTokenizer";
    t["bos_token"] = piece(proc.bos_id());
    t["eos_token"] = piece(proc.eos_id());
    t["unk_token"] = piece(proc.unk_id());
    t["pad_token"] = piece(proc.pad_id());
    t["add_bos_token"] = false;
    t["add_eos_token"] = false;
    t["legacy"] = true;
    t["clean_up_tokenization_spaces"] = false;
    t["model_max_length"] = cfg.seq_len;
    t["sp_model_kwargs"] = ordered_json::object();
    write_text(tmp / "tokenizer_config.json", t.dump(2) + "\n");
    tokenizer_note = str("SentencePiece (`tokenizer.model`, loaded by `LlamaTokenizer`; no BOS or EOS is added,\n"
                         "as in training). Documents end with EOS (id ", tokenizer.eos_id(), ").\n");
  } else if (tokenizer.kind() == kHfTokenizerKind) {
    tokenizer_note = write_hf_tokenizer(tmp, tokenizer, cfg.seq_len);
  } else {
    tokenizer_note = str("cairn's byte-level tokenizer, which `transformers` does not ship, so there are no\n"
                         "tokenizer files: token ids 0..255 are the bytes of the UTF-8 text, id 256 is EOS (it ends\n"
                         "every document; it also serves as `bos_token_id`). Encode with\n"
                         "`list(text.encode(\"utf-8\"))` and decode with `bytes(i for i in ids if i < 256)`.\n");
  }

  write_text(tmp / "config.json", config_json(cfg, dtype, ids));
  write_text(tmp / "generation_config.json", generation_config_json(cfg, ids));

  const std::vector<ExportItem> items = export_items(model);
  std::vector<float> host(size_t(model.params().total()));
  model.backend().copy_to_host(host.data(), model.param_data(), int64_t(host.size()) * 4);
  const std::span<const float> flat(host);
  std::vector<TensorSpec> specs;
  for (const auto& item : items) specs.push_back(item.spec);
  write_safetensors((tmp / "model.safetensors").string(), specs, dtype, {{"format", "pt"}},
                    [&](size_t i, std::span<float> dst) {
                      if (const ParamRow* r = items[i].row) {
                        const auto src = row_span(flat, *r);
                        std::copy(src.begin(), src.end(), dst.begin());
                        // LayerNorm Scaling: s·(x̂ ⊙ w) = x̂ ⊙ (s·w), so the gain carries the factor.
                        const float scale = r->role == ParamRole::norm && r->layer >= 0 ? cfg.norm_scale(r->layer) : 1.0f;
                        if (scale != 1.0f)
                          for (float& w : dst) w *= scale;
                      } else {
                        items[i].linear->dense_weight(dst.data(), flat, model.buffers());
                      }
                    });

  write_text(tmp / "README.md",
             str("# cairn export\n\nA LLaMA causal LM trained with cairn, exported from `", source, "`.\n\n",
                 "```python\nfrom transformers import LlamaForCausalLM\nmodel = LlamaForCausalLM.from_pretrained(\"",
                 out.filename().string(), "\")\n```\n\n", "- ", cfg.n_layers, " layers, width ", cfg.dim, ", ",
                 cfg.n_heads, " heads (", cfg.kv_heads(), " key/value), FFN ", cfg.ffn_dim, ", vocabulary ", cfg.vocab_size,
                 ", trained on sequences of ", cfg.seq_len, " tokens\n", "- weights: ", torch_dtype(dtype),
                 cfg.linear.kind != LinearKind::dense
                     ? str(" (trained as ", linear_kind_name(cfg.linear.kind), " factors, exported as the dense matrices they define)")
                     : std::string(),
                 cfg.norm_scaling ? "\n- trained with LayerNorm Scaling: each layer l's (1-based) two norm gains are "
                                    "exported times 1/sqrt(l), which is the same function in LlamaForCausalLM"
                                  : "",
                 "\n- tokenizer: ", tokenizer_note));

  fs::rename(tmp, out, ec);
  if (ec) throw Error(str("cannot rename '", tmp.string(), "' to '", out_dir, "': ", ec.message()));
  guard.commit();
}

}  // namespace cairn
