// The decoder-only LLaMA model: token embedding; L blocks of RMSNorm → causal multi-head attention
// with rotary embeddings (grouped-query when n_kv_heads < n_heads: NH/NKV query heads share each
// key/value head; LLaMA-3 frequency scaling with rope_type = "llama3") → residual, RMSNorm → SwiGLU MLP → residual; final RMSNorm; LM head
// (untied unless tie_embeddings); mean next-token cross-entropy. Parameter names and shapes are
// Hugging Face LLaMA's.
//
// Two depth methods change the blocks (docs/methods.md): Mix-LN (norm_layout = "mix") makes the
// first post_ln_layers() blocks Post-LN — h = RMSNorm_a(x + attn(x)), x' = RMSNorm_f(h + mlp(h)),
// gains named post_attention_layernorm and post_feedforward_layernorm as in the official code —
// and LayerNorm Scaling (norm_scaling) multiplies both pre-norm outputs of block l (1-based) by
// 1/sqrt(l). The final norm is the same in every layout.
//
// The model owns its flat parameter and gradient buffers and one activation arena, sized once for
// `max_batch` sequences of `seq_len` tokens from a size table (LlamaModel::activation_sizes) that
// the memory plan reads too: nothing is allocated inside a step. Forward and backward are
// explicit, layer by layer, in llama.cpp. Dense q/k/v and gate/up weights, adjacent in the flat
// buffer, are applied as one batched GEMM each; the LM head and the cross-entropy run over chunks
// of rows (logit_chunk_rows), so the [N, V] logits never exist whole; and a micro-step is
// bracketed for a backend that replays it as a CUDA graph (Backend::graph_begin).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "model/linear.h"
#include "model/param_table.h"

namespace cairn {

// model.norm_layout: "pre" (Pre-LN) or "mix" (Mix-LN).
enum class NormLayout { pre, mix };
template <>
struct ChoiceNames<NormLayout> {
  static constexpr std::array<std::pair<std::string_view, NormLayout>, 2> names{
      {{"pre", NormLayout::pre}, {"mix", NormLayout::mix}}};
};

struct ModelConfig {
  int64_t vocab_size = 257;
  int64_t dim = 128;       // C
  int64_t n_layers = 4;    // L
  int64_t n_heads = 4;     // NH
  int64_t n_kv_heads = 0;  // NKV, key/value heads (grouped-query attention; divides NH); 0: NH
  int64_t head_dim = 0;    // HS; 0: dim / n_heads
  int64_t ffn_dim = 352;   // F
  int64_t seq_len = 128;   // T
  float norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  // Rotary frequency scaling: "default" (none) or "llama3" (Hugging Face's
  // _compute_llama3_parameters): wavelengths above original_context / low_freq_factor are divided
  // by factor, those below original_context / high_freq_factor kept, the band between interpolated.
  std::string rope_type = "default";
  double rope_factor = 8.0;
  double rope_low_freq_factor = 1.0;
  double rope_high_freq_factor = 4.0;
  int64_t rope_original_context = 8192;
  bool tie_embeddings = false;
  float init_std = 0.02f;
  LinearConfig linear;     // kind of the q,k,v,o,gate,up,down weights
  NormLayout norm_layout = NormLayout::pre;
  double mix_ln_alpha = 0.25;       // mix: the first floor(alpha·L) blocks are Post-LN
  bool norm_scaling = false;        // LayerNorm Scaling: pre-norm outputs of block l times 1/sqrt(l)

  int64_t head_size() const { return head_dim > 0 ? head_dim : dim / n_heads; }
  int64_t kv_heads() const { return n_kv_heads > 0 ? n_kv_heads : n_heads; }
  int64_t q_dim() const { return n_heads * head_size(); }    // width of q and of o_proj's input
  int64_t kv_dim() const { return kv_heads() * head_size(); }  // width of k and v
  // The rotary inverse frequencies θ^(−2j/HS), j < HS/2, after rope_type's scaling.
  std::vector<double> rope_inv_freq() const;
  // Post-LN blocks, the first ones: floor(mix_ln_alpha·n_layers) for "mix" (alpha·L rounded to
  // 1e-9 first, so 0.29·100 gives 29), 0 for "pre".
  int64_t post_ln_layers() const;
  bool post_ln(int64_t layer) const { return layer < post_ln_layers(); }
  // The factor on block `layer`'s (0-based) pre-norm outputs: 1/sqrt(layer + 1) with
  // norm_scaling, else 1.
  float norm_scale(int64_t layer) const;
  void validate() const;  // throws Error naming the offending key
};

// The gain names (without "model.layers.{i}." and ".weight") of a block's first and second norm:
// input_layernorm and post_attention_layernorm for Pre-LN, post_attention_layernorm and
// post_feedforward_layernorm for Post-LN (the official Mix-LN code's names).
const char* layer_norm_name(bool post_ln, int which);  // which: 1 or 2

// FLOPs of one training token (forward + backward) as the model computes them on `be` with `rows`
// (= micro-batch · T) rows per call: each projection's own work (Linear::flops: 6 per weight for
// dense ones, so 6·N overall; the factored or materialized GEMMs for low-rank and SLTrain ones),
// 6·V·C for the LM head, and 12·L·NH·HS·T for attention scores and values (the PaLM convention).
double training_flops_per_token(const ModelConfig& cfg, const Backend& be, int64_t rows);

// Closed-form trainable parameter counts (what the parameter table must hold): of the q, k, v, o,
// gate, up, down weights of all layers (per weight linear_weight_param_count), and of the whole
// model (plus embeddings, norms and the untied LM head).
int64_t linear_param_count(const ModelConfig& cfg);
int64_t model_param_count(const ModelConfig& cfg);
// Without the embedding and the untied LM head (the vocabulary matrices): Step Law's N.
int64_t non_embedding_param_count(const ModelConfig& cfg);

// Rows of logits the model holds at once, of the B·T = max_batch·seq_len it runs: all of them up
// to 2^27 floats (512 MiB), else chunks of 2^27 / V rows (4194 at V = 32000).
int64_t logit_chunk_rows(const ModelConfig& cfg, int64_t max_batch);

// What an activation buffer holds, for the memory plan.
enum class ActivationRole {
  tokens,    // the micro-batch's input and target ids
  constant,  // tables computed once (RoPE)
  saved,     // forward activations kept for backward
  logits,    // one chunk of the LM head's output [rows, V] (its gradient in place) and the per-token losses
  scratch,   // backward and workspace buffers shared by all layers
};
const char* activation_role_name(ActivationRole role);

// One buffer of the activation arena: `count` elements of `elem_bytes` bytes (float or int32).
struct ActivationBuffer {
  std::string name;  // "residual", "layers.3.ln1", "logits", ...
  ActivationRole role;
  int64_t count;
  int64_t elem_bytes = 4;
};

class LlamaModel {
 public:
  // The activation buffers of cfg for max_batch sequences on `be`, in arena order: exactly what
  // the constructor allocates, each buffer starting at a multiple of kActivationAlign bytes. A new
  // buffer is one row here and one binding in the constructor (which checks both ways).
  // logit_rows: rows of logits per chunk (0: logit_chunk_rows(cfg, max_batch); tests pass fewer).
  static std::vector<ActivationBuffer> activation_sizes(const ModelConfig& cfg, const Backend& be, int64_t max_batch,
                                                        int64_t logit_rows = 0);
  static int64_t activation_arena_bytes(const std::vector<ActivationBuffer>& buffers);
  // The most floats of a first matmul operand of a step plus the most of a second one, parameters
  // not counted (a batched product's or linear_backward's operands taken whole): what a backend
  // that rounds operands into its own staging (Backend::matmul_staging_bytes) needs at most.
  static int64_t matmul_operand_floats(const ModelConfig& cfg, int64_t max_batch, int64_t logit_rows = 0);
  static constexpr int64_t kActivationAlign = 256;
  // The parameter rows the constructor declares for cfg, without building the model.
  static ParamTable parameter_table(const ModelConfig& cfg);

  LlamaModel(const ModelConfig& cfg, const Backend& be, int64_t max_batch, int64_t logit_rows = 0);
  ~LlamaModel();
  LlamaModel(const LlamaModel&) = delete;
  LlamaModel& operator=(const LlamaModel&) = delete;

  const ModelConfig& config() const { return cfg_; }
  const Backend& backend() const { return be_; }
  const ParamTable& params() const { return table_; }
  BufferTable& buffers() { return buffers_; }
  const BufferTable& buffers() const { return buffers_; }
  const std::vector<std::unique_ptr<Linear>>& linears() const { return linears_; }

  // Flat buffers (backend memory): parameters and their gradients, same layout.
  float* param_data() { return params_.data(); }
  float* grad_data() { return grads_.data(); }
  std::span<float> param_span() { return {params_.data(), size_t(params_.size())}; }
  std::span<float> grad_span() { return {grads_.data(), size_t(grads_.size())}; }

  // Fresh initialization from a seed (Hugging Face LLaMA: normal(0, init_std), norms 1).
  void init_weights(uint64_t seed);
  void zero_grads() { grads_.zero(); }

  // One micro-batch of B ≤ max_batch sequences: tokens are [B, T] inputs and [B, T] targets
  // (host memory). Returns the mean loss over the B·T targets and ACCUMULATES into the gradients
  // d(grad_scale · mean loss)/dθ, so a trainer with k micro-steps passes grad_scale = 1/k.
  float forward_backward(const int32_t* inputs, const int32_t* targets, int64_t B, float grad_scale);
  // Mean loss without gradients (validation).
  float forward_loss(const int32_t* inputs, const int32_t* targets, int64_t B);
  // The loss of every target without gradients: [B, T] (host copy). A sequence's losses do not
  // depend on the others in its batch, up to rounding (a GEMM of another height may round
  // differently).
  std::vector<float> forward_token_losses(const int32_t* inputs, const int32_t* targets, int64_t B);
  // Logits [B, T, V] of the last position-wise forward, computed by this call (host copy, filled
  // chunk by chunk).
  std::vector<float> forward_logits(const int32_t* inputs, int64_t B);

  // Evaluation only: block `layer` (0-based) is skipped — its output is its input — by the
  // forward passes until reset with -1 (for measuring what each layer contributes).
  // forward_backward refuses to run while a layer is skipped.
  void set_skipped_layer(int64_t layer);
  int64_t skipped_layer() const { return skipped_layer_; }

  // Called during backward with an offset: gradients [offset, end of the flat buffer) are final
  // for this micro-batch (backward completes them from the end towards the start). Used to start
  // gradient communication early. Empty: no calls. With a hook the micro-step is never replayed as a
  // graph (the hook's collectives run between the backward's ops).
  void set_grad_ready_hook(std::function<void(int64_t)> hook) { grad_ready_ = std::move(hook); }

  int64_t max_batch() const { return max_batch_; }
  // Bytes of the activation arena (activation_arena_bytes of activation_sizes).
  int64_t activation_bytes() const { return arena_.size(); }

 private:
  struct Layer;
  void forward(int64_t B);  // on the uploaded tokens, up to the final norm
  void upload_tokens(const int32_t* inputs, const int32_t* targets, int64_t B);
  // logits_ = the LM head on rows [r0, r0 + n) of the final norm.
  void head_logits(int64_t r0, int64_t n);
  // The head, the loss and their gradients chunk by chunk: losses_, dln_ = dloss/dfinal_norm and
  // the head's weight gradient, for a loss scaled by grad_scale / N.
  void head_loss_backward(int64_t B, float grad_scale);
  // losses_ = every target's loss on these tokens, without gradients (head chunk by chunk).
  void token_losses(const int32_t* inputs, const int32_t* targets, int64_t B);
  void backward(int64_t B);  // from dln_ at the final norm down to the embedding
  // y_i = x·W_iᵀ into adjacent outputs y + i·N·out (q, k, v or gate, up): one batched GEMM when
  // fused_offset ≥ 0 (dense weights adjacent from there), else each linear's own forward.
  void project(const std::vector<Linear*>& ws, int64_t fused_offset, float* y, const float* x, int64_t N);
  // Their backward: weight gradients, and dx = Σ dy_i·W_i (overwritten, or added when accumulate_dx).
  void project_backward(const std::vector<Linear*>& ws, int64_t fused_offset, float* dx, const float* dy,
                        const float* x, int64_t N, bool accumulate_dx = false);
  // The q, k, v projections of a block into q (k, v adjacent after it), and their backward.
  void project_qkv(const Layer& L, float* q, const float* x, int64_t N);
  void project_qkv_backward(const Layer& L, float* dx, const float* dq, const float* x, int64_t N);
  // RoPE and attention on the block's qkv into its att (k, v repeated per query head with GQA), and
  // their backward from datt_ into dqkv_.
  void attention(Layer& L, int64_t B);
  void attention_backward(const Layer& L, int64_t B);
  // Identifies a micro-step's graph: this model, B, the loss scale and the buffers' version.
  uint64_t step_key(int64_t B, float grad_scale) const;
  const float* lm_head_weight() const;
  int64_t lm_head_grad_offset() const;

  ModelConfig cfg_;
  const Backend& be_;
  int64_t max_batch_;
  ParamTable table_;
  BufferTable buffers_;
  std::vector<std::unique_ptr<Linear>> linears_;
  std::vector<Layer> layers_;
  int64_t embed_offset_ = 0, final_norm_offset_ = 0, lm_head_offset_ = -1;
  int64_t skipped_layer_ = -1;
  int64_t logit_rows_ = 0;
  uint64_t id_ = 0;  // distinct per model in this process (graph keys)

  // A typed buffer inside the arena.
  template <typename T>
  struct Slice {
    T* ptr = nullptr;
    int64_t n = 0;
    T* data() const { return ptr; }
    int64_t size() const { return n; }
  };
  class ArenaBinder;

  std::function<void(int64_t)> grad_ready_;
  DeviceArray<float> params_, grads_;
  DeviceArray<std::byte> arena_;  // every buffer below and in Layer
  Slice<float> rope_cos_, rope_sin_;
  Slice<int32_t> inputs_, targets_;
  // Activations saved for backward: residual stream x[0..L], per-layer buffers in Layer; logits_
  // holds one chunk of rows [logit_rows_, V].
  Slice<float> residual_, final_norm_, final_rstd_, logits_, losses_;
  // Backward scratch shared by all layers: dqkv_ holds dq, dk, dv and dgu_ dgate, dup, adjacent.
  Slice<float> dres_, dln_, dqkv_, datt_, dgu_, dh_, att_scratch_, linear_ws_;
  Slice<float> dffn_out_;  // only with Post-LN layers (Mix-LN): d of a block's pre-norm MLP output
  Slice<float> kv_rep_, dkv_rep_;  // only with grouped-query attention: k, v (dk, dv) per query head
};

}  // namespace cairn
