// Optimizers see ParamTable rows. Each rank constructs its optimizer for the rows it owns
// (all rows on one rank; a balanced share under ZeRO-1) and updates only those rows of the flat
// parameter buffer. State lives inside the optimizer and is exposed as named tensors so that
// checkpoints can save and restore it exactly.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "model/param_table.h"

namespace cairn {

// One named piece of optimizer state, e.g. "exp_avg/model.layers.0.self_attn.q_proj.weight".
struct StateTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::span<float> data;
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  virtual std::string name() const = 0;
  // Updates the owned rows of params from grads (already averaged over ranks and clipped).
  // lr is the scheduled learning rate for this step.
  virtual void step(std::span<float> params, std::span<const float> grads, float lr) = 0;
  // Every state tensor (moments, projections, limiter norms, ...) for checkpointing.
  virtual std::vector<StateTensor> state() = 0;
  // Steps taken so far (bias correction, projection refresh); restored on resume.
  virtual int64_t steps() const = 0;
  virtual void set_steps(int64_t n) = 0;
  // Bytes of optimizer state held by this rank.
  virtual int64_t state_bytes() const = 0;
};

}  // namespace cairn
