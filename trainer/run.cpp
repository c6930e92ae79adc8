// TrainingRun (see run.h): the run loop with its metrics record, the run directory's files,
// checkpoints' save and resume, the checkpoint directory's lock, stop signals and the failed-write
// protocol. Rank 0 chooses and verifies a checkpoint and tells the others, so every rank loads the
// same one or every rank fails with the same message.
#include "trainer/run.h"

#include <signal.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>

#include "comm/collective_error.h"
#include "model/weights_io.h"
#include "trainer/checkpoint.h"
#include "trainer/config.h"
#include "trainer/metrics.h"
#include "util/error.h"
#include "util/file_io.h"

namespace cairn {

namespace fs = std::filesystem;

namespace {

// A failed write sends the user into the checkpoint directory, where the LOCK file stays (as after
// every run: it records the last holder); say that it no longer locks anything.
std::string lock_file_note(const std::string& checkpoint_dir) {
  return str(" ('", checkpoint_dir, "/LOCK' stays behind as after every run, naming the last holder; it locks nothing ",
             "once this run has ended)");
}

// Keys that fix the shapes of the parameters and of the optimizer state, or what the parameters
// mean (the norm layout): they must match to resume. A key absent from an older checkpoint's
// config had its default value there.
const char* const kShapeKeys[] = {"model.vocab_size", "model.dim",    "model.n_layers", "model.n_heads",
                                  "model.n_kv_heads", "model.head_dim",
                                  "model.ffn_dim",    "model.seq_len", "model.tie_embeddings", "model.linear",
                                  "model.rank",       "model.density", "model.norm_layout", "model.mix_ln_alpha",
                                  "model.norm_scaling", "optimizer.name"};

// The global batch is micro_batch x grad_accum x ranks, so a different rank count changes it
// without any config key changing. When only the rank count changed since the checkpoint (the same
// run continued on the nodes that remain), grad_accum takes up the difference if a whole number
// does; if none does, resuming is refused, naming the settings. When the user changed micro_batch or
// grad_accum themselves, their batch stands, with a warning if it differs. Returns the grad_accum
// to use and what to tell the user ("" for nothing).
std::pair<int64_t, std::string> grad_accum_for_ranks(const TrainingConfig& saved, int64_t saved_world,
                                                     const TrainingConfig& t, int64_t world) {
  const int64_t saved_micro = saved.micro_batch, saved_accum = saved.grad_accum;
  const int64_t saved_batch = saved_micro * saved_accum * saved_world;
  const int64_t batch = t.micro_batch * t.grad_accum * world;
  if (saved_batch == batch) return {t.grad_accum, ""};
  const std::string was = str("the checkpoint's global batch is ", saved_batch, " sequences per step (", saved_world,
                              " ranks x micro_batch ", saved_micro, " x grad_accum ", saved_accum, ")");
  if (t.micro_batch != saved_micro || t.grad_accum != saved_accum)
    return {t.grad_accum, str("WARNING: ", was, "; this run's is ", batch, " (", world, " x micro_batch ", t.micro_batch,
                              " x grad_accum ", t.grad_accum, "): to continue the same run, set training.micro_batch x "
                              "training.grad_accum x ranks = ", saved_batch)};
  if (saved_batch % (t.micro_batch * world) != 0)
    throw Error(str(was, "; on ", world, " ranks no whole training.grad_accum keeps it (", saved_batch, " / (", world,
                    " x micro_batch ", t.micro_batch, ") is not an integer): set training.micro_batch and "
                    "training.grad_accum so that micro_batch x grad_accum x ", world, " = ", saved_batch,
                    ", or resume on a rank count that divides it"));
  const int64_t accum = saved_batch / (t.micro_batch * world);
  return {accum, str("continuing on ", world, " ranks instead of ", saved_world, ": training.grad_accum ", t.grad_accum,
                     " -> ", accum, " keeps the global batch of ", saved_batch, " sequences per step")};
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// Rank 0's string on every rank.
std::string share(Communicator& comm, std::string s) {
  int64_t n = int64_t(s.size());
  comm.broadcast(&n, sizeof n, 0);
  s.resize(size_t(n));
  if (n) comm.broadcast(s.data(), n, 0);
  return s;
}

}  // namespace

RunFiles::RunFiles(const std::string& run_dir)
    : dir(run_dir),
      metrics(run_dir + "/metrics.jsonl"),
      tensorboard(run_dir + "/tb"),
      weights(run_dir + "/model.h5"),
      complete(run_dir + "/COMPLETE"),
      stopped(run_dir + "/STOPPED") {}

TrainingRun::TrainingRun(Trainer& trainer) : trainer_(trainer), comm_(trainer.comm()) {}

TrainingRun::~TrainingRun() = default;

int64_t TrainingRun::completed_steps(const std::string& run_dir, Communicator& comm) {
  int64_t step = -1;
  if (comm.rank() == 0) {
    const std::string file = RunFiles(run_dir).complete;
    std::ifstream in(file);
    if (in) {
      const auto j = nlohmann::json::parse(in, nullptr, false);
      if (j.is_discarded() || !j.contains("step") || !j["step"].is_number_integer())
        throw Error(str("'", file, "' is damaged (no integer \"step\"): remove it and continue with --resume auto"));
      step = j["step"].get<int64_t>();
    }
  }
  comm.broadcast(&step, sizeof step, 0);
  return step;
}

std::string TrainingRun::checkpoint_dir() const {
  const TrainConfig& cfg = trainer_.config();
  return cfg.checkpoint.dir.empty() ? cfg.output.run_dir + "/checkpoints" : cfg.checkpoint.dir;
}

std::string TrainingRun::save_checkpoint() {
  CheckpointInfo info;
  info.state = trainer_.state();
  info.interval = interval_;
  info.world_size = comm_.size();
  info.optimizer = trainer_.optimizer().name();
  info.optimizer_steps = trainer_.optimizer().steps();
  info.config_toml = config_to_toml(trainer_.config());
  return checkpoint_save(checkpoint_dir(), info, trainer_.model(), trainer_.optimizer(), comm_,
                         trainer_.config().checkpoint.keep);
}

TrainingRun::StopFlags TrainingRun::stop_flags(bool output_failed) {
  int64_t flags[2] = {StopSignals::received() ? 1 : 0, output_failed ? 1 : 0};
  comm_.all_reduce(flags, 2, ReduceOp::max);
  return {flags[0] != 0, flags[1] != 0};
}

void TrainingRun::load_checkpoint(const std::string& path) {
  const auto start = std::chrono::steady_clock::now();
  std::string dir, error;
  if (comm_.rank() == 0) {
    try {
      dir = checkpoint_resolve(path);
      checkpoint_verify(dir, checkpoint_read_info(dir));
    } catch (const Error& e) {
      error = e.what();
    }
  }
  error = share(comm_, error);
  if (!error.empty()) throw Error(error);
  load_verified(share(comm_, dir), start);
  if (comm_.rank() != 0) return;
  // A roll-back: the newer checkpoints of the abandoned trajectory stay (nothing is deleted
  // unasked), but `--resume auto` takes the newest.
  const auto existing = checkpoint_list(checkpoint_dir());
  if (existing.empty()) return;
  const std::string newest = fs::path(existing.front()).filename().string();
  if (checkpoint_step(newest) > trainer_.state().step)
    std::cerr << "WARNING: '" << checkpoint_dir() << "' holds checkpoints newer than the resumed step "
              << trainer_.state().step
              << " (newest: " << newest << "); after a stop, --resume auto would continue from them, not from this "
              << "run's: move them away if they belong to an abandoned run" << std::endl;
}

bool TrainingRun::resume(const std::string& spec) {
  if (spec != "auto") {
    load_checkpoint(spec);
    return true;
  }
  const auto start = std::chrono::steady_clock::now();
  std::string dir, error;
  if (comm_.rank() == 0) {
    try {
      dir = checkpoint_find_latest(checkpoint_dir(), std::cerr);
      if (dir.empty()) std::cout << "resume: no checkpoint under '" << checkpoint_dir() << "': starting fresh" << std::endl;
    } catch (const Error& e) {
      error = e.what();
    }
  }
  error = share(comm_, error);
  if (!error.empty()) throw Error(error);
  dir = share(comm_, dir);
  if (dir.empty()) return false;
  load_verified(dir, start);
  return true;
}

void TrainingRun::lock_checkpoint_dir() {
  if (locked_) return;
  std::string error;
  if (comm_.rank() == 0) {
    try {
      const std::string dir = checkpoint_dir();
      std::error_code ec;
      fs::create_directories(dir, ec);
      if (ec) throw Error(str("cannot create checkpoint directory '", dir, "': ", ec.message()));
      const std::string file = (fs::path(dir) / "LOCK").string();
      auto lock = std::make_unique<FileLock>(file);
      if (lock->status() == FileLock::Status::held_elsewhere)
        throw Error(str("checkpoint directory '", dir, "' is in use by another cairn run (",
                        lock->detail().empty() ? "holder not recorded" : lock->detail(), ", per ", file,
                        "): wait for it to end or stop it, or give this run another output.run_dir (or checkpoint.dir)"));
      if (lock->status() == FileLock::Status::unsupported)
        std::cerr << "WARNING: cannot lock '" << file << "' (" << lock->detail()
                  << "): this file system has no flock(); make sure no other run uses '" << dir << "'" << std::endl;
      else
        lock_ = std::move(lock);
    } catch (const Error& e) {
      error = e.what();
    }
  }
  error = share(comm_, error);
  if (!error.empty()) throw Error(error);
  locked_ = true;
}

// Saves of a fresh run would interleave with the checkpoints already there, and a later
// `--resume auto` would continue whichever is newest, possibly the other run.
void TrainingRun::check_checkpoint_dir_unused() {
  std::string error;
  if (comm_.rank() == 0) {
    const auto existing = checkpoint_list(checkpoint_dir());
    if (!existing.empty())
      error = str("checkpoint directory '", checkpoint_dir(), "' already holds checkpoints of an earlier run (newest: ",
                  fs::path(existing.front()).filename().string(), "): continue that run with --resume auto, or start ",
                  "this one in another output.run_dir (or checkpoint.dir), or move them away");
  }
  error = share(comm_, error);
  if (!error.empty()) throw Error(error);
}

// Reads everything into host memory and checks it before the first change to the trainer.
void TrainingRun::load_verified(const std::string& dir, std::chrono::steady_clock::time_point start) {
  const TrainConfig& cfg = trainer_.config();  // the grown model's after the deepen() below
  const CheckpointInfo info = checkpoint_read_info(dir);
  // The checkpoint's config; a key an older checkpoint lacks had its default value there.
  TrainConfig saved;
  config_apply_toml(saved, info.config_toml, str("the config stored in checkpoint '", dir, "'"));
  // A run that grew in place (growth.at_tokens) before this checkpoint resumes as the grown model.
  // Not grow(): no growth happens now, and its message would claim one at step 0.
  const int64_t growth_step = trainer_.growth_step();
  const bool grown = growth_step >= 0 && info.state.step >= growth_step &&
                     saved.model.n_layers == cfg.model.n_layers * cfg.growth.factor;
  if (grown) trainer_.deepen(cfg.growth.factor);
  const bool reset = cfg.training.reset_optimizer;
  std::vector<std::string> must_match(std::begin(kShapeKeys), std::end(kShapeKeys));
  if (reset) std::erase(must_match, "optimizer.name");  // a fresh optimizer may differ
  for (const auto& d : config_diff(saved, cfg, must_match))
    throw Error(str("checkpoint '", dir, "' was saved with ", d.key, " = ", d.a, " but this run has ", d.key, " = ", d.b,
                    ": the model and optimizer must match to resume (use the checkpoint's config)"));
  // Before anything changes: a rank count that cannot keep the global batch is refused here.
  const auto [grad_accum, batch_note] = grad_accum_for_ranks(saved.training, info.world_size, cfg.training, comm_.size());
  // What the user changed, said below (grad_accum's own adjustment has its note).
  std::vector<std::string> listed;  // where the outputs go may change freely
  for (const auto& k : config_key_names())
    if (k.rfind("output.", 0) != 0 && k.rfind("checkpoint.", 0) != 0) listed.push_back(k);
  std::string changed;
  for (const auto& d : config_diff(saved, cfg, listed)) changed += str("\n  ", d.key, ": ", d.a, " -> ", d.b);
  std::vector<std::vector<float>> opt_state;
  if (!reset) opt_state = checkpoint_read_optimizer(dir, info, trainer_.optimizer());
  load_model_weights(trainer_.model(), (fs::path(dir) / "model.h5").string());  // checks all, then copies
  // training.reset_optimizer: weights and counters continue, the optimizer starts fresh.
  if (!reset)
    checkpoint_commit_optimizer(trainer_.optimizer(), opt_state, info.optimizer_steps, trainer_.model().backend());
  trainer_.set_state(info.state);
  trainer_.set_grad_accum(grad_accum);
  interval_ = info.interval;
  resumed_ = true;
  if (comm_.rank() != 0) return;
  std::cout << "resumed from " << dir << ": step " << info.state.step << ", " << info.state.samples << " samples, "
            << info.state.tokens
            << " tokens (saved by " << info.world_size << " rank" << (info.world_size == 1 ? "" : "s") << ", now "
            << comm_.size() << "; verified and read in " << seconds_since(start) << " s)\n";
  if (grown)
    std::cout << "G_stack: the checkpoint is past this run's growth at step " << growth_step << " (growth.at_tokens = "
              << cfg.growth.at_tokens << "): continuing as the grown " << cfg.model.n_layers << "-layer model ("
              << trainer_.model().params().count() << " parameters), LR "
              << trainer_.schedule().stages().back().describe() << "\n";
  if (!changed.empty()) std::cout << "note: this run's config differs from the checkpoint's in:" << changed << "\n";
  if (!batch_note.empty()) std::cout << batch_note << "\n";
  std::cout << std::flush;
}

void TrainingRun::run() {
  const TrainConfig& cfg = trainer_.config();  // the grown model's once it grows
  const TrainerState& state = trainer_.state();
  const RunFiles files(cfg.output.run_dir);
  const std::string& dir = files.dir;
  lock_checkpoint_dir();
  struct Unlock {  // however run() ends; a later run() in this process may take it again
    TrainingRun& t;
    ~Unlock() {
      t.lock_.reset();
      t.locked_ = false;
    }
  } unlock{*this};
  if (!resumed_) check_checkpoint_dir_unused();
  if (state.step > cfg.training.steps)
    throw Error(str("the resumed checkpoint is at step ", state.step, ", past training.steps = ", cfg.training.steps,
                    ": set training.steps to at least ", state.step));
  std::string error;
  if (comm_.rank() == 0) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) error = str("cannot create run directory '", dir, "': ", ec.message());
    fs::remove(files.complete, ec);  // written again only when this run finishes
    fs::remove(files.stopped, ec);   // this run's stop report, if it stops
  }
  throw_if_any_failed(comm_, error);
  trainer_.print_startup();
  std::optional<MetricsLog> log;
  const MetricsLog::Options outputs{files.metrics, cfg.output.tensorboard ? files.tensorboard : "", state.step,
                                    cfg.training.steps, cfg.output.progress};
  throw_if_any_failed(comm_, capture_error([&] { log.emplace(outputs, comm_.rank() == 0); }));
  // Rank 0's first failed write of an output (a full disk): every rank stops at the step boundary.
  std::string output_error;
  std::string ckpt;  // the checkpoint written at the current step, if any
  // A failed checkpoint throws on every rank alike (checkpoint_save fails together).
  const auto checkpoint_or_stop = [&] {
    try {
      return save_checkpoint();
    } catch (const CollectiveError& e) {
      throw CollectiveError(str("the checkpoint of step ", state.step, " could not be written: ", e.what(),
                                "; training stopped; the earlier checkpoints in '", checkpoint_dir(),
                                "' are intact: make room, then continue with `cairn train ... --resume auto`",
                                lock_file_note(checkpoint_dir())));
    }
  };
  const StopSignals signals;
  const int64_t first_step = state.step;
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  auto interval_start = start;
  int64_t interval_tokens = 0;
  while (state.step < cfg.training.steps) {
    const StepResult r = trainer_.advance();
    const bool grow_due = trainer_.growth_due();
    interval_tokens += trainer_.global_batch() * cfg.model.seq_len;
    if (!r.skipped) {
      interval_.loss += r.loss;
      ++interval_.steps;
    }
    const auto now = clock::now();
    const double elapsed = std::chrono::duration<double>(now - start).count();
    const bool last = state.step == cfg.training.steps;
    // The growth step always ends a record, and it is the small model's: its mean loss covers no
    // step of the grown model, and its val_loss (evaluated even off eval_every) is the small
    // model's last. The model grows after it; the next record is the grown model's.
    const bool do_eval =
        cfg.training.eval_every > 0 && (state.step % cfg.training.eval_every == 0 || last || grow_due);
    if (state.step % cfg.training.log_every == 0 || last || do_eval || grow_due) {
      const double dt = std::chrono::duration<double>(now - interval_start).count();
      const double tps = double(interval_tokens) / dt;
      nlohmann::json rec = {{"step", state.step},
                            {"tokens", state.tokens},
                            {"total_tokens", cfg.training.tokens_before + state.tokens},
                            {"loss", interval_.steps ? interval_.loss / double(interval_.steps) : double(r.loss)},
                            {"lr", r.lr},
                            {"grad_norm", r.grad_norm},
                            {"tokens_per_s", tps},
                            {"mfu", tps * trainer_.flops_per_token() / (trainer_.peak().flops * double(comm_.size()))},
                            {"elapsed_s", elapsed},
                            {"eta_s", elapsed / double(state.step - first_step) * double(cfg.training.steps - state.step)}};
      if (state.skipped_steps) rec["skipped_steps"] = state.skipped_steps;
      if (do_eval) {
        const std::vector<std::string> names = trainer_.validation_names();
        for (size_t i = 0; i < names.size(); ++i) {
          const double v = trainer_.validate(i);
          if (i == 0) rec["val_loss"] = v;
          if (names.size() > 1) rec["val_loss/" + names[i]] = v;
        }
      }
      if (comm_.size() > 1) {
        rec["comm_overlap"] = trainer_.grad_sync().last_overlap();
        rec["comm_wait_s"] = trainer_.grad_sync().last_wait_s();
      }
      if (output_error.empty()) output_error = capture_error([&] { log->log(rec); });
      interval_start = clock::now();
      interval_tokens = 0;
      interval_ = {};
    }
    if (grow_due) trainer_.grow(cfg.growth.factor);
    if (cfg.training.check_every > 0 && (state.step % cfg.training.check_every == 0 || last))
      trainer_.check_consistency();
    log->progress(state.step, elapsed);
    ckpt.clear();
    // The last step too: a later run with more training.steps then continues from the end.
    if (cfg.checkpoint.every > 0 && (state.step % cfg.checkpoint.every == 0 || last)) {
      const auto t0 = clock::now();
      ckpt = checkpoint_or_stop();
      log->message(str("checkpoint: ", ckpt, " (written in ", std::chrono::duration<double>(clock::now() - t0).count(), " s)"));
    }
    const StopFlags stop = stop_flags(!output_error.empty());
    if (stop.output_failed) stop_after_failed_write(output_error, ckpt);
    if (stop.signal) {
      if (ckpt.empty()) ckpt = checkpoint_or_stop();
      const std::string stopped = str("stopped by signal at step ", state.step, ": checkpoint ", ckpt,
                                      "; continue with `cairn train ... --resume auto`");
      // First into a file: a launcher that exits on the signal (mpirun on a second SIGTERM) takes
      // the ranks' output with it, so a job script reports the stop from there (slurm/cairn.sbatch).
      // The checkpoint is written: a failure here is reported, but the stop stays a clean one.
      const std::string report_error =
          comm_.rank() == 0 ? capture_error([&] { write_file_atomic(files.stopped, stopped + "\n"); }) : "";
      log->message(stopped);
      if (!report_error.empty()) log->message(str("warning: no stop report in the run directory: ", report_error));
      stopped_ = true;
      return;
    }
  }
  if (comm_.rank() == 0)
    error = capture_error([&] {
      save_model_weights(trainer_.model(), files.weights, config_to_toml(cfg));
      const nlohmann::json done = {{"step", state.step}, {"samples", state.samples}, {"tokens", state.tokens},
                                   {"skipped_steps", state.skipped_steps}, {"weights", "model.h5"}};
      write_file_atomic(files.complete, done.dump() + "\n");
    });
  stop_after_failed_write(error, ckpt);
  log->message(str("done: ", state.step, " steps, ", state.tokens, " tokens in ",
                   format_duration(std::chrono::duration<double>(clock::now() - start).count())));
}

void TrainingRun::stop_after_failed_write(const std::string& my_error, std::string saved) {
  std::string error;
  for (const auto& e : comm_.all_gather_strings(my_error))
    if (error.empty()) error = e;
  if (error.empty()) return;
  std::string outcome;
  const std::string ckpt_error = saved.empty() ? capture_error([&] { saved = save_checkpoint(); }) : "";
  if (ckpt_error.empty())
    outcome = str("checkpoint ", saved, " holds step ", trainer_.state().step,
                  ": make room, then continue with `cairn train ... --resume auto`");
  else
    outcome = str("the checkpoint attempt failed too (", ckpt_error, "); `--resume auto` continues from the newest ",
                  "complete checkpoint in '", checkpoint_dir(), "' once there is room");
  throw CollectiveError(
      str(error, "; training stopped at step ", trainer_.state().step, ": ", outcome, lock_file_note(checkpoint_dir())));
}

// ---- stop signals ---------------------------------------------------------------------------

namespace {
std::atomic<int> g_stop_signal{0};
struct sigaction g_old_term, g_old_usr1;
extern "C" void on_stop_signal(int sig) { g_stop_signal.store(sig); }
}  // namespace

StopSignals::StopSignals() {
  g_stop_signal.store(0);
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  // Interrupted I/O resumes. A repeated signal changes nothing: under a scheduler one stop request
  // arrives several times (Slurm signals every process of the job, and the launcher forwards its
  // own copy), and ending the rank on the second would lose the checkpoint being written. Slurm
  // and mpirun follow with SIGKILL when they stop waiting.
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, &g_old_term);
  sigaction(SIGUSR1, &sa, &g_old_usr1);
}

StopSignals::~StopSignals() {
  // After a stop request, more copies of it may still be on their way (see above): they are the
  // request already acted on, so they are ignored rather than ending the stopping process non-zero.
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  const bool stopping = received() != 0;
  sigaction(SIGTERM, stopping ? &ignore : &g_old_term, nullptr);
  sigaction(SIGUSR1, stopping ? &ignore : &g_old_usr1, nullptr);
}

int StopSignals::received() { return g_stop_signal.load(); }

}  // namespace cairn
