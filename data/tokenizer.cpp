// Byte and SentencePiece tokenizers (see tokenizer.h). SentencePiece is trained from an in-memory
// line iterator and returns its model proto directly, so nothing is written to disk here.
#include "data/tokenizer.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <fstream>
#include <sstream>
#include <unordered_map>

#include "data/hf_tokenizer.h"
#include "data/token_dataset.h"
#include "util/error.h"

namespace cairn {

namespace {

constexpr uint32_t kByteEos = 256;

class ByteTokenizer final : public Tokenizer {
 public:
  std::vector<uint32_t> encode(std::string_view text) const override {
    std::vector<uint32_t> ids(text.size());
    for (size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<unsigned char>(text[i]);
    return ids;
  }
  std::string decode(std::span<const uint32_t> ids) const override {
    std::string out;
    out.reserve(ids.size());
    for (uint32_t id : ids) {
      if (id > kByteEos) throw Error(str("byte tokenizer: token id ", id, " is outside the vocabulary of 257"));
      if (id != kByteEos) out.push_back(static_cast<char>(id));
    }
    return out;
  }
  int64_t vocab_size() const override { return 257; }
  uint32_t eos_id() const override { return kByteEos; }
  std::string kind() const override { return "byte"; }
  std::string serialized() const override { return {}; }
};

class SentencePieceTokenizer final : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(const std::string& proto, const std::string& origin) {
    auto status = sp_.LoadFromSerializedProto(proto);
    if (!status.ok())
      throw Error(str("cannot load SentencePiece model from ", origin, ": ", status.ToString()));
    if (sp_.eos_id() < 0)
      throw Error(str("SentencePiece model from ", origin, " has no EOS piece: train it with eos_id >= 0"));
    proto_ = proto;
  }
  std::vector<uint32_t> encode(std::string_view text) const override {
    std::vector<int> ids;
    auto status = sp_.Encode(text, &ids);
    if (!status.ok()) throw Error(str("SentencePiece encode failed: ", status.ToString()));
    return std::vector<uint32_t>(ids.begin(), ids.end());
  }
  std::string decode(std::span<const uint32_t> ids) const override {
    std::vector<int> v;
    v.reserve(ids.size());
    for (uint32_t id : ids) {
      if (int64_t(id) >= vocab_size())
        throw Error(str("SentencePiece tokenizer: token id ", id, " is outside the vocabulary of ", vocab_size()));
      v.push_back(int(id));
    }
    std::string out;
    auto status = sp_.Decode(v, &out);
    if (!status.ok()) throw Error(str("SentencePiece decode failed: ", status.ToString()));
    return out;
  }
  int64_t vocab_size() const override { return sp_.GetPieceSize(); }
  uint32_t eos_id() const override { return uint32_t(sp_.eos_id()); }
  std::string kind() const override { return "sentencepiece"; }
  std::string serialized() const override { return proto_; }

 private:
  sentencepiece::SentencePieceProcessor sp_;
  std::string proto_;
};

// Feeds the non-empty lines of the documents to the SentencePiece trainer.
class LineIterator final : public sentencepiece::SentenceIterator {
 public:
  explicit LineIterator(const std::vector<std::string>& docs) : docs_(docs) { advance(); }
  bool done() const override { return doc_ >= docs_.size(); }
  void Next() override { advance(); }
  const std::string& value() const override { return line_; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  void advance() {
    while (doc_ < docs_.size()) {
      const std::string& d = docs_[doc_];
      if (pos_ >= d.size()) {
        ++doc_;
        pos_ = 0;
        continue;
      }
      size_t nl = d.find('\n', pos_);
      if (nl == std::string::npos) nl = d.size();
      line_.assign(d, pos_, nl - pos_);
      pos_ = nl + 1;
      if (!line_.empty()) return;
    }
  }
  const std::vector<std::string>& docs_;
  size_t doc_ = 0, pos_ = 0;
  std::string line_;
};

}  // namespace

std::unique_ptr<Tokenizer> make_byte_tokenizer() { return std::make_unique<ByteTokenizer>(); }

std::unique_ptr<Tokenizer> train_sentencepiece(const std::vector<std::string>& docs, const SentencePieceOptions& opts) {
  if (opts.model_type != "bpe" && opts.model_type != "unigram")
    throw Error(str("unknown SentencePiece model type '", opts.model_type, "': use \"bpe\" or \"unigram\""));
  // Byte fallback needs 256 byte pieces plus the control pieces and the corpus's characters.
  if (opts.vocab_size < 300)
    throw Error(str("SentencePiece vocab_size ", opts.vocab_size, " is too small: byte fallback needs at least 300"));
  // Identity normalization and kept whitespace make decode(encode(x)) == x, which pre-training
  // text (code, ASCII art) needs; newlines are not in training lines and encode as byte pieces.
  std::unordered_map<std::string, std::string> args = {
      {"model_type", opts.model_type},
      {"vocab_size", std::to_string(opts.vocab_size)},
      {"byte_fallback", "true"},
      {"character_coverage", "0.9995"},
      {"normalization_rule_name", "identity"},
      {"remove_extra_whitespaces", "false"},
      {"allow_whitespace_only_pieces", "true"},
      {"split_digits", "true"},
      {"hard_vocab_limit", "false"},
      {"num_threads", std::to_string(opts.num_threads)},
      {"input_sentence_size", std::to_string(opts.max_sentences)},
      {"shuffle_input_sentence", "true"},
      {"minloglevel", "2"},
  };
  sentencepiece::SetRandomGeneratorSeed(opts.seed);
  LineIterator lines(docs);
  if (lines.done()) throw Error("cannot train SentencePiece on an empty corpus (no non-empty lines)");
  std::string proto;
  auto status = sentencepiece::SentencePieceTrainer::Train(args, &lines, &proto);
  if (!status.ok()) throw Error(str("SentencePiece training failed: ", status.ToString()));
  return std::make_unique<SentencePieceTokenizer>(proto, "training");
}

std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& model_path) {
  std::ifstream in(model_path, std::ios::binary);
  if (!in) throw Error(str("cannot open SentencePiece model '", model_path, "'"));
  std::ostringstream buf;
  buf << in.rdbuf();
  return std::make_unique<SentencePieceTokenizer>(buf.str(), str("'", model_path, "'"));
}

std::unique_ptr<Tokenizer> load_sentencepiece_serialized(const std::string& model_proto) {
  return std::make_unique<SentencePieceTokenizer>(model_proto, "serialized bytes");
}

std::unique_ptr<Tokenizer> tokenizer_from_dataset(const TokenDataset& ds) {
  std::unique_ptr<Tokenizer> tok;
  if (ds.tokenizer_kind() == "byte") {
    tok = make_byte_tokenizer();
  } else if (ds.tokenizer_kind() == "sentencepiece") {
    tok = std::make_unique<SentencePieceTokenizer>(ds.tokenizer_model(), str("dataset '", ds.path(), "'"));
  } else if (ds.tokenizer_kind() == kHfTokenizerKind) {
    tok = load_hf_tokenizer_serialized(ds.tokenizer_model(), ds.eos_id(), str("of dataset '", ds.path(), "'"));
  } else {
    throw Error(str("dataset '", ds.path(), "' names unknown tokenizer '", ds.tokenizer_kind(), "'"));
  }
  if (tok->vocab_size() != ds.vocab_size() || tok->eos_id() != ds.eos_id())
    throw Error(str("dataset '", ds.path(), "' says vocab ", ds.vocab_size(), " / eos ", ds.eos_id(),
                    " but its tokenizer has vocab ", tok->vocab_size(), " / eos ", tok->eos_id(),
                    ": the file is inconsistent, re-run prepare"));
  return tok;
}

}  // namespace cairn
