// Using a trained model: finding its weights (a weights file, a finished run directory or a
// checkpoint directory), rebuilding it from the config stored in the weights, finding its
// tokenizer (stored in the training dataset), encoding prompts and streaming decoded text, and
// evaluating loss on a token dataset with the ranks sharing the windows.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "data/token_dataset.h"
#include "data/tokenizer.h"
#include "model/llama.h"
#include "trainer/train_config.h"
#include "trainer/validation.h"

namespace cairn {

struct TrainedModel {
  std::string weights_path;
  TrainConfig config;  // as stored in the weights file (model.vocab_size resolved)
  std::unique_ptr<LlamaModel> model;
};

// Rebuilds the model from the weights file's stored config and loads its weights (CPU backend,
// activations for max_batch sequences).
TrainedModel load_trained_model(const std::string& weights_path, int64_t max_batch);

struct ModelTokenizer {
  std::unique_ptr<Tokenizer> tokenizer;
  std::string source;  // where it came from, for the user ("dataset out/fortunes", ...)
};

// The tokenizer of the dataset `tokenizer_from` ("hf:DIR": a Hugging Face model directory's
// tokenizer.json and EOS, data/hf_tokenizer.h), or (when empty) of the training dataset named by
// config.data.train. When that default is unavailable and the model's vocabulary is 257, the byte
// tokenizer (which needs no file) is used and `source` says so; otherwise cairn::Error asks for
// --tokenizer-from. A tokenizer whose vocabulary exceeds the model's is an error.
ModelTokenizer tokenizer_for_model(const TrainConfig& config, const std::string& tokenizer_from);

// Throws cairn::Error when `ds` was tokenized differently (kind or tokenizer model) from the model's
// training dataset config.data.train; returns false without checking when that is unavailable.
bool check_dataset_tokenizer(const TrainConfig& config, const TokenDataset& ds);

// The prompt's token ids. SentencePiece needs valid UTF-8; an empty encoding is an error too.
std::vector<uint32_t> encode_prompt(const Tokenizer& tok, const std::string& prompt);

// Text of a growing id sequence, emitted as it becomes final: push(id) returns the new text since
// the last call (decode(all) minus what was already returned); a trailing U+FFFD, which
// SentencePiece produces for an incomplete UTF-8 byte sequence, is held back until the sequence
// completes or finish() is called.
class IncrementalDecoder {
 public:
  IncrementalDecoder(const Tokenizer& tok, std::vector<uint32_t> context);
  std::string push(uint32_t id);
  std::string finish();

 private:
  std::string advance(bool final);
  const Tokenizer& tok_;
  std::vector<uint32_t> ids_;
  std::string emitted_;  // decode(context) followed by every returned piece
};

// Collective: mean loss over the split's windows ("val" or "train", taken in order) of `ds`: the
// first `windows` of them (all when fewer, or when windows <= 0), with the ranks sharing them
// (evaluate_windows), so every rank returns the same result. Throws Error for a bad split,
// micro-batch (model.max_batch() >= micro_batch) or vocabulary.
EvalResult evaluate_dataset(LlamaModel& model, const TokenDataset& ds, const std::string& split,
                            int64_t windows, int64_t micro_batch, Communicator& comm);

}  // namespace cairn
