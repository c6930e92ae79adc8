// Everything a training run is configured by. Every field has exactly one TOML key (see
// config.cpp's key table), which is how runs are configured, overridden with --set, printed at
// start and stored in checkpoints.
#pragma once

#include <cstdint>
#include <string>

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
  std::string kind = "cosine";  // "cosine" | "constant" (others join with continual pre-training)
  float lr = 3e-3f;             // peak learning rate
  float min_lr_ratio = 0.1f;    // cosine ends at lr·min_lr_ratio
  double warmup = 0.1;          // warmup length: a fraction of the steps if < 1, else steps
};

struct DataConfig {
  std::string train = "";        // token dataset (HDF5) written by `cairn prepare`
  uint64_t seed = 1234;          // data order
};

struct TrainingConfig {
  int64_t micro_batch = 8;       // sequences per rank per micro-step
  int64_t grad_accum = 1;        // micro-steps per optimizer step
  int64_t steps = 1000;          // optimizer steps
  uint64_t seed = 42;            // initialization
  int64_t log_every = 10;
  int64_t eval_every = 100;      // 0 disables periodic validation
  int64_t eval_batches = 8;      // validation micro-batches per evaluation
  bool skip_nonfinite = false;   // skip a step with a non-finite loss or gradient instead of stopping
  int64_t threads = 0;           // CPU threads per rank; 0: cores / ranks on this host
  double peak_flops = 0;         // for MFU; 0: measure the fp32 GEMM peak at start
  std::string precision = "fp32"; // GEMM math: "fp32" | "tf32" (device = "cuda" only)
  // Data parallelism.
  bool zero1 = true;             // shard optimizer state by rows across ranks (ZeRO-1)
  double bucket_mb = 8;          // gradient all-reduce bucket size (MiB)
  int64_t check_every = 100;     // steps between cross-rank parameter checksums (0: off)
  double comm_timeout_s = 600;   // a collective stuck this long ends the job
};

struct OutputConfig {
  std::string run_dir = "runs/default";
  bool plot = true;              // draw loss.png at the end
};

struct CheckpointConfig {
  int64_t every = 0;             // steps between checkpoints; 0: none (a stop signal still writes one)
  int64_t keep = 3;              // newest checkpoints kept; 0 keeps all
  std::string dir = "";          // "": <output.run_dir>/checkpoints
};

struct TrainConfig {
  std::string device = "cpu";
  ModelConfig model;
  OptimizerConfig optimizer;
  ScheduleConfig schedule;
  DataConfig data;
  TrainingConfig training;
  OutputConfig output;
  CheckpointConfig checkpoint;
};

}  // namespace cairn
