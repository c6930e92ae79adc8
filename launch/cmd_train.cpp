// `cairn train`: one data-parallel rank of a training run (alone, or under mpirun / srun).
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "comm/collective_error.h"
#include "comm/communicator.h"
#include "launch/cli.h"
#include "launch/commands.h"
#include "launch/plot.h"
#include "trainer/config.h"
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

// The step <run_dir>/COMPLETE records, or -1 without one; rank 0 reads it, every rank learns it.
static int64_t completed_steps(const std::string& run_dir, Communicator& comm) {
  int64_t step = -1;
  if (comm.rank() == 0) {
    std::ifstream in(run_dir + "/COMPLETE");
    if (in) {
      const auto j = nlohmann::json::parse(in, nullptr, false);
      if (j.is_discarded() || !j.contains("step") || !j["step"].is_number_integer())
        throw Error(str("'", run_dir, "/COMPLETE' is damaged (no integer \"step\"): remove it and continue with --resume auto"));
      step = j["step"].get<int64_t>();
    }
  }
  comm.broadcast(&step, sizeof step, 0);
  return step;
}

int cmd_train(int argc, char** argv) {
  Args args(kTrainSpec, argc, argv, 2);
  if (args.help()) {
    std::cout << command_help(kTrainSpec) << "\nconfig keys (defaults):\n" << config_describe();
    return 0;
  }
  if (!args.positional().empty()) throw Error(str("unexpected argument '", args.positional()[0], "'"));
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
    const int64_t done = resume_auto ? completed_steps(cfg.output.run_dir, *comm) : -1;
    if (done >= 0 && done == cfg.training.steps) {
      if (comm->rank() == 0)
        std::cout << "cairn train: run " << cfg.output.run_dir << " is already complete (" << done
                  << " steps, see its COMPLETE): nothing to do; raise training.steps to continue it" << std::endl;
      return 0;
    }
    Trainer trainer(cfg, *comm);
    trainer.lock_checkpoint_dir();  // before a resume reads a checkpoint another run may be writing
    const bool resumed = args.has("resume") && trainer.resume(args.get("resume"));
    if (done >= 0 && !resumed)  // --resume auto found nothing: it would train the finished run again from step 0
      throw Error(str("run '", cfg.output.run_dir, "' finished ", done, " steps (its COMPLETE) but '",
                      trainer.checkpoint_dir(), "' holds no checkpoint to continue from (was checkpoint.every 0?): ",
                      "continue from its weights with model.init_from instead, or use another output.run_dir"));
    trainer.run();
    if (trainer.stopped()) return 0;
    const std::string dir = trainer.config().output.run_dir;
    std::string error;
    if (comm->rank() == 0) {
      std::cout << "metrics: " << dir << "/metrics.jsonl\n";
      if (trainer.config().output.tensorboard) std::cout << "TensorBoard: tensorboard --logdir " << dir << "/tb\n";
      if (trainer.config().output.plot) {
        error = capture_error([&] { plot_metrics({dir + "/metrics.jsonl"}, dir + "/loss.png", PlotOptions{}); });
        if (error.empty()) std::cout << "loss curves: " << dir << "/loss.png\n";
      }
      std::cout << "final weights: " << dir << "/model.h5" << std::endl;
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
