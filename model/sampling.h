// Choosing the next token from a row of logits: softmax with a temperature, restricted to the k
// most likely tokens (top-k) and to the smallest set whose probability reaches p (top-p, nucleus),
// drawn with a seeded cairn::Rng so a generation is a function of (model, prompt, options, seed);
// and the generation loop over a LlamaModel.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <vector>

#include "model/llama.h"

#include "util/rng.h"

namespace cairn {

struct SamplingOptions {
  float temperature = 0.8f;  // 0: greedy (argmax); otherwise logits / temperature
  int64_t top_k = 40;        // keep the k most likely tokens; 0 keeps all
  float top_p = 0.95f;       // keep the most likely tokens until their mass reaches p; 1 keeps all
  void validate() const;     // throws Error naming the option (--temperature, --top-k, --top-p)
};

// The distribution sample_token draws from: probabilities [V] summing to 1, zero outside the kept
// set. Temperature 0 puts all mass on the argmax (the lowest id among equal maxima).
std::vector<float> sampling_distribution(std::span<const float> logits, const SamplingOptions& opts);

// One draw from sampling_distribution (one rng.uniform() per call unless temperature is 0, which
// uses no randomness).
uint32_t sample_token(std::span<const float> logits, const SamplingOptions& opts, Rng& rng);

struct GenerateOptions {
  int64_t max_tokens = 128;
  SamplingOptions sampling;
  uint64_t seed = 0;
  std::optional<uint32_t> stop_token;  // generation ends after sampling it (usually EOS)
  int64_t sample_vocab = 0;            // sample only ids below it (the tokenizer's vocabulary, when
                                       // the model's is padded beyond it); 0: the model's vocabulary
};

// Samples up to max_tokens tokens after `prompt` (non-empty, ids < vocab) and returns them,
// calling on_token(id) as each is chosen. The model has a fixed sequence length T and no KV cache:
// each token runs forward_logits on one [1, T] window holding the last <= T tokens left-aligned,
// the positions after them padded (causal attention makes the padding irrelevant to the logits
// read at the last real position). That is O(T) work per token, fine for the small models cairn
// trains on a CPU. Needs model.max_batch() >= 1.
std::vector<uint32_t> generate_tokens(LlamaModel& model, std::span<const uint32_t> prompt,
                                      const GenerateOptions& opts,
                                      const std::function<void(uint32_t)>& on_token = {});

}  // namespace cairn
