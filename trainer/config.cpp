// The config key table and TOML reading/writing (see config.h).
#include "trainer/config.h"

#include <toml++/toml.h>

#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string_view>
#include <variant>

#include "backend/backend.h"
#include "model/hf_import.h"
#include "util/cuda_module.h"
#include "util/error.h"

namespace cairn {
namespace {

// A choice key's field (an enum with a ChoiceNames table): set from one of its names, printed as
// its name, and the allowed names listed when another is given.
struct Choice {
  std::function<bool(std::string_view)> set;  // false, and nothing set, for a name not in the table
  std::function<std::string_view()> get;
  std::string allowed;
};
template <typename E>
Choice choice(E* p) {
  return {[p](std::string_view name) {
            const std::optional<E> v = choice_from_name<E>(name);
            if (v) *p = *v;
            return v.has_value();
          },
          [p] { return choice_name(*p); }, choice_list<E>()};
}

using Field = std::variant<int64_t*, uint64_t*, float*, double*, bool*, std::string*, Choice,
                           std::vector<std::string>*>;

struct Key {
  std::string name;  // "section.key"
  Field field;
  std::string doc;
  // Read from old configs (stored ones included) and rewritten by config_upgrade; never written
  // or listed.
  bool deprecated = false;
};

// The one table of keys. Adding a field to TrainConfig means adding one line here.
std::vector<Key> keys_of(TrainConfig& c) {
  auto& m = c.model;
  auto& o = c.optimizer;
  auto& s = c.schedule;
  auto& d = c.data;
  auto& t = c.training;
  return {
      {"device", choice(&c.device), "\"cpu\" (\"cuda\" where the CUDA backend is built)"},
      {"model.vocab_size", &m.vocab_size, "vocabulary size V; 0 takes the dataset's"},
      {"model.dim", &m.dim, "model width C"},
      {"model.n_layers", &m.n_layers, "transformer blocks L"},
      {"model.n_heads", &m.n_heads, "attention heads NH (dim / n_heads must be even)"},
      {"model.n_kv_heads", &m.n_kv_heads, "key/value heads NKV, dividing n_heads (grouped-query attention); 0: n_heads"},
      {"model.head_dim", &m.head_dim, "head size HS (even); 0: dim / n_heads"},
      {"model.ffn_dim", &m.ffn_dim, "SwiGLU hidden width F"},
      {"model.seq_len", &m.seq_len, "sequence length T"},
      {"model.norm_eps", &m.norm_eps, "RMSNorm epsilon"},
      {"model.rope_theta", &m.rope_theta, "rotary embedding base"},
      {"model.rope_type", &m.rope_type, "rotary frequency scaling: \"default\" (none) | \"llama3\""},
      {"model.rope_factor", &m.rope_factor, "llama3 rope: factor dividing the low frequencies"},
      {"model.rope_low_freq_factor", &m.rope_low_freq_factor, "llama3 rope: low_freq_factor"},
      {"model.rope_high_freq_factor", &m.rope_high_freq_factor, "llama3 rope: high_freq_factor"},
      {"model.rope_original_context", &m.rope_original_context, "llama3 rope: original_max_position_embeddings"},
      {"model.tie_embeddings", &m.tie_embeddings, "LM head shares the embedding matrix"},
      {"model.init_std", &m.init_std, "std of the normal initialization"},
      {"model.linear", choice(&m.linear.kind), "projection weights: \"dense\" | \"lowrank\" | \"sltrain\""},
      {"model.rank", &m.linear.rank, "rank r of low-rank / SLTrain factors"},
      {"model.alpha", &m.linear.alpha, "low-rank scale s = alpha / r"},
      {"model.density", &m.linear.density, "SLTrain sparse density delta"},
      {"model.sltrain_path", choice(&m.linear.sltrain_path), "\"auto\" | \"materialized\" | \"factored\""},
      {"model.norm_layout", choice(&m.norm_layout), "\"pre\" (Pre-LN) | \"mix\" (Mix-LN: the first floor(mix_ln_alpha * n_layers) layers Post-LN)"},
      {"model.mix_ln_alpha", &m.mix_ln_alpha, "Mix-LN: fraction of the layers, the first ones, that are Post-LN (0: all Pre-LN)"},
      {"model.norm_scaling", &m.norm_scaling, "LayerNorm Scaling: layer l's (1-based) pre-norm outputs times 1/sqrt(l) (not with \"mix\")"},
      {"model.init_from", &c.init_from, "weights file (model.h5 or a checkpoint's) to start from, or \"hf:DIR\" (a Hugging Face LLaMA checkpoint; unset model keys take its values); \"\": random init"},
      {"optimizer.name", choice(&o.name), "\"adamw\" | \"fira\" | \"galore\""},
      {"optimizer.beta1", &o.beta1, "Adam beta1"},
      {"optimizer.beta2", &o.beta2, "Adam beta2"},
      {"optimizer.eps", &o.eps, "Adam epsilon"},
      {"optimizer.weight_decay", &o.weight_decay, "decoupled weight decay"},
      {"optimizer.decay_norms", &o.decay_norms, "apply weight decay to RMSNorm gains"},
      {"optimizer.decay_embeddings", &o.decay_embeddings, "apply weight decay to embedding and LM head"},
      {"optimizer.grad_clip", &o.grad_clip, "global gradient-norm clip (0: off)"},
      {"optimizer.rank", &o.rank, "Fira/GaLore projection rank"},
      {"optimizer.update_gap", &o.update_gap, "Fira/GaLore steps between projection refreshes"},
      {"optimizer.alpha", &o.alpha, "Fira/GaLore scale"},
      {"optimizer.limiter_gamma", &o.limiter_gamma, "Fira norm-growth limiter"},
      {"optimizer.residual_form", choice(&o.residual_form), "Fira residual: \"code\" | \"paper\""},
      {"schedule.kind", choice(&s.kind), "\"cosine\" | \"constant\" | \"rewarm\" | \"infinite\""},
      {"schedule.lr", &s.lr, "peak learning rate"},
      {"schedule.min_lr_ratio", &s.min_lr_ratio, "final LR as a fraction of the peak"},
      {"schedule.warmup", &s.warmup, "warmup: a fraction of the stage's steps if < 1, else steps; < 0: 0.01 for rewarm, 0.1 otherwise"},
      {"schedule.stage_start", &s.stage_start, "first step of this schedule stage (e.g. the resumed step of a new stage)"},
      {"schedule.start_lr", &s.start_lr, "rewarm: LR at the stage's first step; < 0: lr * min_lr_ratio"},
      {"schedule.cooldown", &s.cooldown, "infinite: cooldown length, a fraction of the stage's steps if < 1, else steps"},
      {"schedule.cooldown_shape", choice(&s.cooldown_shape), "infinite: \"cosine\" | \"linear\" | \"inv_sqrt\""},
      {"schedule.const_lr_ratio", &s.const_lr_ratio, "infinite: constant-phase LR as a fraction of the peak"},
      {"schedule.anneal_start", &s.anneal_start, "infinite: step where the exponential anneal to lr * min_lr_ratio starts (< 0: none)"},
      {"data.train", &d.train, "token dataset written by `cairn prepare` (a directory, or an older .h5 file)"},
      {"data.mixture", &d.mixture, "instead of data.train: [\"out/a:0.75\", \"out/b:0.25\"] datasets with sampling weights"},
      {"data.validate", &d.validate, "extra datasets to validate on (val_loss/<directory name or file stem>)"},
      {"data.seed", &d.seed, "seed of the data order"},
      {"training.micro_batch", &t.micro_batch, "sequences per rank per micro-step"},
      {"training.grad_accum", &t.grad_accum, "micro-steps per optimizer step"},
      {"training.steps", &t.steps, "optimizer steps"},
      {"training.seed", &t.seed, "seed of the initialization"},
      {"training.tokens_before", &t.tokens_before, "tokens the initial weights already saw (metrics: total_tokens)"},
      {"training.reset_optimizer", &t.reset_optimizer, "on --resume: fresh optimizer state (weights and step kept)"},
      {"training.log_every", &t.log_every, "steps between log lines"},
      {"training.eval_every", &t.eval_every, "steps between validations (0: off)"},
      {"training.eval_windows", &t.eval_windows,
       "windows of seq_len + 1 tokens per validation set and evaluation (all when fewer), shared by the ranks"},
      {"training.eval_batches", &t.eval_batches, "deprecated: eval_batches x micro_batch windows", true},
      {"training.skip_nonfinite", &t.skip_nonfinite,
       "skip steps with non-finite loss instead of stopping (10 in a row still stop the run)"},
      {"training.threads", &t.threads, "CPU threads per rank (0: cores / local ranks)"},
      {"training.peak_flops", &t.peak_flops, "peak FLOP/s per rank for MFU (0: a GPU's datasheet peak for the math mode, else the GEMM peak measured once per host, backend and threads, cached in ~/.cache/cairn/peak.json)"},
      {"training.precision", choice(&t.precision),
       "GEMM math: \"fp32\" | \"tf32\" (device = \"cuda\") | \"bf16\" (bf16 GEMM operands, fp32 accumulation and master weights; GPU or CPU)"},
      {"training.zero1", &t.zero1, "shard optimizer state across ranks (ZeRO-1)"},
      {"training.bucket_mb", &t.bucket_mb, "gradient all-reduce bucket size in MiB"},
      {"training.grad_wire", choice(&t.grad_wire),
       "gradient all-reduce between hosts: \"fp32\" | \"bf16\" (half the bytes; each rank's gradient is rounded to bf16 once, sums stay fp32, the average is rounded once)"},
      {"training.grad_hierarchical", &t.grad_hierarchical,
       "gradient all-reduce within each host first, then one exchange per host across hosts, then within the host (same ranks per host)"},
      {"training.check_every", &t.check_every, "steps between cross-rank parameter checks (0: off)"},
      {"training.comm_timeout_s", &t.comm_timeout_s, "seconds before a stuck collective ends the job"},
      {"growth.at_tokens", &c.growth.at_tokens, "G_stack: grow the model in place when this run's tokens reach this (0: never)"},
      {"growth.factor", &c.growth.factor, "G_stack: n_layers becomes factor * n_layers"},
      {"output.run_dir", &c.output.run_dir, "directory for metrics, plots and weights"},
      {"output.plot", &c.output.plot, "draw loss.png at the end"},
      {"output.progress", &c.output.progress, "progress bar when stdout is a terminal (mpirun gives ranks one; CAIRN_PROGRESS=0 turns it off)"},
      {"output.tensorboard", &c.output.tensorboard, "also write the metrics as TensorBoard event files in <run_dir>/tb"},
      {"checkpoint.every", &c.checkpoint.every, "steps between checkpoints, and one at the last step (0: off; SIGTERM/SIGUSR1 still save)"},
      {"checkpoint.keep", &c.checkpoint.keep, "newest checkpoints kept (0: all)"},
      {"checkpoint.dir", &c.checkpoint.dir, "checkpoint directory (\"\": <run_dir>/checkpoints)"},
  };
}

Key* find_key(std::vector<Key>& keys, const std::string& name) {
  for (auto& k : keys)
    if (k.name == name) return &k;
  return nullptr;
}

[[noreturn]] void unknown_key(const std::string& name, const std::string& origin) {
  TrainConfig probe;
  std::string section = name.substr(0, name.find('.'));
  std::string known;
  for (const auto& k : keys_of(probe))
    if (k.name.rfind(section + ".", 0) == 0 && !k.deprecated) known += (known.empty() ? "" : ", ") + k.name;
  throw Error(str("unknown config key '", name, "' in ", origin,
                  known.empty() ? std::string("") : str(" (keys of [", section, "]: ", known, ")")));
}

// Sets one field from a TOML node, checking its type.
void set_field(Key& key, const toml::node& node, const std::string& origin) {
  auto wrong = [&](const char* want) -> Error {
    return Error(str("config key '", key.name, "' in ", origin, " must be ", want));
  };
  if (Choice* c = std::get_if<Choice>(&key.field)) {
    if (!node.is_string()) throw wrong(str("one of the strings ", c->allowed).c_str());
    const std::string name = *node.value<std::string>();
    if (!c->set(name)) throw Error(str("config key '", key.name, "' in ", origin, " is \"", name, "\": use ", c->allowed));
    return;
  }
  std::visit(
      [&](auto p) {
        using T = std::remove_pointer_t<decltype(p)>;
        if constexpr (std::is_same_v<T, Choice>) {
        } else if constexpr (std::is_same_v<T, bool>) {
          if (!node.is_boolean()) throw wrong("a boolean (true or false)");
          *p = *node.value<bool>();
        } else if constexpr (std::is_same_v<T, int64_t> || std::is_same_v<T, uint64_t>) {
          if (!node.is_integer()) throw wrong("an integer");
          const int64_t v = *node.value<int64_t>();
          if (std::is_same_v<T, uint64_t> && v < 0) throw wrong("a non-negative integer");
          *p = T(v);
        } else if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
          if (!node.is_number()) throw wrong("a number");
          *p = T(*node.value<double>());
        } else if constexpr (std::is_same_v<T, std::string>) {
          if (!node.is_string()) throw wrong("a string");
          *p = *node.value<std::string>();
        } else {  // array of strings
          const toml::array* arr = node.as_array();
          if (!arr) throw wrong("an array of strings, e.g. [\"a\", \"b\"]");
          p->clear();
          for (const auto& e : *arr) {
            if (!e.is_string()) throw wrong("an array of strings, e.g. [\"a\", \"b\"]");
            p->push_back(*e.value<std::string>());
          }
        }
      },
      key.field);
}

void apply_table(std::vector<Key>& keys, const toml::table& table, const std::string& prefix,
                 const std::string& origin) {
  for (const auto& [k, node] : table) {
    const std::string name = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
    if (const toml::table* sub = node.as_table()) {
      apply_table(keys, *sub, name, origin);
      continue;
    }
    Key* key = find_key(keys, name);
    if (!key) unknown_key(name, origin);
    set_field(*key, node, origin);
  }
}

// The dotted names of the leaves of a TOML table ("model.dim", ...).
void collect_names(const toml::table& table, const std::string& prefix, std::set<std::string>& names) {
  for (const auto& [k, node] : table) {
    const std::string name = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
    if (const toml::table* sub = node.as_table()) collect_names(*sub, name, names);
    else names.insert(name);
  }
}

std::string format_field(const Field& f) {
  return std::visit(
      [](auto p) -> std::string {
        using T = std::remove_pointer_t<decltype(p)>;
        if constexpr (std::is_same_v<T, Choice>) return str("\"", p.get(), "\"");
        else if constexpr (std::is_same_v<T, bool>) return *p ? "true" : "false";
        else if constexpr (std::is_same_v<T, std::string>) {
          std::ostringstream os;
          os << toml::value<std::string>(*p);
          return os.str();
        }
        else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
          std::ostringstream os;
          os << "[";
          for (size_t i = 0; i < p->size(); ++i) os << (i ? ", " : "") << toml::value<std::string>((*p)[i]);
          os << "]";
          return os.str();
        } else if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
          // Shortest form that reads back as the same T (0.95f prints "0.95", not 0.949999988).
          char buf[64];
          std::string v(buf, std::to_chars(buf, buf + sizeof buf, *p).ptr);
          if (v.find_first_of(".eni") == std::string::npos) v += ".0";  // keep it a TOML float
          return v;
        } else return std::to_string(*p);
      },
      f);
}

}  // namespace

void config_apply_toml(TrainConfig& cfg, const std::string& text, const std::string& origin) {
  toml::table table;
  try {
    table = toml::parse(text, origin);
  } catch (const toml::parse_error& e) {
    const auto& where = e.source().begin;
    throw Error(str("cannot parse ", origin, " line ", where.line, " column ", where.column, ": ", e.description()));
  }
  auto keys = keys_of(cfg);
  apply_table(keys, table, "", origin);
}

void config_apply_file(TrainConfig& cfg, const std::string& path) {
  // An ifstream opens a directory and reads it as empty: the run would silently use the defaults.
  if (std::filesystem::is_directory(path))
    throw Error(str("config file '", path, "' is a directory: give a TOML file (configs/ has presets)"));
  std::ifstream in(path);
  if (!in) throw Error(str("cannot read config file '", path, "': ", std::filesystem::exists(path) ? "permission denied" : "no such file"));
  std::stringstream ss;
  ss << in.rdbuf();
  config_apply_toml(cfg, ss.str(), path);
}

void config_apply_override(TrainConfig& cfg, const std::string& assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw Error(str("--set expects section.key=value, got '", assignment, "'"));
  const std::string name = assignment.substr(0, eq), value = assignment.substr(eq + 1);
  auto keys = keys_of(cfg);
  Key* key = find_key(keys, name);
  if (!key) unknown_key(name, "--set");
  toml::table parsed;
  try {
    parsed = toml::parse("v = " + value);
  } catch (const toml::parse_error&) {
    parsed = toml::table{{"v", value}};  // a bare word: take it as a string
  }
  set_field(*key, *parsed.get("v"), "--set " + assignment);
}

std::string config_to_toml(const TrainConfig& cfg) {
  TrainConfig copy = cfg;
  std::ostringstream os;
  std::string section = "";
  for (const auto& k : keys_of(copy)) {
    if (k.deprecated) continue;
    const auto dot = k.name.find('.');
    const std::string sec = dot == std::string::npos ? "" : k.name.substr(0, dot);
    const std::string leaf = dot == std::string::npos ? k.name : k.name.substr(dot + 1);
    if (sec != section) {
      os << "\n[" << sec << "]\n";
      section = sec;
    }
    os << leaf << " = " << format_field(k.field) << "\n";
  }
  return os.str();
}

void config_validate(const TrainConfig& c) {
  if (c.device == Device::cuda) {
    if (!CAIRN_HAVE_CUDA)
      throw Error("device = \"cuda\" is not available in this build (configured without CUDA: CAIRN_CUDA=OFF "
                  "or no nvcc found): rebuild with the CUDA toolkit, or use device = \"cpu\"");
    if (const std::string& why = cuda_module_error(); !why.empty()) throw Error(str("device = \"cuda\": ", why));
    if (!cuda_device_available())
      throw Error("device = \"cuda\" but no CUDA device is usable on this machine (no GPU, no driver, or a "
                  "driver older than the CUDA runtime): use device = \"cpu\"");
    // What still runs host code on parameter memory (see docs/cuda.md).
    if (c.model.linear.kind == LinearKind::sltrain && c.model.linear.sltrain_path == SLTrainPathSetting::factored)
      throw Error("model.sltrain_path = \"factored\" runs its sparse kernels on the host: with device = \"cuda\" "
                  "use \"materialized\" or \"auto\" (which forms W = s·B·A + S and multiplies densely there)");
  }
  if (c.training.precision == Precision::tf32 && c.device != Device::cuda)
    throw Error("training.precision = \"tf32\" needs device = \"cuda\" (TF32 is a GPU tensor-core format; the CPU "
                "backend computes in fp32 or bf16): set device = \"cuda\", or training.precision = \"fp32\" or \"bf16\"");
  ModelConfig m = c.model;
  if (m.vocab_size == 0) m.vocab_size = 1;  // resolved from the dataset later
  m.validate();
  const auto& t = c.training;
  if (t.micro_batch <= 0) throw Error("training.micro_batch must be positive");
  if (t.grad_accum <= 0) throw Error("training.grad_accum must be positive");
  if (t.steps <= 0) throw Error("training.steps must be positive");
  if (t.log_every <= 0) throw Error("training.log_every must be positive");
  if (t.eval_every < 0) throw Error("training.eval_every must be 0 (off) or positive");
  if (t.eval_windows <= 0) throw Error("training.eval_windows must be positive");
  if (t.eval_batches < 0) throw Error("training.eval_batches (deprecated) must not be negative: set training.eval_windows instead");
  if (t.eval_batches > 0 && t.eval_windows != TrainingConfig{}.eval_windows)
    throw Error(str("training.eval_batches (deprecated) and training.eval_windows are both set: remove eval_batches (",
                    t.eval_batches, " x micro_batch ", t.micro_batch, " = ", t.eval_batches * t.micro_batch,
                    " windows) and keep training.eval_windows"));
  if (!(t.bucket_mb > 0)) throw Error("training.bucket_mb must be positive");
  if (t.grad_wire == WirePrecision::bf16 && c.device == Device::cuda)
    throw Error("training.grad_wire = \"bf16\" is implemented by the MPI communicator (CPU) only: with device = "
                "\"cuda\" set training.grad_wire = \"fp32\"");
  if (t.check_every < 0) throw Error("training.check_every must be 0 (off) or positive");
  if (!(c.schedule.lr > 0) || !std::isfinite(c.schedule.lr)) throw Error("schedule.lr must be positive and finite");
  const auto& o = c.optimizer;
  if (!(o.beta1 >= 0 && o.beta1 < 1)) throw Error("optimizer.beta1 must be in [0, 1)");
  if (!(o.beta2 >= 0 && o.beta2 < 1)) throw Error("optimizer.beta2 must be in [0, 1)");
  if (!(o.eps > 0)) throw Error("optimizer.eps must be positive");
  if (!(o.weight_decay >= 0)) throw Error("optimizer.weight_decay must be non-negative");
  if (!(o.grad_clip >= 0)) throw Error("optimizer.grad_clip must be 0 (off) or positive");
  if (t.threads < 0) throw Error("training.threads must be 0 (cores / ranks on the host) or positive");
  if (!(t.comm_timeout_s > 0)) throw Error("training.comm_timeout_s must be positive");
  if (!(t.peak_flops >= 0)) throw Error("training.peak_flops must be 0 (measure) or positive");
  if (c.schedule.stage_start < 0 || c.schedule.stage_start >= t.steps)
    throw Error("schedule.stage_start must be in [0, training.steps)");
  if (c.schedule.cooldown < 0) throw Error("schedule.cooldown must be non-negative");
  if (!(c.schedule.const_lr_ratio > 0) || c.schedule.const_lr_ratio > 1)
    throw Error("schedule.const_lr_ratio must be in (0, 1]");
  if (t.tokens_before < 0) throw Error("training.tokens_before must be non-negative");
  if (c.growth.at_tokens < 0) throw Error("growth.at_tokens must be 0 (off) or positive");
  if (c.growth.factor < 1) throw Error("growth.factor must be an integer >= 1");
  if (c.schedule.min_lr_ratio < 0 || c.schedule.min_lr_ratio > 1)
    throw Error("schedule.min_lr_ratio must be in [0, 1]");
  if (!c.data.train.empty() && !c.data.mixture.empty())
    throw Error("set either data.train or data.mixture, not both");
  if (c.data.train.empty() && c.data.mixture.empty())
    throw Error("data.train is not set: give a token dataset written by `cairn prepare` (e.g. --set data.train=out/fortunes)");
  if (c.checkpoint.every < 0) throw Error("checkpoint.every must be 0 (off) or positive");
  if (c.checkpoint.keep < 0) throw Error("checkpoint.keep must be 0 (keep all) or positive");
}

std::vector<std::string> config_upgrade(TrainConfig& c) {
  std::vector<std::string> notes;
  auto& t = c.training;
  if (t.eval_batches > 0) {
    const int64_t windows = t.eval_batches * t.micro_batch;
    notes.push_back(str("training.eval_batches = ", t.eval_batches, " is deprecated (it made val_loss depend on ",
                        "micro_batch and the rank count): read as training.eval_windows = ", windows, " (",
                        t.eval_batches, " x micro_batch ", t.micro_batch, "); set training.eval_windows = ", windows,
                        " instead"));
    t.eval_windows = windows;
    t.eval_batches = 0;
  }
  return notes;
}

void config_resolve_hf_model(TrainConfig& cfg, const std::set<std::string>& set_keys) {
  const std::string dir = hf_dir_of(cfg.init_from);
  if (dir.empty()) return;
  hf_merge_model_config(cfg.model, hf_read_model_config(dir), set_keys, dir);
}

TrainConfig config_load(const std::string& path, const std::vector<std::string>& overrides) {
  TrainConfig cfg;
  if (!path.empty()) config_apply_file(cfg, path);
  for (const auto& o : overrides) config_apply_override(cfg, o);
  if (!hf_dir_of(cfg.init_from).empty()) {
    // Which keys the file and the overrides set: the others take the checkpoint's values.
    std::set<std::string> set_keys;
    if (!path.empty()) collect_names(toml::parse_file(path), "", set_keys);
    for (const auto& o : overrides) set_keys.insert(o.substr(0, o.find('=')));
    config_resolve_hf_model(cfg, set_keys);
  }
  config_validate(cfg);
  return cfg;
}

std::vector<std::string> config_key_names() {
  TrainConfig probe;
  std::vector<std::string> out;
  for (const auto& k : keys_of(probe))
    if (!k.deprecated) out.push_back(k.name);
  return out;
}

std::vector<ConfigDifference> config_diff(const TrainConfig& a, const TrainConfig& b, const std::vector<std::string>& keys) {
  TrainConfig ca = a, cb = b;  // keys_of takes the fields to write; nothing is written here
  auto ka = keys_of(ca), kb = keys_of(cb);
  std::vector<ConfigDifference> out;
  for (const auto& name : keys) {
    const Key *x = find_key(ka, name), *y = find_key(kb, name);
    CAIRN_ASSERT(x && y, "config_diff: no key ", name);
    std::string va = format_field(x->field), vb = format_field(y->field);
    if (va != vb) out.push_back({name, std::move(va), std::move(vb)});
  }
  return out;
}

std::string config_describe() {
  TrainConfig defaults;
  std::ostringstream os;
  for (const auto& k : keys_of(defaults)) {
    if (k.deprecated) continue;
    std::string line = "  " + k.name + " = " + format_field(k.field);
    if (line.size() < 44) line.resize(44, ' ');
    os << line << "  " << k.doc << "\n";
  }
  return os.str();
}

}  // namespace cairn
