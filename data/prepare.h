// `cairn prepare`: a text corpus -> a sharded token dataset directory (docs/formats.md).
// Streaming: files are read in order in chunks, tokenized by `workers` threads and written in input
// order, so memory does not grow with the corpus and the output is the same for any number of
// workers. Documents keep their input order (training shuffles windows across all shards); a
// document goes to the validation split when a seeded hash of its text falls below val_fraction,
// which does not depend on order, workers or --part. `--part I/N` prepares one partition of the
// inputs and merge_dataset_parts() joins the parts under one manifest.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/corpus.h"

namespace cairn {

// Debian's `fortunes` package: the default corpus (fortune files, documents split on "%").
inline constexpr const char* kDefaultCorpus = "/usr/share/games/fortunes";

struct PrepareOptions {
  CorpusOptions corpus;                // inputs, --glob, --format, --json-key, --split-on, --skip-invalid
  std::string output;                  // the dataset directory to write
  bool force = false;                  // replace an existing dataset at `output`
  std::string tokenizer = "byte";      // "byte", "sentencepiece", "sentencepiece:<model>", "hf:<tokenizer.json>"
  int vocab_size = 8000;               // for a trained SentencePiece model
  std::string sp_model_type = "bpe";   // "bpe" or "unigram"
  int64_t sp_sentences = 2'000'000;    // SentencePiece trains on a uniform sample of this many lines
  double val_fraction = 0.05;          // in [0, 1)
  uint64_t seed = 0;                   // validation choice and SentencePiece sampling
  int workers = 2;                     // tokenizing threads (and SentencePiece training threads)
  int64_t shard_tokens = 1'000'000'000;
  int part = 0, parts = 1;             // prepare input partition `part` of `parts`
};

struct PrepareSummary {
  int64_t files = 0, skipped_files = 0, skipped_documents = 0;
  int64_t documents = 0, train_documents = 0, val_documents = 0;
  int64_t tokens = 0, train_tokens = 0, val_tokens = 0, text_bytes = 0;
  int64_t shards = 0, vocab_size = 0;
  std::string tokenizer;    // the tokenizer's kind(): "byte", "sentencepiece" or "hf_bpe"
  std::string model_path;   // "<output>/tokenizer.model" when a SentencePiece model was trained, else empty
};

// The top-level files of the default corpus (not its de/ subdirectory, a second language).
std::vector<std::string> default_corpus_inputs();

// Throws cairn::Error before reading any input when the options or the output are unusable
// (--out exists without --force, or is not a dataset with it).
PrepareSummary prepare_dataset(const PrepareOptions& opts);

// Writes OUT/manifest.json over the datasets prepared with --part I/N in `part_dirs` (each inside
// `out`): every part once, prepared from the same input list with the same tokenizer. Shards stay
// where they are; the training split is the parts' training shards in part order (as a one-shot
// preparation would order them), likewise the validation split.
PrepareSummary merge_dataset_parts(const std::vector<std::string>& part_dirs, const std::string& out, bool force);

}  // namespace cairn
