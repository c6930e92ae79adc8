// Using a trained model: finding the weights of a run or checkpoint, rebuilding the model and its
// tokenizer, greedy generation against the argmax chain of forward_logits, sampling (top-k, top-p,
// temperature), streamed decoding, prompt errors, and eval against the training loss.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "data/sampler.h"
#include "launch/commands.h"
#include "launch/use_model.h"
#include "model/sampling.h"
#include "model/weights_io.h"
#include "tests/test_support.h"
#include "trainer/config.h"
#include "util/error.h"

namespace cairn {
namespace {

namespace fs = std::filesystem;

class UseModelTest : public ScratchDirTest {
 protected:
  void SetUp() override {
    ScratchDirTest::SetUp();
    cpu_set_threads(1);  // tiny models: threads only add scheduling noise on a loaded machine
    cfg_.model.vocab_size = 257;
    cfg_.model.dim = 16;
    cfg_.model.n_layers = 2;
    cfg_.model.n_heads = 2;
    cfg_.model.ffn_dim = 24;
    cfg_.model.seq_len = 8;
    cfg_.data.train = path("data.h5");
  }

  // A byte-level dataset of pseudo-text documents with a validation split.
  void write_dataset() { write_byte_dataset(path("data.h5"), 40, 8, random_letter_docs(11, 10, 30)); }
  // A model with sizeable random weights (so logits are far from uniform), saved to model.h5.
  std::unique_ptr<LlamaModel> make_model(uint64_t seed, const std::string& file = "model.h5") {
    auto m = std::make_unique<LlamaModel>(cfg_.model, cpu_backend(), 4);
    m->init_weights(seed);
    Rng rng(seed + 1);
    for (auto& p : m->param_span()) p = p == 1.0f ? 1.0f : 0.3f * rng.normal();
    save_model_weights(*m, path(file), config_to_toml(cfg_));
    return m;
  }

  TrainConfig cfg_;
};

TEST_F(UseModelTest, ResolvesWeightsFilesRunsAndCheckpoints) {
  make_model(1);
  EXPECT_EQ(resolve_weights_path(path("model.h5")), path("model.h5"));
  // A complete checkpoint: model.h5 plus its trainer state.
  fs::create_directories(path("ckpt"));
  fs::copy_file(path("model.h5"), path("ckpt/model.h5"));
  EXPECT_NE(error_of([&] { resolve_weights_path(path("ckpt")); }).find("incomplete"), std::string::npos);
  std::ofstream(path("ckpt/trainer.json")) << "state";
  EXPECT_EQ(resolve_weights_path(path("ckpt")), path("ckpt/model.h5"));
  EXPECT_EQ(resolve_weights_path(path("ckpt/")), path("ckpt/model.h5"));
  // A finished run directory.
  fs::create_directories(path("run"));
  fs::copy_file(path("model.h5"), path("run/model.h5"));
  std::ofstream(path("run/metrics.jsonl")) << "{}\n";
  EXPECT_EQ(resolve_weights_path(path("run")), path("run/model.h5"));
  // Incomplete or unusable.
  fs::create_directories(path("step_20.tmp"));
  fs::copy_file(path("model.h5"), path("step_20.tmp/model.h5"));
  std::ofstream(path("step_20.tmp/trainer.json")) << "{}";
  EXPECT_NE(error_of([&] { resolve_weights_path(path("step_20.tmp")); }).find("incomplete checkpoint"), std::string::npos);
  EXPECT_NE(error_of([&] { resolve_weights_path(path("nope.h5")); }).find("does not exist"), std::string::npos);
  fs::create_directories(path("empty"));
  EXPECT_NE(error_of([&] { resolve_weights_path(path("empty")); }).find("holds no model.h5"), std::string::npos);
  fs::remove(path("run/model.h5"));
  EXPECT_NE(error_of([&] { resolve_weights_path(path("run")); }).find("has not finished"), std::string::npos);
}

TEST_F(UseModelTest, LoadsModelAndTokenizerFromWhatTrainingWrote) {
  write_dataset();
  auto original = make_model(2);
  TrainedModel t = load_trained_model(path("model.h5"), 2);
  EXPECT_EQ(t.config.model.dim, 16);
  EXPECT_EQ(t.config.data.train, path("data.h5"));
  EXPECT_TRUE(std::equal(t.model->param_span().begin(), t.model->param_span().end(), original->param_span().begin()));

  ModelTokenizer tok = tokenizer_for_model(t.config, "");
  EXPECT_EQ(tok.tokenizer->kind(), "byte");
  EXPECT_NE(tok.source.find("dataset " + path("data.h5")), std::string::npos);
  // The training dataset gone: vocabulary 257 falls back to bytes and says so.
  TrainConfig moved = t.config;
  moved.data.train = path("gone.h5");
  tok = tokenizer_for_model(moved, "");
  EXPECT_NE(tok.source.find("not available"), std::string::npos);
  // Any other vocabulary needs the dataset.
  moved.model.vocab_size = 300;
  EXPECT_NE(error_of([&] { tokenizer_for_model(moved, ""); }).find("--tokenizer-from"), std::string::npos);
  EXPECT_EQ(tokenizer_for_model(moved, path("data.h5")).tokenizer->kind(), "byte");
  EXPECT_NE(error_of([&] { tokenizer_for_model(moved, path("gone.h5")); }), "");
  // A tokenizer larger than the model is not its tokenizer.
  moved.model.vocab_size = 100;
  EXPECT_NE(error_of([&] { tokenizer_for_model(moved, path("data.h5")); }).find("not the model's tokenizer"), std::string::npos);
}

TEST_F(UseModelTest, GreedyGenerationIsTheArgmaxChainOfForwardLogits) {
  auto model = make_model(3);
  const std::vector<uint32_t> prompt = {'t', 'h', 'e'};
  GenerateOptions o;
  o.max_tokens = 12;  // the context outgrows T = 8: the window slides
  o.sampling.temperature = 0;
  std::vector<uint32_t> streamed;
  const auto a = generate_tokens(*model, prompt, o, [&](uint32_t id) { streamed.push_back(id); });
  o.seed = 99;  // greedy uses no randomness
  const auto b = generate_tokens(*model, prompt, o);
  EXPECT_EQ(a, b);
  EXPECT_EQ(a, streamed);
  ASSERT_EQ(a.size(), 12u);

  // Oracle: the argmax at the last real position of a window holding the last <= T tokens, with
  // the padding after them random (causal attention must make it irrelevant).
  const int64_t T = cfg_.model.seq_len, V = cfg_.model.vocab_size;
  std::vector<uint32_t> context = prompt;
  Rng pad(7);
  for (size_t step = 0; step < a.size(); ++step) {
    const int64_t n = std::min<int64_t>(T, int64_t(context.size()));
    std::vector<int32_t> window(static_cast<size_t>(T));
    for (auto& x : window) x = int32_t(pad.below(uint64_t(V)));
    std::copy(context.end() - n, context.end(), window.begin());
    const auto logits = model->forward_logits(window.data(), 1);
    const auto row = logits.begin() + (n - 1) * V;
    const uint32_t want = uint32_t(std::max_element(row, row + V) - row);
    EXPECT_EQ(a[step], want) << "step " << step;
    context.push_back(want);
  }
  // Sampling is a function of the seed.
  o.sampling.temperature = 1.0f;
  o.seed = 5;
  EXPECT_EQ(generate_tokens(*model, prompt, o), generate_tokens(*model, prompt, o));
  // Stops after the stop token.
  o.sampling.temperature = 0;
  o.stop_token = a[3];
  EXPECT_EQ(generate_tokens(*model, prompt, o).size(), size_t(std::find(a.begin(), a.end(), a[3]) - a.begin() + 1));
  EXPECT_NE(error_of([&] { generate_tokens(*model, {}, o); }).find("prompt"), std::string::npos);
  const std::vector<uint32_t> outside = {257};
  EXPECT_NE(error_of([&] { generate_tokens(*model, outside, o); }).find("outside"), std::string::npos);
}

int run(int (*cmd)(int, char**), std::vector<std::string> args);

// A model whose vocabulary is padded beyond its tokenizer's (model.vocab_size = 300 on byte data)
// must never sample a padding id: the tokenizer cannot decode it, and `cairn generate` stopped
// mid-stream with "token id 290 is outside the vocabulary of 257".
TEST_F(UseModelTest, GenerationSamplesOnlyTheTokenizersIds) {
  cfg_.model.vocab_size = 300;
  auto model = make_model(8);
  const std::vector<uint32_t> prompt = {'a'};
  GenerateOptions o;
  o.max_tokens = 40;
  o.sampling = {1.0f, 0, 1.0f};
  o.seed = 3;
  const auto unrestricted = generate_tokens(*model, prompt, o);
  EXPECT_TRUE(std::any_of(unrestricted.begin(), unrestricted.end(), [](uint32_t id) { return id >= 257; }));
  o.sample_vocab = 257;
  for (uint64_t seed = 0; seed < 4; ++seed) {
    o.seed = seed;
    for (uint32_t id : generate_tokens(*model, prompt, o)) EXPECT_LT(id, 257u);
  }
  o.sampling.temperature = 0;
  for (uint32_t id : generate_tokens(*model, prompt, o)) EXPECT_LT(id, 257u);
  // The command restricts sampling to the tokenizer's vocabulary.
  write_dataset();
  testing::internal::CaptureStdout();
  const std::string e = error_of([&] {
    run(cmd_generate, {path("model.h5"), "--prompt", "a", "--temperature", "1", "--top-k", "0", "--top-p", "1",
                       "--max-tokens", "40"});
  });
  testing::internal::GetCapturedStdout();
  EXPECT_EQ(e, "");
}

TEST(Sampling, TopKTopPAndTemperature) {
  const std::vector<float> logits = {std::log(0.3f), std::log(0.5f), std::log(0.05f), std::log(0.15f)};
  SamplingOptions o;
  o.temperature = 1;
  o.top_k = 0;
  o.top_p = 1;
  auto p = sampling_distribution(logits, o);
  EXPECT_NEAR(p[0], 0.3, 1e-6);
  EXPECT_NEAR(p[1], 0.5, 1e-6);
  o.top_p = 0.7f;  // 0.5 < 0.7 <= 0.5 + 0.3: tokens 1 and 0
  p = sampling_distribution(logits, o);
  EXPECT_NEAR(p[1], 0.625, 1e-6);
  EXPECT_NEAR(p[0], 0.375, 1e-6);
  EXPECT_EQ(p[2], 0.0f);
  EXPECT_EQ(p[3], 0.0f);
  o.top_p = 0.9f;  // needs the third most likely (token 3) too
  p = sampling_distribution(logits, o);
  EXPECT_GT(p[3], 0.0f);
  EXPECT_EQ(p[2], 0.0f);
  o.top_p = 1;
  o.top_k = 1;
  p = sampling_distribution(logits, o);
  EXPECT_EQ(p[1], 1.0f);
  o.top_k = 0;
  o.temperature = 2;  // flatter: p1/p0 = (0.5/0.3)^(1/2)
  p = sampling_distribution(logits, o);
  EXPECT_NEAR(p[1] / p[0], std::sqrt(0.5 / 0.3), 1e-5);
  o.temperature = 0;  // argmax, whatever the rng
  Rng rng(1);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(sample_token(logits, o, rng), 1u);

  // Draws never leave the top k, and follow the distribution.
  Rng lr(3);
  std::vector<float> big(50);
  for (auto& x : big) x = 2.0f * lr.normal();
  std::vector<uint32_t> order(50);
  for (uint32_t i = 0; i < 50; ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return big[a] > big[b]; });
  const std::set<uint32_t> top5(order.begin(), order.begin() + 5);
  o = SamplingOptions{1.0f, 5, 1.0f};
  const auto dist = sampling_distribution(big, o);
  std::vector<int> counts(50, 0);
  const int draws = 20000;
  for (int i = 0; i < draws; ++i) {
    const uint32_t id = sample_token(big, o, rng);
    ASSERT_TRUE(top5.count(id)) << id;
    ++counts[id];
  }
  for (uint32_t id : top5) EXPECT_NEAR(counts[id] / double(draws), dist[id], 0.015) << id;

  EXPECT_NE(error_of([&] { sampling_distribution(logits, {-1.0f, 0, 1.0f}); }).find("--temperature"), std::string::npos);
  EXPECT_NE(error_of([&] { sampling_distribution(logits, {1.0f, -2, 1.0f}); }).find("--top-k"), std::string::npos);
  EXPECT_NE(error_of([&] { sampling_distribution(logits, {1.0f, 0, 0.0f}); }).find("--top-p"), std::string::npos);
  EXPECT_NE(error_of([&] { sampling_distribution(logits, {1.0f, 0, 1.5f}); }).find("--top-p"), std::string::npos);
}

std::vector<std::string> corpus() {
  std::vector<std::string> docs;
  Rng rng(2);
  const char* words[] = {"grüne", "bäume", "stone", "river", "cairn", "über", "the", "path"};
  for (int d = 0; d < 40; ++d) {
    std::string doc;
    for (int w = 0; w < 30; ++w) doc += std::string(w ? " " : "") + words[rng.below(8)];
    docs.push_back(doc + "\n");
  }
  return docs;
}

TEST(Prompt, EncodingErrorsAndStreamedDecoding) {
  SentencePieceOptions opts;
  opts.vocab_size = 320;
  const auto sp = train_sentencepiece(corpus(), opts);
  const auto byte = make_byte_tokenizer();
  EXPECT_NE(error_of([&] { encode_prompt(*sp, "bad \xff\xfe utf-8"); }).find("not valid UTF-8"), std::string::npos);
  EXPECT_NE(error_of([&] { encode_prompt(*sp, "truncated \xc3"); }).find("not valid UTF-8"), std::string::npos);
  EXPECT_NE(error_of([&] { encode_prompt(*sp, "overlong \xc0\xaf"); }).find("not valid UTF-8"), std::string::npos);
  EXPECT_NE(error_of([&] { encode_prompt(*sp, ""); }).find("no tokens"), std::string::npos);
  EXPECT_NE(error_of([&] { encode_prompt(*byte, ""); }).find("no tokens"), std::string::npos);
  EXPECT_EQ(encode_prompt(*byte, "\xff").size(), 1u);  // bytes are bytes
  EXPECT_FALSE(encode_prompt(*sp, "grüne bäume 世界").empty());

  // Streaming one token at a time reproduces decode() of the whole sequence, for both tokenizers,
  // including characters split over several byte-fallback pieces.
  for (const Tokenizer* tok : {sp.get(), byte.get()}) {
    const std::string prompt = "the path", rest = " über grüne bäume, 世界 ☃ river";
    const auto p = tok->encode(prompt);
    auto all = tok->encode(prompt + rest);
    ASSERT_TRUE(std::equal(p.begin(), p.end(), all.begin())) << tok->kind();
    IncrementalDecoder dec(*tok, p);
    std::string streamed;
    for (size_t i = p.size(); i < all.size(); ++i) {
      const std::string piece = dec.push(all[i]);
      // Only whole characters are released: no replacement character ever appears.
      EXPECT_EQ(piece.find("\xEF\xBF\xBD"), std::string::npos) << tok->kind();
      streamed += piece;
    }
    streamed += dec.finish();
    EXPECT_EQ(tok->decode(p) + streamed, tok->decode(all)) << tok->kind();
  }
}

TEST_F(UseModelTest, EvalEqualsTrainingLossOnTheSameWindows) {
  write_dataset();
  auto model = make_model(4);
  const TokenDataset ds = TokenDataset::open(path("data.h5"));
  auto comm = make_self_communicator();
  const int64_t T = cfg_.model.seq_len;
  const WindowSplit train = train_windows(ds, T);
  ASSERT_GE(train.count, 9);

  // The training loss of a micro-batch (forward_backward's return value) on windows 0..3.
  std::vector<int32_t> in(size_t(4 * T)), tg(size_t(4 * T)), w(size_t(T + 1));
  auto load = [&](int64_t first, int64_t rows) {
    for (int64_t b = 0; b < rows; ++b) {
      ds.read(train.start(first + b), T + 1, w.data());
      std::copy(w.begin(), w.begin() + T, in.begin() + b * T);
      std::copy(w.begin() + 1, w.end(), tg.begin() + b * T);
    }
  };
  load(0, 4);
  model->zero_grads();
  const double train_loss = model->forward_backward(in.data(), tg.data(), 4, 1.0f);
  EvalResult r = evaluate_dataset(*model, ds, "train", 4, 4, *comm);
  EXPECT_EQ(r.windows, 4);
  EXPECT_EQ(r.tokens, 4 * T);
  EXPECT_NEAR(r.loss, train_loss, 1e-6);
  // (relative: train_loss is a float, the evaluation sums in double)
  EXPECT_NEAR(r.perplexity(), std::exp(train_loss), 1e-6 * std::exp(train_loss));

  // Micro-batches of 3 over 9 windows (the last one partial) = the mean of per-window losses.
  double sum = 0;
  for (int64_t i = 0; i < 9; ++i) {
    load(i, 1);
    sum += model->forward_loss(in.data(), tg.data(), 1);
  }
  r = evaluate_dataset(*model, ds, "train", 9, 3, *comm);
  EXPECT_EQ(r.windows, 9);
  EXPECT_NEAR(r.loss, sum / 9, 1e-6);
  r = evaluate_dataset(*model, ds, "train", 0, 4, *comm);  // every window
  EXPECT_EQ(r.windows, train.count);

  const WindowSplit val = val_windows(ds, T);
  r = evaluate_dataset(*model, ds, "val", 0, 2, *comm);
  EXPECT_EQ(r.windows, val.count);
  EXPECT_TRUE(std::isfinite(r.loss));

  // Datasets are checked against the training dataset's tokenizer.
  EXPECT_TRUE(check_dataset_tokenizer(cfg_, ds));
  {
    SentencePieceOptions opts;
    opts.vocab_size = 300;
    std::vector<std::string> docs(30, "some words of text for a tokenizer, some more words\n");
    const auto sp = train_sentencepiece(docs, opts);
    TokenDatasetWriter w(path("sp.h5"), *sp);
    w.add_document(sp->encode("some words"));
    w.finalize();
    const TokenDataset other = TokenDataset::open(path("sp.h5"));
    EXPECT_NE(error_of([&] { check_dataset_tokenizer(cfg_, other); }).find("different tokenizer"), std::string::npos);
    TrainConfig unknown = cfg_;
    unknown.data.train = path("gone.h5");
    EXPECT_FALSE(check_dataset_tokenizer(unknown, other));
  }
  EXPECT_NE(error_of([&] { evaluate_dataset(*model, ds, "test", 0, 2, *comm); }).find("--split"), std::string::npos);
  EXPECT_NE(error_of([&] { evaluate_dataset(*model, ds, "val", 0, 5, *comm); }).find("--micro-batch"), std::string::npos);
  cfg_.model.vocab_size = 200;  // a dataset with a larger vocabulary than the model
  LlamaModel small(cfg_.model, cpu_backend(), 2);
  EXPECT_NE(error_of([&] { evaluate_dataset(small, ds, "val", 0, 2, *comm); }).find("vocabulary"), std::string::npos);
}

// Weights and checkpoints store their run's config; those written before training.eval_windows
// carry training.eval_batches, and eval, generate and model.init_from must still read them.
TEST_F(UseModelTest, AStoredConfigWithTheDeprecatedEvalBatchesStillLoads) {
  write_dataset();
  auto model = make_model(2);
  std::string stored = config_to_toml(cfg_);
  const size_t at = stored.find("eval_windows = ");
  ASSERT_NE(at, std::string::npos);
  stored.replace(at, stored.find('\n', at) - at, "eval_batches = 8");
  save_model_weights(*model, path("old.h5"), stored);
  const TrainedModel m = load_trained_model(path("old.h5"), 2);
  EXPECT_EQ(m.config.training.eval_batches, 8);
  EXPECT_EQ(m.model->params().total(), model->params().total());
}

int run(int (*cmd)(int, char**), std::vector<std::string> args) {
  args.insert(args.begin(), {"cairn", "cmd"});
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  return cmd(int(argv.size()), argv.data());
}

TEST_F(UseModelTest, EvalAndGenerateCommands) {
  write_dataset();
  auto model = make_model(6);
  ASSERT_EQ(run(cmd_eval, {path("model.h5"), "--data", path("data.h5"), "--data", path("data.h5"), "--split", "train",
                           "--batches", "2", "--micro-batch", "3", "--json", path("eval.json")}),
            0);
  const auto j = nlohmann::json::parse(std::ifstream(path("eval.json")));
  ASSERT_EQ(j["results"].size(), 2u);
  auto comm = make_self_communicator();
  const EvalResult r = evaluate_dataset(*model, TokenDataset::open(path("data.h5")), "train", 6, 3, *comm);
  EXPECT_EQ(j["results"][1]["windows"], 6);
  EXPECT_DOUBLE_EQ(j["results"][1]["loss"].get<double>(), r.loss);
  // --windows N: the first N windows, the number training.eval_windows names.
  ASSERT_EQ(run(cmd_eval, {path("model.h5"), "--data", path("data.h5"), "--split", "train", "--windows", "5",
                           "--micro-batch", "2", "--json", path("eval5.json")}),
            0);
  const auto j5 = nlohmann::json::parse(std::ifstream(path("eval5.json")));
  EXPECT_EQ(j5["results"][0]["windows"], 5);
  EXPECT_NE(error_of([&] {
              run(cmd_eval, {path("model.h5"), "--data", path("data.h5"), "--windows", "5", "--batches", "1"});
            }).find("--windows or --batches"),
            std::string::npos);
  // --threads N sets the CPU threads (as training.threads does) and changes no result.
  ASSERT_EQ(run(cmd_eval, {path("model.h5"), "--data", path("data.h5"), "--split", "train", "--windows", "5",
                           "--micro-batch", "2", "--threads", "2", "--json", path("eval5t.json")}),
            0);
  EXPECT_EQ(cpu_threads(), 2);
  cpu_set_threads(1);
  EXPECT_EQ(nlohmann::json::parse(std::ifstream(path("eval5t.json")))["results"], j5["results"]);
  for (const char* bad : {"-1", "1.5"})
    EXPECT_NE(error_of([&] { run(cmd_eval, {path("model.h5"), "--data", path("data.h5"), "--threads", bad}); })
                  .find("--threads"),
              std::string::npos)
        << bad;

  // Greedy generation prints the prompt and then the decoded greedy continuation.
  testing::internal::CaptureStdout();
  const int rc = run(cmd_generate, {path("model.h5"), "--prompt", "abc", "--temperature", "0", "--max-tokens", "10"});
  const std::string printed = testing::internal::GetCapturedStdout();
  ASSERT_EQ(rc, 0);
  GenerateOptions o;
  o.max_tokens = 10;
  o.sampling.temperature = 0;
  o.stop_token = 256;
  const std::vector<uint32_t> prompt = {'a', 'b', 'c'};
  const auto ids = generate_tokens(*model, prompt, o);
  EXPECT_EQ(printed, "abc" + make_byte_tokenizer()->decode(ids) + "\n");

  EXPECT_NE(error_of([&] { run(cmd_generate, {path("model.h5")}); }).find("--prompt"), std::string::npos);
  EXPECT_NE(error_of([&] { run(cmd_eval, {path("model.h5")}); }).find("--data"), std::string::npos);
  EXPECT_NE(error_of([&] { run(cmd_generate, {path("model.h5"), "--prompt", "x", "--temperature", "hot"}); })
                .find("expects a number"),
            std::string::npos);
  // --batches 0, -3 or 2.5 evaluated every window without a word.
  for (const char* bad : {"0", "-3", "2.5"}) {
    const std::string e = error_of([&] { run(cmd_eval, {path("model.h5"), "--data", path("data.h5"), "--batches", bad}); });
    EXPECT_NE(e.find("--batches " + std::string(bad) + " must be a positive integer"), std::string::npos) << e;
  }
  // --max-tokens -1, 1e30 or 2.5 and --top-k 2.5 are refused before anything is printed (1e30 read
  // as "-9223372036854775808", 2.5 silently truncated).
  for (const char* bad : {"-1", "1e30", "2.5"}) {
    testing::internal::CaptureStdout();
    const std::string e = error_of([&] { run(cmd_generate, {path("model.h5"), "--prompt", "x", "--max-tokens", bad}); });
    EXPECT_EQ(testing::internal::GetCapturedStdout(), "") << bad;
    EXPECT_NE(e.find("--max-tokens"), std::string::npos) << e;
    EXPECT_NE(e.find(std::string("'") + bad + "'"), std::string::npos) << e;
  }
  EXPECT_NE(error_of([&] { run(cmd_generate, {path("model.h5"), "--prompt", "x", "--top-k", "2.5"}); }).find("--top-k"),
            std::string::npos);
  // main() prefixes "cairn eval: error: "; the message must not repeat the command.
  EXPECT_EQ(error_of([&] { run(cmd_eval, {path("model.h5"), "--bogus"}); }).rfind("unknown option --bogus", 0), 0u);
}

// eval and generate rebuild the stored norm layout (Mix-LN's Post-LN layers, LayerNorm Scaling's
// factors), and --skip-layer each evaluates the whole model, then each layer passed through.
TEST_F(UseModelTest, EvalAndGenerateRebuildTheNormLayoutAndSkipLayers) {
  write_dataset();
  auto comm = make_self_communicator();
  const TokenDataset ds = TokenDataset::open(path("data.h5"));
  for (const char* layout : {"mix", "scaled"}) {
    SCOPED_TRACE(layout);
    cfg_.model.norm_layout = std::string(layout) == "mix" ? NormLayout::mix : NormLayout::pre;
    cfg_.model.mix_ln_alpha = 0.5;  // layer 0 of 2 Post-LN
    cfg_.model.norm_scaling = std::string(layout) == "scaled";
    const std::string file = str(layout, ".h5"), json = path(str(layout, ".json"));
    auto model = make_model(8, file);
    ASSERT_EQ(run(cmd_eval, {path(file), "--data", path("data.h5"), "--windows", "6", "--micro-batch", "3",
                             "--skip-layer", "each", "--json", json}),
              0);
    const auto j = nlohmann::json::parse(std::ifstream(json))["results"];
    ASSERT_EQ(j.size(), 3u);  // the whole model, layer 0 skipped, layer 1 skipped
    for (int64_t skip = -1; skip < 2; ++skip) {
      model->set_skipped_layer(skip);
      const auto& r = j[size_t(skip + 1)];
      EXPECT_EQ(r.contains("skipped_layer"), skip >= 0);
      EXPECT_DOUBLE_EQ(r["loss"].get<double>(), evaluate_dataset(*model, ds, "val", 6, 3, *comm).loss) << skip;
    }
    EXPECT_NE(j[0]["loss"], j[1]["loss"]);
    model->set_skipped_layer(-1);

    testing::internal::CaptureStdout();
    ASSERT_EQ(run(cmd_generate, {path(file), "--prompt", "abc", "--temperature", "0", "--max-tokens", "8"}), 0);
    const std::string printed = testing::internal::GetCapturedStdout();
    GenerateOptions o;
    o.max_tokens = 8;
    o.sampling.temperature = 0;
    o.stop_token = 256;
    const std::vector<uint32_t> prompt = {'a', 'b', 'c'};
    EXPECT_EQ(printed, "abc" + make_byte_tokenizer()->decode(generate_tokens(*model, prompt, o)) + "\n");
  }
}

}  // namespace
}  // namespace cairn
