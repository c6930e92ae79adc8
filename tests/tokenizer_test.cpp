// Tokenizers: byte-level round trips (UTF-8 included) and SentencePiece trained on a small
// generated corpus (round trip, serialized reload gives identical ids, every input encodes).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "data/tokenizer.h"
#include "util/error.h"
#include "util/rng.h"

namespace cairn {
namespace {

// A few hundred lines of pseudo-English from a fixed word list, deterministic.
std::vector<std::string> small_corpus() {
  const char* words[] = {"the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "and", "runs",
                         "into", "forest", "where", "many", "trees", "grow", "tall", "under", "sun", "rain"};
  Rng rng(7);
  std::vector<std::string> docs;
  for (int d = 0; d < 60; ++d) {
    std::string doc;
    for (int l = 0; l < 5; ++l) {
      for (int w = 0; w < 8; ++w) doc += std::string(w ? " " : "") + words[rng.below(20)];
      doc += ".\n";
    }
    docs.push_back(doc);
  }
  return docs;
}

TEST(ByteTokenizer, RoundTripIncludingUtf8) {
  auto tok = make_byte_tokenizer();
  EXPECT_EQ(tok->vocab_size(), 257);
  EXPECT_EQ(tok->eos_id(), 256u);
  EXPECT_EQ(tok->kind(), "byte");
  EXPECT_TRUE(tok->serialized().empty());
  std::string text = "Grüße, 世界! \x01\xff\n";
  std::vector<uint32_t> ids = tok->encode(text);
  ASSERT_EQ(ids.size(), text.size());
  EXPECT_EQ(ids[0], uint32_t('G'));
  EXPECT_EQ(ids[text.size() - 2], 255u);
  EXPECT_EQ(tok->decode(ids), text);
  ids.push_back(tok->eos_id());
  EXPECT_EQ(tok->decode(ids), text);  // EOS decodes to nothing
  std::vector<uint32_t> bad = {257};
  EXPECT_THROW(tok->decode(bad), Error);
}

class SentencePieceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    SentencePieceOptions opts;
    opts.vocab_size = 400;
    tok_ = train_sentencepiece(small_corpus(), opts).release();
  }
  static void TearDownTestSuite() { delete tok_; }
  static Tokenizer* tok_;
};
Tokenizer* SentencePieceTest::tok_ = nullptr;

TEST_F(SentencePieceTest, TrainsAndRoundTrips) {
  EXPECT_EQ(tok_->kind(), "sentencepiece");
  EXPECT_LE(tok_->vocab_size(), 400);
  EXPECT_GT(tok_->vocab_size(), 256);
  EXPECT_LT(int64_t(tok_->eos_id()), tok_->vocab_size());
  std::string text = "the quick brown fox jumps over the lazy dog.\nand runs into forest.\n";
  std::vector<uint32_t> ids = tok_->encode(text);
  EXPECT_LT(ids.size(), text.size() / 2) << "merges should compress the training vocabulary";
  EXPECT_EQ(tok_->decode(ids), text);
}

TEST_F(SentencePieceTest, ByteFallbackEncodesUnseenText) {
  std::string text = "Grüße 世界 {x: 42}\t~\n  two spaces";
  std::vector<uint32_t> ids = tok_->encode(text);
  for (uint32_t id : ids) EXPECT_LT(int64_t(id), tok_->vocab_size());
  EXPECT_EQ(tok_->decode(ids), text);
}

TEST_F(SentencePieceTest, SerializedReloadGivesIdenticalIds) {
  std::string text = "where many trees grow tall under sun and rain.";
  auto again = load_sentencepiece_serialized(tok_->serialized());
  EXPECT_EQ(again->encode(text), tok_->encode(text));
  EXPECT_EQ(again->vocab_size(), tok_->vocab_size());
  auto path = std::filesystem::temp_directory_path() / ("cairn_sp_" + std::to_string(::getpid()) + ".model");
  {
    std::ofstream out(path, std::ios::binary);
    std::string m = tok_->serialized();
    out.write(m.data(), std::streamsize(m.size()));
  }
  auto from_file = load_sentencepiece(path.string());
  EXPECT_EQ(from_file->encode(text), tok_->encode(text));
  std::filesystem::remove(path);
}

TEST(SentencePiece, Errors) {
  EXPECT_THROW(load_sentencepiece("/nonexistent/model"), Error);
  EXPECT_THROW(load_sentencepiece_serialized("garbage bytes"), Error);
  EXPECT_THROW(train_sentencepiece(std::vector<std::string>{}, {}), Error);
  SentencePieceOptions tiny;
  tiny.vocab_size = 100;
  EXPECT_THROW(train_sentencepiece(small_corpus(), tiny), Error);
}

}  // namespace
}  // namespace cairn
