// Tokenizers: text <-> token ids. Three kinds: byte-level (ids 0..255 are bytes, 256 is EOS),
// SentencePiece (BPE or unigram with byte fallback, trained on the corpus or loaded from a model),
// and Hugging Face tokenizer.json byte-level BPE (data/hf_tokenizer.h).
// A tokenizer serializes to bytes that are stored inside the token dataset, so a dataset always
// carries the tokenizer that made it.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace cairn {

class TokenDataset;

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::vector<uint32_t> encode(std::string_view text) const = 0;
  // Control ids (EOS) decode to nothing; an id >= vocab_size() throws cairn::Error.
  virtual std::string decode(std::span<const uint32_t> ids) const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual uint32_t eos_id() const = 0;
  // "byte", "sentencepiece" or "hf_bpe" (the dataset's `tokenizer` attribute).
  virtual std::string kind() const = 0;
  // Bytes that reconstruct this tokenizer: empty for byte, the model proto for SentencePiece, the
  // tokenizer.json for hf_bpe (whose EOS id the dataset records beside it).
  virtual std::string serialized() const = 0;
};

std::unique_ptr<Tokenizer> make_byte_tokenizer();

struct SentencePieceOptions {
  int vocab_size = 8000;
  std::string model_type = "bpe";  // "bpe" or "unigram"
  int num_threads = 2;
  uint32_t seed = 0;
  // Training reads at most this many lines (sampled by SentencePiece when the corpus has more).
  int64_t max_sentences = 2'000'000;
};

// Trains on `docs` (each split into lines). Normalization is identity and byte_fallback is on, so
// every input encodes and decode(encode(text)) == text for valid UTF-8.
std::unique_ptr<Tokenizer> train_sentencepiece(const std::vector<std::string>& docs,
                                               const SentencePieceOptions& opts = {});
std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& model_path);
std::unique_ptr<Tokenizer> load_sentencepiece_serialized(const std::string& model_proto);

// The tokenizer recorded in a dataset (kind attribute plus /tokenizer_model).
std::unique_ptr<Tokenizer> tokenizer_from_dataset(const TokenDataset& ds);

}  // namespace cairn
