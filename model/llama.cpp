// LLaMA forward and backward, layer by layer (see llama.h). Names of saved activations follow
// the math of a Pre-LN block: ln1 = s·RMSNorm(x), q/k/v projections (q, k after RoPE),
// att = softmax(qkᵀ)v, xmid = x + o_proj(att), ln2 = s·RMSNorm(xmid), h = silu(gate)·up,
// x' = xmid + down_proj(h), with s = norm_scale(l) (1 unless LayerNorm Scaling).
// A Post-LN block (Mix-LN) has no ln1 (attention reads x), ln2 = RMSNorm_a(xmid) is again the
// MLP's input, ffn_out = ln2 + down_proj(h) and x' = RMSNorm_f(ffn_out).
#include "model/llama.h"

#include <algorithm>
#include <cmath>

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
  positive(ffn_dim, "ffn_dim");
  positive(seq_len, "seq_len");
  if (dim % n_heads != 0)
    throw Error(str("model.dim = ", dim, " is not divisible by model.n_heads = ", n_heads));
  if (head_size() % 2 != 0)
    throw Error(str("head size model.dim / model.n_heads = ", head_size(), " must be even for rotary embeddings"));
  if (!(norm_eps > 0)) throw Error("model.norm_eps must be positive");
  if (!(rope_theta > 0)) throw Error("model.rope_theta must be positive");
  if (linear.kind != LinearKind::dense) {
    if (linear.rank <= 0) throw Error("model.rank must be positive for low-rank and SLTrain weights");
    if (linear.rank > std::min(dim, ffn_dim))
      throw Error(str("model.rank = ", linear.rank, " exceeds the smallest projection side ", std::min(dim, ffn_dim)));
  }
  if (norm_layout != "pre" && norm_layout != "mix")
    throw Error(str("model.norm_layout = \"", norm_layout, "\" is not a layout: use \"pre\" (Pre-LN) or \"mix\" (Mix-LN)"));
  if (!(mix_ln_alpha >= 0 && mix_ln_alpha <= 1))
    throw Error(str("model.mix_ln_alpha = ", mix_ln_alpha, " must be in [0, 1] (the fraction of Post-LN layers)"));
  if (norm_scaling && norm_layout == "mix")
    throw Error("model.norm_scaling = true cannot be combined with model.norm_layout = \"mix\": LayerNorm Scaling "
                "scales pre-norm outputs, which Mix-LN's Post-LN layers do not have, and neither paper's code "
                "combines the two; choose one");
  if (linear.kind == LinearKind::sltrain && !(linear.density >= 0 && linear.density < 1))
    throw Error(str("model.density = ", linear.density, " must be in [0, 1)"));
  if (linear.kind == LinearKind::sltrain && linear.sltrain_path != "auto" && linear.sltrain_path != "materialized" &&
      linear.sltrain_path != "factored")
    throw Error(str("model.sltrain_path = \"", linear.sltrain_path, "\" is not a path: use \"auto\", \"materialized\" or \"factored\""));
}

int64_t ModelConfig::post_ln_layers() const {
  if (norm_layout != "mix") return 0;
  return std::min(n_layers, int64_t(std::floor(mix_ln_alpha * double(n_layers) + 1e-9)));
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
  const int64_t C = c.dim, F = c.ffn_dim;
  const auto w = [&](int64_t out, int64_t in) { return linear_weight_param_count(c.linear, out, in); };
  return c.n_layers * (4 * w(C, C) + 2 * w(F, C) + w(C, F));
}

int64_t model_param_count(const ModelConfig& c) {
  const int64_t embeddings = (c.tie_embeddings ? 1 : 2) * c.vocab_size * c.dim;
  const int64_t norms = (2 * c.n_layers + 1) * c.dim;
  return embeddings + norms + linear_param_count(c);
}

int64_t non_embedding_param_count(const ModelConfig& c) {
  return model_param_count(c) - (c.tie_embeddings ? 1 : 2) * c.vocab_size * c.dim;
}

double training_flops_per_token(const ModelConfig& c) {
  const double C = double(c.dim), F = double(c.ffn_dim), L = double(c.n_layers);
  const double matrix_params = L * (4 * C * C + 3 * C * F) + double(c.vocab_size) * C;
  return 6.0 * matrix_params + 12.0 * L * C * double(c.seq_len);
}

// ln1_offset and ln2_offset are the gains of the block's first and second norm: input_layernorm
// and post_attention_layernorm in a Pre-LN block, post_attention_layernorm and
// post_feedforward_layernorm in a Post-LN one. rstd1/rstd2 belong to the same norms. A Pre-LN
// block has no ffn_out, a Post-LN block no ln1.
struct LlamaModel::Layer {
  Linear *q, *k, *v, *o, *gate, *up, *down;
  bool post_ln;
  float scale;  // on the pre-norm outputs ln1, ln2 (1 without LayerNorm Scaling)
  int64_t ln1_offset, ln2_offset;
  DeviceArray<float> ln1, rstd1, qa, ka, va, att_saved, att, xmid, ln2, rstd2, ga, ua, h, ffn_out;
};

LlamaModel::LlamaModel(const ModelConfig& cfg, const Backend& be, int64_t max_batch)
    : cfg_(cfg), be_(be), max_batch_(max_batch) {
  cfg_.validate();
  CAIRN_ASSERT(max_batch > 0);
  const int64_t C = cfg_.dim, F = cfg_.ffn_dim, V = cfg_.vocab_size, T = cfg_.seq_len;
  const int64_t NH = cfg_.n_heads, HS = cfg_.head_size(), N = max_batch * T;

  // Declaration order is the flat-buffer order: embedding, blocks, final norm, head.
  embed_offset_ = table_.row(table_.add("model.embed_tokens.weight", {V, C}, ParamRole::embedding, -1)).offset;
  auto linear = [&](const std::string& name, int64_t out, int64_t in, int l) {
    linears_.push_back(make_linear(cfg_.linear, name, out, in, l));
    linears_.back()->declare(table_, buffers_);
    return linears_.back().get();
  };
  for (int l = 0; l < int(cfg_.n_layers); ++l) {
    const std::string p = str("model.layers.", l, ".");
    Layer L{};
    L.post_ln = cfg_.post_ln(l);
    L.scale = cfg_.norm_scale(l);
    // The first norm's gain comes first in either layout: backward reports it as the block's start.
    L.ln1_offset = table_.row(table_.add(p + layer_norm_name(L.post_ln, 1) + ".weight", {C}, ParamRole::norm, l)).offset;
    L.q = linear(p + "self_attn.q_proj", C, C, l);
    L.k = linear(p + "self_attn.k_proj", C, C, l);
    L.v = linear(p + "self_attn.v_proj", C, C, l);
    L.o = linear(p + "self_attn.o_proj", C, C, l);
    L.ln2_offset = table_.row(table_.add(p + layer_norm_name(L.post_ln, 2) + ".weight", {C}, ParamRole::norm, l)).offset;
    L.gate = linear(p + "mlp.gate_proj", F, C, l);
    L.up = linear(p + "mlp.up_proj", F, C, l);
    L.down = linear(p + "mlp.down_proj", C, F, l);
    layers_.push_back(std::move(L));
  }
  final_norm_offset_ = table_.row(table_.add("model.norm.weight", {C}, ParamRole::norm, -1)).offset;
  if (!cfg_.tie_embeddings)
    lm_head_offset_ = table_.row(table_.add("lm_head.weight", {V, C}, ParamRole::lm_head, -1)).offset;

  params_ = DeviceArray<float>(be_, table_.total());
  grads_ = DeviceArray<float>(be_, table_.total());
  // Before the first write: a bf16 backend keeps its copy of the parameters current from here on.
  be_.register_parameters(params_.data(), params_.size());
  params_.zero();
  grads_.zero();

  // RoPE tables [T, HS/2]: angle(t, j) = t·θ^(−2j/HS).
  const int64_t half = cfg_.head_size() / 2;
  std::vector<float> cs(size_t(T * half)), sn(size_t(T * half));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < half; ++j) {
      const double inv_freq = std::pow(double(cfg_.rope_theta), -2.0 * double(j) / double(cfg_.head_size()));
      cs[size_t(t * half + j)] = float(std::cos(double(t) * inv_freq));
      sn[size_t(t * half + j)] = float(std::sin(double(t) * inv_freq));
    }
  rope_cos_ = DeviceArray<float>(be_, T * half);
  rope_sin_ = DeviceArray<float>(be_, T * half);
  be_.copy_to_device(rope_cos_.data(), cs.data(), T * half * 4);
  be_.copy_to_device(rope_sin_.data(), sn.data(), T * half * 4);

  auto act = [&](int64_t n) { return DeviceArray<float>(be_, n); };
  inputs_ = DeviceArray<int32_t>(be_, N);
  targets_ = DeviceArray<int32_t>(be_, N);
  residual_ = act((cfg_.n_layers + 1) * N * C);
  for (auto& L : layers_) {
    if (L.post_ln) L.ffn_out = act(N * C);
    else L.ln1 = act(N * C);
    L.rstd1 = act(N);
    L.qa = act(N * C); L.ka = act(N * C); L.va = act(N * C);
    L.att_saved = act(be_.attention_saved_floats(max_batch, T, NH, HS));
    L.att = act(N * C); L.xmid = act(N * C);
    L.ln2 = act(N * C); L.rstd2 = act(N);
    L.ga = act(N * F); L.ua = act(N * F); L.h = act(N * F);
  }
  final_norm_ = act(N * C);
  final_rstd_ = act(N);
  logits_ = act(N * V);
  losses_ = act(N);
  dres_ = act(N * C); dln_ = act(N * C);
  dq_ = act(N * C); dk_ = act(N * C); dv_ = act(N * C); datt_ = act(N * C);
  dgate_ = act(N * F); dup_ = act(N * F); dh_ = act(N * F);
  att_scratch_ = act(be_.attention_scratch_floats(max_batch, T, NH, HS));
  tmp_ = act(N * std::max(C, F));  // backward of a Post-LN block: d ffn_out
  int64_t ws = 1;
  for (const auto& lin : linears_) ws = std::max(ws, lin->workspace_floats(N));
  linear_ws_ = act(ws);
}

LlamaModel::~LlamaModel() = default;

int64_t LlamaModel::activation_bytes() const {
  int64_t n = residual_.size() + final_norm_.size() + final_rstd_.size() + logits_.size() +
              losses_.size() + dres_.size() + dln_.size() + dq_.size() + dk_.size() + dv_.size() +
              datt_.size() + dgate_.size() + dup_.size() + dh_.size() + att_scratch_.size() +
              linear_ws_.size() + tmp_.size();
  for (const auto& L : layers_)
    n += L.ln1.size() + L.rstd1.size() + L.qa.size() + L.ka.size() + L.va.size() + L.att_saved.size() +
         L.att.size() + L.xmid.size() + L.ln2.size() + L.rstd2.size() + L.ga.size() + L.ua.size() + L.h.size() +
         L.ffn_out.size();
  return n * 4;
}

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

void LlamaModel::forward(int64_t B) {
  const int64_t C = cfg_.dim, F = cfg_.ffn_dim, T = cfg_.seq_len, NH = cfg_.n_heads;
  const int64_t HS = cfg_.head_size(), N = B * T;
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
    // Attention: Pre-LN reads ln1 = s·RMSNorm(x), Post-LN reads x itself.
    const float* attn_in = x;
    if (!L.post_ln) {
      be_.rmsnorm_forward(L.ln1.data(), L.rstd1.data(), x, P + L.ln1_offset, N, C, cfg_.norm_eps);
      if (L.scale != 1.0f) be_.scale_inplace(L.ln1.data(), L.scale, N * C);
      attn_in = L.ln1.data();
    }
    L.q->forward(be_, L.qa.data(), attn_in, N, P, bufs, ws);
    L.k->forward(be_, L.ka.data(), attn_in, N, P, bufs, ws);
    L.v->forward(be_, L.va.data(), attn_in, N, P, bufs, ws);
    be_.rope_forward(L.qa.data(), rope_cos_.data(), rope_sin_.data(), B, T, NH, HS);
    be_.rope_forward(L.ka.data(), rope_cos_.data(), rope_sin_.data(), B, T, NH, HS);
    be_.attention_forward(L.att.data(), L.att_saved.data(), L.qa.data(), L.ka.data(), L.va.data(), B, T, NH, HS);
    L.o->forward(be_, L.xmid.data(), L.att.data(), N, P, bufs, ws);
    be_.add_inplace(L.xmid.data(), x, N * C);
    // MLP input ln2: Pre-LN s·RMSNorm₂(xmid); Post-LN h = RMSNorm₁(xmid), which is also the residual.
    if (L.post_ln) {
      be_.rmsnorm_forward(L.ln2.data(), L.rstd1.data(), L.xmid.data(), P + L.ln1_offset, N, C, cfg_.norm_eps);
    } else {
      be_.rmsnorm_forward(L.ln2.data(), L.rstd2.data(), L.xmid.data(), P + L.ln2_offset, N, C, cfg_.norm_eps);
      if (L.scale != 1.0f) be_.scale_inplace(L.ln2.data(), L.scale, N * C);
    }
    L.gate->forward(be_, L.ga.data(), L.ln2.data(), N, P, bufs, ws);
    L.up->forward(be_, L.ua.data(), L.ln2.data(), N, P, bufs, ws);
    be_.swiglu_forward(L.h.data(), L.ga.data(), L.ua.data(), N * F);
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
  be_.matmul(logits_.data(), final_norm_.data(), lm_head_weight(), N, cfg_.vocab_size, C, false, true, 1.0f, 0.0f);
}

void LlamaModel::backward(int64_t B) {
  const int64_t C = cfg_.dim, F = cfg_.ffn_dim, T = cfg_.seq_len, NH = cfg_.n_heads;
  const int64_t HS = cfg_.head_size(), N = B * T, V = cfg_.vocab_size;
  const float* P = params_.data();
  float* G = grads_.data();
  const BufferTable& bufs = buffers_;
  float* ws = linear_ws_.data();

  // logits_ holds dloss/dlogits. Head: dW += dlogitsᵀ·final_norm, dfinal = dlogits·W.
  be_.matmul(G + lm_head_grad_offset(), logits_.data(), final_norm_.data(), V, C, N, true, false, 1.0f, 1.0f);
  be_.matmul(dln_.data(), logits_.data(), lm_head_weight(), N, C, V, false, false, 1.0f, 0.0f);
  dres_.zero();
  const float* x_last = residual_.data() + cfg_.n_layers * N * C;
  be_.rmsnorm_backward(dres_.data(), G + final_norm_offset_, dln_.data(), x_last, P + final_norm_offset_,
                       final_rstd_.data(), N, C);
  if (grad_ready_) grad_ready_(final_norm_offset_);

  for (size_t li = layers_.size(); li-- > 0;) {
    Layer& L = layers_[li];
    const float* x = residual_.data() + int64_t(li) * N * C;
    // MLP. Pre-LN: x' = xmid + down(h), so d down-output = dres = d x', which stays as d xmid's
    // residual part. Post-LN: x' = RMSNorm₂(ffn_out), d ffn_out goes to tmp_.
    float* dmlp_out = dres_.data();
    if (L.post_ln) {
      dmlp_out = tmp_.data();
      be_.zero(dmlp_out, N * C * 4);
      be_.rmsnorm_backward(dmlp_out, G + L.ln2_offset, dres_.data(), L.ffn_out.data(), P + L.ln2_offset,
                           L.rstd2.data(), N, C);
    }
    L.down->backward(be_, dh_.data(), false, G, dmlp_out, L.h.data(), N, P, bufs, ws);
    be_.swiglu_backward(dgate_.data(), dup_.data(), dh_.data(), L.ga.data(), L.ua.data(), N * F);
    L.gate->backward(be_, dln_.data(), false, G, dgate_.data(), L.ln2.data(), N, P, bufs, ws);
    L.up->backward(be_, dln_.data(), true, G, dup_.data(), L.ln2.data(), N, P, bufs, ws);
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
    be_.attention_backward(dq_.data(), dk_.data(), dv_.data(), att_scratch_.data(), datt_.data(), L.qa.data(),
                           L.ka.data(), L.va.data(), L.att.data(), L.att_saved.data(), B, T, NH, HS);
    be_.rope_backward(dq_.data(), rope_cos_.data(), rope_sin_.data(), B, T, NH, HS);
    be_.rope_backward(dk_.data(), rope_cos_.data(), rope_sin_.data(), B, T, NH, HS);
    L.q->backward(be_, dln_.data(), false, G, dq_.data(), attn_in, N, P, bufs, ws);
    L.k->backward(be_, dln_.data(), true, G, dk_.data(), attn_in, N, P, bufs, ws);
    L.v->backward(be_, dln_.data(), true, G, dv_.data(), attn_in, N, P, bufs, ws);
    if (L.post_ln) {
      be_.add_inplace(dres_.data(), dln_.data(), N * C);
    } else {
      if (L.scale != 1.0f) be_.scale_inplace(dln_.data(), L.scale, N * C);
      be_.rmsnorm_backward(dres_.data(), G + L.ln1_offset, dln_.data(), x, P + L.ln1_offset, L.rstd1.data(), N, C);
    }
    if (grad_ready_) grad_ready_(L.ln1_offset);  // the first row of the block
  }
  be_.embedding_backward(G + embed_offset_, dres_.data(), inputs_.data(), N, C);
  if (grad_ready_) grad_ready_(0);
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
  forward(B);
  const int64_t N = B * cfg_.seq_len;
  be_.crossentropy_forward_backward(losses_.data(), logits_.data(), targets_.data(), N, cfg_.vocab_size,
                                    grad_scale / float(N));
  backward(B);
  // Read after backward is queued: a device backend runs the whole micro-step without waiting.
  return mean_of(be_, losses_.data(), N);
}

float LlamaModel::forward_loss(const int32_t* inputs, const int32_t* targets, int64_t B) {
  upload_tokens(inputs, targets, B);
  forward(B);
  const int64_t N = B * cfg_.seq_len;
  be_.crossentropy_forward(losses_.data(), logits_.data(), targets_.data(), N, cfg_.vocab_size);
  return mean_of(be_, losses_.data(), N);
}

std::vector<float> LlamaModel::forward_logits(const int32_t* inputs, int64_t B) {
  upload_tokens(inputs, nullptr, B);
  forward(B);
  const int64_t n = B * cfg_.seq_len * cfg_.vocab_size;
  std::vector<float> host(static_cast<size_t>(n));
  be_.copy_to_host(host.data(), logits_.data(), n * 4);
  return host;
}

}  // namespace cairn
