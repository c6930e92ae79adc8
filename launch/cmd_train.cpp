// `cairn train`: one data-parallel rank of a training run (alone, or under mpirun / srun).
#include <cstdlib>
#include <iostream>

#include "comm/collective_error.h"
#include "comm/communicator.h"
#include "launch/cli.h"
#include "launch/commands.h"
#include "launch/plot.h"
#include "trainer/config.h"
#include "trainer/run.h"
#include "trainer/trainer.h"
#include "util/error.h"

namespace cairn {

static const CommandSpec kTrainSpec{
    "train",
    "--config FILE [--set section.key=value ...] [--resume auto|PATH] [--dry-run]",
    "Trains a LLaMA-style model on a token dataset. Under mpirun or srun every rank runs this\n"
    "command and they train one model data-parallel; only rank 0 prints and writes metrics.",
    {{"config", "FILE", "TOML run configuration (configs/ has presets)"},
     {"set", "KEY=VALUE", "override one config key, e.g. --set training.steps=200", true},
     {"resume", "auto|PATH", "continue from the newest checkpoint (or start fresh), or from PATH"},
     {"dry-run", "", "print the memory plan and whether it fits, then exit (0: fits, 1: would be refused); "
                     "allocates no model and leaves the run directory alone"}},
    "SIGTERM or SIGUSR1 make every rank stop at the next step boundary, save a checkpoint and exit 0\n"
    "(under mpirun send SIGUSR1: mpirun forwards it, SIGTERM it turns into a kill). A finished run\n"
    "writes <run_dir>/COMPLETE; a stopped one does not, so a job script can requeue until it exists.\n"
    "With --resume auto, a run whose COMPLETE records training.steps exits 0 at once (nothing to do);\n"
    "given more training.steps it continues from the checkpoint of its last step.\n"
    "Without --resume, a checkpoint directory that already holds checkpoints is refused (another run's).\n"
    "One run at a time per checkpoint directory: a second one fails at start (lock file LOCK in it).\n"
    "Before allocating, each rank plans its memory (parameters, gradients, optimizer state, activations,\n"
    "logits) and a run that does not fit the host's available memory (MemAvailable, cgroup limit) or the\n"
    "GPU's free memory is refused, naming the largest training.micro_batch that fits.\n"
    "CAIRN_MEMORY_LIMIT_BYTES=N replaces the measured available memory (host or GPU) with N bytes.\n"
    "A stopped run also writes its stop message to <run_dir>/STOPPED (for job scripts whose launcher\n"
    "exits on the signal and loses the ranks' output). CAIRN_PROGRESS=0 turns the progress bar off\n"
    "(output.progress = false).\n"};

int cmd_train(int argc, char** argv) {
  const Args args = parse_command(kTrainSpec, argc, argv, {}, "\nconfig keys (defaults):\n" + config_describe());
  if (args.help()) return 0;
  TrainConfig cfg = config_load(args.get("config"), args.all("set"));
  // Set by launch/cairn-mpirun.sh and slurm/launch.sh when their own output is not a terminal:
  // mpirun gives each rank a pty, so the bar's escape codes would fill the log file.
  if (const char* p = std::getenv("CAIRN_PROGRESS"); p && std::string(p) == "0") cfg.output.progress = false;
  CommOptions comm_options;
  comm_options.timeout_seconds = cfg.training.comm_timeout_s;
  comm_options.hierarchical = cfg.training.grad_hierarchical;
  auto comm = make_communicator(&argc, &argv, comm_options);
  try {
    if (comm->rank() == 0 && comm->size() > 1) {
      const auto hosts = comm->all_gather_strings(comm->host());
      std::cout << "cairn train: " << comm->size() << " ranks (" << comm->name() << ")\n";
      for (size_t r = 0; r < hosts.size(); ++r) std::cout << "  rank " << r << " on " << hosts[r] << "\n";
    } else if (comm->size() > 1) {
      comm->all_gather_strings(comm->host());
    }
    if (args.has("dry-run")) {
      const MemoryCheck check = plan_training_memory(cfg, *comm);
      if (comm->rank() == 0) std::cout << describe_memory_check(check) << std::flush;
      return check.refusal.empty() ? 0 : 1;
    }
    // `--resume auto` on a finished run (a resubmitted job): nothing to do at the same
    // training.steps; with more, continue from the checkpoint of its last step.
    const bool resume_auto = args.get("resume") == "auto";
    const int64_t done = resume_auto ? TrainingRun::completed_steps(cfg.output.run_dir, *comm) : -1;
    if (done >= 0 && done == cfg.training.steps) {
      if (comm->rank() == 0)
        std::cout << "cairn train: run " << cfg.output.run_dir << " is already complete (" << done
                  << " steps, see its COMPLETE): nothing to do; raise training.steps to continue it" << std::endl;
      return 0;
    }
    Trainer trainer(cfg, *comm);
    TrainingRun run(trainer);
    run.lock_checkpoint_dir();  // before a resume reads a checkpoint another run may be writing
    const bool resumed = args.has("resume") && run.resume(args.get("resume"));
    if (done >= 0 && !resumed)  // --resume auto found nothing: it would train the finished run again from step 0
      throw Error(str("run '", cfg.output.run_dir, "' finished ", done, " steps (its COMPLETE) but '",
                      run.checkpoint_dir(), "' holds no checkpoint to continue from (was checkpoint.every 0?): ",
                      "continue from its weights with model.init_from instead, or use another output.run_dir"));
    run.run();
    if (run.stopped()) return 0;
    const RunFiles files(trainer.config().output.run_dir);
    const std::string& dir = files.dir;
    std::string error;
    if (comm->rank() == 0) {
      std::cout << "metrics: " << files.metrics << "\n";
      if (trainer.config().output.tensorboard)
        std::cout << "TensorBoard: tensorboard --logdir " << files.tensorboard << "\n";
      if (trainer.config().output.plot) {
        error = capture_error([&] { plot_metrics({files.metrics}, dir + "/loss.png", PlotOptions{}); });
        if (error.empty()) std::cout << "loss curves: " << dir << "/loss.png\n";
      }
      std::cout << "final weights: " << files.weights << std::endl;
    }
    // The run is complete either way, but a failed plot fails the command on every rank.
    if (!error.empty()) error += str(" (the run itself is complete: draw the plot later with `cairn plot ", dir, "`)");
    throw_if_any_failed(*comm, error);
  } catch (const CollectiveError&) {
    // Every rank stopped at the same point: each ends normally (MPI finalized), rank 0 says why.
    if (comm->rank() != 0) return 1;
    throw;
  } catch (const std::exception& e) {
    // One rank failing must end every rank, never leave the others waiting in a collective.
    if (comm->size() > 1) comm->abort(str("cairn train: rank ", comm->rank(), ": error: ", e.what()));
    throw;
  }
  return 0;
}

}  // namespace cairn
