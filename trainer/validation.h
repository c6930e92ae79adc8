// Validation: the mean next-token loss of a model over windows of a token dataset with the ranks
// sharing the windows, which training's validation and `cairn eval` both compute, and the
// trainer's validation sets (the training datasets' validation splits, then data.validate's).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "data/sampler.h"
#include "data/token_dataset.h"
#include "model/llama.h"

namespace cairn {

struct EvalResult {
  std::string dataset, split;
  int64_t windows = 0, tokens = 0;  // evaluated, over all ranks
  double loss = 0;                  // mean next-token cross-entropy (nats)
  double perplexity() const;
};

// Collective: mean loss over the first `windows` (≤ split.count) windows of `split` in `ds`, taken
// in order in micro-batches of micro_batch windows (the last one partial). Micro-batch k goes to
// rank k mod size; sums are all-reduced, so every rank returns the same result. Fills every field
// but `split`. model.max_batch() >= micro_batch.
EvalResult evaluate_windows(LlamaModel& model, const TokenDataset& ds, const WindowSplit& split, int64_t windows,
                            int64_t micro_batch, Communicator& comm);

struct ValidationSet {
  std::string name;  // metrics key suffix: val_loss/<name>
  TokenDataset data;
  WindowSplit split;
};

struct ValidationSets {
  std::vector<ValidationSet> sets;
  std::vector<std::string> unusable;  // datasets without a validation window, described for the user
};

// Opens the datasets at `paths` for validation with windows of seq_len + 1 tokens. Each must share
// the tokenizer of `reference` (the training data), else Error. A set is named by its file stem, or
// <directory>/<stem> where stems repeat.
ValidationSets open_validation_sets(const std::vector<std::string>& paths, const TokenDataset& reference,
                                    int64_t seq_len);

}  // namespace cairn
