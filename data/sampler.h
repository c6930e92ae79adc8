// Deterministic window order. A split of N tokens is cut into W = floor((N - 1) / T) windows of
// T + 1 tokens (inputs and shifted targets); window i starts at the split's first token + i*T.
// Training windows are visited epoch by epoch in a seeded permutation addressed by a GLOBAL sample
// index g (0, 1, 2, ... across all ranks and steps), so any rank layout and any resume point
// agree on which window a sample is. Validation windows are taken in order.
#pragma once

#include <cstdint>
#include <vector>

namespace cairn {

class TokenDataset;

// The windows of one split: `count` windows of seq_len + 1 tokens.
struct WindowSplit {
  int64_t first_token = 0;
  int64_t count = 0;
  int64_t seq_len = 0;
  int64_t start(int64_t i) const { return first_token + i * seq_len; }
};

// Cut of tokens [first_token, first_token + num_tokens). Throws cairn::Error when the split holds
// fewer than seq_len + 1 tokens; `split_name` ("training", "validation") goes into the message.
WindowSplit cut_windows(int64_t first_token, int64_t num_tokens, int64_t seq_len, const char* split_name);
WindowSplit train_windows(const TokenDataset& ds, int64_t seq_len);
WindowSplit val_windows(const TokenDataset& ds, int64_t seq_len);

class WindowSampler {
 public:
  WindowSampler(int64_t num_windows, uint64_t seed);
  // Window of global sample g: epoch g / W, position g % W of that epoch's permutation.
  // Caches one epoch's permutation, so calls with non-decreasing g are O(1) amortized.
  int64_t window_for(int64_t g);
  int64_t num_windows() const { return num_windows_; }

 private:
  int64_t num_windows_;
  uint64_t seed_;
  int64_t epoch_ = -1;
  std::vector<int64_t> perm_;
};

}  // namespace cairn
