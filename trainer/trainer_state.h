// Where a run stands: what a checkpoint's trainer.json records beside the weights and the
// optimizer state, so that a resumed run continues exactly (trainer/checkpoint.h). Kept apart from
// trainer.h so that the checkpoint format needs none of the trainer's headers.
#pragma once

#include <cstdint>

namespace cairn {

// The trainer's counters (Trainer::state()).
struct TrainerState {
  int64_t step = 0;            // optimizer steps completed
  int64_t samples = 0;         // global samples consumed (the data cursor)
  int64_t tokens = 0;          // training tokens consumed by this run (growth does not reset it)
  int64_t skipped_steps = 0;   // non-finite steps skipped (training.skip_nonfinite)
};

// The log interval in progress (steps since the last metrics record; TrainingRun's), so that the
// first record after a resume averages the same steps as the uninterrupted run's.
struct LogInterval {
  double loss = 0;     // sum of the losses of its non-skipped steps
  int64_t steps = 0;   // its non-skipped steps
};

}  // namespace cairn
