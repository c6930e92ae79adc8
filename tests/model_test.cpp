// Whole-model checks: finite-difference gradients of every parameter row, the loss of uniform
// logits, determinism, and the error for out-of-vocabulary tokens.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "model/llama.h"
#include "util/error.h"
#include "tests/test_support.h"
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

TEST(Model, GradientsMatchFiniteDifferences) { check_model_gradients(tiny_config()); }

TEST(Model, TiedEmbeddingGradientsMatchFiniteDifferences) {
  ModelConfig c = tiny_config();
  c.tie_embeddings = true;
  check_model_gradients(c);
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
