// Everything a training run is configured by. Every field has exactly one TOML key (see
// config.cpp's key table), which is how runs are configured, overridden with --set, printed at
// start and stored in checkpoints.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/llama.h"

namespace cairn {

struct OptimizerConfig {
  std::string name = "adamw";  // "adamw" | "fira" | "galore"
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
  std::string residual_form = "code";  // "code": G − alpha·back(R); "paper": G − back(R)
};

struct ScheduleConfig {
  std::string kind = "cosine";  // "cosine" | "constant" | "rewarm" | "infinite"
  float lr = 3e-3f;             // peak learning rate
  float min_lr_ratio = 0.1f;    // cosine / rewarm end (and the infinite anneal's end) at lr·min_lr_ratio
  double warmup = -1;           // a fraction of the stage's steps if < 1, else steps; < 0: the kind's
                                // default (0.01 for rewarm, 0.1 otherwise)
  int64_t stage_start = 0;      // first step of this schedule stage; the stage spans [stage_start, steps)
  float start_lr = -1;          // rewarm: LR at the stage's first step; < 0: lr·min_lr_ratio
  // Infinite schedule: warmup, cooldown to lr·const_lr_ratio, constant, optional anneal.
  double cooldown = 0.1;        // a fraction of the stage's steps if < 1, else steps
  std::string cooldown_shape = "cosine";  // "cosine" | "linear" | "inv_sqrt"
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
  std::string precision = "fp32"; // GEMM math: "fp32" | "tf32" | "bf16" (device = "cuda" only)
  // Data parallelism.
  bool zero1 = true;             // shard optimizer state by rows across ranks (ZeRO-1)
  double bucket_mb = 4;          // gradient all-reduce bucket size (MiB)
  std::string grad_wire = "fp32"; // gradients between hosts: "fp32" | "bf16" (fp32 sums; comm/communicator.h)
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
  std::string device = "cpu";
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
