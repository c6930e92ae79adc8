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

// The LM head and the loss over chunks of 5 of the 12 rows (5, 5, 2): the gradients still match.
TEST(Model, ChunkedLogitsGradientsMatchFiniteDifferences) { check_model_gradients(tiny_config(), 5); }

// Chunks of logits change only the summation order of the head's weight gradient: loss, gradients,
// validation loss and the logits a caller gets agree with one chunk to fp32 rounding, for an untied
// and a tied head.
TEST(Model, ChunkedLogitsAgreeWithOneChunk) {
  for (bool tied : {false, true}) {
    ModelConfig c = tiny_config();
    c.tie_embeddings = tied;
    const auto in = random_tokens(12, c.vocab_size, 5), tg = random_tokens(12, c.vocab_size, 6);
    struct Out {
      float loss, val;
      std::vector<float> grads, logits;
    };
    auto run = [&](int64_t rows) {
      LlamaModel m(c, cpu_backend(), 2, rows);
      m.init_weights(3);
      Out o;
      o.loss = m.forward_backward(in.data(), tg.data(), 2, 1.0f);
      o.grads.assign(m.grad_span().begin(), m.grad_span().end());
      o.val = m.forward_loss(in.data(), tg.data(), 2);
      o.logits = m.forward_logits(in.data(), 2);
      return o;
    };
    const Out whole = run(0), chunked = run(5);
    EXPECT_NEAR(chunked.loss, whole.loss, 1e-6 * whole.loss);
    EXPECT_NEAR(chunked.val, whole.val, 1e-6 * whole.val);
    ASSERT_EQ(chunked.logits.size(), size_t(12 * c.vocab_size));
    for (size_t i = 0; i < whole.logits.size(); ++i) ASSERT_NEAR(chunked.logits[i], whole.logits[i], 1e-6) << i;
    for (size_t i = 0; i < whole.grads.size(); ++i) ASSERT_NEAR(chunked.grads[i], whole.grads[i], 1e-6) << i;
  }
}

TEST(Model, LogitChunksStayUnder512MiB) {
  ModelConfig c = tiny_config();
  EXPECT_EQ(logit_chunk_rows(c, 2), 12);  // small: every row at once
  c.vocab_size = 32000;
  c.seq_len = 1024;
  EXPECT_EQ(logit_chunk_rows(c, 32), (int64_t(1) << 27) / 32000);
  c.vocab_size = int64_t(1) << 28;  // a row above the budget still gets one row
  EXPECT_EQ(logit_chunk_rows(c, 1), 1);
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
