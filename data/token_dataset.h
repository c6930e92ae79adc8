// Token datasets (docs/formats.md). Two layouts, read through one class:
// - a directory (what `cairn prepare` writes): manifest.json, the tokenizer's model file, and HDF5
//   shards train-NNNNN.h5 / val-NNNNN.h5 (format "cairn-token-shard": /tokens, /doc_offsets);
// - one HDF5 file (format "cairn-tokens" v1: /tokens, /doc_offsets, /tokenizer_model, attributes
//   vocab_size, eos_id, tokenizer, val_start), written by TokenDatasetWriter.
// Either way the dataset is one token sequence: the training split [0, val_start) followed by the
// validation split; reads cross shard boundaries. Writers build "<path>.tmp" and rename it when
// complete, and never load the tokens whole; neither does the reader.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "data/dataset_manifest.h"
#include "util/h5.h"
#include "util/hash.h"

namespace cairn {

class Tokenizer;

inline constexpr const char* kTokenFormat = "cairn-tokens";
inline constexpr int64_t kTokenFormatVersion = 1;
inline constexpr const char* kShardFormat = "cairn-token-shard";
inline constexpr int64_t kShardFormatVersion = 1;
inline constexpr int64_t kTokenChunk = 64 * 1024;  // tokens per HDF5 chunk

// Appends documents to /tokens and /doc_offsets of a new HDF5 file "<path>.tmp", hashing the ids as
// stored (XXH64 of the little-endian uint16 or uint32 elements); finish() renames it to `path`.
// Memory is bounded (buffers of 1M tokens and offsets), whatever the file's size.
class TokenFileWriter {
 public:
  TokenFileWriter(std::string path, int64_t vocab_size);
  // An unfinished writer removes its temporary file.
  ~TokenFileWriter();
  TokenFileWriter(const TokenFileWriter&) = delete;
  TokenFileWriter& operator=(const TokenFileWriter&) = delete;

  void begin_document();
  // Throws cairn::Error for an id outside the vocabulary.
  void append(std::span<const uint32_t> ids);
  int64_t num_tokens() const { return total_; }
  int64_t num_documents() const { return documents_; }
  // Writes the final offset, calls `attributes` on the file, closes it and renames it to `path`.
  // Returns the hash of the stored ids.
  uint64_t finish(const std::function<void(const H5File&)>& attributes);

 private:
  void flush();
  std::string path_, tmp_path_;
  int64_t vocab_size_;
  bool narrow_;  // uint16 storage
  std::optional<H5File> file_;
  std::optional<H5Dataset1D> tokens_, offsets_;
  std::vector<uint32_t> buffer_;
  std::vector<uint16_t> narrow_buffer_;
  std::vector<int64_t> offset_buffer_;
  Hash64 hash_;
  int64_t total_ = 0, documents_ = 0;
};

// The single-file layout (format "cairn-tokens").
class TokenDatasetWriter {
 public:
  // Creates "<path>.tmp" (truncating a stale one). Token ids must be < tokenizer.vocab_size().
  TokenDatasetWriter(std::string path, const Tokenizer& tokenizer);

  // Appends one document followed by EOS. Throws cairn::Error for an id outside the vocabulary.
  void add_document(std::span<const uint32_t> ids);
  // Documents added from now on form the validation split (call at most once; if never called
  // the validation split is empty).
  void begin_validation();
  int64_t num_tokens() const { return file_.num_tokens(); }
  int64_t num_documents() const { return file_.num_documents(); }
  // Writes the attributes, closes, and renames the temporary file to `path`.
  void finalize();

 private:
  std::string path_;
  uint32_t eos_id_;
  std::string kind_, model_;
  int64_t vocab_size_;
  TokenFileWriter file_;
  std::optional<int64_t> val_start_;
};

// The directory layout: documents go to training or validation shards, a new shard starting once
// the current one holds `shard_tokens` (documents never span shards). finish() writes the
// tokenizer's model file and returns the manifest's tokenizer and shard fields; the caller adds
// the provenance and writes manifest.json.
class ShardedDatasetWriter {
 public:
  ShardedDatasetWriter(std::string dir, const Tokenizer& tokenizer, int64_t shard_tokens);
  ~ShardedDatasetWriter();
  void begin_document(bool validation);
  void append(std::span<const uint32_t> ids);
  // Appends EOS.
  void end_document();
  bool in_document() const { return in_document_; }
  DatasetManifest finish();

 private:
  struct Split;
  void close_shard(Split& s);
  std::unique_ptr<Split> train_, val_;
  Split* current_ = nullptr;
  std::string dir_;
  int64_t shard_tokens_, vocab_size_;
  uint32_t eos_id_;
  std::string kind_, model_;
  bool in_document_ = false;
};

// The model file name inside a dataset directory for a tokenizer kind ("tokenizer.model" for
// SentencePiece, which spm_encode and --tokenizer sentencepiece:FILE read directly;
// "tokenizer.json" for hf_bpe, which --tokenizer hf:FILE and the `tokenizers` package read).
std::string tokenizer_model_file_name(const std::string& kind);

class TokenDataset {
 public:
  // Opens a dataset directory or a single-file dataset and checks it: the manifest, each shard's
  // presence, size, format and token count against the manifest (the content hashes and every
  // token id are checked by verify_shard). Every problem is a cairn::Error naming the file.
  static TokenDataset open(const std::string& path);
  TokenDataset(TokenDataset&&) noexcept;
  TokenDataset& operator=(TokenDataset&&) noexcept;
  ~TokenDataset();

  const std::string& path() const { return path_; }
  int64_t num_tokens() const { return num_tokens_; }
  int64_t train_tokens() const { return val_start_; }
  int64_t val_tokens() const { return num_tokens() - val_start_; }
  int64_t val_start() const { return val_start_; }
  int64_t vocab_size() const { return vocab_size_; }
  uint32_t eos_id() const { return eos_id_; }
  const std::string& tokenizer_kind() const { return kind_; }
  // The serialized tokenizer model, empty when the dataset has none (byte).
  std::string tokenizer_model() const;
  // Start token of each document plus a final entry equal to num_tokens() (loads them all).
  std::vector<int64_t> doc_offsets() const;

  // Reads tokens [start, start + count) into out[0..count), across shards; throws cairn::Error when
  // out of range. Not thread-safe (it keeps a few shards open, like HDF5 itself is serial).
  void read(int64_t start, int64_t count, int32_t* out) const;

  // Shards in reading order (a single-file dataset is one shard).
  size_t num_shards() const;
  const std::string& shard_path(size_t i) const;
  int64_t shard_tokens(size_t i) const;
  // What identifies shard i's checked content: its absolute path, size, modification time, inode,
  // recorded hash and the vocabulary (the key of the start-of-training check's cache).
  std::string shard_identity(size_t i) const;
  // Reads every id of shard i once: throws cairn::Error naming the file and the token's offset for
  // an id >= vocab_size(), or when the ids' hash differs from the manifest's.
  void verify_shard(size_t i) const;
  // verify_shard for every shard.
  void verify_tokens() const;

 private:
  struct Shard;
  struct OpenShard;
  TokenDataset();
  static TokenDataset open_file(const std::string& path);
  static TokenDataset open_directory(const std::string& path);
  const OpenShard& shard_data(size_t i) const;

  std::string path_;
  bool directory_ = false;
  std::vector<Shard> shards_;
  mutable std::vector<std::unique_ptr<OpenShard>> open_;  // most recently used last
  int64_t num_tokens_ = 0, vocab_size_ = 0, val_start_ = 0;
  uint32_t eos_id_ = 0;
  std::string kind_;
  std::string model_file_;  // directory: the tokenizer model file ("" for none)
  int64_t model_bytes_ = 0;
  uint64_t model_xxh64_ = 0;
};

}  // namespace cairn
