// The trainer: its assembly, the step, growth, validation and the consistency check (see trainer.h).
#include "trainer/trainer.h"

#include <algorithm>
#include <cmath>
#include <iostream>
#include <numeric>
#include <thread>
#include <tuple>

#include "data/dataset_check.h"
#include "model/growth.h"
#include "model/hf_import.h"
#include "model/weights_io.h"
#include "trainer/checkpoint.h"
#include "trainer/config.h"
#include "trainer/optim/make_optimizer.h"
#include "util/error.h"

namespace cairn {

namespace {

// training.precision → the CUDA backend's math mode.
CudaMath cuda_math(Precision precision) {
  switch (precision) {
    case Precision::tf32: return CudaMath::tf32;
    case Precision::bf16: return CudaMath::bf16;
    case Precision::fp32: break;
  }
  return CudaMath::fp32;
}

}  // namespace

double clip_gradients(const Backend& be, float* grads, int64_t n, float clip) {
  const double norm = std::sqrt(be.sum_squares(grads, n));
  // PyTorch's clip_grad_norm_: scale by clip / (norm + 1e-6) when that is below 1.
  const double scale = clip / (norm + 1e-6);
  if (clip > 0 && scale < 1.0) be.scale_inplace(grads, float(scale), n);
  return norm;
}

// The model's vocabulary: the configured one, or the dataset's when model.vocab_size = 0.
static TrainConfig resolve(TrainConfig cfg, const TrainingData& data) {
  const auto& ds = *data.datasets().front();
  if (cfg.model.vocab_size == 0) cfg.model.vocab_size = ds.vocab_size();
  if (ds.vocab_size() > cfg.model.vocab_size)
    throw Error(str("dataset '", ds.path(), "' has vocabulary ", ds.vocab_size(), " but model.vocab_size is ",
                    cfg.model.vocab_size, ": set model.vocab_size = 0 (take the dataset's) or >= ", ds.vocab_size()));
  return cfg;
}

// device and training.precision's backend.
const Backend& configured_backend(const TrainConfig& cfg) {
  if (cfg.device == Device::cuda) return cuda_backend(cuda_math(cfg.training.precision));
  return cpu_backend(cfg.training.precision == Precision::bf16 ? CpuMath::bf16 : CpuMath::fp32);
}

MemoryCheck plan_training_memory(TrainConfig cfg, Communicator& comm) {
  config_validate(cfg);
  const auto data = make_training_data(cfg.data.train, cfg.data.mixture, cfg.model.seq_len, cfg.data.seed);
  cfg = resolve(cfg, *data);
  return check_memory(cfg, configured_backend(cfg), comm);
}

// model.init_from: the stored architecture must be the configured one (a file with more layers
// also holds every row of a shallower model, so names and shapes alone would not catch it).
// "hf:DIR" was resolved against DIR/config.json with the config (config_resolve_hf_model), and
// its import checks every tensor. Returns what it read.
static std::string init_from_weights(LlamaModel& model, const TrainConfig& cfg) {
  if (const std::string dir = hf_dir_of(cfg.init_from); !dir.empty()) {
    hf_load_weights(model, dir);
    return cfg.init_from;
  }
  const std::string file = checkpoint_weights_path(cfg.init_from);
  TrainConfig saved, run = cfg;
  config_apply_toml(saved, read_weights_config(file), file + " (stored config)");
  // Compare the resolved head layout: n_kv_heads = 0 and head_dim = 0 mean n_heads and dim / n_heads.
  for (TrainConfig* c : {&saved, &run}) {
    c->model.n_kv_heads = c->model.kv_heads();
    c->model.head_dim = c->model.head_size();
  }
  std::vector<std::string> keys = {"model.n_layers",   "model.dim",     "model.n_heads",        "model.n_kv_heads",
                                    "model.head_dim",   "model.ffn_dim", "model.vocab_size",     "model.linear",
                                    "model.tie_embeddings", "model.norm_layout", "model.norm_scaling"};
  if (saved.model.norm_layout == NormLayout::mix || run.model.norm_layout == NormLayout::mix)
    keys.push_back("model.mix_ln_alpha");  // unused by Pre-LN
  for (const auto& d : config_diff(saved, run, keys))
    throw Error(str("model.init_from = '", file, "' was saved with ", d.key, " = ", d.a, " but this run has ", d.key,
                    " = ", d.b, ": make the model keys match the architecture the weights were saved with"));
  load_model_weights(model, file);
  return file;
}

Trainer::Trainer(TrainConfig cfg, Communicator& comm, const Backend* backend) : cfg_(std::move(cfg)), comm_(comm) {
  config_validate(cfg_);
  config_notes_ = config_upgrade(cfg_);
  data_ = make_training_data(cfg_.data.train, cfg_.data.mixture, cfg_.model.seq_len, cfg_.data.seed);
  cfg_ = resolve(cfg_, *data_);
  std::vector<std::string> val_paths;
  for (const auto* ds : data_->datasets()) val_paths.push_back(ds->path());
  val_paths.insert(val_paths.end(), cfg_.data.validate.begin(), cfg_.data.validate.end());
  ValidationSets validation = open_validation_sets(val_paths, *data_->datasets().front(), cfg_.model.seq_len);
  val_sets_ = std::move(validation.sets);
  no_validation_ = std::move(validation.unusable);
  // Every id below the vocabulary before the first step, not when its window is drawn hours in.
  std::vector<const TokenDataset*> checked = data_->datasets();
  for (const auto& v : val_sets_)
    if (std::none_of(checked.begin(), checked.end(), [&](const TokenDataset* d) { return d->path() == v.data.path(); }))
      checked.push_back(&v.data);
  token_check_ = verify_datasets(checked, comm_.rank(), comm_.size(), [&](std::vector<int64_t>& v) {
                   comm_.all_reduce(v.data(), int64_t(v.size()), ReduceOp::max);
                 }).describe();

  const int threads = cfg_.training.threads > 0
                          ? int(cfg_.training.threads)
                          : threads_per_rank(comm_, int(std::max(1u, std::thread::hardware_concurrency())));
  cpu_set_threads(threads);

  // The gradients' communicator first: on GPUs it selects this rank's GPU (local rank % GPUs on the
  // host), which the CUDA backend then binds to.
  CommOptions options;
  options.timeout_seconds = cfg_.training.comm_timeout_s;
  grad_comm_ = std::make_unique<GradientCommunicator>(comm_, cfg_.device == Device::cuda, options);
  const Backend& be = backend ? *backend : configured_backend(cfg_);
  // Each bucket's all-reduce waits, on the GPU, for the backward kernels queued before it.
  grad_comm_->set_compute_stream(be.compute_stream());
  // Before anything is allocated: a run that cannot fit is refused now, not killed later.
  memory_ = check_memory(cfg_, be, comm_);
  if (!memory_.refusal.empty()) throw Error(memory_.refusal);
  // Before the model exists: a measurement then has the machine's memory and cores to itself.
  peak_ = resolve_peak_flops(cfg_.training.peak_flops, be, threads);
  model_ = std::make_unique<LlamaModel>(cfg_.model, be, cfg_.training.micro_batch);
  model_->init_weights(cfg_.training.seed);
  if (!cfg_.init_from.empty()) init_weights_ = init_from_weights(*model_, cfg_);
  attach_model();
  if (cfg_.growth.at_tokens > 0) {
    // The step whose tokens cross at_tokens ends the small model's stage.
    const int64_t per_step = global_batch() * cfg_.model.seq_len;
    growth_step_ = (cfg_.growth.at_tokens + per_step - 1) / per_step;
    if (growth_step_ >= cfg_.training.steps)
      throw Error(str("growth.at_tokens = ", cfg_.growth.at_tokens, " is reached at step ", growth_step_,
                      ", not before training.steps = ", cfg_.training.steps, ": lower it or train longer"));
  }
  schedule_ = make_schedule(cfg_.schedule, cfg_.training.steps, growth_step_);

  const int64_t T = cfg_.model.seq_len, B = cfg_.training.micro_batch;
  inputs_.resize(size_t(B * T));
  targets_.resize(size_t(B * T));
  window_.resize(size_t(T + 1));
}

Trainer::~Trainer() = default;

void Trainer::attach_model() {
  const int64_t bucket_floats = int64_t(cfg_.training.bucket_mb * 1024 * 1024 / 4);
  Communicator& grad_comm = grad_comm_->get();
  sync_ = std::make_unique<GradientSync>(grad_comm, model_->params(), model_->grad_data(), bucket_floats,
                                         cfg_.training.zero1,
                                         cfg_.training.grad_wire);
  // One rank has nothing to communicate; without a hook the model may replay its micro-step as a
  // CUDA graph (a hook starts collectives in the middle of backward, which a graph cannot hold).
  if (grad_comm.size() > 1)
    model_->set_grad_ready_hook([this](int64_t offset) {
      if (sync_armed_) sync_->ready_from(offset);
    });
  optimizer_ = make_optimizer(cfg_, model_->params(), sync_->owned_rows(), model_->backend());
  flops_per_token_ = training_flops_per_token(cfg_.model, model_->backend(), cfg_.training.micro_batch * cfg_.model.seq_len);
}

void Trainer::grow(int64_t factor) {
  deepen(factor);
  if (comm_.rank() == 0)
    std::cout << "G_stack: grew to " << cfg_.model.n_layers << " layers at step " << state_.step << " ("
              << state_.tokens << " tokens): " << model_->params().count() << " parameters, fresh optimizer, LR "
              << schedule_->stages().back().describe() << std::endl;
}

void Trainer::deepen(int64_t factor) {
  const ModelConfig grown_cfg = grown_config(cfg_.model, factor);
  auto grown = std::make_unique<LlamaModel>(grown_cfg, model_->backend(), cfg_.training.micro_batch);
  grow_depthwise(*model_, *grown);
  optimizer_.reset();
  sync_.reset();
  model_ = std::move(grown);
  cfg_.model = grown_cfg;
  attach_model();
}

int64_t Trainer::global_batch() const {
  return cfg_.training.micro_batch * cfg_.training.grad_accum * comm_.size();
}

// Splits a window of T + 1 tokens into inputs and shifted targets.
static void split_window(const std::vector<int32_t>& window, int64_t T, int32_t* inputs, int32_t* targets) {
  std::copy_n(window.begin(), T, inputs);
  std::copy_n(window.begin() + 1, T, targets);
}

StepResult Trainer::train_step() {
  const StepResult r = advance();
  if (grow_due_) grow(cfg_.growth.factor);
  return r;
}

StepResult Trainer::advance() {
  const int64_t B = cfg_.training.micro_batch, T = cfg_.model.seq_len, A = cfg_.training.grad_accum;
  const int64_t world = comm_.size(), rank = comm_.rank();
  StepResult res;
  model_->zero_grads();
  double loss_sum = 0;
  for (int64_t a = 0; a < A; ++a) {
    const int64_t first = state_.samples + (a * world + rank) * B;
    for (int64_t b = 0; b < B; ++b) {
      data_->sample(first + b, window_.data());
      split_window(window_, T, inputs_.data() + b * T, targets_.data() + b * T);
    }
    // Communication overlaps the backward of the last micro-step only.
    sync_armed_ = a == A - 1;
    if (sync_armed_) sync_->begin();
    loss_sum += model_->forward_backward(inputs_.data(), targets_.data(), B, 1.0f / float(A));
  }
  sync_armed_ = false;
  sync_->finish();
  double loss = loss_sum / double(A);
  comm_.all_reduce(&loss, 1, ReduceOp::avg);
  const Backend& be = model_->backend();
  const int64_t n = model_->params().total();

  res.loss = float(loss);
  res.grad_norm = clip_gradients(be, model_->grad_data(), n, cfg_.optimizer.grad_clip);
  res.lr = lr_at(state_.step);
  if (!std::isfinite(res.loss) || !std::isfinite(res.grad_norm)) {
    if (!cfg_.training.skip_nonfinite)
      throw Error(str("non-finite ", std::isfinite(res.loss) ? "gradient norm" : "loss", " at step ", state_.step + 1,
                      " (loss ", res.loss, ", gradient norm ", res.grad_norm,
                      "): lower schedule.lr or set training.skip_nonfinite = true to skip such steps"));
    res.skipped = true;
    ++state_.skipped_steps;
    // Skipping leaves the weights as they were, so a streak means they, not a batch, are broken.
    if (++skips_in_a_row_ >= kMaxSkipsInARow)
      throw Error(str(kMaxSkipsInARow, " steps in a row (to step ", state_.step + 1,
                      ") had a non-finite loss or gradient norm: training.skip_nonfinite skips isolated bad "
                      "batches, but this run has diverged; resume from an earlier checkpoint with a lower "
                      "schedule.lr"));
  } else {
    skips_in_a_row_ = 0;
    optimizer_->step(model_->param_span(), model_->grad_span(), res.lr);
    sync_->gather_params(model_->param_data());
    // The gather wrote parameters other ranks updated, outside the backend's own ops.
    if (comm_.size() > 1) be.parameters_changed(model_->param_data(), n);
  }
  ++state_.step;
  state_.samples += global_batch();
  const int64_t tokens_before_step = state_.tokens;
  state_.tokens += global_batch() * T;
  // Growing when the step crosses at_tokens (not whenever tokens >= at_tokens) makes a run resumed
  // after the growth, whose stored config already has the grown depth, not grow again.
  grow_due_ = cfg_.growth.at_tokens > 0 && tokens_before_step < cfg_.growth.at_tokens &&
              state_.tokens >= cfg_.growth.at_tokens;
  return res;
}

std::vector<std::string> Trainer::validation_names() const {
  std::vector<std::string> names;
  for (const auto& v : val_sets_) names.push_back(v.name);
  return names;
}

double Trainer::validate(size_t set) {
  if (set >= val_sets_.size()) return NAN;
  const ValidationSet& v = val_sets_[set];
  const int64_t windows = std::min(cfg_.training.eval_windows, v.split.count);
  return evaluate_windows(*model_, v.data, v.split, windows, cfg_.training.micro_batch, comm_).loss;
}

// FNV-1a over the bytes of each row: cheap, and any bit difference shows.
static std::vector<int64_t> row_hashes(const ParamTable& table, const float* params) {
  std::vector<int64_t> h;
  for (const auto& r : table.rows()) {
    uint64_t x = 1469598103934665603ULL;
    const auto* bytes = reinterpret_cast<const unsigned char*>(params + r.offset);
    for (int64_t i = 0; i < r.numel * 4; ++i) x = (x ^ bytes[i]) * 1099511628211ULL;
    h.push_back(int64_t(x >> 1));
  }
  return h;
}

void Trainer::check_consistency() {
  if (comm_.size() == 1) return;
  const auto& table = model_->params();
  std::vector<float> host(static_cast<size_t>(table.total()));
  model_->backend().copy_to_host(host.data(), model_->param_data(), table.total() * 4);
  const auto mine = row_hashes(table, host.data());
  auto reference = mine;
  comm_.broadcast(reference.data(), int64_t(reference.size() * sizeof(int64_t)), 0);
  int64_t first = int64_t(mine.size());
  for (size_t i = 0; i < mine.size(); ++i)
    if (mine[i] != reference[i]) {
      first = int64_t(i);
      break;
    }
  int64_t min_first = -first;  // the smallest first mismatch over ranks, as a max of negatives
  comm_.all_reduce(&min_first, 1, ReduceOp::max);
  min_first = -min_first;
  if (min_first < int64_t(mine.size()))
    throw Error(str("parameters diverged across ranks at step ", state_.step, ": first differing parameter '",
                    table.row(int(min_first)).name, "'", first == min_first ? str(" (this is rank ", comm_.rank(), ")") : "",
                    "; the job cannot continue: resume from the last checkpoint"));
}

}  // namespace cairn
