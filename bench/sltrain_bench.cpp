// SLTrain benchmark, two modes (2 threads by default; CAIRN_THREADS overrides):
//   sltrain_bench paths                 time forward+backward of one SLTrain weight on both paths
//                                       for the 60M/130M projection shapes and several N, next to
//                                       the choice of the "auto" rule (its calibration table).
//   sltrain_bench model SIZE KIND [steps]   SIZE 60m|130m, KIND dense|lowrank|sltrain-materialized|
//                                       sltrain-factored|sltrain-auto: builds that preset (vocab
//                                       32000, seq 256, micro-batch 8), times forward+backward+AdamW
//                                       steps, prints parameters, tokens/s and peak RSS. One model
//                                       per process so ru_maxrss is that model's peak.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "model/linear_sltrain.h"
#include "model/llama.h"
#include "trainer/optim/adamw.h"
#include "util/error.h"
#include "util/rng.h"

using namespace cairn;

namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Preset {
  const char* name;
  int64_t dim, layers, heads, ffn, rank;
  float alpha;
};
const Preset kPresets[] = {{"60m", 512, 8, 8, 1376, 128, 32.0f}, {"130m", 768, 12, 12, 2048, 256, 16.0f}};

const Preset& preset(const std::string& name) {
  for (const auto& p : kPresets)
    if (name == p.name) return p;
  throw Error(str("unknown size '", name, "': use 60m or 130m"));
}

// Median seconds of forward+backward of one [out, in] SLTrain weight on N rows.
double time_linear(int64_t out, int64_t in, int64_t r, float alpha, int64_t N, const char* path) {
  LinearConfig c;
  c.kind = LinearKind::sltrain;
  c.rank = r;
  c.alpha = alpha;
  c.density = 0.03f;
  c.sltrain_path = *choice_from_name<SLTrainPathSetting>(path);
  auto lin = make_linear(c, "w", out, in, 0);
  ParamTable t;
  BufferTable b;
  lin->declare(t, b);
  std::vector<float> p(size_t(t.total())), g(size_t(t.total()), 0.0f), ws(size_t(lin->workspace_floats(N)));
  Rng rng(1);
  lin->init(p, b, rng);
  for (auto& v : p) v += 0.01f * rng.normal();
  std::vector<float> x(size_t(N * in)), y(size_t(N * out)), dx(size_t(N * in));
  for (auto& v : x) v = rng.normal();
  std::vector<double> times;
  for (int rep = 0; rep < 5; ++rep) {
    const double t0 = now();
    lin->forward(cpu_backend(), y.data(), x.data(), N, p.data(), b, ws.data());
    lin->backward(cpu_backend(), dx.data(), false, g.data(), y.data(), x.data(), N, p.data(), b, ws.data());
    times.push_back(now() - t0);
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

void bench_paths() {
  std::printf("%-5s %-10s %5s %6s %12s %12s %8s %8s\n", "size", "out x in", "rank", "N", "materialized", "factored",
              "faster", "auto");
  for (const auto& p : kPresets) {
    const int64_t shapes[3][2] = {{p.dim, p.dim}, {p.ffn, p.dim}, {p.dim, p.ffn}};
    for (const auto& s : shapes)
      for (int64_t N : {256, 512, 1024, 2048}) {
        const double tm = time_linear(s[0], s[1], p.rank, p.alpha, N, "materialized");
        const double tf = time_linear(s[0], s[1], p.rank, p.alpha, N, "factored");
        const bool fac = sltrain_auto_path(s[0], s[1], p.rank, sltrain_nnz(0.03f, s[0], s[1]), N) == SLTrainPath::factored;
        std::printf("%-5s %4ldx%-5ld %5ld %6ld %10.2fms %10.2fms %8s %8s\n", p.name, long(s[0]), long(s[1]),
                    long(p.rank), long(N), 1e3 * tm, 1e3 * tf, tf < tm ? "fact" : "mat", fac ? "fact" : "mat");
        std::fflush(stdout);
      }
  }
}

void bench_model(const std::string& size, const std::string& kind, int steps) {
  const Preset& p = preset(size);
  ModelConfig c;
  c.vocab_size = 32000;
  c.dim = p.dim;
  c.n_layers = p.layers;
  c.n_heads = p.heads;
  c.ffn_dim = p.ffn;
  c.seq_len = 256;
  if (kind != "dense") {
    c.linear.kind = kind == "lowrank" ? LinearKind::lowrank : LinearKind::sltrain;
    c.linear.rank = p.rank;
    c.linear.alpha = p.alpha;
    c.linear.density = 0.03f;
    if (c.linear.kind == LinearKind::sltrain) {
      const std::string path = kind.substr(kind.find('-') + 1);
      c.linear.sltrain_path = *choice_from_name<SLTrainPathSetting>(path);
    }
  }
  const int64_t B = 8, N = B * c.seq_len;
  LlamaModel model(c, cpu_backend(), B);
  model.init_weights(1);
  std::vector<int> rows(model.params().rows().size());
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = int(i);
  OptimizerConfig oc;
  oc.weight_decay = 0.0f;
  AdamW opt(model.params(), rows, oc, cpu_backend());
  Rng rng(2);
  std::vector<int32_t> in(static_cast<size_t>(N)), tg(static_cast<size_t>(N));
  for (auto& t : in) t = int32_t(rng.below(32000));
  for (auto& t : tg) t = int32_t(rng.below(32000));
  auto step = [&] {
    model.zero_grads();
    model.forward_backward(in.data(), tg.data(), B, 1.0f);
    opt.step(model.param_span(), model.grad_span(), 3e-3f);
  };
  step();  // warm-up: first touch of every buffer
  const double t0 = now();
  for (int s = 0; s < steps; ++s) step();
  const double dt = now() - t0;
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const auto& t = model.params();
  std::printf("%-5s %-21s %10.2fM %10.2fM %10.2fM %10.0f %10.0f\n", size.c_str(), kind.c_str(), t.count() / 1e6,
              t.count(ParamRole::lowrank_factor) / 1e6, t.count(ParamRole::sparse_values) / 1e6,
              double(ru.ru_maxrss) / 1024.0, double(steps * N) / dt);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const char* th = std::getenv("CAIRN_THREADS");
    cpu_set_threads(th ? std::atoi(th) : 2);
    const std::string mode = argc > 1 ? argv[1] : "";
    if (mode == "paths") {
      bench_paths();
    } else if (mode == "model" && argc >= 4) {
      bench_model(argv[2], argv[3], argc > 4 ? std::atoi(argv[4]) : 3);
    } else if (mode == "header") {
      std::printf("%-5s %-21s %11s %11s %11s %10s %10s\n", "size", "linear", "params", "low-rank", "sparse",
                  "peakRSS_MB", "tokens/s");
    } else {
      std::fprintf(stderr, "usage: sltrain_bench paths | header | model 60m|130m KIND [steps]\n");
      return 2;
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "sltrain_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
