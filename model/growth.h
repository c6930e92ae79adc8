// G_stack depthwise growth (Du et al. 2024, "Stacking Your Transformers"): an L-layer model becomes
// a g·L-layer model of the same width by repeating the whole stack in order — target layer i is a
// copy of source layer i mod L — with embeddings, final norm and LM head copied unchanged. Works
// on rows by name, so every linear kind (dense, low-rank, SLTrain values and supports) grows alike.
// The grown model keeps the norm keys: a Mix-LN model stays Mix-LN with the same mix_ln_alpha, so
// its first floor(alpha·g·L) layers are Post-LN, and a layer whose layout differs from its source
// layer's takes the source's first and second norm gains as its own first and second.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "model/llama.h"

namespace cairn {

// The config of the grown model: n_layers · factor, everything else unchanged. Throws Error for a
// factor < 1.
ModelConfig grown_config(const ModelConfig& src, int64_t factor);

// Copies src into dst: "model.layers.{i}.<rest>" (parameter and buffer rows) from source layer
// i mod L, every other row by identical name, bit for bit. dst must be src's config with
// n_layers = g·L (g ≥ 1 an integer); any other difference (width, heads, FFN, vocabulary,
// sequence length, linear kind) is an Error naming it.
void grow_depthwise(const LlamaModel& src, LlamaModel& dst);


// The layers of the grown model (factor g) that are Post-LN where their source layer i mod L is
// Pre-LN, or the reverse (none unless model.norm_layout = "mix").
std::vector<int64_t> layers_changing_layout(const ModelConfig& src, int64_t factor);

// The paper's growth timing for a target of `params` parameters trained on `tokens` tokens:
// log10(d) = 0.88·log10(N) + 163.27/log10(C) − 5.74 with C = 6·N·D. Returns d (tokens of the
// small model before growth).
double gstack_growth_tokens(double params, double tokens);
// The target sizes the paper fitted that formula on (410M, 1.1B and 3B parameters) and checked it
// at (7B): outside them its timing is an extrapolation.
inline constexpr std::pair<double, double> kGstackFittedParams{4.1e8, 7e9};

}  // namespace cairn
