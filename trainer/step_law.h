// Step Law ("Predictable Scale: Part I", Li et al. 2025): the peak learning rate and the batch size
// that its fit predicts for a model of N non-embedding parameters trained on D tokens, with AdamW,
// dense models, a cosine schedule. cairn prints them as suggestions (`cairn plan`) and hints at
// training start when schedule.lr is far from them; nothing is changed automatically.
#pragma once

#include <cstdint>
#include <string>

#include "trainer/train_config.h"

namespace cairn {

struct StepLaw {
  double lr;            // η = 1.79·N^−0.713·D^0.307
  double batch_tokens;  // B = 0.58·D^0.571, in tokens
};

// Throws Error unless both are positive and finite.
StepLaw step_law(double non_embedding_params, double tokens);

// The tokens a run trains on: training.steps × micro_batch × grad_accum × ranks × seq_len.
double run_tokens(const TrainConfig& cfg, int64_t ranks);

// A start-up hint when schedule.lr is more than 3x away from the Step Law suggestion for this
// run's model and tokens (with the caveat that low-rank weights and Fira/GaLore may differ);
// "" when it is within that factor.
std::string step_law_hint(const TrainConfig& cfg, int64_t ranks);

}  // namespace cairn
