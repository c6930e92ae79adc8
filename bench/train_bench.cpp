// Training throughput of cairn's CPU backend: forward + backward + clip + AdamW step of one
// model on random tokens (data I/O excluded), printing tokens/s (median and mean step), achieved
// GFLOP/s (model FLOPs 6·N + 12·L·C·T per token), the GEMM peak of the math mode at the same
// threads (trainer/peak_flops.h: the best GEMM library of the mode), MFU against it, and peak
// resident memory. Same arguments as bench/pytorch_cpu_bench.py so both run side by side;
// --precision fp32|bf16 picks cpu_backend's math mode, --profile 1 adds time per op, and
// --serve 1 runs one step per line read from stdin, answering "step <seconds>" (the interleaved
// comparison of bench/pytorch_cpu_bench.py --cairn drives it).
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <numeric>
#include <string>

#include "bench/op_profile.h"
#include "model/llama.h"
#include "trainer/optim/adamw.h"
#include "trainer/peak_flops.h"
#include "trainer/trainer.h"
#include "util/rng.h"

using namespace cairn;

int main(int argc, char** argv) {
  ModelConfig cfg;
  int64_t batch = 16, steps = 10, warmup = 2, threads = 2;
  bool profile = false, serve = false;
  CpuMath math = CpuMath::fp32;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const int64_t v = std::atoll(argv[i + 1]);
    if (k == "--dim") cfg.dim = v;
    else if (k == "--layers") cfg.n_layers = v;
    else if (k == "--heads") cfg.n_heads = v;
    else if (k == "--ffn") cfg.ffn_dim = v;
    else if (k == "--vocab") cfg.vocab_size = v;
    else if (k == "--seq") cfg.seq_len = v;
    else if (k == "--batch") batch = v;
    else if (k == "--steps") steps = v;
    else if (k == "--warmup") warmup = v;
    else if (k == "--threads") threads = v;
    else if (k == "--linear") cfg.linear.kind = linear_kind_from_string(argv[i + 1]);
    else if (k == "--rank") cfg.linear.rank = v;
    else if (k == "--density") cfg.linear.density = float(std::atof(argv[i + 1]));
    else if (k == "--profile") profile = v != 0;
    else if (k == "--serve") serve = v != 0;
    else if (k == "--precision") {
      const std::string p = argv[i + 1];
      if (p != "fp32" && p != "bf16") {
        std::fprintf(stderr, "--precision %s: use fp32 or bf16\n", p.c_str());
        return 2;
      }
      math = p == "bf16" ? CpuMath::bf16 : CpuMath::fp32;
    }
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  cpu_set_threads(int(threads));
  // --profile 1: the same run through a wrapper timing every op (it is not cpu_backend(), so
  // SLTrain takes its materialized path).
  const OpProfile profiler(cpu_backend(math));
  const Backend& be = profile ? static_cast<const Backend&>(profiler) : cpu_backend(math);
  LlamaModel model(cfg, be, batch);
  model.init_weights(1);
  std::vector<int> rows(model.params().rows().size());
  std::iota(rows.begin(), rows.end(), 0);
  OptimizerConfig ocfg;
  AdamW opt(model.params(), rows, ocfg, be);
  const int64_t N = batch * cfg.seq_len;
  std::vector<int32_t> in(static_cast<size_t>(N)), tg(static_cast<size_t>(N));
  Rng rng(3);
  for (auto& t : in) t = int32_t(rng.below(uint64_t(cfg.vocab_size)));
  for (auto& t : tg) t = int32_t(rng.below(uint64_t(cfg.vocab_size)));

  auto step = [&] {
    const auto t0 = std::chrono::steady_clock::now();
    model.zero_grads();
    model.forward_backward(in.data(), tg.data(), batch, 1.0f);
    clip_gradients(be, model.grad_data(), model.params().total(), 1.0f);
    opt.step(model.param_span(), model.grad_span(), 1e-4f);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  const char* precision = math == CpuMath::bf16 ? "bf16" : "fp32";
  if (serve) {
    std::printf("cairn %s ready: %.2fM params, %ld tokens per step\n", precision,
                double(model.params().count()) / 1e6, long(N));
    std::fflush(stdout);
    for (std::string line; std::getline(std::cin, line);) {
      std::printf("step %.6f\n", step());
      std::fflush(stdout);
    }
    return 0;
  }
  std::vector<double> times;
  for (int64_t s = 0; s < warmup + steps; ++s) {
    const double dt = step();
    if (s >= warmup) times.push_back(dt);
    if (s + 1 == warmup) profiler.reset();
  }
  const double total = std::accumulate(times.begin(), times.end(), 0.0);
  std::vector<double> sorted = times;
  std::sort(sorted.begin(), sorted.end());
  const double median = sorted[sorted.size() / 2];
  const double tps = double(N) / median, mean_tps = double(N * steps) / total;
  const double flops = training_flops_per_token(cfg, be, N) * tps;
  // The peak training runs report MFU against on this host (cached; measured once).
  const double peak = resolve_peak_flops(0, cpu_backend(math), int(threads)).flops;
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  std::printf("cairn %s: dim %ld layers %ld heads %ld ffn %ld vocab %ld seq %ld batch %ld threads %ld linear %s\n",
              precision, long(cfg.dim), long(cfg.n_layers), long(cfg.n_heads), long(cfg.ffn_dim),
              long(cfg.vocab_size), long(cfg.seq_len), long(batch), long(threads), linear_kind_name(cfg.linear.kind));
  std::printf("  params %.2fM  median step %.3f s  %.0f tokens/s (mean %.0f)  %.1f GFLOP/s  %s GEMM peak %.1f GFLOP/s  "
              "MFU %.1f%%  peak RSS %.0f MB\n",
              double(model.params().count()) / 1e6, median, tps, mean_tps, flops / 1e9, precision, peak / 1e9,
              100 * flops / peak, double(ru.ru_maxrss) / 1024);
  if (profile) std::printf("time per op over %ld steps:\n%s", long(steps), profiler.report(int(steps)).c_str());
  return 0;
}
