// manifest.json of a sharded token dataset directory (docs/formats.md): format and version, the
// tokenizer (kind, vocabulary, EOS, the file holding its serialized model and that file's hash),
// the training and validation shards in reading order (file, tokens, documents, bytes, XXH64 of
// the stored ids), and where the data came from (input files, skipped inputs, --part).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cairn {

inline constexpr const char* kDatasetFormat = "cairn-token-dataset";
inline constexpr int64_t kDatasetFormatVersion = 1;
inline constexpr const char* kManifestFile = "manifest.json";

struct ShardEntry {
  std::string file;  // relative to the dataset directory ("train-00000.h5", "part-0001-of-0004/val-00000.h5")
  int64_t tokens = 0, documents = 0, bytes = 0;
  uint64_t xxh64 = 0;  // of the /tokens elements as stored (little-endian uint16 or uint32)
};

struct DatasetManifest {
  std::string tokenizer;                // Tokenizer::kind()
  int64_t vocab_size = 0, eos_id = 0;
  std::string tokenizer_file;           // empty when the tokenizer has no serialized model (byte)
  int64_t tokenizer_bytes = 0;
  uint64_t tokenizer_xxh64 = 0;
  std::string token_type = "uint16";    // "uint16" or "uint32"
  std::vector<ShardEntry> train, val;
  // Provenance. part/parts: this directory holds input partition `part` of `parts` (0 of 1 for a
  // whole preparation or a merge); inputs_xxh64 hashes the full input list, so the parts of one
  // preparation can be told from those of another.
  int64_t part = 0, parts = 1;
  uint64_t inputs_xxh64 = 0;
  int64_t input_files = 0, skipped_files = 0, skipped_documents = 0, text_bytes = 0;
};

int64_t split_tokens(const std::vector<ShardEntry>& shards);
int64_t split_documents(const std::vector<ShardEntry>& shards);

// Writes DIR/manifest.json (through a temporary file and a rename).
void write_manifest(const std::string& dir, const DatasetManifest& m);
// Reads and checks DIR/manifest.json; every problem (missing, not JSON, another format or
// version, a missing or mistyped key, a shard path leaving the directory) is a cairn::Error naming
// the file.
DatasetManifest read_manifest(const std::string& dir);
// True when `path` is a directory holding manifest.json.
bool is_dataset_directory(const std::string& path);

}  // namespace cairn
