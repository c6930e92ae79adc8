// The training loop of one data-parallel rank. A run is a function of (config, seed, data,
// world size): the global batch of step s is the global samples [s·GB, (s+1)·GB) with
// GB = micro_batch · grad_accum · world size; micro-step a of rank r takes the micro_batch samples
// starting at s·GB + (a·world + r)·micro_batch. So N ranks with micro-batch b see exactly what
// one rank with micro-batch N·b sees. The trainer talks to other ranks only through its
// Communicator, and for the gradients through the one comm/ picks from it (GradientCommunicator:
// NCCL on GPUs).
// The run around the steps (run directory, checkpoints, stop signals) is TrainingRun's (run.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "comm/grad_sync.h"
#include "data/mixture.h"
#include "data/sampler.h"
#include "data/token_dataset.h"
#include "model/llama.h"
#include "trainer/memory_plan.h"
#include "trainer/optim/optimizer.h"
#include "trainer/peak_flops.h"
#include "trainer/schedule.h"
#include "trainer/train_config.h"
#include "trainer/trainer_state.h"
#include "trainer/validation.h"

namespace cairn {

struct StepResult {
  float loss = 0;       // mean training loss over the global batch
  double grad_norm = 0; // before clipping
  float lr = 0;
  bool skipped = false;
};

class Trainer {
 public:
  // Opens the dataset, builds and initializes the model and the optimizer. Throws Error for a
  // bad config or dataset.
  // backend: what to train on; nullptr takes it from cfg.device (tests pass stand-ins).
  Trainer(TrainConfig cfg, Communicator& comm, const Backend* backend = nullptr);
  ~Trainer();

  // One optimizer step, then the growth when the step crosses growth.at_tokens (exposed for tests;
  // TrainingRun::run() records and validates between the two).
  StepResult train_step();
  // train_step without the growth: afterwards growth_due() says whether this step crossed
  // growth.at_tokens, and the caller grows the model (grow).
  StepResult advance();
  bool growth_due() const { return grow_due_; }
  // With growth.at_tokens: the step after which the model grows; -1 without.
  int64_t growth_step() const { return growth_step_; }
  // Collective: mean validation loss over the first training.eval_windows windows (all when
  // fewer; NaN without a validation split) of validation set `set`: the training datasets'
  // validation splits in configuration order, then data.validate's. The same for any rank count
  // and micro_batch (evaluate_windows).
  double validate(size_t set = 0);
  // Names (file stems) of the validation sets.
  std::vector<std::string> validation_names() const;
  // G_stack in place: the model becomes factor·n_layers layers deep (layer i a copy of layer
  // i mod L), with a fresh optimizer and the schedule restarted from warmup over the remaining
  // steps; config().model.n_layers reports the grown depth (and so does a checkpoint's config).
  // train_step and TrainingRun::run() call it after the step whose tokens cross growth.at_tokens.
  void grow(int64_t factor);
  // grow() without its announcement: also how a resume past the growth step rebuilds the grown model.
  void deepen(int64_t factor);
  // LR of a step: the configured schedule, or with growth.at_tokens the small model's stage
  // [0, growth step) and the grown model's [growth step, training.steps), each from warmup.
  float lr_at(int64_t step) const { return schedule_->lr(step); }
  // Compares a checksum of every parameter row across ranks; throws Error naming the first row
  // that differs (ranks must hold identical parameters).
  void check_consistency();

  const TrainConfig& config() const { return cfg_; }
  const TrainerState& state() const { return state_; }
  // A checkpoint's counters (TrainingRun's resume, after it restored the weights and optimizer state).
  void set_state(const TrainerState& state) { state_ = state; }
  // Micro-steps per step from now on: TrainingRun's resume on another rank count keeps the
  // checkpoint's global batch with it (nothing allocated depends on grad_accum).
  void set_grad_accum(int64_t grad_accum) { cfg_.training.grad_accum = grad_accum; }
  LlamaModel& model() { return *model_; }
  Optimizer& optimizer() { return *optimizer_; }
  GradientSync& grad_sync() { return *sync_; }
  const StagedSchedule& schedule() const { return *schedule_; }
  Communicator& comm() { return comm_; }
  int64_t global_batch() const;
  // Training FLOPs per token of the current model, and one rank's peak (for the MFU).
  double flops_per_token() const { return flops_per_token_; }
  const PeakFlops& peak() const { return peak_; }

  // Collective (rank 0 prints, trainer_startup.cpp): what a run is about to do, before its first step.
  void print_startup();

 private:
  void attach_model();  // gradient sync and optimizer of the current model_

  TrainConfig cfg_;
  Communicator& comm_;
  std::unique_ptr<TrainingData> data_;
  std::vector<ValidationSet> val_sets_;
  std::vector<std::string> no_validation_;  // datasets without a usable validation split, described
  std::string token_check_;                 // what the start-of-training token check did
  std::unique_ptr<LlamaModel> model_;
  // What the gradients travel on: comm_, or with device = "cuda" and several ranks a device
  // communicator over the GPUs' gradient buffers (comm_ still carries everything else). Declared
  // before sync_, whose requests it must outlive.
  std::unique_ptr<GradientCommunicator> grad_comm_;
  std::unique_ptr<GradientSync> sync_;
  bool sync_armed_ = false;
  std::unique_ptr<Optimizer> optimizer_;
  std::unique_ptr<StagedSchedule> schedule_;
  // Non-finite steps skipped in a row (training.skip_nonfinite), counted from this process's start.
  static constexpr int kMaxSkipsInARow = 10;
  int skips_in_a_row_ = 0;
  int64_t growth_step_ = -1;  // with growth.at_tokens: the step after which the model grows
  bool grow_due_ = false;     // the last advance() crossed growth.at_tokens
  TrainerState state_;
  std::vector<int32_t> inputs_, targets_, window_;
  double flops_per_token_ = 0;
  PeakFlops peak_;
  MemoryCheck memory_;  // the plan checked at start
  std::string init_weights_;  // the weights file model.init_from named
  std::vector<std::string> config_notes_;  // deprecated keys rewritten (config_upgrade), said at start
};

// Global L2 norm of grads[0, n); when clip > 0 and the norm exceeds it, scales grads to norm clip.
// Returns the norm before clipping.
double clip_gradients(const Backend& be, float* grads, int64_t n, float clip);

// `cairn train --dry-run`: validates cfg, opens its datasets (for the vocabulary) and checks the
// memory plan (check_memory) on the configured backend; allocates nothing for the model. Collective.
MemoryCheck plan_training_memory(TrainConfig cfg, Communicator& comm);

}  // namespace cairn
