// The HDF5 token dataset (docs/formats.md): /tokens (1-D uint16 or uint32, chunked), /doc_offsets,
// /tokenizer_model, and attributes format, format_version, vocab_size, eos_id, tokenizer,
// val_start. Tokens [0, val_start) are the training split, [val_start, num_tokens) validation.
// The writer builds "<path>.tmp" and renames it on finalize(); the reader reads ranges through
// hyperslabs and never loads the tokens whole.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "util/h5.h"

namespace cairn {

class Tokenizer;

inline constexpr const char* kTokenFormat = "cairn-tokens";
inline constexpr int64_t kTokenFormatVersion = 1;
inline constexpr int64_t kTokenChunk = 64 * 1024;  // tokens per HDF5 chunk

class TokenDatasetWriter {
 public:
  // Creates "<path>.tmp" (truncating a stale one). Token ids must be < tokenizer.vocab_size().
  TokenDatasetWriter(std::string path, const Tokenizer& tokenizer);
  // An unfinished writer removes its temporary file.
  ~TokenDatasetWriter();
  TokenDatasetWriter(const TokenDatasetWriter&) = delete;
  TokenDatasetWriter& operator=(const TokenDatasetWriter&) = delete;

  // Appends one document followed by EOS. Throws cairn::Error for an id outside the vocabulary.
  void add_document(std::span<const uint32_t> ids);
  // Documents added from now on form the validation split (call at most once; if never called
  // the validation split is empty).
  void begin_validation();
  int64_t num_tokens() const { return total_; }
  int64_t num_documents() const { return int64_t(offsets_.size()); }
  // Writes offsets and attributes, closes, and renames the temporary file to `path`.
  void finalize();

 private:
  void flush();
  std::string path_, tmp_path_;
  int64_t vocab_size_;
  uint32_t eos_id_;
  std::string kind_, model_;
  std::optional<H5File> file_;
  std::optional<H5Dataset1D> tokens_;
  std::vector<uint32_t> buffer_;
  std::vector<int64_t> offsets_;
  int64_t total_ = 0;
  std::optional<int64_t> val_start_;
};

class TokenDataset {
 public:
  // Opens and validates the file; every problem is a cairn::Error naming the file and the problem.
  static TokenDataset open(const std::string& path);

  const std::string& path() const { return path_; }
  int64_t num_tokens() const { return tokens_.size(); }
  int64_t train_tokens() const { return val_start_; }
  int64_t val_tokens() const { return num_tokens() - val_start_; }
  int64_t val_start() const { return val_start_; }
  int64_t vocab_size() const { return vocab_size_; }
  uint32_t eos_id() const { return eos_id_; }
  const std::string& tokenizer_kind() const { return kind_; }
  // The serialized tokenizer model (/tokenizer_model), empty when the dataset has none.
  std::string tokenizer_model() const;
  // Start token of each document plus a final entry equal to num_tokens().
  std::vector<int64_t> doc_offsets() const;

  // Reads tokens [start, start + count) into out[0..count); throws cairn::Error when out of range.
  void read(int64_t start, int64_t count, int32_t* out) const;
  // Scans every token (in chunks) and throws cairn::Error naming the first id >= vocab_size().
  void verify_tokens() const;

 private:
  TokenDataset(H5File file, H5Dataset1D tokens, std::string path)
      : file_(std::move(file)), tokens_(std::move(tokens)), path_(std::move(path)) {}
  H5File file_;
  H5Dataset1D tokens_;
  std::string path_;
  int64_t vocab_size_ = 0, val_start_ = 0;
  uint32_t eos_id_ = 0;
  std::string kind_;
};

}  // namespace cairn
