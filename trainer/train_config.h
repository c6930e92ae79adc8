// Everything a training run is configured by. Every field has exactly one TOML key (see
// config.cpp's key table), which is how runs are configured, overridden with --set, printed at
// start and stored in checkpoints.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "comm/wire_precision.h"
#include "model/llama.h"
#include "util/choice.h"

namespace cairn {

// The choice keys' values (util/choice.h: each enum's names are its TOML strings).
enum class Device { cpu, cuda };
template <>
struct ChoiceNames<Device> {
  static constexpr std::array<std::pair<std::string_view, Device>, 2> names{{{"cpu", Device::cpu}, {"cuda", Device::cuda}}};
};
enum class OptimizerName { adamw, fira, galore };
template <>
struct ChoiceNames<OptimizerName> {
  static constexpr std::array<std::pair<std::string_view, OptimizerName>, 3> names{
      {{"adamw", OptimizerName::adamw}, {"fira", OptimizerName::fira}, {"galore", OptimizerName::galore}}};
};
// Fira's residual: "code" G − alpha·back(R) (the official code), "paper" G − back(R).
enum class ResidualForm { code, paper };
template <>
struct ChoiceNames<ResidualForm> {
  static constexpr std::array<std::pair<std::string_view, ResidualForm>, 2> names{
      {{"code", ResidualForm::code}, {"paper", ResidualForm::paper}}};
};
enum class ScheduleKind { cosine, constant, rewarm, infinite };
template <>
struct ChoiceNames<ScheduleKind> {
  static constexpr std::array<std::pair<std::string_view, ScheduleKind>, 4> names{
      {{"cosine", ScheduleKind::cosine}, {"constant", ScheduleKind::constant}, {"rewarm", ScheduleKind::rewarm},
       {"infinite", ScheduleKind::infinite}}};
};
enum class CooldownShape { cosine, linear, inv_sqrt };
template <>
struct ChoiceNames<CooldownShape> {
  static constexpr std::array<std::pair<std::string_view, CooldownShape>, 3> names{
      {{"cosine", CooldownShape::cosine}, {"linear", CooldownShape::linear}, {"inv_sqrt", CooldownShape::inv_sqrt}}};
};
// GEMM math: fp32, or TF32 / bf16 tensor cores with fp32 master weights (device = "cuda").
enum class Precision { fp32, tf32, bf16 };
template <>
struct ChoiceNames<Precision> {
  static constexpr std::array<std::pair<std::string_view, Precision>, 3> names{
      {{"fp32", Precision::fp32}, {"tf32", Precision::tf32}, {"bf16", Precision::bf16}}};
};

struct OptimizerConfig {
  OptimizerName name = OptimizerName::adamw;
  float beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f;
  float weight_decay = 0.1f;
  bool decay_norms = false;        // weight decay on RMSNorm gains
  bool decay_embeddings = true;    // weight decay on the embedding and LM head
  float grad_clip = 1.0f;          // global-norm clip; 0 disables
  // Fira / GaLore (low-rank optimizer state for the projection matrices).
  int64_t rank = 128;
  int64_t update_gap = 200;
  float alpha = 0.25f;
  float limiter_gamma = 1.01f;
  ResidualForm residual_form = ResidualForm::code;
};

struct ScheduleConfig {
  ScheduleKind kind = ScheduleKind::cosine;
  float lr = 3e-3f;             // peak learning rate
  float min_lr_ratio = 0.1f;    // cosine / rewarm end (and the infinite anneal's end) at lr·min_lr_ratio
  double warmup = -1;           // a fraction of the stage's steps if < 1, else steps; < 0: the kind's
                                // default (0.01 for rewarm, 0.1 otherwise)
  int64_t stage_start = 0;      // first step of this schedule stage; the stage spans [stage_start, steps)
  float start_lr = -1;          // rewarm: LR at the stage's first step; < 0: lr·min_lr_ratio
  // Infinite schedule: warmup, cooldown to lr·const_lr_ratio, constant, optional anneal.
  double cooldown = 0.1;        // a fraction of the stage's steps if < 1, else steps
  CooldownShape cooldown_shape = CooldownShape::cosine;
  float const_lr_ratio = 0.5f;  // the constant phase's LR as a fraction of lr
  int64_t anneal_start = -1;    // step where the exponential anneal to lr·min_lr_ratio begins; < 0: none
};

struct DataConfig {
  std::string train = "";        // token dataset (HDF5) written by `cairn prepare`
  // Instead of train: several datasets with weights, "path.h5:weight" each (replay mixtures).
  std::vector<std::string> mixture;
  std::vector<std::string> validate;  // extra datasets validated (val_loss/<stem>) but not trained on
  uint64_t seed = 1234;          // data order
};

struct GrowthConfig {
  int64_t at_tokens = 0;         // grow in place when this run's tokens reach this (0: never)
  int64_t factor = 4;            // G_stack factor g: n_layers becomes g·n_layers
};

struct TrainingConfig {
  int64_t micro_batch = 8;       // sequences per rank per micro-step
  int64_t grad_accum = 1;        // micro-steps per optimizer step
  int64_t steps = 1000;          // optimizer steps
  uint64_t seed = 42;            // initialization
  int64_t tokens_before = 0;     // tokens the initial weights have already seen (for total_tokens)
  bool reset_optimizer = false;  // on --resume: start the optimizer state fresh (keep weights and step)
  int64_t log_every = 10;
  int64_t eval_every = 100;      // 0 disables periodic validation
  int64_t eval_windows = 64;     // windows of seq_len + 1 tokens per validation set (all when fewer)
  int64_t eval_batches = 0;      // deprecated (old configs): eval_batches x micro_batch windows; 0: unset
  bool skip_nonfinite = false;   // skip a step with a non-finite loss or gradient instead of stopping
  int64_t threads = 0;           // CPU threads per rank; 0: cores / ranks on this host
  double peak_flops = 0;         // for MFU; 0: a GPU's datasheet peak, else the measured GEMM peak, cached per host (trainer/peak_flops.h)
  Precision precision = Precision::fp32;  // GEMM math: fp32 | tf32 (device = "cuda" only) | bf16
  // Data parallelism.
  bool zero1 = true;             // shard optimizer state by rows across ranks (ZeRO-1)
  double bucket_mb = 4;          // gradient all-reduce bucket size (MiB)
  WirePrecision grad_wire = WirePrecision::fp32;  // gradients between hosts (fp32 sums: comm/wire_precision.h)
  bool grad_hierarchical = false; // reduce within each host before crossing hosts
  int64_t check_every = 100;     // steps between cross-rank parameter checksums (0: off)
  double comm_timeout_s = 600;   // a collective stuck this long ends the job
};

struct OutputConfig {
  std::string run_dir = "runs/default";
  bool plot = true;              // draw loss.png at the end
  bool progress = true;          // live progress bar when stdout is a terminal
  bool tensorboard = true;       // TensorBoard event files in <run_dir>/tb
};

struct CheckpointConfig {
  int64_t every = 0;             // steps between checkpoints; 0: none (a stop signal still writes one)
  int64_t keep = 3;              // newest checkpoints kept; 0 keeps all
  std::string dir = "";          // "": <output.run_dir>/checkpoints
};

struct TrainConfig {
  Device device = Device::cpu;
  ModelConfig model;
  std::string init_from = "";    // key model.init_from: weights file to start from ("": random init)
  OptimizerConfig optimizer;
  ScheduleConfig schedule;
  DataConfig data;
  GrowthConfig growth;
  TrainingConfig training;
  OutputConfig output;
  CheckpointConfig checkpoint;
};

}  // namespace cairn
