// The training loop of one data-parallel rank. A run is a function of (config, seed, data,
// world size): the global batch of step s is the global samples [s·GB, (s+1)·GB) with
// GB = micro_batch · grad_accum · world size; micro-step a of rank r takes the micro_batch samples
// starting at s·GB + (a·world + r)·micro_batch. So N ranks with micro-batch b see exactly what
// one rank with micro-batch N·b sees. The trainer talks to other ranks only through its
// Communicator, and on GPUs through an NCCL communicator it makes from it for the gradients.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "comm/nccl_communicator.h"
#include "data/mixture.h"
#include "data/sampler.h"
#include "data/token_dataset.h"
#include "model/llama.h"
#include "trainer/grad_sync.h"
#include "trainer/memory_plan.h"
#include "trainer/metrics.h"
#include "trainer/optim/optimizer.h"
#include "trainer/peak_flops.h"
#include "trainer/schedule.h"
#include "trainer/train_config.h"
#include "trainer/validation.h"
#include "util/file_lock.h"

namespace cairn {

// Where a run stands; everything needed to continue it exactly (with the weights and the
// optimizer state).
struct TrainerState {
  int64_t step = 0;            // optimizer steps completed
  int64_t samples = 0;         // global samples consumed (the data cursor)
  int64_t tokens = 0;          // training tokens consumed by this run (growth does not reset it)
  int64_t skipped_steps = 0;   // non-finite steps skipped (training.skip_nonfinite)
  // The log interval in progress (steps since the last metrics record), so that the first record
  // after a resume averages the same steps as the uninterrupted run's.
  double interval_loss = 0;     // sum of the losses of its non-skipped steps
  int64_t interval_steps = 0;   // its non-skipped steps
};

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

  // Trains until training.steps, logging and validating as configured, checkpointing every
  // checkpoint.every steps and at the last step; saves the final weights and writes <run_dir>/COMPLETE. On SIGTERM or
  // SIGUSR1 (on any rank) all ranks stop at the next step boundary, save a checkpoint and return
  // with stopped() true. A run that did not resume refuses (Error, nothing written) a checkpoint
  // directory that already holds checkpoints: they are another run's. Takes the checkpoint
  // directory's lock (lock_checkpoint_dir) if not yet held and releases it when it returns or throws.
  // A failed write of an output (metrics.jsonl, the TensorBoard file, model.h5, COMPLETE, a
  // checkpoint: a full disk) stops every rank at the step boundary: after a checkpoint attempt,
  // run() throws Error on every rank naming the file and the reason.
  void run();
  bool stopped() const { return stopped_; }

  // Checkpoints (trainer_checkpoint.cpp; format in checkpoint.h). All collective.
  // Writes the current state under checkpoint_dir(); returns the checkpoint's directory.
  std::string save_checkpoint();
  // Verifies a checkpoint (a step directory, or a checkpoint directory with a `latest` pointer),
  // checks that it fits this model and optimizer, and restores weights, optimizer state and
  // counters. Throws Error naming the file and the problem; nothing is changed on error.
  void load_checkpoint(const std::string& path);
  // `--resume`: "auto" loads the newest loadable checkpoint under checkpoint_dir() (skipping a
  // damaged newer one with a warning) and returns true, or returns false when there is none; any
  // other value is a path for load_checkpoint.
  bool resume(const std::string& spec);
  // checkpoint.dir, or <output.run_dir>/checkpoints.
  std::string checkpoint_dir() const;
  // Collective: rank 0 creates checkpoint_dir() and takes an exclusive lock on its LOCK file (see
  // util/file_lock.h), recording its pid and host there, so that two runs (or the lingering ranks
  // of a killed job) never write one checkpoint directory at once. Throws Error on every rank,
  // naming the directory and the recorded holder, when another process holds it. Does nothing
  // when already held. `cairn train` calls it before resuming; run() releases it.
  void lock_checkpoint_dir();
  // One optimizer step (exposed for tests).
  StepResult train_step();
  // Mean validation loss over training.eval_batches micro-batches (NaN without a validation split)
  // of validation set `set`: the training datasets' validation splits in configuration order,
  // then data.validate's.
  double validate(size_t set = 0);
  // Names (file stems) of the validation sets.
  std::vector<std::string> validation_names() const;
  // G_stack in place: the model becomes factor·n_layers layers deep (layer i a copy of layer
  // i mod L), with a fresh optimizer and the schedule restarted from warmup over the remaining
  // steps; config().model.n_layers reports the grown depth (and so does a checkpoint's config).
  // train_step calls it when this run's tokens cross growth.at_tokens.
  void grow(int64_t factor);
  // LR of a step: the configured schedule, or with growth.at_tokens the small model's stage
  // [0, growth step) and the grown model's [growth step, training.steps), each from warmup.
  float lr_at(int64_t step) const { return schedule_->lr(step); }
  // Compares a checksum of every parameter row across ranks; throws Error naming the first row
  // that differs (ranks must hold identical parameters).
  void check_consistency();

  const TrainConfig& config() const { return cfg_; }
  const TrainerState& state() const { return state_; }
  LlamaModel& model() { return *model_; }
  Optimizer& optimizer() { return *optimizer_; }
  GradientSync& grad_sync() { return *sync_; }
  int64_t global_batch() const;

 private:
  void print_startup();
  void attach_model();  // gradient sync and optimizer of the current model_
  // grow() without its announcement: also how a resume past the growth step rebuilds the grown model.
  void deepen(int64_t factor);

  // Collective: whether any rank received a stop signal, and whether any rank failed to write an output.
  struct StopFlags {
    bool signal = false, output_failed = false;
  };
  StopFlags stop_flags(bool output_failed);
  // Collective: `my_error` is this rank's failed write of an output ("" for none). When any rank
  // has one, every rank attempts a checkpoint (unless `saved` is one of the current step) and
  // throws Error naming the failed file, the reason and where the run can continue from.
  void stop_after_failed_write(const std::string& my_error, std::string saved);
  void load_verified(const std::string& dir, std::chrono::steady_clock::time_point start);
  // Collective: throws Error when checkpoint_dir() holds checkpoints (for a run that did not resume).
  void check_checkpoint_dir_unused();

  TrainConfig cfg_;
  Communicator& comm_;
  std::unique_ptr<TrainingData> data_;
  std::vector<ValidationSet> val_sets_;
  std::vector<std::string> no_validation_;  // datasets without a usable validation split, described
  std::unique_ptr<LlamaModel> model_;
  // With device = "cuda" and several ranks: NCCL over the GPUs' gradient buffers (comm_, on the
  // host, still carries everything else). Declared before sync_, whose requests it must outlive.
  std::unique_ptr<NcclCommunicator> device_comm_;
  std::unique_ptr<GradientSync> sync_;
  bool sync_armed_ = false;
  std::unique_ptr<Optimizer> optimizer_;
  std::unique_ptr<StagedSchedule> schedule_;
  // Non-finite steps skipped in a row (training.skip_nonfinite), counted from this process's start.
  static constexpr int kMaxSkipsInARow = 10;
  int skips_in_a_row_ = 0;
  int64_t growth_step_ = -1;  // with growth.at_tokens: the step after which the model grows
  TrainerState state_;
  std::vector<int32_t> inputs_, targets_, window_;
  double flops_per_token_ = 0;
  PeakFlops peak_;
  MemoryCheck memory_;  // the plan checked at start
  bool stopped_ = false;
  bool resumed_ = false;  // a checkpoint was loaded
  std::unique_ptr<FileLock> lock_;  // rank 0's lock of checkpoint_dir()
  bool locked_ = false;             // on every rank: lock_checkpoint_dir() succeeded
  std::string init_weights_;  // the weights file model.init_from named
};

// Global L2 norm of grads[0, n); when clip > 0 and the norm exceeds it, scales grads to norm clip.
// Returns the norm before clipping.
double clip_gradients(const Backend& be, float* grads, int64_t n, float clip);

struct LowRankConfig;
// Fira/GaLore settings from the [optimizer] section (throws Error naming a bad key).
LowRankConfig lowrank_config(const OptimizerConfig& o);

// `cairn train --dry-run`: validates cfg, opens its datasets (for the vocabulary) and checks the
// memory plan (check_memory) on the configured backend; allocates nothing for the model. Collective.
MemoryCheck plan_training_memory(TrainConfig cfg, Communicator& comm);

// Builds the optimizer named by cfg.optimizer.name for the given owned rows.
std::unique_ptr<Optimizer> make_optimizer(const TrainConfig& cfg, const ParamTable& table,
                                          std::vector<int> owned_rows, const Backend& be);

}  // namespace cairn
