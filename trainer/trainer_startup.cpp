// Trainer::print_startup (see trainer.h): what a run is about to do, said once by rank 0 before
// the first step: the resolved config, the model, memory, data, validation, parallelism (hosts,
// ranks per host, transport and interfaces), batch and LR schedule, and compute.
#include <iostream>

#include "comm/network.h"
#include "trainer/config.h"
#include "trainer/optim/make_optimizer.h"
#include "trainer/step_law.h"
#include "trainer/trainer.h"
#include "util/error.h"

namespace cairn {

// The blocks' norm layout, for the model line: which layers are Post-LN (Mix-LN) and whether
// LayerNorm Scaling multiplies the pre-norm outputs.
static std::string describe_norms(const ModelConfig& m) {
  std::string out = m.norm_layout == NormLayout::mix ? str("Mix-LN: the first ", m.post_ln_layers(), " of ", m.n_layers,
                                                 " layers Post-LN (alpha ", m.mix_ln_alpha, "), the rest Pre-LN")
                                           : std::string("Pre-LN");
  if (m.norm_scaling) out += ", LayerNorm Scaling (pre-norm outputs of layer l times 1/sqrt(l))";
  return out;
}

void Trainer::print_startup() {
  const auto state_bytes = comm_.all_gather_strings(std::to_string(optimizer_->state_bytes()));
  const auto network = comm_.size() > 1 ? describe_network(comm_) : std::vector<std::string>{};
  if (comm_.rank() != 0) return;
  const auto& t = model_->params();
  std::cout << "cairn train: resolved config\n" << config_to_toml(cfg_) << "\n";
  for (const auto& note : config_notes_) std::cerr << "WARNING: " << note << std::endl;
  std::cout << "model: " << cfg_.model.n_layers << " layers, dim " << cfg_.model.dim << ", heads "
            << cfg_.model.n_heads << " (" << cfg_.model.kv_heads() << " key/value), ffn " << cfg_.model.ffn_dim
            << ", vocab " << cfg_.model.vocab_size << ", seq " << cfg_.model.seq_len << ", norms "
            << describe_norms(cfg_.model) << ": " << t.count() << " parameters ("
            << t.count(ParamRole::matrix) << " dense matrix, " << t.count(ParamRole::lowrank_factor)
            << " low-rank factors, " << t.count(ParamRole::sparse_values) << " sparse values, "
            << t.count(ParamRole::embedding) + t.count(ParamRole::lm_head) << " embedding/head, "
            << t.count(ParamRole::norm) << " norm)\n";
  std::cout << memory_summary(memory_) << "\n";
  if (const std::string device = model_->backend().device_summary(); !device.empty())
    std::cout << "device: " << device << "\n";
  if (cfg_.optimizer.name != OptimizerName::adamw) {
    const LowRankConfig lc = lowrank_config(cfg_.optimizer);
    std::cout << describe_optimizer_state_memory(optimizer_state_memory(t, cfg_.optimizer.name, lc),
                                                 cfg_.optimizer.name, lc) << "\n";
  }
  std::cout << "data: " << data_->describe() << "\n" << token_check_ << "\n";
  // Said once here, not at every evaluation: the records then simply carry no val_loss.
  if (cfg_.training.eval_every > 0 && !no_validation_.empty()) {
    std::string which;
    for (const auto& d : no_validation_) which += (which.empty() ? "" : ", ") + d;
    std::cout << "validation: " << which << " " << (no_validation_.size() == 1 ? "has" : "have")
              << " no validation split longer than model.seq_len = " << cfg_.model.seq_len << " tokens: "
              << (val_sets_.empty() ? "validation is skipped (training.eval_every has nothing to evaluate; "
                                      "prepare with --val-fraction > 0 for a validation loss)"
                                    : "skipped for " + std::string(no_validation_.size() == 1 ? "it" : "them"))
              << "\n";
  }
  if (!cfg_.init_from.empty())
    std::cout << "initial weights: " << init_weights_ << " (" << cfg_.training.tokens_before
              << " tokens seen before this run)\n";
  if (comm_.size() > 1) {
    std::cout << "data parallel: " << comm_.size() << " ranks, " << sync_->num_buckets() << " gradient buckets of "
              << cfg_.training.bucket_mb << " MiB; optimizer state per rank (MB):";
    for (const auto& b : state_bytes) std::cout << " " << std::stod(b) / 1e6;
    std::cout << (cfg_.training.zero1 ? " (sharded, ZeRO-1)" : " (replicated)") << "\n";
    for (const auto& line : network) std::cout << line << "\n";
    if (grad_comm_->get().name() == "nccl") std::cout << "gradients: NCCL between the GPUs (MPI for everything else)\n";
  }
  std::cout << "batch: " << cfg_.training.micro_batch << " sequences x " << cfg_.training.grad_accum
            << " accumulation x " << comm_.size() << " ranks = " << global_batch() << " sequences ("
            << global_batch() * cfg_.model.seq_len << " tokens) per step; LR " << schedule_->describe() << "\n";
  if (const std::string hint = step_law_hint(cfg_, comm_.size()); !hint.empty()) std::cout << hint << "\n";
  // A warmup as long as its stage never reaches schedule.lr. Allowed (a short stage after growth
  // may want it), but said: the LR line above reads as if the peak were reached.
  for (const auto& stage : schedule_->stages())
    if (stage.warmup >= stage.end - stage.start)
      std::cerr << "WARNING: the LR warmup of " << stage.label << " (" << stage.warmup
                << " steps) is not shorter than the stage (" << stage.end - stage.start
                << " steps): the LR never reaches schedule.lr = " << cfg_.schedule.lr
                << "; lower schedule.warmup or train longer" << std::endl;
  std::cout << "compute: " << cpu_threads() << " threads per rank, " << flops_per_token_ / 1e6
            << " MFLOP per token (" << linear_kind_name(cfg_.model.linear.kind) << " projections' own work), peak "
            << peak_.flops / 1e9 << " GFLOP/s per rank (" << peak_.source << ")\n"
            << std::endl;
}

}  // namespace cairn
