// Whole-model checks: finite-difference gradients of every parameter row, the loss of uniform
// logits, determinism, and the error for out-of-vocabulary tokens.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "model/llama.h"
#include "util/error.h"
#include "util/rng.h"

namespace cairn {
namespace {

ModelConfig tiny_config() {
  ModelConfig c;
  c.vocab_size = 11;
  c.dim = 8;
  c.n_layers = 2;
  c.n_heads = 2;
  c.ffn_dim = 12;
  c.seq_len = 6;
  return c;
}

std::vector<int32_t> random_tokens(int64_t n, int64_t vocab, uint64_t seed) {
  Rng rng(seed);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto& x : t) x = int32_t(rng.below(uint64_t(vocab)));
  return t;
}

void check_gradients(const ModelConfig& cfg) {
  const int64_t B = 2, N = B * cfg.seq_len;
  LlamaModel model(cfg, cpu_backend(), B);
  model.init_weights(7);
  // Larger weights than the 0.02 init so every path carries signal.
  Rng rng(3);
  for (auto& p : model.param_span()) p = p == 1.0f ? 1.0f + 0.2f * rng.normal() : 0.3f * rng.normal();
  const auto in = random_tokens(N, cfg.vocab_size, 1), tg = random_tokens(N, cfg.vocab_size, 2);
  model.zero_grads();
  model.forward_backward(in.data(), tg.data(), B, 1.0f);
  const std::vector<float> grad(model.grad_span().begin(), model.grad_span().end());

  const float h = 1e-2f;
  for (const auto& row : model.params().rows()) {
    // A handful of entries per row, spread over the row.
    for (int64_t k = 0; k < 6; ++k) {
      const int64_t i = row.offset + (k * 7919) % row.numel;
      float& p = model.param_data()[i];
      const float saved = p;
      p = saved + h;
      const double lp = model.forward_loss(in.data(), tg.data(), B);
      p = saved - h;
      const double lm = model.forward_loss(in.data(), tg.data(), B);
      p = saved;
      const double fd = (lp - lm) / (2.0 * h);
      EXPECT_NEAR(grad[size_t(i)], fd, 3e-4 + 3e-2 * std::abs(fd)) << row.name << " [" << i - row.offset << "]";
    }
  }
}

TEST(Model, GradientsMatchFiniteDifferences) { check_gradients(tiny_config()); }

TEST(Model, TiedEmbeddingGradientsMatchFiniteDifferences) {
  ModelConfig c = tiny_config();
  c.tie_embeddings = true;
  check_gradients(c);
}

TEST(Model, HuggingFaceNamesAndShapes) {
  LlamaModel model(tiny_config(), cpu_backend(), 1);
  const auto& t = model.params();
  EXPECT_EQ(t.at("model.embed_tokens.weight").shape, (std::vector<int64_t>{11, 8}));
  EXPECT_EQ(t.at("model.layers.1.mlp.gate_proj.weight").shape, (std::vector<int64_t>{12, 8}));
  EXPECT_EQ(t.at("model.layers.1.mlp.down_proj.weight").shape, (std::vector<int64_t>{8, 12}));
  EXPECT_EQ(t.at("model.layers.0.self_attn.o_proj.weight").layer, 0);
  EXPECT_EQ(t.at("lm_head.weight").shape, (std::vector<int64_t>{11, 8}));
  // 2 embeddings-sized rows + per layer 4·C² + 3·C·F + 2·C, + final norm.
  EXPECT_EQ(t.count(), 2 * 11 * 8 + 2 * (4 * 64 + 3 * 96 + 16) + 8);
  EXPECT_THROW(t.at("model.layers.2.mlp.up_proj.weight"), Error);
}

TEST(Model, UniformLogitsGiveLogVocab) {
  ModelConfig c = tiny_config();
  LlamaModel model(c, cpu_backend(), 2);
  model.init_weights(1);
  auto head = row_span(model.param_span(), model.params().at("lm_head.weight"));
  std::fill(head.begin(), head.end(), 0.0f);
  const auto in = random_tokens(12, c.vocab_size, 5), tg = random_tokens(12, c.vocab_size, 6);
  EXPECT_NEAR(model.forward_loss(in.data(), tg.data(), 2), std::log(11.0), 1e-6);
}

TEST(Model, SameSeedGivesBitwiseIdenticalLossAndGradients) {
  const ModelConfig c = tiny_config();
  const auto in = random_tokens(12, c.vocab_size, 5), tg = random_tokens(12, c.vocab_size, 6);
  auto run = [&](uint64_t seed) {
    LlamaModel m(c, cpu_backend(), 2);
    m.init_weights(seed);
    float loss = m.forward_backward(in.data(), tg.data(), 2, 1.0f);
    return std::make_pair(loss, std::vector<float>(m.grad_span().begin(), m.grad_span().end()));
  };
  const auto a = run(9), b = run(9), d = run(10);
  EXPECT_EQ(a.first, b.first);
  EXPECT_EQ(a.second, b.second);
  EXPECT_NE(a.first, d.first);
}

TEST(Model, TokenOutsideVocabularyIsAnError) {
  const ModelConfig c = tiny_config();
  LlamaModel m(c, cpu_backend(), 1);
  auto in = random_tokens(6, c.vocab_size, 5), tg = in;
  in[3] = 11;
  EXPECT_THROW(m.forward_loss(in.data(), tg.data(), 1), Error);
}

TEST(Model, InvalidShapesAreRejected) {
  ModelConfig c = tiny_config();
  c.n_heads = 3;
  EXPECT_THROW(LlamaModel(c, cpu_backend(), 1), Error);
}

}  // namespace
}  // namespace cairn
