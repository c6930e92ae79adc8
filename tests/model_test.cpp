// Whole-model checks: finite-difference gradients of every parameter row (Pre-LN, Mix-LN, all
// Post-LN, LayerNorm Scaling), the norm layouts' names and equivalences, skipping a layer, the loss
// of uniform logits, determinism, and the error for out-of-vocabulary tokens.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
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

ModelConfig mix_config(double alpha) {
  ModelConfig c = tiny_config();
  c.n_layers = 3;
  c.norm_layout = NormLayout::mix;
  c.mix_ln_alpha = alpha;
  return c;
}

TEST(Model, MixLnGradientsMatchFiniteDifferences) {
  const ModelConfig c = mix_config(0.34);  // floor(1.02): layer 0 Post-LN, layers 1, 2 Pre-LN
  ASSERT_EQ(c.post_ln_layers(), 1);
  check_model_gradients(c);
}

TEST(Model, AllPostLnGradientsMatchFiniteDifferences) {
  ModelConfig c = mix_config(1.0);
  c.tie_embeddings = true;
  ASSERT_EQ(c.post_ln_layers(), 3);
  check_model_gradients(c);
}

TEST(Model, NormScalingGradientsMatchFiniteDifferences) {
  ModelConfig c = tiny_config();
  c.n_layers = 3;
  c.norm_scaling = true;
  check_model_gradients(c);
}

TEST(Model, PostLnLayersAndNormScales) {
  ModelConfig c = tiny_config();
  c.n_layers = 12;
  EXPECT_EQ(c.post_ln_layers(), 0);  // "pre" ignores mix_ln_alpha
  c.norm_layout = NormLayout::mix;
  EXPECT_EQ(c.post_ln_layers(), 3);  // the official 71M/130M runs: POST_NUM = 3 of 12
  c.mix_ln_alpha = 0;
  EXPECT_EQ(c.post_ln_layers(), 0);
  c.mix_ln_alpha = 1;
  EXPECT_EQ(c.post_ln_layers(), 12);
  c.n_layers = 100;
  c.mix_ln_alpha = 0.29;  // 0.29·100 is 28.999999999999996 in double
  EXPECT_EQ(c.post_ln_layers(), 29);
  EXPECT_TRUE(c.post_ln(28));
  EXPECT_FALSE(c.post_ln(29));
  EXPECT_EQ(c.norm_scale(3), 1.0f);
  c.norm_scaling = true;
  EXPECT_EQ(c.norm_scale(0), 1.0f);
  EXPECT_FLOAT_EQ(c.norm_scale(3), 0.5f);  // layer 4 (1-based)
  EXPECT_FLOAT_EQ(c.norm_scale(8), 1.0f / 3.0f);
}

TEST(Model, NormLayoutKeysAreValidated) {
  ModelConfig c = tiny_config();
  c.norm_layout = NormLayout::mix;
  c.mix_ln_alpha = 1.5;
  EXPECT_NE(error_of([&] { c.validate(); }).find("model.mix_ln_alpha"), std::string::npos);
  c.mix_ln_alpha = 0.25;
  c.norm_scaling = true;
  EXPECT_NE(error_of([&] { c.validate(); }).find("model.norm_scaling"), std::string::npos);
  c.norm_layout = NormLayout::pre;
  EXPECT_NO_THROW(c.validate());
}

TEST(Model, PostLnLayersUseTheOfficialNormNames) {
  LlamaModel m(mix_config(0.34), cpu_backend(), 1);
  const auto& t = m.params();
  EXPECT_EQ(t.find("model.layers.0.input_layernorm.weight"), -1);
  EXPECT_EQ(t.at("model.layers.0.post_attention_layernorm.weight").shape, (std::vector<int64_t>{8}));
  EXPECT_EQ(t.at("model.layers.0.post_feedforward_layernorm.weight").layer, 0);
  EXPECT_EQ(t.at("model.layers.1.input_layernorm.weight").layer, 1);
  EXPECT_EQ(t.find("model.layers.1.post_feedforward_layernorm.weight"), -1);
  // Same parameter count as Pre-LN: two gains per layer either way.
  ModelConfig pre = mix_config(0.34);
  pre.norm_layout = NormLayout::pre;
  EXPECT_EQ(t.count(), LlamaModel(pre, cpu_backend(), 1).params().count());
  EXPECT_EQ(t.count(), model_param_count(mix_config(0.34)));
}

// Loss and gradients of cfg's model with the weights of `seed`, on fixed tokens.
std::pair<float, std::vector<float>> loss_and_grads(const ModelConfig& cfg, const std::function<void(LlamaModel&)>& edit = {}) {
  LlamaModel m(cfg, cpu_backend(), 2);
  m.init_weights(9);
  Rng rng(4);
  for (auto& p : m.param_span()) p = p == 1.0f ? 1.0f + 0.2f * rng.normal() : 0.3f * rng.normal();
  if (edit) edit(m);
  const auto in = random_tokens(2 * cfg.seq_len, cfg.vocab_size, 5), tg = random_tokens(2 * cfg.seq_len, cfg.vocab_size, 6);
  const float loss = m.forward_backward(in.data(), tg.data(), 2, 1.0f);
  return {loss, std::vector<float>(m.grad_span().begin(), m.grad_span().end())};
}

TEST(Model, MixLnWithAlphaZeroIsPreLnBitForBit) {
  ModelConfig pre = tiny_config(), mix = tiny_config();
  mix.norm_layout = NormLayout::mix;
  mix.mix_ln_alpha = 0.0;
  const auto a = loss_and_grads(pre), b = loss_and_grads(mix);
  EXPECT_EQ(a.first, b.first);
  EXPECT_EQ(a.second, b.second);
}

// LayerNorm Scaling equals Pre-LN with layer l's two pre-norm gains times 1/sqrt(l) (what the HF
// export writes); the final norm is not scaled.
TEST(Model, NormScalingEqualsScaledPreNormGains) {
  ModelConfig scaled = tiny_config();
  scaled.n_layers = 3;
  scaled.norm_scaling = true;
  ModelConfig pre = scaled;
  pre.norm_scaling = false;
  const auto fold = [](LlamaModel& m) {
    for (const auto& r : m.params().rows())
      if (r.role == ParamRole::norm && r.layer >= 0)
        for (auto& w : row_span(m.param_span(), r)) w *= float(1.0 / std::sqrt(double(r.layer + 1)));
  };
  const auto a = loss_and_grads(scaled), b = loss_and_grads(pre, fold);
  EXPECT_NEAR(a.first, b.first, 1e-6);
  EXPECT_NE(a.first, loss_and_grads(pre).first);
}

// Skipping layer l equals zeroing its o_proj and down_proj (in a Pre-LN block x' = x then).
TEST(Model, SkippedLayerPassesItsInputThrough) {
  const ModelConfig c = tiny_config();
  const auto in = random_tokens(12, c.vocab_size, 5), tg = random_tokens(12, c.vocab_size, 6);
  LlamaModel m(c, cpu_backend(), 2), zeroed(c, cpu_backend(), 2);
  m.init_weights(3);
  zeroed.init_weights(3);
  for (const char* w : {"model.layers.1.self_attn.o_proj.weight", "model.layers.1.mlp.down_proj.weight"}) {
    auto r = row_span(zeroed.param_span(), zeroed.params().at(w));
    std::fill(r.begin(), r.end(), 0.0f);
  }
  const float full = m.forward_loss(in.data(), tg.data(), 2);
  m.set_skipped_layer(1);
  EXPECT_NEAR(m.forward_loss(in.data(), tg.data(), 2), zeroed.forward_loss(in.data(), tg.data(), 2), 1e-6);
  EXPECT_NE(m.forward_loss(in.data(), tg.data(), 2), full);
  EXPECT_THROW(m.forward_backward(in.data(), tg.data(), 2, 1.0f), std::logic_error);  // a caller's bug
  m.set_skipped_layer(-1);
  EXPECT_EQ(m.forward_loss(in.data(), tg.data(), 2), full);
  EXPECT_NE(error_of([&] { m.set_skipped_layer(2); }).find("layers 0..1"), std::string::npos);
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
