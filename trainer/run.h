// A training run: the lifecycle around Trainer's steps. TrainingRun owns the run directory
// (output.run_dir: metrics.jsonl, tb/, model.h5, COMPLETE, STOPPED) and the checkpoint directory
// (checkpoint.dir, or <run_dir>/checkpoints, with its LOCK); it decides when to log, evaluate,
// check consistency and checkpoint, builds the metrics record, resumes from verified checkpoints,
// turns SIGTERM and SIGUSR1 into a clean stop, and stops every rank when an output cannot be
// written. The Trainer holds the model, optimizer, data and the step; TrainingRun only drives it.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "comm/communicator.h"
#include "trainer/trainer.h"
#include "trainer/trainer_state.h"
#include "util/file_lock.h"

namespace cairn {

// The files of a run directory (docs/formats.md, "Run directory").
struct RunFiles {
  explicit RunFiles(const std::string& run_dir);
  std::string dir;
  std::string metrics;      // metrics.jsonl
  std::string tensorboard;  // tb/ (output.tensorboard)
  std::string weights;      // model.h5: the final weights of a finished run
  std::string complete;     // COMPLETE: written last by a finished run
  std::string stopped;      // STOPPED: the stop report of a run stopped by a signal
};

class TrainingRun {
 public:
  // The run of `trainer` (which must outlive it) in trainer.config().output.run_dir.
  explicit TrainingRun(Trainer& trainer);
  ~TrainingRun();
  TrainingRun(const TrainingRun&) = delete;
  TrainingRun& operator=(const TrainingRun&) = delete;

  // Trains until training.steps, logging and validating as configured, checkpointing every
  // checkpoint.every steps and at the last step; saves the final weights and writes <run_dir>/COMPLETE. On SIGTERM or
  // SIGUSR1 (on any rank) all ranks stop at the next step boundary, save a checkpoint, write the
  // stop message to <run_dir>/STOPPED too and return with stopped() true. A run that did not
  // resume refuses (Error, nothing written) a checkpoint directory that already holds checkpoints:
  // they are another run's. Takes the checkpoint directory's lock (lock_checkpoint_dir) if not yet
  // held and releases it when it returns or throws.
  // A failed write of an output (metrics.jsonl, the TensorBoard file, model.h5, COMPLETE, a
  // checkpoint: a full disk) stops every rank at the step boundary: after a checkpoint attempt,
  // run() throws Error on every rank naming the file and the reason.
  void run();
  bool stopped() const { return stopped_; }

  // Checkpoints (format in checkpoint.h). All collective.
  // Writes the trainer's current state under checkpoint_dir(); returns the checkpoint's directory.
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

  // Collective: the step <run_dir>/COMPLETE records, or -1 without one; rank 0 reads it, every
  // rank learns it. Throws Error (on rank 0) for a damaged file.
  static int64_t completed_steps(const std::string& run_dir, Communicator& comm);

 private:
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

  Trainer& trainer_;
  Communicator& comm_;
  LogInterval interval_;  // of the metrics record; saved with each checkpoint
  bool stopped_ = false;
  bool resumed_ = false;  // a checkpoint was loaded
  std::unique_ptr<FileLock> lock_;  // rank 0's lock of checkpoint_dir()
  bool locked_ = false;             // on every rank: lock_checkpoint_dir() succeeded
};

// While one exists, SIGTERM and SIGUSR1 only set a flag (received() returns the signal number)
// instead of ending the process, however often they come (SIGKILL still ends it). The previous
// handlers come back on destruction, unless one of the two was received: then both stay ignored
// for the rest of the process (late copies of the stop request must not end it non-zero).
// One at a time per process.
class StopSignals {
 public:
  StopSignals();
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  static int received();
};

}  // namespace cairn
