// Temperature / top-k / top-p sampling (see sampling.h).
#include "model/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "util/error.h"

namespace cairn {

void SamplingOptions::validate() const {
  if (!(temperature >= 0) || !std::isfinite(temperature))
    throw Error(str("--temperature ", temperature, " must be a finite number >= 0 (0 = greedy)"));
  if (top_k < 0) throw Error(str("--top-k ", top_k, " must be >= 0 (0 = no limit)"));
  if (!(top_p > 0 && top_p <= 1)) throw Error(str("--top-p ", top_p, " must be in (0, 1] (1 = no limit)"));
}

static uint32_t argmax(std::span<const float> logits) {
  return uint32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

std::vector<float> sampling_distribution(std::span<const float> logits, const SamplingOptions& opts) {
  opts.validate();
  CAIRN_ASSERT(!logits.empty());
  const size_t V = logits.size();
  std::vector<float> probs(V, 0.0f);
  if (opts.temperature == 0) {
    probs[argmax(logits)] = 1.0f;
    return probs;
  }
  // Token ids by decreasing logit (ties: lower id first), then the kept prefix.
  std::vector<uint32_t> order(V);
  std::iota(order.begin(), order.end(), 0u);
  std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return logits[a] > logits[b]; });
  const size_t k = opts.top_k > 0 ? std::min(V, size_t(opts.top_k)) : V;
  // Softmax over the top k in double, max-subtracted.
  std::vector<double> p(k);
  const double top = double(logits[order[0]]), inv_t = 1.0 / double(opts.temperature);
  double sum = 0;
  for (size_t i = 0; i < k; ++i) sum += p[i] = std::exp((double(logits[order[i]]) - top) * inv_t);
  // Nucleus: the shortest prefix whose mass reaches top_p (at least one token).
  size_t kept = k;
  if (opts.top_p < 1) {
    double mass = 0;
    for (size_t i = 0; i < k; ++i) {
      mass += p[i] / sum;
      if (mass >= double(opts.top_p)) {
        kept = i + 1;
        break;
      }
    }
  }
  double kept_sum = 0;
  for (size_t i = 0; i < kept; ++i) kept_sum += p[i];
  for (size_t i = 0; i < kept; ++i) probs[order[i]] = float(p[i] / kept_sum);
  return probs;
}

uint32_t sample_token(std::span<const float> logits, const SamplingOptions& opts, Rng& rng) {
  if (opts.temperature == 0) {
    opts.validate();
    return argmax(logits);
  }
  const std::vector<float> probs = sampling_distribution(logits, opts);
  // Inverse CDF over the kept tokens; rounding can leave the total a hair under u, so the last
  // token with nonzero probability is the fallback.
  const double u = double(rng.uniform());
  double cdf = 0;
  uint32_t last = 0;
  for (size_t i = 0; i < probs.size(); ++i) {
    if (probs[i] <= 0) continue;
    last = uint32_t(i);
    cdf += double(probs[i]);
    if (u < cdf) return last;
  }
  return last;
}

std::vector<uint32_t> generate_tokens(LlamaModel& model, std::span<const uint32_t> prompt,
                                      const GenerateOptions& opts, const std::function<void(uint32_t)>& on_token) {
  opts.sampling.validate();
  if (prompt.empty()) throw Error("generation needs a prompt of at least one token");
  if (opts.max_tokens < 0) throw Error(str("--max-tokens ", opts.max_tokens, " must be >= 0"));
  const int64_t T = model.config().seq_len, V = model.config().vocab_size;
  if (opts.sample_vocab < 0 || opts.sample_vocab > V)
    throw Error(str("the tokenizer's vocabulary of ", opts.sample_vocab, " does not fit the model's of ", V));
  // Padding ids past the tokenizer's vocabulary have logits too; no tokenizer can decode them.
  const int64_t Vs = opts.sample_vocab > 0 ? opts.sample_vocab : V;
  for (uint32_t id : prompt)
    if (int64_t(id) >= V) throw Error(str("prompt token ", id, " is outside the model's vocabulary of ", V));
  std::vector<uint32_t> context(prompt.begin(), prompt.end()), out;
  std::vector<int32_t> window(size_t(T), 0);
  Rng rng(opts.seed);
  while (int64_t(out.size()) < opts.max_tokens) {
    const int64_t n = std::min<int64_t>(T, int64_t(context.size()));
    std::fill(window.begin(), window.end(), 0);
    std::copy(context.end() - n, context.end(), window.begin());
    const std::vector<float> logits = model.forward_logits(window.data(), 1);
    const uint32_t id = sample_token(std::span(logits).subspan(size_t((n - 1) * V), size_t(Vs)), opts.sampling, rng);
    out.push_back(id);
    context.push_back(id);
    if (on_token) on_token(id);
    if (opts.stop_token && id == *opts.stop_token) break;
  }
  return out;
}

}  // namespace cairn
