// Trainer's checkpoint methods (see trainer.h): saving the run's state, verifying and restoring it,
// and agreeing across ranks on a stop signal. Rank 0 chooses and verifies a checkpoint and tells
// the others, so every rank loads the same one or every rank fails with the same message.
#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>
#include <sstream>

#include "model/weights_io.h"
#include "trainer/checkpoint.h"
#include "trainer/config.h"
#include "trainer/trainer.h"
#include "util/error.h"

namespace cairn {

namespace fs = std::filesystem;

namespace {

// Keys that fix the shapes of the parameters and of the optimizer state, or what the parameters
// mean (the norm layout): they must match to resume. A key absent from an older checkpoint's
// config had its default value there.
const char* const kShapeKeys[] = {"model.vocab_size", "model.dim",    "model.n_layers", "model.n_heads",
                                  "model.n_kv_heads", "model.head_dim",
                                  "model.ffn_dim",    "model.seq_len", "model.tie_embeddings", "model.linear",
                                  "model.rank",       "model.density", "model.norm_layout", "model.mix_ln_alpha",
                                  "model.norm_scaling", "optimizer.name"};

// "section.key" -> value text of a config_to_toml() rendering.
std::map<std::string, std::string> config_entries(const std::string& toml) {
  std::map<std::string, std::string> out;
  std::istringstream is(toml);
  std::string section;
  for (std::string line; std::getline(is, line);) {
    if (line.empty()) continue;
    if (line.front() == '[') {
      section = line.substr(1, line.find(']') - 1);
      continue;
    }
    const auto eq = line.find(" = ");
    if (eq == std::string::npos) continue;
    out[section.empty() ? line.substr(0, eq) : section + "." + line.substr(0, eq)] = line.substr(eq + 3);
  }
  return out;
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

std::string Trainer::checkpoint_dir() const {
  return cfg_.checkpoint.dir.empty() ? cfg_.output.run_dir + "/checkpoints" : cfg_.checkpoint.dir;
}

std::string Trainer::save_checkpoint() {
  CheckpointInfo info;
  info.step = state_.step;
  info.samples = state_.samples;
  info.tokens = state_.tokens;
  info.skipped_steps = state_.skipped_steps;
  info.interval_loss = state_.interval_loss;
  info.interval_steps = state_.interval_steps;
  info.world_size = comm_.size();
  info.optimizer = optimizer_->name();
  info.optimizer_steps = optimizer_->steps();
  info.config_toml = config_to_toml(cfg_);
  return checkpoint_save(checkpoint_dir(), info, *model_, *optimizer_, comm_, cfg_.checkpoint.keep);
}

Trainer::StopFlags Trainer::stop_flags(bool output_failed) {
  int64_t flags[2] = {StopSignals::received() ? 1 : 0, output_failed ? 1 : 0};
  comm_.all_reduce(flags, 2, ReduceOp::max);
  return {flags[0] != 0, flags[1] != 0};
}

void Trainer::load_checkpoint(const std::string& path) {
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
  if (checkpoint_step(newest) > state_.step)
    std::cerr << "WARNING: '" << checkpoint_dir() << "' holds checkpoints newer than the resumed step " << state_.step
              << " (newest: " << newest << "); after a stop, --resume auto would continue from them, not from this "
              << "run's: move them away if they belong to an abandoned run" << std::endl;
}

bool Trainer::resume(const std::string& spec) {
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

void Trainer::lock_checkpoint_dir() {
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
void Trainer::check_checkpoint_dir_unused() {
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
void Trainer::load_verified(const std::string& dir, std::chrono::steady_clock::time_point start) {
  const CheckpointInfo info = checkpoint_read_info(dir);
  const auto saved = config_entries(info.config_toml);
  // A run that grew in place (growth.at_tokens) before this checkpoint resumes as the grown model.
  // Not grow(): no growth happens now, and its message would claim one at step 0.
  const auto saved_layers = saved.find("model.n_layers");
  const bool grown = growth_step_ >= 0 && info.step >= growth_step_ && saved_layers != saved.end() &&
                     saved_layers->second == std::to_string(cfg_.model.n_layers * cfg_.growth.factor);
  if (grown) deepen(cfg_.growth.factor);
  const auto now = config_entries(config_to_toml(cfg_));
  const TrainConfig fresh;
  const auto defaults = config_entries(config_to_toml(fresh));
  const bool reset = cfg_.training.reset_optimizer;
  for (const char* key : kShapeKeys) {
    if (reset && std::string(key) == "optimizer.name") continue;  // a fresh optimizer may differ
    const auto s = saved.find(key);
    const std::string sv = s == saved.end() ? defaults.at(key) : s->second, nv = now.at(key);
    if (sv != nv)
      throw Error(str("checkpoint '", dir, "' was saved with ", key, " = ", sv, " but this run has ", key, " = ", nv,
                      ": the model and optimizer must match to resume (use the checkpoint's config)"));
  }
  std::vector<std::vector<float>> opt_state;
  if (!reset) opt_state = checkpoint_read_optimizer(dir, info, *optimizer_);
  load_model_weights(*model_, (fs::path(dir) / "model.h5").string());  // checks all, then copies
  // training.reset_optimizer: weights and counters continue, the optimizer starts fresh.
  if (!reset) checkpoint_commit_optimizer(*optimizer_, opt_state, info.optimizer_steps, model_->backend());
  state_.step = info.step;
  state_.samples = info.samples;
  state_.tokens = info.tokens;
  state_.skipped_steps = info.skipped_steps;
  state_.interval_loss = info.interval_loss;
  state_.interval_steps = info.interval_steps;
  resumed_ = true;
  if (comm_.rank() != 0) return;
  std::cout << "resumed from " << dir << ": step " << info.step << ", " << info.samples << " samples, " << info.tokens
            << " tokens (saved by " << info.world_size << " rank" << (info.world_size == 1 ? "" : "s") << ", now "
            << comm_.size() << "; verified and read in " << seconds_since(start) << " s)\n";
  if (grown)
    std::cout << "G_stack: the checkpoint is past this run's growth at step " << growth_step_ << " (growth.at_tokens = "
              << cfg_.growth.at_tokens << "): continuing as the grown " << cfg_.model.n_layers << "-layer model ("
              << model_->params().count() << " parameters), LR " << schedule_->stages().back().describe() << "\n";
  std::string changed;
  for (const auto& [k, v] : now) {
    if (k.rfind("output.", 0) == 0 || k.rfind("checkpoint.", 0) == 0) continue;
    const auto s = saved.find(k);
    if (s == saved.end() || s->second != v) changed += str("\n  ", k, ": ", s == saved.end() ? "(absent)" : s->second, " -> ", v);
  }
  if (!changed.empty()) std::cout << "note: this run's config differs from the checkpoint's in:" << changed << "\n";
  // The global batch is micro_batch x grad_accum x ranks: a different rank count changes it without
  // any config key changing, and the run silently stops being the one that was checkpointed.
  const auto saved_int = [&](const char* key, int64_t fallback) {
    const auto it = saved.find(key);
    return it == saved.end() ? fallback : std::stoll(it->second);
  };
  const int64_t saved_batch = saved_int("training.micro_batch", cfg_.training.micro_batch) *
                              saved_int("training.grad_accum", cfg_.training.grad_accum) * info.world_size;
  const int64_t batch = cfg_.training.micro_batch * cfg_.training.grad_accum * comm_.size();
  if (saved_batch != batch)
    std::cout << "WARNING: the global batch changes from " << saved_batch << " sequences per step (saved by "
              << info.world_size << " rank" << (info.world_size == 1 ? "" : "s") << ") to " << batch << " ("
              << comm_.size() << " x micro_batch " << cfg_.training.micro_batch << " x grad_accum "
              << cfg_.training.grad_accum << "): to continue the same run, set training.micro_batch x "
              << "training.grad_accum x ranks = " << saved_batch << "\n";
  std::cout << std::flush;
}

}  // namespace cairn
