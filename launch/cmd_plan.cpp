// `cairn plan`: what the papers' fits suggest for a training budget — Step Law's peak learning rate
// and batch size, and G_stack's growth timing — from --params/--tokens or from a run config; with
// --nodes, the data-parallel step on a cluster (trainer/comm_plan.h).
#include <cmath>
#include <cstdio>
#include <iostream>
#include <thread>

#include "data/mixture.h"
#include "launch/cli.h"
#include "launch/commands.h"
#include "backend/backend.h"
#include "model/growth.h"
#include "model/llama.h"
#include "trainer/comm_plan.h"
#include "trainer/config.h"
#include "trainer/peak_flops.h"
#include "trainer/step_law.h"
#include "trainer/trainer.h"
#include "util/error.h"

namespace cairn {

static const CommandSpec kPlanSpec{
    "plan",
    "--params N --tokens D [--layers L] [--factor G] | --config RUN.toml [--set key=value]... [--ranks R]\n"
    "       [--nodes N [--ranks-per-node P] [--link-gbps B] [--step-seconds S | --mfu F]]",
    "Prints what the papers' fits suggest for a model of N parameters trained on D tokens:\n"
    "Step Law (\"Predictable Scale: Part I\"): peak LR = 1.79·N^-0.713·D^0.307 and batch size\n"
    "B = 0.58·D^0.571 tokens, N the non-embedding parameters; and the G_stack growth timing\n"
    "(log10 d = 0.88·log10 N + 163.27/log10(6ND) - 5.74). With --config, N and D come from the run\n"
    "(D = training.steps x micro_batch x grad_accum x ranks x seq_len) and its LR and batch are compared.\n"
    "Step Law was fitted on dense models trained with AdamW: low-rank or SLTrain weights and Fira or\n"
    "GaLore, whose papers use their own LRs, may do best elsewhere.\n"
    "With --config and --nodes: the data-parallel step on N hosts of P ranks with links of B Gbit/s\n"
    "each way: compute per step (--step-seconds, else the FLOP count over the GEMM peak measured on\n"
    "this host times --mfu), gradient bytes per step, link time, exposed communication after overlap\n"
    "with backward, tokens/s and scaling efficiency (training.grad_wire, grad_hierarchical, zero1 and\n"
    "grad_accum taken from the config).",
    {{"params", "N", "non-embedding parameters (Step Law's N; also the G_stack target size)"},
     {"tokens", "D", "training tokens"},
     {"config", "FILE", "derive N and D from a run config instead"},
     {"set", "KEY=VALUE", "--config: override a config key", true},
     {"ranks", "R", "--config: data-parallel ranks of the run (default 1)"},
     {"layers", "L", "G_stack: layers of the target model (prints the small model's depth)"},
     {"factor", "G", "G_stack growth factor, an integer >= 1 (default 4, the paper's)"},
     {"nodes", "N", "--config: predict the data-parallel step on N hosts"},
     {"ranks-per-node", "P", "--nodes: ranks per host (default 1)"},
     {"link-gbps", "B", "--nodes: each host's link in Gbit/s, each way (default 1)"},
     {"step-seconds", "S", "--nodes: one rank's measured compute seconds per optimizer step (no communication)"},
     {"mfu", "F", "--nodes without --step-seconds: fraction of the measured GEMM peak training reaches (default 0.8; the CPU backend reached 0.875 on the 60M preset)"}},
    ""};

int64_t growth_factor_option(const Args& args) {
  const double g = args.get_number("factor", 4);
  if (!(g >= 1) || g != std::floor(g) || g > 1e6)
    throw Error(str("--factor must be an integer >= 1, got ", args.get("factor")));
  return int64_t(g);
}

void print_growth_plan(double n, double d, int64_t g, double layers) {
  const double grow_at = gstack_growth_tokens(n, d);
  std::printf("target: %.4g parameters, %.4g tokens (C = 6ND = %.4g FLOPs)\n", n, d, 6 * n * d);
  std::printf("grow after d = %.4g tokens on the small model "
              "(log10 d = 0.88 log10 N + 163.27 / log10 C - 5.74)\n", grow_at);
  std::printf("small model: about %.4g parameters (N / %lld): the target's width", n / double(g), (long long)g);
  if (layers > 0) {
    if (std::fmod(layers, double(g)) != 0)
      throw Error(str("--layers ", layers, " is not a multiple of --factor ", g));
    std::printf(", %lld layers (grown to %lld)", (long long)(layers / double(g)), (long long)layers);
  } else {
    std::printf(", L / %lld layers", (long long)g);
  }
  if (grow_at < d)
    std::printf("\nthen train the grown model on the remaining %.4g tokens (fresh optimizer, schedule from warmup)\n",
                d - grow_at);
  else
    std::printf("\nd is not below D: at this budget the fit says to train the target model from the start\n");
  if (n < kGstackFittedParams.first || n > kGstackFittedParams.second)
    std::printf("note: N = %.4g lies outside the target sizes the timing was fitted on (%.3g to %.3g parameters):\n"
                "      the advice above is an extrapolation; measure growth at this scale (bench/gstack_repro.sh)\n",
                n, kGstackFittedParams.first, kGstackFittedParams.second);
}

// model.vocab_size = 0: the training data's vocabulary (data.mixture's first source, or data.train),
// with `note` saying so; when the data cannot be read, 1 (N does not depend on it) and why.
static int64_t training_vocabulary(const TrainConfig& cfg, std::string& note) {
  try {
    const std::string path = cfg.data.mixture.empty() ? cfg.data.train : parse_mixture(cfg.data.mixture).front().path;
    if (path.empty()) throw Error("data.train is not set");
    const int64_t vocab = TokenDataset::open(path).vocab_size();
    note = str(", vocabulary ", vocab, " of ", path);
    return vocab;
  } catch (const Error& e) {
    note = str(" at vocabulary 1, as the training data's is unknown (", e.what(), "): set model.vocab_size for the real count");
    return 1;
  }
}

// One rank's compute per step: measured (--step-seconds), or training FLOPs over this host's GEMM
// peak (cached; threads = cores / ranks per node) times --mfu.
static double compute_seconds(const Args& args, const TrainConfig& cfg, int64_t ranks_per_node, std::string* how) {
  if (args.has("step-seconds")) {
    const double s = args.get_number("step-seconds", 0);
    if (!(s > 0)) throw Error(str("--step-seconds must be positive, got ", args.get("step-seconds")));
    *how = "measured (--step-seconds)";
    return s;
  }
  const double mfu = args.get_number("mfu", 0.8);
  if (!(mfu > 0 && mfu <= 1)) throw Error(str("--mfu must be in (0, 1], got ", args.get("mfu")));
  const Backend& be = configured_backend(cfg);
  const int threads = int(std::max<int64_t>(1, int64_t(std::thread::hardware_concurrency()) / ranks_per_node));
  const PeakFlops peak = resolve_peak_flops(cfg.training.peak_flops, be, threads);
  const int64_t rows = cfg.training.micro_batch * cfg.model.seq_len;
  const double flops = training_flops_per_token(cfg.model, be, rows) * double(rows * cfg.training.grad_accum);
  *how = str(flops / 1e12, " TFLOP at ", peak.flops / 1e9, " GFLOP/s (", peak.source, ") x MFU ", mfu);
  return flops / (peak.flops * mfu);
}

static void print_cluster_plan(const Args& args, const TrainConfig& cfg) {
  CommPlanInput in;
  in.nodes = int(args.get_integer("nodes", 1, 1, 1 << 16));
  in.ranks_per_node = int(args.get_integer("ranks-per-node", 1, 1, 1 << 12));
  in.link_gbps = args.get_number("link-gbps", 1);
  if (!(in.link_gbps > 0)) throw Error(str("--link-gbps must be positive, got ", args.get("link-gbps")));
  ModelConfig m = cfg.model;
  if (m.vocab_size == 0) throw Error("--nodes needs model.vocab_size (the gradient size depends on it): set it");
  in.params = model_param_count(m);
  in.last_rows = m.vocab_size * m.dim;  // the token embedding: its gradient is final at backward's end
  in.grad_accum = cfg.training.grad_accum;
  in.tokens_per_rank = cfg.training.micro_batch * cfg.training.grad_accum * m.seq_len;
  in.bf16_wire = cfg.training.grad_wire == WirePrecision::bf16;
  in.hierarchical = cfg.training.grad_hierarchical;
  in.zero1 = cfg.training.zero1;
  std::string how;
  in.compute_s = compute_seconds(args, cfg, in.ranks_per_node, &how);
  const CommPlan p = plan_data_parallel(in);
  std::printf("\nData parallel on %d node%s x %d rank%s, %.3g Gbit/s links (%s wire, %s%s):\n", in.nodes,
              in.nodes == 1 ? "" : "s", in.ranks_per_node, in.ranks_per_node == 1 ? "" : "s", in.link_gbps,
              in.bf16_wire ? "bf16" : "fp32", in.hierarchical ? "hierarchical" : "flat",
              in.zero1 ? ", ZeRO-1 gather" : "");
  std::printf("  compute per step    %.3f s (%s)\n", in.compute_s, how.c_str());
  std::printf("  gradient bytes      %.4g MB per all-reduce; each host link carries %.4g MB each way per step\n",
              p.wire_bytes / 1e6, p.link_bytes / 1e6);
  std::printf("  communication       %.3f s at %.0f%% of the link (TCP payload)\n", p.comm_s, 100 * kLinkPayloadShare);
  std::printf("  exposed after overlap %.3f s (backward of the last micro-step hides up to %.3f s; the "
              "embedding's share waits for backward's end)\n", p.exposed_s, p.hideable_s);
  std::printf("  step                %.3f s, %.4g tokens/s, scaling efficiency %.0f%%\n", p.step_s, p.tokens_per_s,
              100 * p.efficiency);
}

int cmd_plan(int argc, char** argv) {
  const Args args = parse_command(kPlanSpec, argc, argv);
  if (args.help()) return 0;
  const int64_t g = growth_factor_option(args);
  double n = 0, d = 0, total = 0;
  TrainConfig cfg;
  const bool from_config = args.has("config");
  if (from_config) {
    if (args.has("params") || args.has("tokens")) throw Error("give either --config or --params and --tokens");
    config_apply_file(cfg, args.get("config"));
    for (const auto& o : args.all("set")) config_apply_override(cfg, o);
    ModelConfig m = cfg.model;
    std::string vocab_note;
    if (m.vocab_size == 0) m.vocab_size = training_vocabulary(cfg, vocab_note);  // as training takes it
    m.validate();
    const int64_t ranks = args.get_integer("ranks", 1, 1, 1 << 20);
    n = double(non_embedding_param_count(m));
    total = double(model_param_count(m));
    d = run_tokens(cfg, ranks);
    std::printf("run: %s, %lld rank%s: N = %.4g non-embedding parameters (%.4g with embeddings%s), "
                "D = %.4g tokens\n", args.get("config").c_str(), (long long)ranks, ranks == 1 ? "" : "s", n, total,
                vocab_note.c_str(), d);
  } else {
    if (!args.has("params") || !args.has("tokens"))
      throw Error("give --params N and --tokens D (or --config RUN.toml)");
    n = args.get_number("params", 0);
    d = args.get_number("tokens", 0);
    total = n;
    std::printf("budget: N = %.4g non-embedding parameters, D = %.4g tokens\n", n, d);
  }
  const StepLaw s = step_law(n, d);
  std::printf("\nStep Law (fitted on dense models, AdamW, cosine schedule):\n");
  std::printf("  peak LR     1.79 * N^-0.713 * D^0.307 = %.3g\n", s.lr);
  std::printf("  batch size  0.58 * D^0.571            = %.4g tokens", s.batch_tokens);
  if (from_config)
    std::printf(" = %.4g sequences of %lld\n", s.batch_tokens / double(cfg.model.seq_len), (long long)cfg.model.seq_len);
  else
    std::printf("\n");
  if (from_config) {
    const double batch = d / double(cfg.training.steps);
    std::printf("  this run:   schedule.lr = %.3g (%.2fx the suggestion), batch %.4g tokens (%.2fx)\n",
                double(cfg.schedule.lr), double(cfg.schedule.lr) / s.lr, batch, batch / s.batch_tokens);
    if (cfg.model.linear.kind != LinearKind::dense || cfg.optimizer.name != OptimizerName::adamw)
      std::printf("  note: %s weights with %s: Step Law was not fitted on these; their papers use their own LRs\n",
                  linear_kind_name(cfg.model.linear.kind), choice_name(cfg.optimizer.name).data());
  }
  std::printf("\nG_stack growth (factor %lld):\n", (long long)g);
  const bool whole = from_config && cfg.model.n_layers % g == 0;  // else no small model of L / G layers
  print_growth_plan(total, d, g, args.get_number("layers", whole ? double(cfg.model.n_layers) : 0));
  if (args.has("nodes")) {
    if (!from_config) throw Error("--nodes needs --config RUN.toml (the model, batch and gradient settings)");
    print_cluster_plan(args, cfg);
  }
  return 0;
}

}  // namespace cairn
