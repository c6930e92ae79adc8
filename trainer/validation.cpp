// Validation and evaluation over windows of token datasets (see validation.h).
#include "trainer/validation.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>

#include "data/mixture.h"
#include "util/error.h"

namespace cairn {

double EvalResult::perplexity() const { return std::exp(loss); }

EvalResult evaluate_windows(LlamaModel& model, const TokenDataset& ds, const WindowSplit& split, int64_t windows,
                            int64_t micro_batch, Communicator& comm) {
  CAIRN_ASSERT(windows >= 0 && windows <= split.count && micro_batch > 0 && micro_batch <= model.max_batch(),
               "windows ", windows, " of ", split.count, ", micro_batch ", micro_batch);
  const int64_t T = model.config().seq_len;
  const int64_t num_batches = (windows + micro_batch - 1) / micro_batch;
  std::vector<int32_t> inputs(size_t(micro_batch * T)), targets(size_t(micro_batch * T)), window(size_t(T + 1));
  double sums[2] = {0, 0};  // loss·tokens, tokens
  for (int64_t k = comm.rank(); k < num_batches; k += comm.size()) {
    const int64_t rows = std::min(micro_batch, windows - k * micro_batch);
    for (int64_t b = 0; b < rows; ++b) {
      ds.read(split.start(k * micro_batch + b), T + 1, window.data());
      std::copy_n(window.begin(), T, inputs.begin() + b * T);
      std::copy_n(window.begin() + 1, T, targets.begin() + b * T);
    }
    sums[0] += double(model.forward_loss(inputs.data(), targets.data(), rows)) * double(rows * T);
    sums[1] += double(rows * T);
  }
  comm.all_reduce(sums, 2, ReduceOp::sum);
  EvalResult r;
  r.dataset = ds.path();
  r.windows = windows;
  r.tokens = int64_t(sums[1]);
  r.loss = sums[0] / sums[1];
  return r;
}

ValidationSets open_validation_sets(const std::vector<std::string>& paths, const TokenDataset& reference,
                                    int64_t seq_len) {
  ValidationSets out;
  for (const auto& path : paths) {
    TokenDataset ds = TokenDataset::open(path);
    // Two SentencePiece models of one size give different ids: the vocabulary alone proves nothing.
    if (ds.vocab_size() != reference.vocab_size() || ds.tokenizer_kind() != reference.tokenizer_kind() ||
        ds.tokenizer_model() != reference.tokenizer_model())
      throw Error(str("validation dataset '", path, "' (", ds.tokenizer_kind(), " tokenizer, vocabulary ",
                      ds.vocab_size(), ") was not prepared with the tokenizer of the training data '",
                      reference.path(), "' (", reference.tokenizer_kind(), ", vocabulary ", reference.vocab_size(),
                      "): prepare it with the same tokenizer (--tokenizer sentencepiece:MODEL for a SentencePiece one)"));
    if (ds.val_tokens() <= seq_len) {  // no window of T + 1 tokens: nothing to validate on
      out.unusable.push_back(str("'", path, "' (", ds.val_tokens(), " validation tokens)"));
      continue;
    }
    const WindowSplit split = val_windows(ds, seq_len);
    out.sets.push_back({dataset_name(path), std::move(ds), split});
  }
  // Metrics key each set by its name (val_loss/<name>): datasets sharing a file stem (en/data.h5,
  // de/data.h5) take their directory's name too, or one would overwrite the other.
  std::map<std::string, int> stem_count;
  for (const auto& v : out.sets) ++stem_count[v.name];
  for (auto& v : out.sets)
    if (stem_count[v.name] > 1)
      v.name = std::filesystem::absolute(v.data.path()).parent_path().filename().string() + "/" + v.name;
  return out;
}

}  // namespace cairn
