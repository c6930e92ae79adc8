// Weighted data mixtures: proportions over many samples within a binomial tolerance, samples as a
// pure function of the global index (any rank layout and any resume point agree), each source's
// own permutation, the vocabulary check, parsing errors, and per-dataset validation losses in a
// short training run.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "comm/communicator.h"
#include "data/mixture.h"
#include "data/tokenizer.h"
#include "tests/test_support.h"
#include "trainer/config.h"
#include "trainer/run.h"
#include "trainer/trainer.h"
#include "util/error.h"

namespace cairn {
namespace {

namespace fs = std::filesystem;

class MixtureTest : public ScratchDirTest {
 protected:
  // A byte-level dataset whose every training token is `fill` (so a window names its source),
  // with a validation split.
  std::string write(const std::string& name, uint32_t fill, int docs = 40) {
    return write_byte_dataset(path(name), docs, 8, [fill](int d) { return std::vector<uint32_t>(50, fill + uint32_t(d % 2)); });
  }
};

TEST_F(MixtureTest, ProportionsFollowTheWeights) {
  const auto a = write("a.h5", 10), b = write("b.h5", 100);
  MixtureData mix(parse_mixture({a + ":0.75", b + ":0.25"}), 8, 7);
  const int64_t n = 20000;
  int64_t from_b = 0;
  std::vector<int32_t> w(9);
  for (int64_t g = 0; g < n; ++g) {
    mix.sample(g, w.data());
    const bool is_b = std::any_of(w.begin(), w.end(), [](int32_t t) { return t == 100 || t == 101; });
    EXPECT_EQ(is_b, mix.source_of(g) == 1);
    from_b += is_b;
  }
  const double sd = std::sqrt(n * 0.25 * 0.75);
  EXPECT_NEAR(double(from_b), 0.25 * n, 4 * sd);
}

TEST_F(MixtureTest, SampleDependsOnlyOnTheGlobalIndex) {
  const auto a = write("a.h5", 10), b = write("b.h5", 100);
  const auto sources = parse_mixture({a + ":1", b + ":3"});
  MixtureData serial(sources, 8, 3);
  std::vector<std::vector<int32_t>> expected(600, std::vector<int32_t>(9));
  for (int64_t g = 0; g < 600; ++g) serial.sample(g, expected[size_t(g)].data());
  // Two "ranks" taking interleaved micro-batches of 4, and a run resumed at sample 333.
  for (int rank = 0; rank < 2; ++rank) {
    MixtureData mine(sources, 8, 3);
    std::vector<int32_t> w(9);
    for (int64_t first = rank * 4; first < 600; first += 8)
      for (int64_t g = first; g < std::min<int64_t>(first + 4, 600); ++g) {
        mine.sample(g, w.data());
        EXPECT_EQ(w, expected[size_t(g)]) << "rank " << rank << " sample " << g;
      }
  }
  MixtureData resumed(sources, 8, 3);
  std::vector<int32_t> w(9);
  for (int64_t g = 333; g < 600; ++g) {
    resumed.sample(g, w.data());
    EXPECT_EQ(w, expected[size_t(g)]) << "resumed sample " << g;
  }
  // Going back is allowed too.
  resumed.sample(5, w.data());
  EXPECT_EQ(w, expected[5]);
}

TEST_F(MixtureTest, EachSourceWalksItsOwnPermutation) {
  const auto a = write("a.h5", 10), b = write("b.h5", 100);
  MixtureData mix(parse_mixture({a + ":0.5", b + ":0.5"}), 8, 11);
  std::vector<int64_t> seen(2, 0);
  for (int64_t g = 0; g < 500; ++g) {
    const int k = mix.source_of(g);
    EXPECT_EQ(mix.index_in_source(g), seen[size_t(k)]);
    ++seen[size_t(k)];
  }
}

TEST_F(MixtureTest, BadEntriesAndDifferentVocabulariesAreRefused) {
  const auto a = write("a.h5", 10);
  EXPECT_THROW(parse_mixture({a}), Error);
  EXPECT_THROW(parse_mixture({a + ":0"}), Error);
  EXPECT_THROW(parse_mixture({a + ":x"}), Error);
  // Weights that are not finite, or whose sum is not, would normalize to NaN sampling intervals.
  EXPECT_THROW(parse_mixture({a + ":inf"}), Error);
  EXPECT_THROW(parse_mixture({a + ":nan"}), Error);
  EXPECT_THROW(parse_mixture({a + ":1e308", a + ":1e308"}), Error);
  EXPECT_THROW(MixtureData(parse_mixture({path("missing.h5") + ":1"}), 8, 1), Error);
  // A byte-kind tokenizer with a larger vocabulary stands in for a different tokenizer.
  struct Wider final : Tokenizer {
    std::vector<uint32_t> encode(std::string_view) const override { return {}; }
    std::string decode(std::span<const uint32_t>) const override { return ""; }
    int64_t vocab_size() const override { return 300; }
    uint32_t eos_id() const override { return 299; }
    std::string kind() const override { return "byte"; }
    std::string serialized() const override { return ""; }
  } wider;
  {
    TokenDatasetWriter w(path("wide.h5"), wider);
    w.add_document(std::vector<uint32_t>(100, 280));
    w.finalize();
  }
  try {
    MixtureData(parse_mixture({a + ":1", path("wide.h5") + ":1"}), 8, 1);
    FAIL() << "different vocabularies were mixed";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("same tokenizer"), std::string::npos) << e.what();
  }
}

TEST_F(MixtureTest, ValidationDatasetWithAnotherTokenizerOfTheSameSizeIsRefused) {
  // Two SentencePiece models of one vocabulary size give different ids for the same text: a
  // val_loss on such a dataset would be meaningless. (Stand-in: a "sentencepiece" tokenizer of
  // the byte vocabulary's size.)
  struct Other final : Tokenizer {
    std::vector<uint32_t> encode(std::string_view) const override { return {}; }
    std::string decode(std::span<const uint32_t>) const override { return ""; }
    int64_t vocab_size() const override { return 257; }
    uint32_t eos_id() const override { return 256; }
    std::string kind() const override { return "sentencepiece"; }
    std::string serialized() const override { return "another model"; }
  } other;
  {
    TokenDatasetWriter w(path("other.h5"), other);
    for (int d = 0; d < 8; ++d) {
      if (d == 6) w.begin_validation();
      w.add_document(std::vector<uint32_t>(50, 7));
    }
    w.finalize();
  }
  TrainConfig cfg = tiny_train_config(write("a.h5", 10), path("run"));
  cfg.data.validate = {path("other.h5")};
  auto comm = make_self_communicator();
  const std::string e = error_of([&] { Trainer t(cfg, *comm); });
  EXPECT_NE(e.find("other.h5"), std::string::npos) << e;
  EXPECT_NE(e.find("tokenizer"), std::string::npos) << e;
}

// Two datasets with one file stem (en/data.h5, de/data.h5) both reported as val_loss/data: the
// second overwrote the first in every metrics record.
TEST_F(MixtureTest, ValidationNamesOfDatasetsWithOneStemDiffer) {
  fs::create_directories(path("en"));
  fs::create_directories(path("de"));
  const auto a = write("en/data.h5", 10), b = write("de/data.h5", 100), c = write("extra.h5", 50);
  TrainConfig cfg = tiny_train_config(a, path("run"));
  cfg.data.train.clear();
  cfg.data.mixture = {a + ":0.5", b + ":0.5"};
  cfg.data.validate = {c};
  auto comm = make_self_communicator();
  Trainer trainer(cfg, *comm);
  EXPECT_EQ(trainer.validation_names(), (std::vector<std::string>{"en/data", "de/data", "extra"}));
}

TEST_F(MixtureTest, TrainerReportsValidationLossPerDataset) {
  const auto a = write("en.h5", 10), b = write("de.h5", 100), c = write("extra.h5", 50);
  TrainConfig cfg;
  config_apply_file(cfg, std::string(CAIRN_SOURCE_DIR) + "/configs/tiny-test.toml");
  cfg.model.seq_len = 16;
  cfg.data.mixture = {b + ":0.75", a + ":0.25"};
  cfg.data.validate = {c};
  cfg.training.steps = 4;
  cfg.training.eval_every = 2;
  cfg.training.threads = 1;
  cfg.training.peak_flops = 1e10;
  cfg.training.tokens_before = 1000;
  cfg.output.run_dir = path("run");
  cfg.output.plot = false;
  auto comm = make_self_communicator();
  Trainer trainer(cfg, *comm);
  TrainingRun trainer_run(trainer);
  EXPECT_EQ(trainer.validation_names(), (std::vector<std::string>{"de", "en", "extra"}));
  trainer_run.run();
  std::ifstream in(path("run") + "/metrics.jsonl");
  std::string line, last;
  while (std::getline(in, line))
    if (line.find("val_loss") != std::string::npos) last = line;
  const auto rec = nlohmann::json::parse(last);
  for (const char* key : {"val_loss", "val_loss/de", "val_loss/en", "val_loss/extra"})
    ASSERT_TRUE(rec.contains(key)) << key << " missing in " << last;
  EXPECT_EQ(rec["val_loss"].get<double>(), rec["val_loss/de"].get<double>());
  EXPECT_NE(rec["val_loss/de"].get<double>(), rec["val_loss/en"].get<double>());
  EXPECT_EQ(rec["total_tokens"].get<int64_t>(), 1000 + rec["tokens"].get<int64_t>());
}

}  // namespace
}  // namespace cairn
