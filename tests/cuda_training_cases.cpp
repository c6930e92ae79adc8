// Training on the GPU, checked at the level a resumed run depends on (part of the CUDA check table,
// tests/cuda_cases.h): a GPU step is bitwise repeatable, so a run restarted from saved parameters
// and AdamW moments equals the uninterrupted one bit for bit; and a run that moves CPU → GPU → CPU
// (what a checkpoint written on one device and resumed on the other does: fp32 buffers copied
// through the host) follows the all-CPU run within fp32 tolerance. Checkpoint files themselves are
// device-independent host buffers, tested on the CPU (checkpoint_test, train_test). Also Fira's and
// GaLore's per-matrix steps on the GPU against the CPU.
#include <cmath>
#include <cstring>

#include "backend/backend.h"
#include "model/llama.h"
#include "tests/cuda_cases.h"
#include "trainer/optim/fira.h"
#include "util/error.h"
#include "util/rng.h"

namespace cairn {
namespace {

using Vec = std::vector<float>;

// What a checkpoint holds for AdamW: parameters and both moments, as host copies.
struct HostState {
  Vec params, m, v;
};

// A model and its AdamW moments on one backend, stepped on a fixed token stream (step s always
// sees the same tokens, whatever backend or restart).
class Run {
 public:
  static constexpr int64_t kBatch = 3;

  Run(const Backend& be, const HostState* from) : be_(be), model_(check_model_config(), be, kBatch) {
    model_.init_weights(5);
    const int64_t n = model_.params().total();
    m_ = DeviceArray<float>(be, n);
    v_ = DeviceArray<float>(be, n);
    m_.zero();
    v_.zero();
    if (from) {
      be.copy_to_device(model_.param_data(), from->params.data(), n * 4);
      be.copy_to_device(m_.data(), from->m.data(), n * 4);
      be.copy_to_device(v_.data(), from->v.data(), n * 4);
    }
  }

  // Optimizer step `s` (0-based): forward/backward on step s's tokens, then AdamW at t = s + 1.
  float step(int64_t s) {
    const int64_t n_tok = kBatch * check_model_config().seq_len;
    const auto [in, tg] = check_tokens(n_tok, 1000 + uint64_t(s));
    model_.zero_grads();
    const float loss = model_.forward_backward(in.data(), tg.data(), kBatch, 1.0f);
    const float b1 = 0.9f, b2 = 0.95f;
    const float t = float(s + 1);
    be_.adamw_update(model_.param_data(), model_.grad_data(), m_.data(), v_.data(), model_.params().total(), 3e-3f,
                     b1, b2, 1e-8f, 0.1f, 1.0f - std::pow(b1, t), 1.0f - std::pow(b2, t));
    return loss;
  }

  HostState save() {
    const int64_t n = model_.params().total();
    HostState h{Vec(static_cast<size_t>(n)), Vec(static_cast<size_t>(n)), Vec(static_cast<size_t>(n))};
    be_.copy_to_host(h.params.data(), model_.param_data(), n * 4);
    be_.copy_to_host(h.m.data(), m_.data(), n * 4);
    be_.copy_to_host(h.v.data(), v_.data(), n * 4);
    return h;
  }

 private:
  const Backend& be_;
  LlamaModel model_;
  DeviceArray<float> m_, v_;
};

bool bitwise_equal(const Vec& a, const Vec& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Steps [first, last) on `be`, from `from` (nullptr: a fresh model), appending each loss to
// `losses`; returns the state after the last step.
HostState run_steps(const Backend& be, const HostState* from, int64_t first, int64_t last, Vec& losses) {
  Run run(be, from);
  for (int64_t s = first; s < last; ++s) losses.push_back(run.step(s));
  return run.save();
}

// Five GPU steps straight through, twice; and three steps, a save, then two steps in a fresh model
// restored from the save.
void gpu_resume_is_bitwise(Checker& c, CudaMath math) {
  const Backend& gpu = backend_under_test(math);
  Vec straight, again, resumed;
  const HostState end_straight = run_steps(gpu, nullptr, 0, 5, straight);
  HostState saved, end_again;
  {
    Run run(gpu, nullptr);  // uninterrupted, saving after step 3 on the way
    for (int64_t s = 0; s < 3; ++s) again.push_back(run.step(s));
    saved = run.save();
    for (int64_t s = 3; s < 5; ++s) again.push_back(run.step(s));
    end_again = run.save();
  }
  resumed.assign(again.begin(), again.begin() + 3);
  const HostState end_resumed = run_steps(gpu, &saved, 3, 5, resumed);
  c.expect(bitwise_equal(straight, again) && bitwise_equal(end_straight.params, end_again.params),
           "two identical GPU runs: losses and parameters bitwise equal");
  c.expect(bitwise_equal(straight, resumed), "resumed GPU run: losses bitwise equal to the uninterrupted run");
  c.expect(bitwise_equal(end_straight.params, end_resumed.params) && bitwise_equal(end_straight.m, end_resumed.m) &&
               bitwise_equal(end_straight.v, end_resumed.v),
           "resumed GPU run: parameters and AdamW moments bitwise equal");
}

// Two steps on the CPU, two on the GPU, two on the CPU again, against six on the CPU.
void cpu_gpu_cpu_round_trip(Checker& c) {
  const Backend& cpu = cpu_backend();
  const Backend& gpu = backend_under_test();
  Vec reference, mixed;
  const HostState end_reference = run_steps(cpu, nullptr, 0, 6, reference);
  const HostState on_cpu = run_steps(cpu, nullptr, 0, 2, mixed);
  const HostState on_gpu = run_steps(gpu, &on_cpu, 2, 4, mixed);
  const HostState end_mixed = run_steps(cpu, &on_gpu, 4, 6, mixed);
  c.expect(bitwise_equal(Vec(reference.begin(), reference.begin() + 2), Vec(mixed.begin(), mixed.begin() + 2)),
           "CPU steps before the hand-off: losses bitwise equal");
  // fp32 on both devices; only summation order differs, compounded over four steps.
  c.expect_close("losses CPU -> GPU -> CPU", reference, mixed, 1e-4, 0);
  c.expect_close("parameters after 6 steps", end_reference.params, end_mixed.params, 1e-3, 1e-5);
}

// Gradients with a well-separated spectrum (σ_i = 10·0.6^i), so the top singular vectors, and
// with them the projections, are well defined on both backends.
Vec spectral_gradient(Rng& rng, int64_t m, int64_t n) {
  Vec g(static_cast<size_t>(m * n), 0.0f);
  for (int i = 0; i < 16; ++i) {
    Vec x(static_cast<size_t>(m)), y(static_cast<size_t>(n));
    for (float& e : x) e = rng.normal();
    for (float& e : y) e = rng.normal();
    const float sigma = 10.0f * std::pow(0.6f, float(i));
    for (int64_t a = 0; a < m; ++a)
      for (int64_t b = 0; b < n; ++b) g[size_t(a * n + b)] += sigma * x[size_t(a)] * y[size_t(b)] / float(m);
  }
  return g;
}

// Five Fira (and GaLore) steps on one matrix, projection refreshed at steps 0, 2 and 4, on both
// backends from the same state: weights, moments, projection and the limiter's norm agree.
void lowrank_steps_match(Checker& c, bool fira, int64_t m, int64_t n) {
  LowRankConfig cfg;
  cfg.rank = 6;
  cfg.update_gap = 2;
  cfg.residual = fira;
  cfg.weight_decay = 0.01f;
  const LowRankShape s = lowrank_shape(cfg, m, n);
  struct Result {
    Vec w, proj, m1, m2;
    float limiter = 0;
  } res[2];
  const Backend* backends[2] = {&cpu_backend(), &backend_under_test()};
  for (int b = 0; b < 2; ++b) {
    const Backend& be = *backends[b];
    LowRankWorkspace ws(be);
    ws.reserve(s);
    Rng rng(77);
    Vec w0(static_cast<size_t>(m * n));
    for (float& e : w0) e = 0.1f * rng.normal();
    DeviceArray<float> w(be, m * n), g(be, m * n), proj(be, s.proj_numel()), m1(be, s.moment_numel()),
        m2(be, s.moment_numel()), limiter(be, 1);
    be.copy_to_device(w.data(), w0.data(), m * n * 4);
    proj.zero();
    m1.zero();
    m2.zero();
    limiter.zero();
    for (int64_t t = 0; t < 5; ++t) {
      const Vec grad = spectral_gradient(rng, m, n);
      be.copy_to_device(g.data(), grad.data(), m * n * 4);
      lowrank_step(cfg, s, w.data(), g.data(), proj.data(), m1.data(), m2.data(), limiter.data(), t, 0.01f, ws);
    }
    auto host = [&](const DeviceArray<float>& a) {
      Vec h(static_cast<size_t>(a.size()));
      be.copy_to_host(h.data(), a.data(), a.size() * 4);
      return h;
    };
    res[b] = {host(w), host(proj), host(m1), host(m2), host(limiter)[0]};
  }
  c.expect_close("projection", res[0].proj, res[1].proj, 1e-3, 1e-4);
  c.expect_close("exp_avg", res[0].m1, res[1].m1, 1e-3, 1e-5);
  c.expect_close("exp_avg_sq", res[0].m2, res[1].m2, 1e-3, 1e-8);
  c.expect_close("weights", res[0].w, res[1].w, 1e-4, 1e-6);
  if (fira) c.expect_close("limiter norm", res[0].limiter, res[1].limiter, 1e-4, 0);
}

}  // namespace

std::vector<CudaCheck> cuda_training_checks() {
  std::vector<CudaCheck> out = {{"train_gpu_resume_bitwise", [](Checker& c) { gpu_resume_is_bitwise(c, CudaMath::fp32); }},
                                {"train_gpu_resume_bitwise_bf16",
                                 [](Checker& c) { gpu_resume_is_bitwise(c, CudaMath::bf16); }},
                                {"train_cpu_gpu_cpu", cpu_gpu_cpu_round_trip}};
  for (bool fira : {true, false})
    for (auto [m, n] : {std::pair<int64_t, int64_t>{72, 40}, {40, 72}})
      out.push_back({str(fira ? "fira" : "galore", "_steps_", m, "x", n),
                     [=](Checker& c) { lowrank_steps_match(c, fira, m, n); }});
  return out;
}

}  // namespace cairn
