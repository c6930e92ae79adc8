// The CPU GEMM libraries on the model's own GEMM shapes: for every library of each math mode
// (backend/cpu/gemm.h) GFLOP/s of each forward and backward product of one training step, the step's
// FLOP-weighted rate, and which library each mode uses. Also the cpu-bf16 backend's matmul end to
// end (fp32 activations rounded to bf16 each call, weights from its registered copy).
// Usage: gemm_bench [--dim 512 --ffn 1376 --vocab 32000 --seq 256 --batch 8 --layers 8 --threads 2
//                    --seconds 0.2]   (defaults: the 60M preset; train_bench's --heads is accepted)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "backend/bf16.h"
#include "backend/cpu/gemm.h"
#include "model/llama.h"
#include "util/error.h"
#include "util/rng.h"

using namespace cairn;

namespace {

struct Shape {
  std::string what;
  int64_t M, N, K;
  bool ta, tb;
  int64_t per_step;  // how many times one training step runs it
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Best GFLOP/s of f over 3 timings of enough repetitions for `budget` seconds each.
template <class F>
double gflops(const Shape& s, double budget, F&& f) {
  f();  // warm up (oneDNN builds its primitive, threads spin up)
  auto t0 = std::chrono::steady_clock::now();
  f();
  const int64_t reps = std::max<int64_t>(1, int64_t(budget / std::max(seconds_since(t0), 1e-6)));
  double best = 0;
  for (int t = 0; t < 3; ++t) {
    t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < reps; ++i) f();
    best = std::max(best, 2.0 * double(s.M) * double(s.N) * double(s.K) * double(reps) / seconds_since(t0) / 1e9);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t C = 512, F = 1376, V = 32000, T = 256, B = 8, L = 8, threads = 2;
  double budget = 0.2;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const double v = std::atof(argv[i + 1]);
    if (k == "--dim") C = int64_t(v);
    else if (k == "--ffn") F = int64_t(v);
    else if (k == "--vocab") V = int64_t(v);
    else if (k == "--seq") T = int64_t(v);
    else if (k == "--batch") B = int64_t(v);
    else if (k == "--layers") L = int64_t(v);
    else if (k == "--threads") threads = int64_t(v);
    else if (k == "--heads") continue;  // accepted (train_bench's arguments); attention is not timed here
    else if (k == "--seconds") budget = v;
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  cpu_set_threads(int(threads));
  ModelConfig cfg;
  cfg.dim = C, cfg.ffn_dim = F, cfg.vocab_size = V, cfg.seq_len = T, cfg.n_layers = L;
  const int64_t N = B * T, rows = std::min(N, logit_chunk_rows(cfg, B)), chunks = (N + rows - 1) / rows;
  // Forward y = x·Wᵀ; backward dW += dyᵀ·x and dx = dy·W (llama.cpp, Backend::linear_backward).
  const std::vector<Shape> shapes = {
      {"fwd q,k,v,o  x·Wᵀ", N, C, C, false, true, 4 * L},
      {"fwd gate,up  x·Wᵀ", N, F, C, false, true, 2 * L},
      {"fwd down     h·Wᵀ", N, C, F, false, true, L},
      {"fwd head     x·Wᵀ", rows, V, C, false, true, chunks},
      {"bwd q,k,v,o  dyᵀ·x", C, C, N, true, false, 4 * L},
      {"bwd gate,up  dyᵀ·x", F, C, N, true, false, 2 * L},
      {"bwd down     dyᵀ·h", C, F, N, true, false, L},
      {"bwd head     dyᵀ·x", V, C, rows, true, false, chunks},
      {"bwd q,k,v,o  dy·W", N, C, C, false, false, 4 * L},
      {"bwd gate,up  dy·W", N, C, F, false, false, 2 * L},
      {"bwd down     dy·W", N, F, C, false, false, L},
      {"bwd head     dy·W", rows, C, V, false, false, chunks},
  };
  int64_t most = 0;
  for (const Shape& s : shapes) most = std::max({most, s.M * s.K, s.K * s.N, s.M * s.N});
  Rng rng(1);
  std::vector<float> a(static_cast<size_t>(most)), b(a.size()), c(a.size());
  for (auto& x : a) x = rng.normal();
  for (auto& x : b) x = rng.normal();
  std::vector<uint16_t> ha(a.size()), hb(b.size());
  cpu_round_bf16(ha.data(), a.data(), most);
  cpu_round_bf16(hb.data(), b.data(), most);

  struct Column {
    std::string name;
    const CpuGemm* gemm;  // null: the cpu-bf16 backend's matmul
  };
  std::vector<Column> cols;
  for (const CpuGemm& g : cpu_gemms()) cols.push_back({str(g.name, " ", cpu_math_name(g.math)), &g});
  cols.push_back({"cpu-bf16 backend", nullptr});
  // The backend reads a weight (b of the forward and dx products) from its registered copy; the
  // activation operands are rounded per call.
  const Backend& bf16 = cpu_backend(CpuMath::bf16);
  DeviceArray<float> w(bf16, most);
  bf16.register_parameters(w.data(), most);
  bf16.copy_to_device(w.data(), b.data(), most * 4);

  std::printf("CPU GEMM libraries, %ld threads, model dim %ld ffn %ld vocab %ld, %ld rows (batch %ld x seq %ld)\n",
              long(threads), long(C), long(F), long(V), long(N), long(B), long(T));
  std::printf("| product | M x N x K |");
  for (const Column& col : cols) std::printf(" %s |", col.name.c_str());
  std::printf("\n|---|---|");
  for (size_t i = 0; i < cols.size(); ++i) std::printf("---|");
  std::printf("\n");
  std::vector<double> step_flops(cols.size(), 0), step_seconds(cols.size(), 0);
  for (const Shape& s : shapes) {
    std::printf("| %s | %ld x %ld x %ld |", s.what.c_str(), long(s.M), long(s.N), long(s.K));
    for (size_t j = 0; j < cols.size(); ++j) {
      const CpuGemm* g = cols[j].gemm;
      const bool lowp = g ? g->math == CpuMath::bf16 : true;
      const double r = gflops(s, budget, [&] {
        if (!g) bf16.matmul(c.data(), a.data(), s.ta ? b.data() : w.data(), s.M, s.N, s.K, s.ta, s.tb, 1.0f, 0.0f);
        else g->run(c.data(), lowp ? static_cast<const void*>(ha.data()) : a.data(),
                    lowp ? static_cast<const void*>(hb.data()) : b.data(), s.M, s.N, s.K, s.ta, s.tb, 1.0f, 0.0f);
      });
      const double f = 2.0 * double(s.M) * double(s.N) * double(s.K) * double(s.per_step);
      step_flops[j] += f;
      step_seconds[j] += f / (r * 1e9);
      std::printf(" %.0f |", r);
    }
    std::printf("\n");
  }
  std::printf("| one step's GEMMs (FLOP-weighted) | |");
  for (size_t j = 0; j < cols.size(); ++j) std::printf(" **%.0f** |", step_flops[j] / step_seconds[j] / 1e9);
  std::printf("\n");
  for (CpuMath m : {CpuMath::fp32, CpuMath::bf16}) {
    double best = 0;
    std::string best_name;
    for (size_t j = 0; j < cols.size(); ++j)
      if (cols[j].gemm && cols[j].gemm->math == m && step_flops[j] / step_seconds[j] > best)
        best = step_flops[j] / step_seconds[j], best_name = cols[j].gemm->name;
    const std::string used = cpu_gemm(m).name;
    std::printf("%s: cpu_backend uses %s (%s names another); fastest here on these shapes: %s (%.0f GFLOP/s)%s\n",
                cpu_math_name(m), used.c_str(), cpu_gemm_variable(m), best_name.c_str(), best / 1e9,
                used == best_name ? "" : str(": export ", cpu_gemm_variable(m), "='", best_name, "'").c_str());
  }
  return 0;
}
