// LLaMA forward and backward, layer by layer (see llama.h). Names of saved activations follow
// the math of a Pre-LN block: ln1 = s·RMSNorm(x), q/k/v projections (q, k after RoPE),
// att = softmax(qkᵀ)v, xmid = x + o_proj(att), ln2 = s·RMSNorm(xmid), h = silu(gate)·up,
// x' = xmid + down_proj(h), with s = norm_scale(l) (1 unless LayerNorm Scaling).
// A Post-LN block (Mix-LN) has no ln1 (attention reads x), ln2 = RMSNorm_a(xmid) is again the
// MLP's input, ffn_out = ln2 + down_proj(h) and x' = RMSNorm_f(ffn_out).
#include "model/llama.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <map>

#include "model/linear_dense.h"

#include "util/error.h"
#include "util/rng.h"

namespace cairn {

void ModelConfig::validate() const {
  auto positive = [](int64_t v, const char* key) {
    if (v <= 0) throw Error(str("model.", key, " = ", v, " must be positive"));
  };
  positive(vocab_size, "vocab_size");
  positive(dim, "dim");
  positive(n_layers, "n_layers");
  positive(n_heads, "n_heads");
  if (n_kv_heads < 0) throw Error(str("model.n_kv_heads = ", n_kv_heads, " must be positive (0: model.n_heads)"));
  if (head_dim < 0) throw Error(str("model.head_dim = ", head_dim, " must be positive (0: model.dim / model.n_heads)"));
  positive(ffn_dim, "ffn_dim");
  positive(seq_len, "seq_len");
  if (head_dim == 0 && dim % n_heads != 0)
    throw Error(str("model.dim = ", dim, " is not divisible by model.n_heads = ", n_heads,
                    ": choose another dim or set model.head_dim"));
  if (head_size() % 2 != 0)
    throw Error(str("head size ", head_dim > 0 ? "model.head_dim" : "model.dim / model.n_heads", " = ", head_size(),
                    " must be even for rotary embeddings"));
  if (n_heads % kv_heads() != 0)
    throw Error(str("model.n_heads = ", n_heads, " is not a multiple of model.n_kv_heads = ", kv_heads(),
                    ": grouped-query attention shares each key/value head among n_heads / n_kv_heads query heads"));
  if (!(norm_eps > 0)) throw Error("model.norm_eps must be positive");
  if (!(rope_theta > 0)) throw Error("model.rope_theta must be positive");
  if (rope_type != "default" && rope_type != "llama3")
    throw Error(str("model.rope_type = \"", rope_type, "\" is not supported: use \"default\" or \"llama3\""));
  if (rope_type == "llama3") {
    if (!(rope_factor >= 1)) throw Error(str("model.rope_factor = ", rope_factor, " must be at least 1"));
    if (!(rope_low_freq_factor > 0 && rope_high_freq_factor > rope_low_freq_factor))
      throw Error(str("model.rope_high_freq_factor = ", rope_high_freq_factor, " must exceed model.rope_low_freq_factor = ",
                      rope_low_freq_factor, " > 0"));
    positive(rope_original_context, "rope_original_context");
  }
  if (linear.kind != LinearKind::dense) {
    if (linear.rank <= 0) throw Error("model.rank must be positive for low-rank and SLTrain weights");
    const int64_t side = std::min({dim, ffn_dim, q_dim(), kv_dim()});
    if (linear.rank > side) throw Error(str("model.rank = ", linear.rank, " exceeds the smallest projection side ", side));
  }
  if (!(mix_ln_alpha >= 0 && mix_ln_alpha <= 1))
    throw Error(str("model.mix_ln_alpha = ", mix_ln_alpha, " must be in [0, 1] (the fraction of Post-LN layers)"));
  if (norm_scaling && norm_layout == NormLayout::mix)
    throw Error("model.norm_scaling = true cannot be combined with model.norm_layout = \"mix\": LayerNorm Scaling "
                "scales pre-norm outputs, which Mix-LN's Post-LN layers do not have, and neither paper's code "
                "combines the two; choose one");
  if (linear.kind == LinearKind::sltrain && !(linear.density >= 0 && linear.density < 1))
    throw Error(str("model.density = ", linear.density, " must be in [0, 1)"));
}

int64_t ModelConfig::post_ln_layers() const {
  if (norm_layout != NormLayout::mix) return 0;
  return std::min(n_layers, int64_t(std::floor(mix_ln_alpha * double(n_layers) + 1e-9)));
}

std::vector<double> ModelConfig::rope_inv_freq() const {
  const int64_t HS = head_size();
  std::vector<double> f(size_t(HS / 2));
  for (int64_t j = 0; j < HS / 2; ++j) f[size_t(j)] = std::pow(double(rope_theta), -2.0 * double(j) / double(HS));
  if (rope_type != "llama3") return f;
  const double pi = 3.14159265358979323846, ctx = double(rope_original_context);
  const double low_wavelen = ctx / rope_low_freq_factor, high_wavelen = ctx / rope_high_freq_factor;
  for (double& x : f) {
    const double wavelen = 2 * pi / x;
    if (wavelen > low_wavelen) {
      x /= rope_factor;
    } else if (wavelen >= high_wavelen) {  // the band between: interpolated
      const double smooth = (ctx / wavelen - rope_low_freq_factor) / (rope_high_freq_factor - rope_low_freq_factor);
      x = (1 - smooth) * x / rope_factor + smooth * x;
    }
  }
  return f;
}

float ModelConfig::norm_scale(int64_t layer) const {
  return norm_scaling ? float(1.0 / std::sqrt(double(layer + 1))) : 1.0f;
}

const char* layer_norm_name(bool post_ln, int which) {
  CAIRN_ASSERT(which == 1 || which == 2, "a block has norms 1 and 2, not ", which);
  if (post_ln) return which == 1 ? "post_attention_layernorm" : "post_feedforward_layernorm";
  return which == 1 ? "input_layernorm" : "post_attention_layernorm";
}

int64_t linear_param_count(const ModelConfig& c) {
  const int64_t C = c.dim, F = c.ffn_dim, QD = c.q_dim(), KVD = c.kv_dim();
  const auto w = [&](int64_t out, int64_t in) { return linear_weight_param_count(c.linear, out, in); };
  return c.n_layers * (w(QD, C) + 2 * w(KVD, C) + w(C, QD) + 2 * w(F, C) + w(C, F));
}

int64_t model_param_count(const ModelConfig& c) {
  const int64_t embeddings = (c.tie_embeddings ? 1 : 2) * c.vocab_size * c.dim;
  const int64_t norms = (2 * c.n_layers + 1) * c.dim;
  return embeddings + norms + linear_param_count(c);
}

int64_t non_embedding_param_count(const ModelConfig& c) {
  return model_param_count(c) - (c.tie_embeddings ? 1 : 2) * c.vocab_size * c.dim;
}

int64_t logit_chunk_rows(const ModelConfig& c, int64_t max_batch) {
  CAIRN_ASSERT(c.vocab_size > 0, "the vocabulary size is resolved before the logits are sized");
  const int64_t rows = max_batch * c.seq_len, budget = int64_t(1) << 27;
  return std::clamp<int64_t>(budget / c.vocab_size, 1, rows);
}

double training_flops_per_token(const ModelConfig& c, const Backend& be, int64_t rows) {
  CAIRN_ASSERT(rows > 0);
  auto per_token = [&](int64_t out, int64_t in) {
    const LinearFlops f = make_linear(c.linear, "flops", out, in, 0)->flops(be, rows);
    return (f.forward + f.backward) / double(rows);
  };
  const double C = double(c.dim), L = double(c.n_layers);
  const double attn_proj = per_token(c.q_dim(), c.dim) + 2 * per_token(c.kv_dim(), c.dim) + per_token(c.dim, c.q_dim());
  const double blocks = L * (attn_proj + 2 * per_token(c.ffn_dim, c.dim) + per_token(c.dim, c.ffn_dim));
  return blocks + 6.0 * double(c.vocab_size) * C + 12.0 * L * double(c.q_dim()) * double(c.seq_len);
}

const char* activation_role_name(ActivationRole role) {
  switch (role) {
    case ActivationRole::tokens: return "tokens";
    case ActivationRole::constant: return "constant";
    case ActivationRole::saved: return "saved for backward";
    case ActivationRole::logits: return "logits";
    case ActivationRole::scratch: return "backward scratch";
  }
  return "?";
}

namespace {

constexpr size_t kLinearsPerLayer = 7;  // q, k, v, o, gate, up, down

// Declares every parameter row of cfg in flat-buffer order (embedding, blocks, final norm, head)
// and returns the projections, kLinearsPerLayer per layer in the order above.
std::vector<std::unique_ptr<Linear>> declare_parameters(const ModelConfig& cfg, ParamTable& table,
                                                        BufferTable& buffers) {
  const int64_t C = cfg.dim, F = cfg.ffn_dim, V = cfg.vocab_size, QD = cfg.q_dim(), KVD = cfg.kv_dim();
  std::vector<std::unique_ptr<Linear>> linears;
  auto linear = [&](const std::string& name, int64_t out, int64_t in, int l) {
    linears.push_back(make_linear(cfg.linear, name, out, in, l));
    linears.back()->declare(table, buffers);
  };
  table.add("model.embed_tokens.weight", {V, C}, ParamRole::embedding, -1);
  for (int l = 0; l < int(cfg.n_layers); ++l) {
    const std::string p = str("model.layers.", l, ".");
    // The first norm's gain comes first in either layout: backward reports it as the block's start.
    table.add(p + layer_norm_name(cfg.post_ln(l), 1) + ".weight", {C}, ParamRole::norm, l);
    linear(p + "self_attn.q_proj", QD, C, l);
    linear(p + "self_attn.k_proj", KVD, C, l);
    linear(p + "self_attn.v_proj", KVD, C, l);
    linear(p + "self_attn.o_proj", C, QD, l);
    table.add(p + layer_norm_name(cfg.post_ln(l), 2) + ".weight", {C}, ParamRole::norm, l);
    linear(p + "mlp.gate_proj", F, C, l);
    linear(p + "mlp.up_proj", F, C, l);
    linear(p + "mlp.down_proj", C, F, l);
  }
  table.add("model.norm.weight", {C}, ParamRole::norm, -1);
  if (!cfg.tie_embeddings) table.add("lm_head.weight", {V, C}, ParamRole::lm_head, -1);
  return linears;
}

int64_t align_up(int64_t bytes, int64_t align) { return (bytes + align - 1) / align * align; }

}  // namespace

ParamTable LlamaModel::parameter_table(const ModelConfig& cfg) {
  cfg.validate();
  ParamTable table;
  BufferTable buffers;
  declare_parameters(cfg, table, buffers);
  return table;
}

// logit_rows, resolved: the rows of one logits chunk.
static int64_t logit_rows_of(const ModelConfig& cfg, int64_t max_batch, int64_t logit_rows) {
  CAIRN_ASSERT(max_batch > 0 && logit_rows >= 0);
  return std::min(logit_rows > 0 ? logit_rows : logit_chunk_rows(cfg, max_batch), max_batch * cfg.seq_len);
}

std::vector<ActivationBuffer> LlamaModel::activation_sizes(const ModelConfig& cfg, const Backend& be,
                                                           int64_t max_batch, int64_t logit_rows) {
  const int64_t C = cfg.dim, F = cfg.ffn_dim, V = cfg.vocab_size, T = cfg.seq_len, L = cfg.n_layers;
  const int64_t NH = cfg.n_heads, HS = cfg.head_size(), N = max_batch * T;
  const int64_t QD = cfg.q_dim(), KVD = cfg.kv_dim();
  std::vector<ActivationBuffer> b;
  auto add = [&](std::string name, ActivationRole role, int64_t count) { b.push_back({std::move(name), role, count}); };
  using R = ActivationRole;
  add("inputs", R::tokens, N);
  add("targets", R::tokens, N);
  add("rope_cos", R::constant, T * HS / 2);  // [T, HS/2]
  add("rope_sin", R::constant, T * HS / 2);
  add("residual", R::saved, (L + 1) * N * C);  // x[0..L]
  for (int64_t l = 0; l < L; ++l) {
    const std::string p = str("layers.", l, ".");
    // A Post-LN block's attention reads x itself (no ln1) and it keeps its MLP's pre-norm sum.
    add(p + (cfg.post_ln(l) ? "ffn_out" : "ln1"), R::saved, N * C);
    add(p + "att", R::saved, N * QD);
    for (const char* name : {"xmid", "ln2"}) add(p + name, R::saved, N * C);
    add(p + "qkv", R::saved, N * (QD + 2 * KVD));  // q, k, v adjacent: one batched GEMM's outputs (MHA)
    add(p + "rstd1", R::saved, N);
    add(p + "rstd2", R::saved, N);
    add(p + "attention_saved", R::saved, be.attention_saved_floats(max_batch, T, NH, HS));
    add(p + "gate_up", R::saved, 2 * N * F);  // gate, up adjacent
    add(p + "h", R::saved, N * F);
  }
  add("final_norm", R::saved, N * C);
  add("final_rstd", R::saved, N);
  add("logits", R::logits, logit_rows_of(cfg, max_batch, logit_rows) * V);  // one chunk of rows
  add("losses", R::logits, N);
  for (const char* name : {"dres", "dln"}) add(name, R::scratch, N * C);
  add("datt", R::scratch, N * QD);
  add("dqkv", R::scratch, N * (QD + 2 * KVD));
  // Grouped-query attention: k, v repeated to every query head for the attention kernels, and
  // their gradients before the sum over each group (recomputed in backward, shared by layers).
  if (KVD != QD) {
    add("kv_repeated", R::scratch, 2 * N * QD);
    add("dkv_repeated", R::scratch, 2 * N * QD);
  }
  add("dgate_up", R::scratch, 2 * N * F);
  add("dh", R::scratch, N * F);
  if (cfg.post_ln_layers() > 0) add("dffn_out", R::scratch, N * C);
  add("attention_scratch", R::scratch, be.attention_scratch_floats(max_batch, T, NH, HS));
  // One workspace serves every projection (they run one at a time): the largest shape's.
  int64_t ws = 1;
  for (const auto& [out, in] : {std::pair{QD, C}, std::pair{KVD, C}, std::pair{C, QD}, std::pair{F, C}, std::pair{C, F}})
    ws = std::max(ws, make_linear(cfg.linear, "workspace", out, in, 0)->workspace_floats(N));
  add("linear_workspace", R::scratch, ws);
  return b;
}

int64_t LlamaModel::matmul_operand_floats(const ModelConfig& cfg, int64_t max_batch, int64_t logit_rows) {
  const int64_t C = cfg.dim, F = cfg.ffn_dim, N = max_batch * cfg.seq_len;
  const int64_t rows = logit_rows_of(cfg, max_batch, logit_rows);
  // First operands: activations forward, linear_backward's dy of k fused products (q/k/v, gate/up,
  // the head's dlogits). Second ones: linear_backward's x; a materialized SLTrain weight.
  const int64_t first = std::max({3 * N * C, 2 * N * F, rows * cfg.vocab_size});
  int64_t second = std::max(N * F, rows * C);
  if (cfg.linear.kind != LinearKind::dense) second = std::max(second, F * C);
  return first + second;
}

int64_t LlamaModel::activation_arena_bytes(const std::vector<ActivationBuffer>& buffers) {
  int64_t bytes = 0;
  for (const auto& b : buffers) bytes += align_up(b.count * b.elem_bytes, kActivationAlign);
  return bytes;
}

// Hands out the arena's buffers by name, each once, and checks at the end that every buffer of
// the size table was taken: the table and the model's members cannot drift apart.
class LlamaModel::ArenaBinder {
 public:
  ArenaBinder(const std::vector<ActivationBuffer>& buffers, std::byte* base) : base_(base) {
    int64_t offset = 0;
    for (const auto& b : buffers) {
      CAIRN_ASSERT(entries_.emplace(b.name, Entry{offset, b.count, b.elem_bytes}).second,
                   "activation buffer '", b.name, "' listed twice");
      offset += align_up(b.count * b.elem_bytes, kActivationAlign);
    }
  }
  template <typename T>
  Slice<T> take(const std::string& name) {
    const auto it = entries_.find(name);
    CAIRN_ASSERT(it != entries_.end(), "activation buffer '", name, "' is not in LlamaModel::activation_sizes");
    Entry& e = it->second;
    CAIRN_ASSERT(!e.taken && e.elem_bytes == int64_t(sizeof(T)), "activation buffer '", name,
                 "' taken twice or with another element size");
    e.taken = true;
    return {reinterpret_cast<T*>(base_ + e.offset), e.count};
  }
  void check_all_taken() const {
    for (const auto& [name, e] : entries_)
      CAIRN_ASSERT(e.taken, "activation buffer '", name, "' of LlamaModel::activation_sizes is never used");
  }

 private:
  struct Entry {
    int64_t offset, count, elem_bytes;
    bool taken = false;
  };
  std::byte* base_;
  std::map<std::string, Entry> entries_;
};

// ln1_offset and ln2_offset are the gains of the block's first and second norm: input_layernorm
// and post_attention_layernorm in a Pre-LN block, post_attention_layernorm and
// post_feedforward_layernorm in a Post-LN one. rstd1/rstd2 belong to the same norms. A Pre-LN
// block has no ffn_out, a Post-LN block no ln1.
// qkv holds q [N, NH·HS], k, v [N, NKV·HS] and gu gate, up [N, F] each, adjacent: the layout of a
// batched GEMM's outputs. qkv_offset / kv_offset / gate_up_offset: where the dense q, k, v (k, v;
// gate, up) weights start when they are adjacent in the flat buffer, else -1 (other weight kinds:
// one linear at a time); q, k and v form one batched GEMM only when they have one shape (MHA).
struct LlamaModel::Layer {
  Linear *q, *k, *v, *o, *gate, *up, *down;
  bool post_ln;
  float scale;  // on the pre-norm outputs ln1, ln2 (1 without LayerNorm Scaling)
  int64_t ln1_offset, ln2_offset, qkv_offset = -1, kv_offset = -1, gate_up_offset = -1;
  Slice<float> ln1, rstd1, qkv, att_saved, att, xmid, ln2, rstd2, gu, h, ffn_out;
};

// The flat-buffer offset of the first weight when every one is dense and each starts where the
// previous ends, else -1.
static int64_t adjacent_dense_offset(const std::vector<Linear*>& ws) {
  int64_t first = -1, next = -1;
  for (const Linear* w : ws) {
    const auto* d = dynamic_cast<const DenseLinear*>(w);
    if (!d || (next >= 0 && d->offset() != next)) return -1;
    if (first < 0) first = d->offset();
    next = d->offset() + w->out_features() * w->in_features();
  }
  return first;
}

LlamaModel::LlamaModel(const ModelConfig& cfg, const Backend& be, int64_t max_batch, int64_t logit_rows)
    : cfg_(cfg), be_(be), max_batch_(max_batch) {
  cfg_.validate();
  CAIRN_ASSERT(max_batch > 0);
  static std::atomic<uint64_t> models{0};
  id_ = ++models;
  const int64_t T = cfg_.seq_len;

  linears_ = declare_parameters(cfg_, table_, buffers_);
  embed_offset_ = table_.at("model.embed_tokens.weight").offset;
  for (int l = 0; l < int(cfg_.n_layers); ++l) {
    const std::string p = str("model.layers.", l, ".");
    const auto at = [&](size_t i) { return linears_[size_t(l) * kLinearsPerLayer + i].get(); };
    Layer L{};
    L.post_ln = cfg_.post_ln(l);
    L.scale = cfg_.norm_scale(l);
    L.q = at(0), L.k = at(1), L.v = at(2), L.o = at(3), L.gate = at(4), L.up = at(5), L.down = at(6);
    L.ln1_offset = table_.at(p + layer_norm_name(L.post_ln, 1) + ".weight").offset;
    L.ln2_offset = table_.at(p + layer_norm_name(L.post_ln, 2) + ".weight").offset;
    L.qkv_offset = adjacent_dense_offset({L.q, L.k, L.v});
    L.kv_offset = adjacent_dense_offset({L.k, L.v});
    L.gate_up_offset = adjacent_dense_offset({L.gate, L.up});
    layers_.push_back(std::move(L));
  }
  final_norm_offset_ = table_.at("model.norm.weight").offset;
  if (!cfg_.tie_embeddings) lm_head_offset_ = table_.at("lm_head.weight").offset;

  params_ = DeviceArray<float>(be_, table_.total());
  grads_ = DeviceArray<float>(be_, table_.total());
  // Before the first write: a bf16 backend keeps its copy of the parameters current from here on.
  be_.register_parameters(params_.data(), params_.size());
  params_.zero();
  grads_.zero();

  logit_rows_ = logit_rows_of(cfg_, max_batch, logit_rows);
  const std::vector<ActivationBuffer> sizes = activation_sizes(cfg_, be_, max_batch, logit_rows);
  arena_ = DeviceArray<std::byte>(be_, activation_arena_bytes(sizes));
  ArenaBinder arena(sizes, arena_.data());
  inputs_ = arena.take<int32_t>("inputs");
  targets_ = arena.take<int32_t>("targets");
  rope_cos_ = arena.take<float>("rope_cos");
  rope_sin_ = arena.take<float>("rope_sin");
  residual_ = arena.take<float>("residual");
  for (size_t l = 0; l < layers_.size(); ++l) {
    Layer& L = layers_[l];
    const std::string p = str("layers.", l, ".");
    auto take = [&](const char* name) { return arena.take<float>(p + name); };
    if (L.post_ln) L.ffn_out = take("ffn_out");
    else L.ln1 = take("ln1");
    L.rstd1 = take("rstd1"), L.qkv = take("qkv");
    L.att_saved = take("attention_saved"), L.att = take("att"), L.xmid = take("xmid");
    L.ln2 = take("ln2"), L.rstd2 = take("rstd2"), L.gu = take("gate_up"), L.h = take("h");
  }
  final_norm_ = arena.take<float>("final_norm");
  final_rstd_ = arena.take<float>("final_rstd");
  logits_ = arena.take<float>("logits");
  losses_ = arena.take<float>("losses");
  dres_ = arena.take<float>("dres"), dln_ = arena.take<float>("dln");
  dqkv_ = arena.take<float>("dqkv"), datt_ = arena.take<float>("datt");
  dgu_ = arena.take<float>("dgate_up"), dh_ = arena.take<float>("dh");
  if (cfg_.post_ln_layers() > 0) dffn_out_ = arena.take<float>("dffn_out");
  att_scratch_ = arena.take<float>("attention_scratch");
  if (cfg_.kv_dim() != cfg_.q_dim()) {
    kv_rep_ = arena.take<float>("kv_repeated");
    dkv_rep_ = arena.take<float>("dkv_repeated");
  }
  linear_ws_ = arena.take<float>("linear_workspace");
  arena.check_all_taken();

  // RoPE tables [T, HS/2]: angle(t, j) = t·inv_freq(j).
  const int64_t half = cfg_.head_size() / 2;
  const std::vector<double> inv_freq = cfg_.rope_inv_freq();
  std::vector<float> cs(size_t(T * half)), sn(size_t(T * half));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < half; ++j) {
      cs[size_t(t * half + j)] = float(std::cos(double(t) * inv_freq[size_t(j)]));
      sn[size_t(t * half + j)] = float(std::sin(double(t) * inv_freq[size_t(j)]));
    }
  be_.copy_to_device(rope_cos_.data(), cs.data(), T * half * 4);
  be_.copy_to_device(rope_sin_.data(), sn.data(), T * half * 4);
}

LlamaModel::~LlamaModel() = default;

void LlamaModel::init_weights(uint64_t seed) {
  std::vector<float> host(size_t(table_.total()), 0.0f);
  Rng rng(seed, /*stream=*/1);
  for (const auto& r : table_.rows()) {
    float* p = host.data() + r.offset;
    if (r.role == ParamRole::norm) {
      std::fill_n(p, r.numel, 1.0f);
    } else if (r.role == ParamRole::embedding || r.role == ParamRole::lm_head) {
      for (int64_t i = 0; i < r.numel; ++i) p[i] = cfg_.init_std * rng.normal();
    }
  }
  for (const auto& lin : linears_) lin->init(host, buffers_, rng);
  be_.copy_to_device(params_.data(), host.data(), table_.total() * 4);
}

const float* LlamaModel::lm_head_weight() const {
  return params_.data() + (cfg_.tie_embeddings ? embed_offset_ : lm_head_offset_);
}

int64_t LlamaModel::lm_head_grad_offset() const {
  return cfg_.tie_embeddings ? embed_offset_ : lm_head_offset_;
}

void LlamaModel::upload_tokens(const int32_t* inputs, const int32_t* targets, int64_t B) {
  CAIRN_ASSERT(B > 0 && B <= max_batch_, "micro-batch ", B, " exceeds the model's max_batch ", max_batch_);
  const int64_t N = B * cfg_.seq_len;
  for (int64_t i = 0; i < N; ++i) {
    if (inputs[i] < 0 || inputs[i] >= cfg_.vocab_size || (targets && targets[i] >= cfg_.vocab_size))
      throw Error(str("token id ", (inputs[i] < 0 || inputs[i] >= cfg_.vocab_size) ? inputs[i] : targets[i],
                      " at position ", i, " is outside the model's vocabulary of ", cfg_.vocab_size,
                      ": the dataset was prepared with a larger vocabulary than model.vocab_size"));
  }
  be_.copy_to_device(inputs_.data(), inputs, N * 4);
  if (targets) be_.copy_to_device(targets_.data(), targets, N * 4);
}

void LlamaModel::project(const std::vector<Linear*>& ws, int64_t fused_offset, float* y, const float* x,
                         int64_t N) {
  const int64_t out = ws[0]->out_features(), in = ws[0]->in_features(), k = int64_t(ws.size());
  if (fused_offset >= 0) {
    be_.matmul_batched(y, x, params_.data() + fused_offset, N, out, in, false, true, 1.0f, 0.0f, k, N * out, 0,
                       out * in);
    return;
  }
  for (int64_t i = 0; i < k; ++i)
    ws[size_t(i)]->forward(be_, y + i * N * out, x, N, params_.data(), buffers_, linear_ws_.data());
}

void LlamaModel::project_backward(const std::vector<Linear*>& ws, int64_t fused_offset, float* dx, const float* dy,
                                  const float* x, int64_t N, bool accumulate_dx) {
  const int64_t out = ws[0]->out_features(), in = ws[0]->in_features(), k = int64_t(ws.size());
  if (fused_offset >= 0) {
    be_.linear_backward(grads_.data() + fused_offset, dx, dy, x, params_.data() + fused_offset, N, out, in, k,
                        accumulate_dx);
    return;
  }
  for (int64_t i = 0; i < k; ++i)
    ws[size_t(i)]->backward(be_, dx, accumulate_dx || i > 0, grads_.data(), dy + i * N * out, x, N, params_.data(),
                            buffers_, linear_ws_.data());
}

void LlamaModel::project_qkv(const Layer& L, float* q, const float* x, int64_t N) {
  if (cfg_.kv_dim() == cfg_.q_dim()) {
    project({L.q, L.k, L.v}, L.qkv_offset, q, x, N);
    return;
  }
  project({L.q}, -1, q, x, N);
  project({L.k, L.v}, L.kv_offset, q + N * cfg_.q_dim(), x, N);
}

void LlamaModel::project_qkv_backward(const Layer& L, float* dx, const float* dq, const float* x, int64_t N) {
  if (cfg_.kv_dim() == cfg_.q_dim()) {
    project_backward({L.q, L.k, L.v}, L.qkv_offset, dx, dq, x, N);
    return;
  }
  project_backward({L.q}, -1, dx, dq, x, N);
  project_backward({L.k, L.v}, L.kv_offset, dx, dq + N * cfg_.q_dim(), x, N, true);
}

void LlamaModel::attention(Layer& L, int64_t B) {
  const int64_t T = cfg_.seq_len, N = B * T, NH = cfg_.n_heads, NKV = cfg_.kv_heads(), HS = cfg_.head_size();
  float *q = L.qkv.data(), *k = q + N * NH * HS, *v = k + N * NKV * HS;
  if (NKV == NH) {
    // q and k are adjacent: 2B sequences of T positions, rotated in one launch.
    be_.rope_forward(q, rope_cos_.data(), rope_sin_.data(), 2 * B, T, NH, HS);
    be_.attention_forward(L.att.data(), L.att_saved.data(), q, k, v, B, T, NH, HS);
    return;
  }
  be_.rope_forward(q, rope_cos_.data(), rope_sin_.data(), B, T, NH, HS);
  be_.rope_forward(k, rope_cos_.data(), rope_sin_.data(), B, T, NKV, HS);
  float *kr = kv_rep_.data(), *vr = kr + N * NH * HS;
  be_.repeat_kv_forward(kr, k, N, NKV, NH / NKV, HS);
  be_.repeat_kv_forward(vr, v, N, NKV, NH / NKV, HS);
  be_.attention_forward(L.att.data(), L.att_saved.data(), q, kr, vr, B, T, NH, HS);
}

void LlamaModel::attention_backward(const Layer& L, int64_t B) {
  const int64_t T = cfg_.seq_len, N = B * T, NH = cfg_.n_heads, NKV = cfg_.kv_heads(), HS = cfg_.head_size();
  const float *q = L.qkv.data(), *k = q + N * NH * HS, *v = k + N * NKV * HS;
  float *dq = dqkv_.data(), *dk = dq + N * NH * HS, *dv = dk + N * NKV * HS;
  if (NKV == NH) {
    be_.attention_backward(dq, dk, dv, att_scratch_.data(), datt_.data(), q, k, v, L.att.data(), L.att_saved.data(),
                           B, T, NH, HS);
    be_.rope_backward(dq, rope_cos_.data(), rope_sin_.data(), 2 * B, T, NH, HS);  // and dk, adjacent
    return;
  }
  // The repeated k, v of this layer, again: later layers used the buffer since.
  float *kr = kv_rep_.data(), *vr = kr + N * NH * HS, *dkr = dkv_rep_.data(), *dvr = dkr + N * NH * HS;
  be_.repeat_kv_forward(kr, k, N, NKV, NH / NKV, HS);
  be_.repeat_kv_forward(vr, v, N, NKV, NH / NKV, HS);
  be_.attention_backward(dq, dkr, dvr, att_scratch_.data(), datt_.data(), q, kr, vr, L.att.data(),
                         L.att_saved.data(), B, T, NH, HS);
  be_.repeat_kv_backward(dk, dkr, N, NKV, NH / NKV, HS);
  be_.repeat_kv_backward(dv, dvr, N, NKV, NH / NKV, HS);
  be_.rope_backward(dq, rope_cos_.data(), rope_sin_.data(), B, T, NH, HS);
  be_.rope_backward(dk, rope_cos_.data(), rope_sin_.data(), B, T, NKV, HS);
}

void LlamaModel::forward(int64_t B) {
  const int64_t C = cfg_.dim, F = cfg_.ffn_dim, T = cfg_.seq_len, N = B * T;
  const float* P = params_.data();
  const BufferTable& bufs = buffers_;
  float* ws = linear_ws_.data();

  be_.embedding_forward(residual_.data(), inputs_.data(), P + embed_offset_, N, C);
  for (size_t l = 0; l < layers_.size(); ++l) {
    Layer& L = layers_[l];
    const float* x = residual_.data() + int64_t(l) * N * C;
    float* x_next = residual_.data() + int64_t(l + 1) * N * C;
    if (int64_t(l) == skipped_layer_) {  // x' = x
      be_.zero(x_next, N * C * 4);
      be_.add_inplace(x_next, x, N * C);
      continue;
    }
    float *g = L.gu.data(), *u = g + N * F;
    // Attention: Pre-LN reads ln1 = s·RMSNorm(x), Post-LN reads x itself.
    const float* attn_in = x;
    if (!L.post_ln) {
      be_.rmsnorm_forward(L.ln1.data(), L.rstd1.data(), x, P + L.ln1_offset, N, C, cfg_.norm_eps);
      if (L.scale != 1.0f) be_.scale_inplace(L.ln1.data(), L.scale, N * C);
      attn_in = L.ln1.data();
    }
    project_qkv(L, L.qkv.data(), attn_in, N);
    attention(L, B);
    L.o->forward(be_, L.xmid.data(), L.att.data(), N, P, bufs, ws);
    be_.add_inplace(L.xmid.data(), x, N * C);
    // MLP input ln2: Pre-LN s·RMSNorm₂(xmid); Post-LN h = RMSNorm₁(xmid), which is also the residual.
    if (L.post_ln) {
      be_.rmsnorm_forward(L.ln2.data(), L.rstd1.data(), L.xmid.data(), P + L.ln1_offset, N, C, cfg_.norm_eps);
    } else {
      be_.rmsnorm_forward(L.ln2.data(), L.rstd2.data(), L.xmid.data(), P + L.ln2_offset, N, C, cfg_.norm_eps);
      if (L.scale != 1.0f) be_.scale_inplace(L.ln2.data(), L.scale, N * C);
    }
    project({L.gate, L.up}, L.gate_up_offset, g, L.ln2.data(), N);
    be_.swiglu_forward(L.h.data(), g, u, N * F);
    if (L.post_ln) {  // x' = RMSNorm₂(h + down(·))
      L.down->forward(be_, L.ffn_out.data(), L.h.data(), N, P, bufs, ws);
      be_.add_inplace(L.ffn_out.data(), L.ln2.data(), N * C);
      be_.rmsnorm_forward(x_next, L.rstd2.data(), L.ffn_out.data(), P + L.ln2_offset, N, C, cfg_.norm_eps);
    } else {          // x' = xmid + down(·)
      L.down->forward(be_, x_next, L.h.data(), N, P, bufs, ws);
      be_.add_inplace(x_next, L.xmid.data(), N * C);
    }
  }
  const float* x_last = residual_.data() + cfg_.n_layers * N * C;
  be_.rmsnorm_forward(final_norm_.data(), final_rstd_.data(), x_last, P + final_norm_offset_, N, C, cfg_.norm_eps);
}

void LlamaModel::head_logits(int64_t r0, int64_t n) {
  be_.matmul(logits_.data(), final_norm_.data() + r0 * cfg_.dim, lm_head_weight(), n, cfg_.vocab_size, cfg_.dim,
             false, true, 1.0f, 0.0f);
}

void LlamaModel::head_loss_backward(int64_t B, float grad_scale) {
  const int64_t C = cfg_.dim, V = cfg_.vocab_size, N = B * cfg_.seq_len;
  for (int64_t r0 = 0; r0 < N; r0 += logit_rows_) {
    const int64_t n = std::min(logit_rows_, N - r0);
    const float* x = final_norm_.data() + r0 * C;
    head_logits(r0, n);
    be_.crossentropy_forward_backward(losses_.data() + r0, logits_.data(), targets_.data() + r0, n, V,
                                      grad_scale / float(N));
    // logits_ holds dloss/dlogits. Head: dW += dlogitsᵀ·final_norm, dfinal = dlogits·W.
    be_.linear_backward(grads_.data() + lm_head_grad_offset(), dln_.data() + r0 * C, logits_.data(), x,
                        lm_head_weight(), n, V, C, 1, false);
  }
}

void LlamaModel::backward(int64_t B) {
  const int64_t C = cfg_.dim, F = cfg_.ffn_dim, T = cfg_.seq_len, N = B * T, V = cfg_.vocab_size;
  const float* P = params_.data();
  float* G = grads_.data();
  const BufferTable& bufs = buffers_;
  float* ws = linear_ws_.data();

  be_.zero(dres_.data(), dres_.size() * 4);
  const float* x_last = residual_.data() + cfg_.n_layers * N * C;
  be_.rmsnorm_backward(dres_.data(), G + final_norm_offset_, dln_.data(), x_last, P + final_norm_offset_,
                       final_rstd_.data(), N, C);
  if (grad_ready_) grad_ready_(final_norm_offset_);

  for (size_t li = layers_.size(); li-- > 0;) {
    Layer& L = layers_[li];
    const float* x = residual_.data() + int64_t(li) * N * C;
    const float *g = L.gu.data(), *u = g + N * F;
    float *dg = dgu_.data(), *du = dg + N * F;
    // MLP. Pre-LN: x' = xmid + down(h), so d down-output = dres = d x', which stays as d xmid's
    // residual part. Post-LN: x' = RMSNorm₂(ffn_out), d ffn_out goes to dffn_out_.
    float* dmlp_out = dres_.data();
    if (L.post_ln) {
      dmlp_out = dffn_out_.data();
      be_.zero(dmlp_out, N * C * 4);
      be_.rmsnorm_backward(dmlp_out, G + L.ln2_offset, dres_.data(), L.ffn_out.data(), P + L.ln2_offset,
                           L.rstd2.data(), N, C);
    }
    L.down->backward(be_, dh_.data(), false, G, dmlp_out, L.h.data(), N, P, bufs, ws);
    be_.swiglu_backward(dg, du, dh_.data(), g, u, N * F);
    project_backward({L.gate, L.up}, L.gate_up_offset, dln_.data(), dg, L.ln2.data(), N);
    // dln is d ln2 through the MLP; dres becomes d xmid.
    if (L.post_ln) {  // ln2 = h is also ffn_out's residual; xmid reaches x' only through RMSNorm₁
      be_.add_inplace(dln_.data(), dmlp_out, N * C);
      be_.zero(dres_.data(), N * C * 4);
      be_.rmsnorm_backward(dres_.data(), G + L.ln1_offset, dln_.data(), L.xmid.data(), P + L.ln1_offset,
                           L.rstd1.data(), N, C);
    } else {
      if (L.scale != 1.0f) be_.scale_inplace(dln_.data(), L.scale, N * C);
      be_.rmsnorm_backward(dres_.data(), G + L.ln2_offset, dln_.data(), L.xmid.data(), P + L.ln2_offset,
                           L.rstd2.data(), N, C);
    }
    // Attention: xmid = x + o(att); dres becomes d x.
    const float* attn_in = L.post_ln ? x : L.ln1.data();
    L.o->backward(be_, datt_.data(), false, G, dres_.data(), L.att.data(), N, P, bufs, ws);
    attention_backward(L, B);
    project_qkv_backward(L, dln_.data(), dqkv_.data(), attn_in, N);
    if (L.post_ln) {
      be_.add_inplace(dres_.data(), dln_.data(), N * C);
    } else {
      if (L.scale != 1.0f) be_.scale_inplace(dln_.data(), L.scale, N * C);
      be_.rmsnorm_backward(dres_.data(), G + L.ln1_offset, dln_.data(), x, P + L.ln1_offset, L.rstd1.data(), N, C);
    }
    if (grad_ready_) grad_ready_(L.ln1_offset);  // the first row of the block
  }
  be_.embedding_backward(G + embed_offset_, dres_.data(), inputs_.data(), N, C, V);
  if (grad_ready_) grad_ready_(0);
}

uint64_t LlamaModel::step_key(int64_t B, float grad_scale) const {
  Rng h(id_ * 0x9e3779b97f4a7c15ULL + uint64_t(B), (uint64_t(std::bit_cast<uint32_t>(grad_scale)) << 32) ^
                                                      buffers_.version());
  return h.next_u64();
}

static float mean_of(const Backend& be, const float* losses, int64_t N) {
  std::vector<float> host(static_cast<size_t>(N));
  be.copy_to_host(host.data(), losses, N * 4);
  double s = 0;
  for (float v : host) s += v;
  return float(s / double(N));
}

void LlamaModel::set_skipped_layer(int64_t layer) {
  if (layer < -1 || layer >= cfg_.n_layers)
    throw Error(str("cannot skip layer ", layer, ": the model has layers 0..", cfg_.n_layers - 1));
  skipped_layer_ = layer;
}

float LlamaModel::forward_backward(const int32_t* inputs, const int32_t* targets, int64_t B, float grad_scale) {
  CAIRN_ASSERT(skipped_layer_ < 0, "forward_backward with layer ", skipped_layer_, " skipped (an evaluation-only option)");
  upload_tokens(inputs, targets, B);
  // Everything between the upload and the loss read is one graph on a backend that replays them;
  // the tokens live in fixed buffers, so a replay reads this call's tokens.
  const auto micro_step = [&] {
    forward(B);
    head_loss_backward(B, grad_scale);
    backward(B);
  };
  if (grad_ready_)
    micro_step();
  else
    be_.run_graph(step_key(B, grad_scale), micro_step);  // a failed capture reruns it eagerly
  // Read after backward is queued: a device backend runs the whole micro-step without waiting.
  return mean_of(be_, losses_.data(), B * cfg_.seq_len);
}

void LlamaModel::token_losses(const int32_t* inputs, const int32_t* targets, int64_t B) {
  upload_tokens(inputs, targets, B);
  forward(B);
  const int64_t N = B * cfg_.seq_len;
  for (int64_t r0 = 0; r0 < N; r0 += logit_rows_) {
    const int64_t n = std::min(logit_rows_, N - r0);
    head_logits(r0, n);
    be_.crossentropy_forward(losses_.data() + r0, logits_.data(), targets_.data() + r0, n, cfg_.vocab_size);
  }
}

float LlamaModel::forward_loss(const int32_t* inputs, const int32_t* targets, int64_t B) {
  token_losses(inputs, targets, B);
  return mean_of(be_, losses_.data(), B * cfg_.seq_len);
}

std::vector<float> LlamaModel::forward_token_losses(const int32_t* inputs, const int32_t* targets, int64_t B) {
  token_losses(inputs, targets, B);
  const int64_t N = B * cfg_.seq_len;
  std::vector<float> host(static_cast<size_t>(N));
  be_.copy_to_host(host.data(), losses_.data(), N * 4);
  return host;
}

std::vector<float> LlamaModel::forward_logits(const int32_t* inputs, int64_t B) {
  upload_tokens(inputs, nullptr, B);
  forward(B);
  const int64_t N = B * cfg_.seq_len, V = cfg_.vocab_size;
  std::vector<float> host(static_cast<size_t>(N * V));
  for (int64_t r0 = 0; r0 < N; r0 += logit_rows_) {
    const int64_t n = std::min(logit_rows_, N - r0);
    head_logits(r0, n);
    be_.copy_to_host(host.data() + r0 * V, logits_.data(), n * V * 4);
  }
  return host;
}

}  // namespace cairn
