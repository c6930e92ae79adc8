// Grouped-query attention, an explicit head size and LLaMA-3 rope scaling in the model: a GQA model
// is the MHA model whose key/value heads are repeated (logits equal; its k, v gradients are the
// sums of the repeated heads'), n_kv_heads = n_heads is the default model bit for bit, gradients
// match finite differences for every weight kind, the llama3 frequencies follow the closed form,
// parameter counts follow the new shapes, and G_stack growth keeps them.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "model/growth.h"
#include "model/llama.h"
#include "tests/test_support.h"

namespace cairn {
namespace {

ModelConfig gqa_config() {
  ModelConfig c;
  c.vocab_size = 41;
  c.dim = 16;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 6;  // q width 24, k/v width 12, neither the model width
  c.ffn_dim = 24;
  c.seq_len = 7;
  return c;
}

std::vector<float> host(const LlamaModel& m, const float* p) {
  return std::vector<float>(p, p + m.params().total());
}

TEST(Gqa, EqualsMhaWithRepeatedKeyValueHeads) {
  cpu_set_threads(1);
  const ModelConfig g = gqa_config();
  ModelConfig mha = g;
  mha.n_kv_heads = 0;
  const int64_t B = 2, N = B * g.seq_len, HS = g.head_size(), G = g.n_heads / g.kv_heads();
  LlamaModel a(g, cpu_backend(), B), b(mha, cpu_backend(), B);
  a.init_weights(11);
  for (auto& p : a.param_span()) p *= 10;  // enough signal through attention
  // b: every row of a, with k_proj and v_proj rows repeated head by head.
  for (const auto& r : b.params().rows()) {
    const ParamRow& src = a.params().at(r.name);
    const float* from = a.param_data() + src.offset;
    float* to = b.param_data() + r.offset;
    if (r.name.find("k_proj") != std::string::npos || r.name.find("v_proj") != std::string::npos) {
      const int64_t C = r.shape[1];
      for (int64_t h = 0; h < g.n_heads; ++h)
        std::memcpy(to + h * HS * C, from + (h / G) * HS * C, size_t(HS * C) * 4);
    } else {
      ASSERT_EQ(r.numel, src.numel) << r.name;
      std::memcpy(to, from, size_t(r.numel) * 4);
    }
  }
  const auto in = random_tokens(N, g.vocab_size, 1), tg = random_tokens(N, g.vocab_size, 2);
  const auto la = a.forward_logits(in.data(), B), lb = b.forward_logits(in.data(), B);
  for (size_t i = 0; i < la.size(); ++i) ASSERT_NEAR(la[i], lb[i], 1e-5 + 1e-5 * std::abs(lb[i])) << i;

  EXPECT_NEAR(a.forward_backward(in.data(), tg.data(), B, 1.0f), b.forward_backward(in.data(), tg.data(), B, 1.0f),
              1e-6);
  const std::vector<float> ga = host(a, a.grad_data()), gb = host(b, b.grad_data());
  for (const auto& r : a.params().rows()) {
    const ParamRow& rb = b.params().at(r.name);
    const bool kv = r.name.find("k_proj") != std::string::npos || r.name.find("v_proj") != std::string::npos;
    const int64_t C = r.shape.size() == 2 ? r.shape[1] : 1;
    for (int64_t i = 0; i < r.numel; ++i) {
      double want = gb[size_t(rb.offset + i)];
      if (kv) {  // the sum over the query heads that share this key/value head
        const int64_t kh = i / (HS * C), within = i % (HS * C);
        want = 0;
        for (int64_t q = kh * G; q < (kh + 1) * G; ++q) want += gb[size_t(rb.offset + q * HS * C + within)];
      }
      ASSERT_NEAR(ga[size_t(r.offset + i)], want, 1e-5 + 1e-4 * std::abs(want)) << r.name << " [" << i << "]";
    }
  }
}

TEST(Gqa, KvHeadsEqualToHeadsIsTheDefaultModelBitForBit) {
  ModelConfig plain = gqa_config();
  plain.n_kv_heads = 0;
  plain.head_dim = 0;
  ModelConfig spelled = plain;
  spelled.n_kv_heads = plain.n_heads;
  spelled.head_dim = plain.dim / plain.n_heads;
  const int64_t B = 2, N = B * plain.seq_len;
  LlamaModel a(plain, cpu_backend(), B), b(spelled, cpu_backend(), B);
  a.init_weights(5);
  b.init_weights(5);
  const auto in = random_tokens(N, plain.vocab_size, 1), tg = random_tokens(N, plain.vocab_size, 2);
  const float loss_a = a.forward_backward(in.data(), tg.data(), B, 1.0f);
  const float loss_b = b.forward_backward(in.data(), tg.data(), B, 1.0f);
  EXPECT_EQ(std::memcmp(&loss_a, &loss_b, 4), 0);
  EXPECT_EQ(host(a, a.grad_data()), host(b, b.grad_data()));
  EXPECT_EQ(LlamaModel::activation_sizes(plain, cpu_backend(), B).size(),
            LlamaModel::activation_sizes(spelled, cpu_backend(), B).size());
}

// Smaller than gqa_config (as model_test's and sltrain_test's finite-difference models): less
// curvature at the step h = 1e-2. 4 query heads of size 4 (width 16 at model width 8), 2 key/value.
ModelConfig fd_config(LinearKind kind) {
  ModelConfig c;
  c.vocab_size = 11;
  c.dim = 8;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 4;
  c.ffn_dim = 12;
  c.seq_len = 6;
  c.linear.kind = kind;
  c.linear.rank = 3;
  c.linear.alpha = 6.0f;
  c.linear.density = 0.25f;
  return c;
}

TEST(Gqa, GradientsMatchFiniteDifferences) {
  for (LinearKind kind : {LinearKind::dense, LinearKind::lowrank, LinearKind::sltrain}) {
    SCOPED_TRACE(linear_kind_name(kind));
    check_model_gradients(fd_config(kind));
  }
  ModelConfig mqa = fd_config(LinearKind::dense);  // one key/value head, llama3 rope scaling
  mqa.n_kv_heads = 1;
  mqa.rope_type = "llama3";
  mqa.rope_original_context = 4;
  check_model_gradients(mqa);
}

TEST(Gqa, Llama3FrequenciesFollowTheClosedForm) {
  ModelConfig c;
  c.dim = 32;
  c.n_heads = 4;  // head size 8: frequencies 10000^(-j/4), wavelengths 6.3, 62.8, 628, 6283
  c.rope_type = "llama3";
  c.rope_factor = 8;
  c.rope_low_freq_factor = 1;
  c.rope_high_freq_factor = 8;
  c.rope_original_context = 256;  // kept below 32, interpolated up to 256, divided by 8 above
  const std::vector<double> f = c.rope_inv_freq();
  ASSERT_EQ(f.size(), 4u);
  EXPECT_DOUBLE_EQ(f[0], 1.0);
  const double base1 = std::pow(10000.0, -0.25), smooth = (256 / (2 * M_PI / base1) - 1) / (8 - 1);
  EXPECT_NEAR(f[1], (1 - smooth) * base1 / 8 + smooth * base1, 1e-15);
  EXPECT_NEAR(f[2], std::pow(10000.0, -0.5) / 8, 1e-15);
  EXPECT_NEAR(f[3], std::pow(10000.0, -0.75) / 8, 1e-15);
  c.rope_type = "default";
  EXPECT_NEAR(c.rope_inv_freq()[3], std::pow(10000.0, -0.75), 1e-15);
  c.rope_type = "yarn";
  EXPECT_NE(error_of([&] { c.validate(); }).find("model.rope_type"), std::string::npos);
}

TEST(Gqa, ParameterCountsAndShapesFollowTheHeads) {
  for (LinearKind kind : {LinearKind::dense, LinearKind::lowrank, LinearKind::sltrain}) {
    ModelConfig c = gqa_config();
    c.linear.kind = kind;
    c.linear.rank = 4;
    c.linear.density = 0.1f;
    EXPECT_EQ(LlamaModel::parameter_table(c).count(), model_param_count(c)) << linear_kind_name(kind);
  }
  const ParamTable t = LlamaModel::parameter_table(gqa_config());
  EXPECT_EQ(t.at("model.layers.0.self_attn.q_proj.weight").shape, (std::vector<int64_t>{24, 16}));
  EXPECT_EQ(t.at("model.layers.0.self_attn.k_proj.weight").shape, (std::vector<int64_t>{12, 16}));
  EXPECT_EQ(t.at("model.layers.1.self_attn.o_proj.weight").shape, (std::vector<int64_t>{16, 24}));
  ModelConfig bad = gqa_config();
  bad.n_kv_heads = 3;
  EXPECT_NE(error_of([&] { bad.validate(); }).find("model.n_kv_heads = 3"), std::string::npos);
  bad = gqa_config();
  bad.head_dim = 5;
  EXPECT_NE(error_of([&] { bad.validate(); }).find("must be even"), std::string::npos);
}

TEST(Gqa, GStackGrowthCopiesEveryRowAndKeepsTheHeads) {
  const ModelConfig small = gqa_config();
  LlamaModel src(small, cpu_backend(), 1);
  src.init_weights(2);
  LlamaModel dst(grown_config(small, 2), cpu_backend(), 1);
  grow_depthwise(src, dst);
  EXPECT_EQ(dst.config().kv_heads(), 2);
  for (const auto& r : dst.params().rows()) {
    std::string name = r.name;
    if (const auto p = name.find("layers."); p != std::string::npos) {  // layer i of 4 from layer i mod 2
      const auto dot = name.find('.', p + 7);
      name = name.substr(0, p + 7) + std::to_string(std::stoi(name.substr(p + 7, dot - p - 7)) % 2) + name.substr(dot);
    }
    const ParamRow& from = src.params().at(name);
    ASSERT_EQ(std::memcmp(dst.param_data() + r.offset, src.param_data() + from.offset, size_t(r.numel) * 4), 0) << r.name;
  }
  ModelConfig other = grown_config(small, 2);
  other.n_kv_heads = 1;
  LlamaModel wrong(other, cpu_backend(), 1);
  EXPECT_NE(error_of([&] { grow_depthwise(src, wrong); }).find("model.n_kv_heads"), std::string::npos);
}

}  // namespace
}  // namespace cairn
