// Training data addressed by the GLOBAL sample index g: one dataset, or a weighted mixture of
// several (replay in continual pre-training). Sample g of a mixture comes from source k where a
// seeded hash of g, uniform in [0, 1), falls into k's interval of the cumulative weights; within
// source k it is that source's n-th sample, n = how many samples before g chose k, and n indexes
// the source's own seeded window permutation. Both are pure functions of (seed, g), so any rank
// layout and any resume point agree without saved cursors.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/sampler.h"
#include "data/token_dataset.h"

namespace cairn {

class TrainingData {
 public:
  virtual ~TrainingData() = default;
  // Writes the seq_len + 1 tokens of global sample g (inputs and shifted targets) into window.
  virtual void sample(int64_t g, int32_t* window) = 0;
  // The datasets trained on, in configuration order (all share one vocabulary).
  virtual std::vector<const TokenDataset*> datasets() const = 0;
  virtual std::string describe() const = 0;
  int64_t vocab_size() const { return datasets().front()->vocab_size(); }
};

struct MixtureSource {
  std::string path;
  double weight = 0;
};
// Parses "path:weight" entries (weight > 0; weights are normalized to sum 1). Throws Error naming
// a malformed entry.
std::vector<MixtureSource> parse_mixture(const std::vector<std::string>& entries);

// One dataset in its seeded window order (data.train).
class SingleData final : public TrainingData {
 public:
  SingleData(const std::string& path, int64_t seq_len, uint64_t seed);
  void sample(int64_t g, int32_t* window) override;
  std::vector<const TokenDataset*> datasets() const override { return {&data_}; }
  std::string describe() const override;

 private:
  TokenDataset data_;
  WindowSplit split_;
  WindowSampler sampler_;
};

class MixtureData final : public TrainingData {
 public:
  // Opens every source; throws Error when their vocabularies or tokenizers differ.
  MixtureData(const std::vector<MixtureSource>& sources, int64_t seq_len, uint64_t seed);
  void sample(int64_t g, int32_t* window) override;
  std::vector<const TokenDataset*> datasets() const override;
  std::string describe() const override;

  // Source of global sample g (pure).
  int source_of(int64_t g) const;
  // Index of sample g within its source: samples before g that chose the same source. Cached
  // prefix counts make non-decreasing queries O(1) amortized; going back rescans from 0.
  int64_t index_in_source(int64_t g);

 private:
  struct Source {
    TokenDataset data;
    WindowSplit split;
    WindowSampler sampler;
    double weight;
  };
  std::vector<Source> sources_;
  std::vector<double> cumulative_;
  uint64_t seed_;
  int64_t cursor_ = 0;             // counts_ hold the source counts of samples [0, cursor_)
  std::vector<int64_t> counts_;
};

// data.mixture when non-empty, else data.train.
std::unique_ptr<TrainingData> make_training_data(const std::string& train, const std::vector<std::string>& mixture,
                                                 int64_t seq_len, uint64_t seed);

// "out/fortunes.h5" → "fortunes", the directory "out/web.v2/" → "web.v2" (names of per-dataset
// validation losses).
std::string dataset_name(const std::string& path);

}  // namespace cairn
