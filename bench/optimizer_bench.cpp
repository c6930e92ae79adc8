// Optimizer step time and state memory of AdamW, GaLore and Fira on the 60M preset's shapes
// (d 512, 8 layers, FFN 1376, vocabulary 32000, untied embeddings), rank 128. The projection
// refresh step (an SVD per matrix) is timed separately from ordinary steps.
// Usage: optimizer_bench [layers=8] [ordinary_reps=5] [refresh_reps=1, at least 1]; fastest repetition shown.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "trainer/optim/fira.h"
#include "util/rng.h"

using namespace cairn;

namespace {

struct Shape {
  const char* name;
  int64_t m, n;
  bool lowrank;
};

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Plain AdamW as fira_adamw.py writes it (bias correction in the step size, decay after).
void adamw(float* w, const float* g, float* m, float* v, int64_t n, float lr, int64_t t) {
  const float b1 = 0.9f, b2 = 0.999f, eps = 1e-6f;
  const float ss = float(lr * std::sqrt(1 - std::pow(0.999, double(t))) / (1 - std::pow(0.9, double(t))));
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    m[i] = m[i] * b1 + g[i] * (1 - b1);
    v[i] = v[i] * b2 + g[i] * g[i] * (1 - b2);
    w[i] -= ss * m[i] / (std::sqrt(v[i]) + eps);
  }
}

struct Tensor {
  Shape shape;
  std::vector<float> w, g, m1, m2, proj;
  float prev = 0;
  LowRankShape ls;
};

}  // namespace

int main(int argc, char** argv) {
  const int layers = argc > 1 ? std::atoi(argv[1]) : 8;
  const int reps = argc > 2 ? std::atoi(argv[2]) : 5;
  // Ordinary steps are timed after the first refresh, so there is always one.
  const int refresh_reps = std::max(1, argc > 3 ? std::atoi(argv[3]) : 1);
  LowRankConfig base;  // rank 128, alpha 0.25, gap 200, code residual form
  std::vector<Shape> shapes = {{"embed_tokens", 32000, 512, false}, {"lm_head", 32000, 512, false}};
  for (int l = 0; l < layers; ++l) {
    for (const char* n : {"q_proj", "k_proj", "v_proj", "o_proj"}) shapes.push_back({n, 512, 512, true});
    shapes.push_back({"gate_proj", 1376, 512, true});
    shapes.push_back({"up_proj", 1376, 512, true});
    shapes.push_back({"down_proj", 512, 1376, true});
  }
  std::printf("optimizer_bench: %d layers, rank %lld, %d threads (OpenMP/OpenBLAS), norms omitted\n", layers,
              (long long)base.rank, omp_get_max_threads());

  Rng rng(1);
  for (const char* opt : {"adamw", "galore", "fira"}) {
    const bool lowrank_opt = std::string(opt) != "adamw";
    LowRankConfig cfg = base;
    cfg.residual = std::string(opt) == "fira";
    std::vector<Tensor> ts;
    LowRankWorkspace ws;
    int64_t state_floats = 0;
    for (const Shape& s : shapes) {
      Tensor t;
      t.shape = s;
      t.w.resize(size_t(s.m * s.n));
      t.g.resize(t.w.size());
      for (float& x : t.w) x = 0.02f * rng.normal();
      for (float& x : t.g) x = rng.normal();
      if (lowrank_opt && s.lowrank) {
        t.ls = lowrank_shape(cfg, s.m, s.n);
        ws.reserve(t.ls);
        t.proj.assign(size_t(t.ls.proj_numel()), 0);
        t.m1.assign(size_t(t.ls.moment_numel()), 0);
        state_floats += t.ls.state_numel(cfg.residual);
      } else {
        t.m1.assign(t.w.size(), 0);
        state_floats += 2 * int64_t(t.w.size());
      }
      t.m2 = t.m1;
      ts.push_back(std::move(t));
    }
    // One step over all tensors at step index t; seconds accumulate into sec_matrix / sec_plain.
    double sec_matrix = 0, sec_plain = 0;
    auto one_step = [&](int64_t t) {
      for (Tensor& x : ts) {
        double t0 = now();
        if (lowrank_opt && x.shape.lowrank) {
          lowrank_step(cfg, x.ls, x.w.data(), x.g.data(), x.proj.data(), x.m1.data(), x.m2.data(), &x.prev, t,
                       0.01f, ws);
          sec_matrix += now() - t0;
        } else {
          adamw(x.w.data(), x.g.data(), x.m1.data(), x.m2.data(), int64_t(x.w.size()), 0.01f, t + 1);
          (x.shape.lowrank ? sec_matrix : sec_plain) += now() - t0;
        }
      }
    };
    // Refresh steps are t = 0, gap, 2·gap...; ordinary steps are the ones between. The machine
    // may be shared, so each figure is the fastest repetition.
    double refresh = 1e30, ordinary = 1e30, refresh_matrix = 1e30, ordinary_matrix = 1e30;
    for (int k = 0; k < refresh_reps; ++k) {
      const int64_t t = k * cfg.update_gap;
      sec_matrix = 0;
      double t0 = now();
      one_step(t);
      refresh = std::min(refresh, now() - t0);
      refresh_matrix = std::min(refresh_matrix, sec_matrix);
      for (int j = 0; j < reps && k == 0; ++j) {  // ordinary steps after the first refresh
        sec_matrix = 0;
        double t1 = now();
        one_step(t + 1 + j);
        ordinary = std::min(ordinary, now() - t1);
        ordinary_matrix = std::min(ordinary_matrix, sec_matrix);
      }
    }
    const double MiB = 1024.0 * 1024.0;
    std::printf("%-7s state %8.1f MiB | ordinary step %7.1f ms (matrices %7.1f ms)", opt, 4.0 * state_floats / MiB,
                1e3 * ordinary, 1e3 * ordinary_matrix);
    if (lowrank_opt)
      std::printf(" | refresh step %8.1f ms (matrices %8.1f ms)", 1e3 * refresh, 1e3 * refresh_matrix);
    std::printf("\n");
    if (lowrank_opt) {
      const double amortized = (refresh + (cfg.update_gap - 1) * ordinary) / cfg.update_gap;
      std::printf("%-7s amortized over gap %lld: %.1f ms/step\n", opt, (long long)cfg.update_gap, 1e3 * amortized);
    }
  }
  // Per-shape cost of one projection refresh (the SVD alone) and of one ordinary Fira step.
  LowRankConfig cfg = base;
  for (auto [m, n] : {std::pair<int64_t, int64_t>{512, 512}, {1376, 512}, {512, 1376}}) {
    LowRankShape s = lowrank_shape(cfg, m, n);
    LowRankWorkspace ws;
    ws.reserve(s);
    std::vector<float> g(size_t(m * n)), w(g.size()), proj(size_t(s.proj_numel())), m1(size_t(s.moment_numel())),
        m2(m1.size());
    for (float& x : g) x = rng.normal();
    float prev = 0;
    double svd = 1e30;
    for (int k = 0; k < 3; ++k) {
      double t0 = now();
      lowrank_refresh_projection(cpu_backend(), proj.data(), g.data(), s);
      svd = std::min(svd, now() - t0);
    }
    lowrank_step(cfg, s, w.data(), g.data(), proj.data(), m1.data(), m2.data(), &prev, 0, 0.01f, ws);
    double step = 1e30;
    for (int k = 1; k <= 10; ++k) {
      double t0 = now();
      lowrank_step(cfg, s, w.data(), g.data(), proj.data(), m1.data(), m2.data(), &prev, k, 0.01f, ws);
      step = std::min(step, now() - t0);
    }
    std::printf("shape %4lldx%-4lld: svd refresh %7.2f ms, ordinary fira step %6.2f ms\n", (long long)m,
                (long long)n, 1e3 * svd, 1e3 * step);
  }
  return 0;
}
