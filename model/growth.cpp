// G_stack growth by row name (see growth.h). Reference: github.com/tongxuluo/prts,
// prts_lit/scaling/stackingpt.py (stacking_list = [0..L-1] repeated g times).
#include "model/growth.h"

#include <cmath>
#include <filesystem>
#include <vector>

#include "util/error.h"

namespace cairn {

ModelConfig grown_config(const ModelConfig& src, int64_t factor) {
  if (factor < 1) throw Error(str("growth factor must be an integer >= 1, got ", factor));
  ModelConfig dst = src;
  dst.n_layers = src.n_layers * factor;
  return dst;
}

namespace {

constexpr const char* kLayerPrefix = "model.layers.";

// The source row name of a target row: layer index i becomes i mod L, other names are unchanged.
// A norm gain whose layer changes layout (Mix-LN: the grown model keeps mix_ln_alpha, so its
// Post-LN prefix is longer) comes from the source layer's norm in the same slot, first or second.
std::string source_name(const std::string& name, const ModelConfig& src, const ModelConfig& dst) {
  if (name.rfind(kLayerPrefix, 0) != 0) return name;
  const size_t start = std::char_traits<char>::length(kLayerPrefix);
  const size_t dot = name.find('.', start);
  CAIRN_ASSERT(dot != std::string::npos, "layer row without a field: ", name);
  const int64_t layer = std::stoll(name.substr(start, dot - start)), from = layer % src.n_layers;
  const std::string field = name.substr(dot + 1);
  for (int slot : {1, 2})
    if (field == std::string(layer_norm_name(dst.post_ln(layer), slot)) + ".weight")
      return kLayerPrefix + std::to_string(from) + "." + layer_norm_name(src.post_ln(from), slot) + ".weight";
  return kLayerPrefix + std::to_string(from) + "." + field;
}

void check_same(const char* what, int64_t src, int64_t dst) {
  if (src != dst)
    throw Error(str("G_stack growth keeps the model's width: ", what, " would change from ", src, " to ", dst,
                    "; only model.n_layers may grow"));
}

}  // namespace

void grow_depthwise(const LlamaModel& src, LlamaModel& dst) {
  const ModelConfig& s = src.config();
  const ModelConfig& d = dst.config();
  check_same("model.dim", s.dim, d.dim);
  check_same("model.n_heads", s.n_heads, d.n_heads);
  check_same("model.n_kv_heads", s.kv_heads(), d.kv_heads());
  check_same("model.head_dim", s.head_size(), d.head_size());
  check_same("model.ffn_dim", s.ffn_dim, d.ffn_dim);
  check_same("model.vocab_size", s.vocab_size, d.vocab_size);
  check_same("model.seq_len", s.seq_len, d.seq_len);
  check_same("model.tie_embeddings", s.tie_embeddings, d.tie_embeddings);
  if (s.linear.kind != d.linear.kind)
    throw Error(str("G_stack growth keeps the linear kind: model.linear would change from ",
                    linear_kind_name(s.linear.kind), " to ", linear_kind_name(d.linear.kind)));
  check_same("model.rank", s.linear.rank, d.linear.rank);
  if (s.norm_layout != d.norm_layout || s.mix_ln_alpha != d.mix_ln_alpha || s.norm_scaling != d.norm_scaling)
    throw Error(str("G_stack growth keeps the norm layout: model.norm_layout, model.mix_ln_alpha and "
                    "model.norm_scaling would change from \"", choice_name(s.norm_layout), "\", ", s.mix_ln_alpha, ", ",
                    s.norm_scaling ? "true" : "false", " to \"", choice_name(d.norm_layout), "\", ", d.mix_ln_alpha, ", ",
                    d.norm_scaling ? "true" : "false"));
  if (d.n_layers < s.n_layers || d.n_layers % s.n_layers != 0)
    throw Error(str("G_stack growth needs n_layers = g·", s.n_layers, " for an integer g >= 1, got ", d.n_layers));

  const ParamTable& st = src.params();
  std::vector<float> from(size_t(st.total())), to(size_t(dst.params().total()), 0.0f);
  src.backend().copy_to_host(from.data(), const_cast<LlamaModel&>(src).param_data(), st.total() * 4);
  for (const auto& r : dst.params().rows()) {
    const std::string name = source_name(r.name, s, d);
    const int i = st.find(name);
    if (i < 0) throw Error(str("cannot grow: the source model has no parameter '", name, "' for '", r.name, "'"));
    const ParamRow& sr = st.row(i);
    if (sr.shape != r.shape) throw Error(str("cannot grow: parameter '", name, "' has a different shape in the source"));
    std::copy_n(from.begin() + sr.offset, r.numel, to.begin() + r.offset);
  }
  for (auto& b : dst.buffers().rows()) {
    const std::string name = source_name(b.name, s, d);
    const int i = src.buffers().find(name);
    if (i < 0) throw Error(str("cannot grow: the source model has no buffer '", name, "' for '", b.name, "'"));
    const BufferRow& sb = src.buffers().rows()[size_t(i)];
    if (sb.shape != b.shape) throw Error(str("cannot grow: buffer '", name, "' has a different shape in the source"));
    b.data = sb.data;
  }
  dst.backend().copy_to_device(dst.param_data(), to.data(), int64_t(to.size()) * 4);
}

std::vector<int64_t> layers_changing_layout(const ModelConfig& src, int64_t factor) {
  const ModelConfig dst = grown_config(src, factor);
  std::vector<int64_t> changed;
  for (int64_t i = 0; i < dst.n_layers; ++i)
    if (dst.post_ln(i) != src.post_ln(i % src.n_layers)) changed.push_back(i);
  return changed;
}

double gstack_growth_tokens(double params, double tokens) {
  if (!(params > 0) || !(tokens > 0)) throw Error("the growth plan needs positive --params and --tokens");
  const double compute = 6.0 * params * tokens;
  return std::pow(10.0, 0.88 * std::log10(params) + 163.27 / std::log10(compute) - 5.74);
}

}  // namespace cairn
