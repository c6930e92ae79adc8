// Single-dataset and weighted-mixture training data (see mixture.h).
#include "data/mixture.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "util/error.h"
#include "util/rng.h"

namespace cairn {

std::vector<MixtureSource> parse_mixture(const std::vector<std::string>& entries) {
  std::vector<MixtureSource> out;
  double total = 0;
  for (const auto& e : entries) {
    const auto colon = e.rfind(':');
    char* end = nullptr;
    const double w = colon == std::string::npos ? 0 : std::strtod(e.c_str() + colon + 1, &end);
    if (colon == std::string::npos || colon == 0 || end == e.c_str() + colon + 1 || *end != '\0' || !(w > 0) ||
        !std::isfinite(w))
      throw Error(str("data.mixture entry '", e, "' must be \"path.h5:weight\" with a positive weight, e.g. \"old.h5:0.25\""));
    out.push_back({e.substr(0, colon), w});
    total += w;
  }
  if (!std::isfinite(total)) throw Error("data.mixture: the weights sum to infinity: give weights like 0.75 and 0.25");
  for (auto& s : out) s.weight /= total;
  return out;
}

SingleData::SingleData(const std::string& path, int64_t seq_len, uint64_t seed)
    : data_(TokenDataset::open(path)), split_(train_windows(data_, seq_len)), sampler_(split_.count, seed) {}

void SingleData::sample(int64_t g, int32_t* window) {
  data_.read(split_.start(sampler_.window_for(g)), split_.seq_len + 1, window);
}

std::string SingleData::describe() const {
  return str(data_.path(), ": ", data_.train_tokens(), " training tokens (", split_.count, " windows), ",
             data_.val_tokens(), " validation tokens");
}

MixtureData::MixtureData(const std::vector<MixtureSource>& sources, int64_t seq_len, uint64_t seed) : seed_(seed) {
  if (sources.empty()) throw Error("data.mixture is empty: give at least one \"path.h5:weight\"");
  double acc = 0;
  for (size_t k = 0; k < sources.size(); ++k) {
    TokenDataset ds = TokenDataset::open(sources[k].path);
    const WindowSplit split = train_windows(ds, seq_len);
    // Each source's own window order: a seed stream per source position.
    sources_.push_back({std::move(ds), split, WindowSampler(split.count, Rng(seed, 1000 + k).next_u64()), sources[k].weight});
    acc += sources[k].weight;
    cumulative_.push_back(acc);
  }
  cumulative_.back() = 1.0;  // rounding must not leave a gap at the top
  const TokenDataset& first = sources_.front().data;
  for (const auto& s : sources_) {
    if (s.data.vocab_size() != first.vocab_size() || s.data.tokenizer_kind() != first.tokenizer_kind() ||
        s.data.tokenizer_model() != first.tokenizer_model())
      throw Error(str("data.mixture: '", s.data.path(), "' (", s.data.tokenizer_kind(), " tokenizer, vocabulary ",
                      s.data.vocab_size(), ") and '", first.path(), "' (", first.tokenizer_kind(), ", vocabulary ",
                      first.vocab_size(), ") use different tokenizers: prepare every dataset of a mixture with the "
                      "same tokenizer"));
  }
  counts_.assign(sources_.size(), 0);
}

int MixtureData::source_of(int64_t g) const {
  Rng rng(seed_ ^ 0x6d69787475726531ULL, uint64_t(g));  // a hash of (seed, g)
  const double u = double(rng.next_u64() >> 11) * 0x1.0p-53;
  return int(std::upper_bound(cumulative_.begin(), cumulative_.end(), u) - cumulative_.begin());
}

int64_t MixtureData::index_in_source(int64_t g) {
  CAIRN_ASSERT(g >= 0, "global sample index ", g);
  if (g < cursor_) {
    cursor_ = 0;
    std::fill(counts_.begin(), counts_.end(), 0);
  }
  for (; cursor_ < g; ++cursor_) ++counts_[size_t(source_of(cursor_))];
  return counts_[size_t(source_of(g))];
}

void MixtureData::sample(int64_t g, int32_t* window) {
  const int k = source_of(g);
  Source& s = sources_[size_t(k)];
  s.data.read(s.split.start(s.sampler.window_for(index_in_source(g))), s.split.seq_len + 1, window);
}

std::vector<const TokenDataset*> MixtureData::datasets() const {
  std::vector<const TokenDataset*> out;
  for (const auto& s : sources_) out.push_back(&s.data);
  return out;
}

std::string MixtureData::describe() const {
  std::string d = "mixture of";
  for (const auto& s : sources_)
    d += str(" ", s.data.path(), " (weight ", s.weight, ", ", s.data.train_tokens(), " training tokens)");
  return d;
}

std::unique_ptr<TrainingData> make_training_data(const std::string& train, const std::vector<std::string>& mixture,
                                                 int64_t seq_len, uint64_t seed) {
  if (!mixture.empty()) return std::make_unique<MixtureData>(parse_mixture(mixture), seq_len, seed);
  return std::make_unique<SingleData>(train, seq_len, seed);
}

std::string dataset_name(const std::string& path) {
  std::filesystem::path p(path);
  if (!p.has_filename()) p = p.parent_path();  // "out/web/"
  // A directory's whole name ("web.v2"), a file's without its extension.
  return std::filesystem::is_directory(p) ? p.filename().string() : p.stem().string();
}

}  // namespace cairn
