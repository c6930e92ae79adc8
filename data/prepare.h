// `cairn prepare`: text files -> token dataset. Documents are whole files or the pieces between
// separator lines (`split_on`, "%" for fortune files); they are shuffled by a seed, tokenized, and
// the last `val_fraction` of tokens (whole documents) becomes the validation split.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cairn {

// Debian's `fortunes` package: the default corpus (fortune files, documents split on "%").
inline constexpr const char* kDefaultCorpus = "/usr/share/games/fortunes";

struct PrepareOptions {
  // Files, or directories whose regular files are all read (not recursively; symlinks, hidden
  // files and strfile indexes "X.dat" beside a file "X" are skipped).
  std::vector<std::string> inputs;
  std::string output;                  // the .h5 dataset to write
  std::string tokenizer = "byte";      // "byte", "sentencepiece", "sentencepiece:<model>", "hf:<tokenizer.json>"
  int vocab_size = 8000;               // for a trained SentencePiece model
  std::string sp_model_type = "bpe";   // "bpe" or "unigram"
  std::string split_on;                // separator line; empty: one document per file
  double val_fraction = 0.05;          // in [0, 1)
  uint64_t seed = 0;                   // document shuffle and SentencePiece sampling
  int num_threads = 2;                 // SentencePiece training threads
};

struct PrepareSummary {
  int64_t files = 0, documents = 0, train_documents = 0, val_documents = 0;
  int64_t tokens = 0, train_tokens = 0, val_tokens = 0, text_bytes = 0;
  int64_t vocab_size = 0;
  std::string tokenizer;    // the tokenizer's kind(): "byte", "sentencepiece" or "hf_bpe"
  std::string model_path;   // "<output>.model" when a SentencePiece model was trained, else empty
};

// Input files in read order (sorted per directory). Throws cairn::Error if none are found.
std::vector<std::string> list_input_files(const std::vector<std::string>& inputs);
// Splits `text` into documents on lines equal to `split_on` (all of it when empty); documents that
// are empty or only whitespace are dropped.
std::vector<std::string> split_documents(const std::string& text, const std::string& split_on);

PrepareSummary prepare_dataset(const PrepareOptions& opts);

}  // namespace cairn
