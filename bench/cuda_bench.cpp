// Training throughput of the CUDA backend on synthetic tokens: forward + backward + global-norm
// clip + an optimizer step (what a trainer step does on one GPU), for the LLaMA 130M and 350M
// shapes of configs/ at the sequence lengths asked for, bf16 (the default, run first), TF32 and
// fp32 GEMMs. The optimizer is AdamW over the flat buffers or Fira as configs/llama-*-fira.toml
// set it (rank 256, projections refreshed in the warm-up, so the timed steps are ordinary ones).
// Steps are timed on the wall clock between two waits for the device (what training sees, host
// gaps included). Prints tokens/s, MFU against the device's peak for the math mode
// (Backend::peak_flops: the datasheet's for a known GPU, else measured with CUDA events) and
// against the dense bf16 one, and the device memory in use after the run (cairn allocates
// everything at start and in the first step, so that is the run's peak); each run also as one
// `RESULT key=value ...` line for scripts (bench/gpu_check.sh's table), flushed at once.
// With --profile 1, each configuration also runs once more with every op timed (bench/op_profile.h).
//   cuda_bench [--batch B] [--seq 256,1024] [--steps S] [--models 130m,350m] [--math bf16,tf32,fp32]
//              [--optimizer adamw,fira] [--profile 0|1]
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "bench/op_profile.h"
#include "backend/backend.h"
#include "model/llama.h"
#include "trainer/optim/fira.h"
#include "util/cuda_module.h"
#include "util/error.h"
#include "util/rng.h"

using namespace cairn;

namespace {

ModelConfig preset(const std::string& name, int64_t seq_len) {
  ModelConfig c;
  c.vocab_size = 32000;
  c.seq_len = seq_len;
  if (name == "130m") {
    c.dim = 768, c.n_layers = 12, c.n_heads = 12, c.ffn_dim = 2048;
  } else if (name == "350m") {
    c.dim = 1024, c.n_layers = 24, c.n_heads = 16, c.ffn_dim = 2736;
  } else {
    throw Error(str("unknown model '", name, "': use 130m or 350m"));
  }
  return c;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  size_t a = 0;
  while (a <= s.size()) {
    const size_t b = s.find(',', a);
    out.push_back(s.substr(a, b == std::string::npos ? std::string::npos : b - a));
    if (b == std::string::npos) break;
    a = b + 1;
  }
  return out;
}

// Throughput, or with `profile` the time per op (every op synchronized, so not a throughput).
void run(const std::string& model_name, int64_t seq_len, CudaMath math, const std::string& optimizer, int64_t B,
         int steps, bool profile) {
  const Backend& device = cuda_backend(math);
  DeviceArray<float> probe(device, 1);  // sum_squares on it waits for the device
  probe.zero();
  const OpProfile profiler(device, [&] { (void)device.sum_squares(probe.data(), 1); });
  const Backend& be = profile ? static_cast<const Backend&>(profiler) : device;
  const ModelConfig cfg = preset(model_name, seq_len);
  LlamaModel model(cfg, be, B);
  model.init_weights(1);
  const int64_t n = model.params().total(), N = B * cfg.seq_len;
  DeviceArray<float> m, v;
  std::unique_ptr<FiraOptimizer> fira;
  if (optimizer == "fira") {
    LowRankConfig lr_cfg;
    lr_cfg.rank = 256;
    std::vector<int> rows(model.params().rows().size());
    for (size_t i = 0; i < rows.size(); ++i) rows[i] = int(i);
    fira = std::make_unique<FiraOptimizer>(model.params(), rows, lr_cfg, PlainAdamConfig{}, be);
  } else {
    m = DeviceArray<float>(be, n);
    v = DeviceArray<float>(be, n);
    m.zero();
    v.zero();
  }
  std::vector<int32_t> inputs(static_cast<size_t>(N)), targets(static_cast<size_t>(N));
  Rng rng(3);
  for (int64_t i = 0; i < N; ++i) {
    inputs[size_t(i)] = int32_t(rng.next_u64() % uint64_t(cfg.vocab_size));
    targets[size_t(i)] = int32_t(rng.next_u64() % uint64_t(cfg.vocab_size));
  }
  float loss = 0;
  auto step = [&](int t) {
    model.zero_grads();
    loss = model.forward_backward(inputs.data(), targets.data(), B, 1.0f);
    const double norm = std::sqrt(be.sum_squares(model.grad_data(), n));  // synchronizes
    if (norm > 1.0) be.scale_inplace(model.grad_data(), float(1.0 / (norm + 1e-6)), n);
    if (fira)
      fira->step(model.param_span(), model.grad_span(), 1e-4f);
    else
      be.adamw_update(model.param_data(), model.grad_data(), m.data(), v.data(), n, 1e-4f, 0.9f, 0.95f, 1e-8f, 0.0f,
                      1.0f - std::pow(0.9f, float(t)), 1.0f - std::pow(0.95f, float(t)));
  };
  step(1);  // warm-up: cuBLAS heuristics, scratch growth (the micro-step runs eagerly)
  step(2);  // the micro-step is captured as a CUDA graph: the timed steps replay it
  profiler.reset();
  const auto t0 = std::chrono::steady_clock::now();
  for (int s = 0; s < steps; ++s) step(3 + s);
  (void)be.sum_squares(model.param_data(), 1);  // waits for the last optimizer step
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / steps;
  if (profile) {
    std::printf("%-5s %-9s %-5s time per op over %d steps (each op synchronized):\n%s", model_name.c_str(),
                device.name().c_str(), optimizer.c_str(), steps, profiler.report(steps).c_str());
    std::fflush(stdout);
    return;
  }
  const double tok_s = double(N) / sec;
  const double flops = training_flops_per_token(cfg, device, N) * tok_s;
  const Backend::Peak peak = device.peak_flops(), bf16_peak = cuda_backend(CudaMath::bf16).peak_flops();
  const double mfu = flops / peak.flops;
  const std::string memory = device.device_summary();
  std::printf("%-5s %-9s %-5s B=%-3lld T=%-4lld params %.1fM act %.2f GiB  step %7.1f ms  %9.0f tok/s  %6.1f TFLOP/s  "
              "MFU %5.1f%% (of %.0f TFLOP/s, %s), %5.1f%% of the bf16 peak  loss %.4f\n      %s\n",
              model_name.c_str(), be.name().c_str(), optimizer.c_str(), (long long)B, (long long)cfg.seq_len,
              double(model_param_count(cfg)) / 1e6, double(model.activation_bytes()) / double(1 << 30), sec * 1e3,
              tok_s, flops / 1e12, 100 * mfu, peak.flops / 1e12, peak.source.c_str(), 100 * flops / bf16_peak.flops,
              double(loss), memory.c_str());
  std::printf("RESULT kind=bench model=%s math=%s optimizer=%s B=%lld T=%lld tok_s=%.0f tflops=%.1f mfu=%.4f loss=%.4f "
              "memory=\"%s\" attention=\"%s\"\n",
              model_name.c_str(), be.name().c_str(), optimizer.c_str(), (long long)B, (long long)cfg.seq_len, tok_s,
              flops / 1e12, mfu, double(loss), memory.c_str(), device.attention_path().c_str());
  std::fflush(stdout);  // before Fira's refresh below, which a time limit may cut short
  if (fira) {
    // One more step at a refresh (steps = update_gap): its extra time is the SVDs of every matrix.
    fira->set_steps(LowRankConfig{}.update_gap);
    const auto t1 = std::chrono::steady_clock::now();
    step(3 + steps);
    (void)be.sum_squares(model.param_data(), 1);
    const double refresh = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count() - sec;
    std::printf("      projection refresh (top-256 singular vectors of every matrix): %.1f ms, every %lld steps\n",
                refresh * 1e3, (long long)LowRankConfig{}.update_gap);
  }
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  int64_t B = 32;
  int steps = 10;
  std::string models = "130m,350m", maths = "bf16,tf32,fp32", optimizers = "adamw", seqs = "256";
  bool profile = false;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--batch")) B = std::atoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--steps")) steps = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--seq")) seqs = argv[i + 1];
    else if (!std::strcmp(argv[i], "--models")) models = argv[i + 1];
    else if (!std::strcmp(argv[i], "--math")) maths = argv[i + 1];
    else if (!std::strcmp(argv[i], "--optimizer")) optimizers = argv[i + 1];
    else if (!std::strcmp(argv[i], "--profile")) profile = std::atoi(argv[i + 1]) != 0;
    else {
      std::fprintf(stderr, "unknown option %s\n", argv[i]);
      return 2;
    }
  }
  // As cuda_check: a module that does not load is a failure with the loader's text; no device
  // (the module loaded) is "skipped" (77), not "measured", with the runtime's reason.
  if (const std::string& why = cuda_module_error(); !why.empty()) {
    std::printf("cuda_bench: %s\n", why.c_str());
    return 1;
  }
  std::printf("libraries: %s\n", cuda_library_versions().c_str());
  if (const std::string why = cuda_unavailable_reason(); !why.empty()) {
    std::printf("SKIP: no CUDA device (%s)\n", why.c_str());
    return 77;
  }
  std::fflush(stdout);
  try {
    for (const auto& mdl : split(models))
      for (const auto& seq : split(seqs)) {
        const int64_t T = std::atoll(seq.c_str());
        if (T <= 0) throw Error(str("--seq '", seq, "' is not a positive sequence length"));
        for (const auto& mt : split(maths)) {
          if (mt != "fp32" && mt != "tf32" && mt != "bf16")
            throw Error(str("unknown math '", mt, "': use bf16, tf32 or fp32"));
          const CudaMath math = mt == "bf16" ? CudaMath::bf16 : mt == "tf32" ? CudaMath::tf32 : CudaMath::fp32;
          for (const auto& opt : split(optimizers)) {
            if (opt != "adamw" && opt != "fira") throw Error(str("unknown optimizer '", opt, "': use adamw or fira"));
            run(mdl, T, math, opt, B, steps, false);
            if (profile) run(mdl, T, math, opt, B, steps, true);
          }
        }
      }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cuda_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
