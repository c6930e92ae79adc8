// cairn against the PyTorch reference (tools/reference/llama_reference.py): logits, loss and
// every gradient of a tiny LLaMA for one batch, and a 10-step AdamW loss curve with clipping, for
// the Pre-LN model, the depth methods (Mix-LN, LayerNorm Scaling) and grouped-query attention with
// an explicit head size and LLaMA-3 rope scaling, one golden file each.
// The golden values are float64 from float32 weights; cairn computes in float32.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "model/llama.h"
#include "trainer/optim/adamw.h"
#include "trainer/trainer.h"
#include "util/h5.h"

namespace cairn {
namespace {

struct Golden {
  H5File f;
  ModelConfig cfg;
  int64_t B;
  OptimizerConfig opt;
  float lr;
  explicit Golden(const std::string& file) : f(H5File::open(std::string(CAIRN_SOURCE_DIR) + "/tests/golden/" + file)) {
    cfg.vocab_size = read_attr_int(f, "vocab_size");
    cfg.dim = read_attr_int(f, "dim");
    cfg.n_layers = read_attr_int(f, "n_layers");
    cfg.n_heads = read_attr_int(f, "n_heads");
    cfg.ffn_dim = read_attr_int(f, "ffn_dim");
    cfg.seq_len = read_attr_int(f, "seq_len");
    cfg.norm_eps = float(read_attr_double(f, "norm_eps"));
    cfg.rope_theta = float(read_attr_double(f, "rope_theta"));
    cfg.tie_embeddings = read_attr_int(f, "tied") != 0;
    if (has_attr(f, "norm_layout")) cfg.norm_layout = *choice_from_name<NormLayout>(read_attr_string(f, "norm_layout"));
    if (has_attr(f, "mix_ln_alpha")) cfg.mix_ln_alpha = read_attr_double(f, "mix_ln_alpha");
    if (has_attr(f, "norm_scaling")) cfg.norm_scaling = read_attr_int(f, "norm_scaling") != 0;
    if (has_attr(f, "n_kv_heads")) cfg.n_kv_heads = read_attr_int(f, "n_kv_heads");
    if (has_attr(f, "head_dim")) cfg.head_dim = read_attr_int(f, "head_dim");
    if (has_attr(f, "rope_type")) {
      cfg.rope_type = read_attr_string(f, "rope_type");
      cfg.rope_factor = read_attr_double(f, "rope_factor");
      cfg.rope_low_freq_factor = read_attr_double(f, "rope_low_freq_factor");
      cfg.rope_high_freq_factor = read_attr_double(f, "rope_high_freq_factor");
      cfg.rope_original_context = read_attr_int(f, "rope_original_context");
    }
    B = read_attr_int(f, "batch");
    opt.beta1 = float(read_attr_double(f, "beta1"));
    opt.beta2 = float(read_attr_double(f, "beta2"));
    opt.eps = float(read_attr_double(f, "eps"));
    opt.weight_decay = float(read_attr_double(f, "weight_decay"));
    opt.grad_clip = float(read_attr_double(f, "clip"));
    lr = float(read_attr_double(f, "lr"));
  }
  void load_params(LlamaModel& m, const std::string& group) {
    for (const auto& r : m.params().rows()) {
      auto a = read_dataset<float>(f, group + "/" + r.name);
      ASSERT_EQ(a.shape, r.shape) << r.name;
      std::copy(a.data.begin(), a.data.end(), m.param_data() + r.offset);
    }
  }
  // inputs/targets of batch s from /tokens [steps, B, T+1]
  void batch(int64_t s, std::vector<int32_t>& in, std::vector<int32_t>& tg) {
    auto tok = read_dataset<int32_t>(f, "tokens");
    const int64_t T = cfg.seq_len;
    in.resize(size_t(B * T));
    tg.resize(size_t(B * T));
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t) {
        in[size_t(b * T + t)] = tok.data[size_t((s * B + b) * (T + 1) + t)];
        tg[size_t(b * T + t)] = tok.data[size_t((s * B + b) * (T + 1) + t + 1)];
      }
  }
};

// The golden files: the Pre-LN model, Mix-LN (4 layers, alpha 0.25: layer 0 Post-LN), LayerNorm
// Scaling (4 layers), GQA 4:1 with head size 8 at width 12 and llama3 rope scaling (2 layers).
class GoldenFile : public ::testing::TestWithParam<std::string> {};
INSTANTIATE_TEST_SUITE_P(Golden, GoldenFile,
                         ::testing::Values("tiny_llama.h5", "tiny_mix_ln.h5", "tiny_ln_scaling.h5", "tiny_gqa_llama3.h5"),
                         [](const auto& info) { return info.param.substr(5, info.param.size() - 8); });

TEST_P(GoldenFile, FileHoldsTheLayoutItIsNamedFor) {
  Golden g(GetParam());
  const ModelConfig& c = g.cfg;
  EXPECT_EQ(c.post_ln_layers(), GetParam() == "tiny_mix_ln.h5" ? 1 : 0);
  EXPECT_EQ(c.norm_scaling, GetParam() == "tiny_ln_scaling.h5");
  const bool gqa = GetParam() == "tiny_gqa_llama3.h5";
  EXPECT_EQ(c.kv_heads() < c.n_heads, gqa);
  EXPECT_EQ(c.head_size() * c.n_heads != c.dim, gqa);
  EXPECT_EQ(c.rope_type, gqa ? "llama3" : "default");
}

TEST_P(GoldenFile, LogitsLossAndGradientsMatchPyTorch) {
  Golden g(GetParam());
  LlamaModel m(g.cfg, cpu_backend(), g.B);
  g.load_params(m, "params");
  std::vector<int32_t> in, tg;
  g.batch(0, in, tg);

  const auto logits = m.forward_logits(in.data(), g.B);
  const auto ref = read_dataset<double>(g.f, "logits");
  ASSERT_EQ(ref.data.size(), logits.size());
  for (size_t i = 0; i < logits.size(); ++i) ASSERT_NEAR(logits[i], ref.data[i], 2e-5 + 1e-4 * std::abs(ref.data[i])) << i;

  m.zero_grads();
  const float loss = m.forward_backward(in.data(), tg.data(), g.B, 1.0f);
  EXPECT_NEAR(loss, read_dataset<double>(g.f, "loss0").data[0], 1e-5);
  for (const auto& r : m.params().rows()) {
    const auto gr = read_dataset<double>(g.f, "grads/" + r.name);
    double max_ref = 0;
    for (double v : gr.data) max_ref = std::max(max_ref, std::abs(v));
    for (int64_t i = 0; i < r.numel; ++i)
      ASSERT_NEAR(m.grad_data()[r.offset + i], gr.data[size_t(i)], 1e-6 + 1e-4 * max_ref) << r.name << " [" << i << "]";
  }
}

TEST_P(GoldenFile, TenAdamWStepsMatchPyTorch) {
  Golden g(GetParam());
  LlamaModel m(g.cfg, cpu_backend(), g.B);
  g.load_params(m, "params");
  std::vector<int> rows(m.params().rows().size());
  std::iota(rows.begin(), rows.end(), 0);
  AdamW opt(m.params(), rows, g.opt, cpu_backend());
  const auto losses = read_dataset<double>(g.f, "losses").data;
  const auto norms = read_dataset<double>(g.f, "grad_norms").data;
  std::vector<int32_t> in, tg;
  for (int64_t s = 0; s < int64_t(losses.size()); ++s) {
    g.batch(s, in, tg);
    m.zero_grads();
    const float loss = m.forward_backward(in.data(), tg.data(), g.B, 1.0f);
    const double norm = clip_gradients(cpu_backend(), m.grad_data(), m.params().total(), g.opt.grad_clip);
    EXPECT_NEAR(loss, losses[size_t(s)], 1e-4) << "step " << s;
    EXPECT_NEAR(norm, norms[size_t(s)], 1e-4 * norms[size_t(s)]) << "step " << s;
    opt.step(m.param_span(), m.grad_span(), g.lr);
  }
  for (const auto& r : m.params().rows()) {
    const auto fp = read_dataset<double>(g.f, "final_params/" + r.name);
    for (int64_t i = 0; i < r.numel; ++i)
      ASSERT_NEAR(m.param_data()[r.offset + i], fp.data[size_t(i)], 1e-4) << r.name << " [" << i << "]";
  }
}

}  // namespace
}  // namespace cairn
