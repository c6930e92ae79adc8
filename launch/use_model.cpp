// Loading a trained model and its tokenizer, prompts, streamed decoding and evaluation (see
// use_model.h).
#include "launch/use_model.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "data/hf_tokenizer.h"
#include "data/sampler.h"
#include "model/hf_import.h"
#include "model/weights_io.h"
#include "trainer/config.h"
#include "util/error.h"
#include "util/utf8.h"

namespace cairn {

namespace fs = std::filesystem;

TrainedModel load_trained_model(const std::string& weights_path, int64_t max_batch) {
  TrainedModel t;
  t.weights_path = weights_path;
  config_apply_toml(t.config, read_weights_config(weights_path), "the config stored in " + weights_path);
  t.model = std::make_unique<LlamaModel>(t.config.model, cpu_backend(), max_batch);
  load_model_weights(*t.model, weights_path);
  return t;
}

ModelTokenizer tokenizer_for_model(const TrainConfig& config, const std::string& tokenizer_from) {
  ModelTokenizer out;
  const int64_t V = config.model.vocab_size;
  const std::string& path = tokenizer_from.empty() ? config.data.train : tokenizer_from;
  if (const std::string dir = hf_dir_of(tokenizer_from); !dir.empty()) {  // a Hugging Face model's own
    out.tokenizer = load_hf_tokenizer(dir);
    out.source = str("Hugging Face tokenizer of ", dir);
  } else if (!tokenizer_from.empty() || (!path.empty() && fs::exists(path))) {
    const TokenDataset ds = TokenDataset::open(path);
    out.tokenizer = tokenizer_from_dataset(ds);
    out.source = str(ds.tokenizer_kind(), " tokenizer of dataset ", path);
  } else if (V == 257) {
    out.tokenizer = make_byte_tokenizer();
    out.source = str("byte tokenizer (the training dataset '", path,
                     "' is not available; the model's vocabulary of 257 is the byte tokenizer's)");
  } else {
    throw Error(str("the model's tokenizer is stored in its training dataset '", path,
                    "' (data.train), which is not available here: give --tokenizer-from DATASET, a dataset "
                    "prepared with the same tokenizer"));
  }
  if (out.tokenizer->vocab_size() > V)
    throw Error(str("the ", out.source, " has vocabulary ", out.tokenizer->vocab_size(), " but the model only ", V,
                    ": it is not the model's tokenizer; give the right one with --tokenizer-from"));
  return out;
}

bool check_dataset_tokenizer(const TrainConfig& config, const TokenDataset& ds) {
  const std::string& train = config.data.train;
  if (train.empty() || !fs::exists(train)) return false;
  std::error_code ec;
  if (fs::equivalent(train, ds.path(), ec)) return true;
  const TokenDataset reference = TokenDataset::open(train);
  if (reference.tokenizer_kind() != ds.tokenizer_kind() || reference.tokenizer_model() != ds.tokenizer_model())
    throw Error(str("dataset '", ds.path(), "' was tokenized with a different tokenizer (", ds.tokenizer_kind(),
                    ") than the model's training data '", train, "' (", reference.tokenizer_kind(),
                    "): prepare it with --tokenizer sentencepiece:MODEL or the same tokenizer kind"));
  return true;
}

std::vector<uint32_t> encode_prompt(const Tokenizer& tok, const std::string& prompt) {
  if (tok.kind() == "sentencepiece") {
    const size_t bad = invalid_utf8_at(prompt);
    if (bad != std::string::npos)
      throw Error(str("the prompt is not valid UTF-8 (byte ", bad, "), which the SentencePiece tokenizer needs: "
                      "pass UTF-8 text"));
  }
  std::vector<uint32_t> ids = tok.encode(prompt);
  if (ids.empty()) throw Error("the prompt encodes to no tokens: give a non-empty --prompt");
  return ids;
}

IncrementalDecoder::IncrementalDecoder(const Tokenizer& tok, std::vector<uint32_t> context)
    : tok_(tok), ids_(std::move(context)), emitted_(tok.decode(ids_)) {}

std::string IncrementalDecoder::push(uint32_t id) {
  ids_.push_back(id);
  return advance(false);
}

std::string IncrementalDecoder::finish() { return advance(true); }

std::string IncrementalDecoder::advance(bool final) {
  std::string text = tok_.decode(ids_);
  static const std::string kReplacement = "\xEF\xBF\xBD";
  if (!final && tok_.kind() == "sentencepiece")
    while (text.size() >= kReplacement.size() && text.ends_with(kReplacement)) text.resize(text.size() - kReplacement.size());
  // Decoding a longer sequence normally extends the text; when it rewrites text already shown
  // (a tokenizer merging across the boundary), the difference from the common prefix is shown.
  size_t common = 0;
  while (common < text.size() && common < emitted_.size() && text[common] == emitted_[common]) ++common;
  if (text.size() <= emitted_.size() && common == text.size()) return {};
  std::string fresh = text.substr(common);
  emitted_ = text;
  return fresh;
}

EvalResult evaluate_dataset(LlamaModel& model, const TokenDataset& ds, const std::string& split, int64_t windows,
                            int64_t micro_batch, Communicator& comm) {
  if (split != "val" && split != "train") throw Error(str("--split ", split, " must be \"val\" or \"train\""));
  if (micro_batch <= 0 || micro_batch > model.max_batch())
    throw Error(str("--micro-batch ", micro_batch, " must be in [1, ", model.max_batch(), "]"));
  const int64_t T = model.config().seq_len, V = model.config().vocab_size;
  if (ds.vocab_size() > V)
    throw Error(str("dataset '", ds.path(), "' has vocabulary ", ds.vocab_size(), " but the model ", V,
                    ": it was not prepared with the model's tokenizer"));
  const WindowSplit all = split == "val" ? val_windows(ds, T) : train_windows(ds, T);
  EvalResult r = evaluate_windows(model, ds, all, windows > 0 ? std::min(windows, all.count) : all.count, micro_batch, comm);
  r.split = split;
  return r;
}

}  // namespace cairn
