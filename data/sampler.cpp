// Window cutting and the seeded per-epoch permutation (see sampler.h).
#include "data/sampler.h"

#include <numeric>
#include <utility>

#include "data/token_dataset.h"
#include "util/error.h"
#include "util/rng.h"

namespace cairn {

WindowSplit cut_windows(int64_t first_token, int64_t num_tokens, int64_t seq_len, const char* split_name) {
  if (seq_len < 1) throw Error(str("sequence length must be at least 1, got ", seq_len));
  if (num_tokens < seq_len + 1)
    throw Error(str("sequence length ", seq_len, " needs at least ", seq_len + 1, " tokens, the ", split_name,
                    " split has ", num_tokens, ": use a shorter seq_len, more input text, or a different",
                    " val_fraction when preparing the dataset"));
  return WindowSplit{first_token, (num_tokens - 1) / seq_len, seq_len};
}

WindowSplit train_windows(const TokenDataset& ds, int64_t seq_len) {
  return cut_windows(0, ds.train_tokens(), seq_len, "training");
}

WindowSplit val_windows(const TokenDataset& ds, int64_t seq_len) {
  return cut_windows(ds.val_start(), ds.val_tokens(), seq_len, "validation");
}

WindowSampler::WindowSampler(int64_t num_windows, uint64_t seed) : num_windows_(num_windows), seed_(seed) {
  if (num_windows < 1) throw Error(str("window sampler needs at least one window, got ", num_windows));
}

int64_t WindowSampler::window_for(int64_t g) {
  CAIRN_ASSERT(g >= 0, "global sample index ", g);
  int64_t epoch = g / num_windows_;
  if (epoch != epoch_) {
    perm_.resize(size_t(num_windows_));
    std::iota(perm_.begin(), perm_.end(), int64_t(0));
    Rng rng(seed_, uint64_t(epoch));
    for (int64_t i = num_windows_ - 1; i > 0; --i) std::swap(perm_[size_t(i)], perm_[rng.below(uint64_t(i + 1))]);
    epoch_ = epoch;
  }
  return perm_[size_t(g % num_windows_)];
}

}  // namespace cairn
