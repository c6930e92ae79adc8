// Low-rank and SLTrain linear weights: finite-difference gradients (linear and whole model), the
// materialized and factored paths against each other, δ = 0 against low-rank, the support
// (determinism, order, range, count, uniformity, identical across models from one seed), the dense
// weight, the weights-file round trip and the closed-form parameter counts.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "model/linear_lowrank.h"
#include "model/linear_sltrain.h"
#include "model/llama.h"
#include "model/weights_io.h"
#include "util/error.h"
#include "tests/test_support.h"
#include "trainer/config.h"
#include "util/rng.h"

namespace cairn {
namespace {

constexpr float kGuard = 12345.0f;  // written past the workspace to catch overruns

// One linear weight with its own tables and flat buffers, B made nonzero so every path carries signal.
struct Harness {
  std::unique_ptr<Linear> lin;
  ParamTable table;
  BufferTable buffers;
  std::vector<float> params, grads;

  Harness(const LinearConfig& cfg, int64_t out, int64_t in, uint64_t seed = 5) {
    lin = make_linear(cfg, "model.layers.0.mlp.up_proj", out, in, 0);
    lin->declare(table, buffers);
    params.assign(size_t(table.total()), 0.0f);
    grads.assign(size_t(table.total()), 0.0f);
    Rng rng(seed, 1);
    lin->init(params, buffers, rng);
    Rng b(seed + 100);
    for (const auto& r : table.rows())
      if (r.name.ends_with("lora_B"))
        for (auto& p : row_span(std::span<float>(params), r)) p = 0.5f * b.normal();
  }
  std::vector<float> workspace(int64_t N) const {
    std::vector<float> ws(size_t(lin->workspace_floats(N)) + 16, 0.0f);
    std::fill(ws.end() - 16, ws.end(), kGuard);
    return ws;
  }
  std::vector<float> forward(const std::vector<float>& x, int64_t N, const Backend& be = cpu_backend()) {
    std::vector<float> y(size_t(N * lin->out_features()), -1.0f), ws = workspace(N);
    lin->forward(be, y.data(), x.data(), N, params.data(), buffers, ws.data());
    for (size_t i = ws.size() - 16; i < ws.size(); ++i) EXPECT_EQ(ws[i], kGuard) << "workspace overrun";
    return y;
  }
  // Zeroes grads, returns dx.
  std::vector<float> backward(const std::vector<float>& dy, const std::vector<float>& x, int64_t N) {
    std::fill(grads.begin(), grads.end(), 0.0f);
    std::vector<float> dx(size_t(N * lin->in_features()), -1.0f), ws = workspace(N);
    lin->backward(cpu_backend(), dx.data(), false, grads.data(), dy.data(), x.data(), N, params.data(), buffers,
                  ws.data());
    for (size_t i = ws.size() - 16; i < ws.size(); ++i) EXPECT_EQ(ws[i], kGuard) << "workspace overrun";
    return dx;
  }
};

std::vector<float> randn(int64_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = rng.normal();
  return v;
}

LinearConfig lowrank_cfg(int64_t r, float alpha = 6.0f) {
  LinearConfig c;
  c.kind = LinearKind::lowrank;
  c.rank = r;
  c.alpha = alpha;
  return c;
}

LinearConfig sltrain_cfg(int64_t r, float density, const std::string& path, float alpha = 6.0f) {
  LinearConfig c = lowrank_cfg(r, alpha);
  c.kind = LinearKind::sltrain;
  c.density = density;
  c.sltrain_path = *choice_from_name<SLTrainPathSetting>(path);
  return c;
}

// Loss L = Σ y ⊙ R, so dy = R. L is linear in each single entry of B, A, the values and x, so
// central differences are exact up to rounding and the tolerance can be tight.
void check_linear_gradients(const LinearConfig& cfg) {
  const int64_t out = 7, in = 5, N = 4;
  Harness h(cfg, out, in);
  std::vector<float> x = randn(N * in, 1);
  const std::vector<float> R = randn(N * out, 2);
  auto loss = [&] {
    const auto y = h.forward(x, N);
    double s = 0;
    for (size_t i = 0; i < y.size(); ++i) s += double(y[i]) * double(R[i]);
    return s;
  };
  const std::vector<float> dx = h.backward(R, x, N);
  const float eps = 1e-2f;
  auto fd = [&](float& p) {
    const float saved = p;
    p = saved + eps;
    const double lp = loss();
    p = saved - eps;
    const double lm = loss();
    p = saved;
    return (lp - lm) / (2.0 * eps);
  };
  int checked = 0;
  for (const auto& r : h.table.rows())
    for (int64_t i = 0; i < r.numel; ++i, ++checked) {
      const double g = fd(h.params[size_t(r.offset + i)]);
      EXPECT_NEAR(h.grads[size_t(r.offset + i)], g, 1e-3 + 1e-3 * std::abs(g)) << r.name << " [" << i << "]";
    }
  for (size_t i = 0; i < x.size(); ++i) {
    const double g = fd(x[i]);
    EXPECT_NEAR(dx[i], g, 1e-3 + 1e-3 * std::abs(g)) << "dx [" << i << "]";
  }
  EXPECT_EQ(checked, h.table.count());
}

TEST(LowRankLinear, GradientsMatchFiniteDifferences) { check_linear_gradients(lowrank_cfg(3)); }
TEST(SLTrainLinear, MaterializedGradientsMatchFiniteDifferences) {
  check_linear_gradients(sltrain_cfg(3, 0.3f, "materialized"));
}
TEST(SLTrainLinear, FactoredGradientsMatchFiniteDifferences) {
  check_linear_gradients(sltrain_cfg(3, 0.3f, "factored"));
}

// Gradients accumulate into grads, dx accumulates only when asked.
TEST(SLTrainLinear, BackwardAccumulatesGradientsAndOptionallyDx) {
  for (const char* path : {"materialized", "factored"}) {
    Harness h(sltrain_cfg(3, 0.3f, path), 9, 6);
    const int64_t N = 5;
    const auto x = randn(N * 6, 3), dy = randn(N * 9, 4);
    const auto dx1 = h.backward(dy, x, N);
    const auto g1 = h.grads;
    std::vector<float> dx2 = dx1, ws = h.workspace(N);
    h.lin->backward(cpu_backend(), dx2.data(), true, h.grads.data(), dy.data(), x.data(), N, h.params.data(),
                    h.buffers, ws.data());
    for (size_t i = 0; i < g1.size(); ++i) EXPECT_NEAR(h.grads[i], 2 * g1[i], 1e-5 * (1 + std::abs(g1[i]))) << path;
    for (size_t i = 0; i < dx1.size(); ++i) EXPECT_NEAR(dx2[i], 2 * dx1[i], 1e-5 * (1 + std::abs(dx1[i]))) << path;
  }
}

void expect_close(const std::vector<float>& a, const std::vector<float>& b, const char* what) {
  ASSERT_EQ(a.size(), b.size());
  double scale = 0;
  for (float v : a) scale = std::max(scale, double(std::abs(v)));
  for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 2e-5 * (1 + scale)) << what << " [" << i << "]";
}

// N = 37 is not a multiple of the sparse kernels' row blocks (8, 32).
TEST(SLTrainLinear, MaterializedAndFactoredPathsAgree) {
  const int64_t out = 48, in = 40, N = 37;
  Harness m(sltrain_cfg(8, 0.1f, "materialized"), out, in), f(sltrain_cfg(8, 0.1f, "factored"), out, in);
  ASSERT_EQ(m.params, f.params);
  ASSERT_EQ(m.buffers.rows()[0].data, f.buffers.rows()[0].data);
  const auto x = randn(N * in, 7), dy = randn(N * out, 8);
  expect_close(m.forward(x, N), f.forward(x, N), "y");
  expect_close(m.backward(dy, x, N), f.backward(dy, x, N), "dx");
  for (const auto& r : m.table.rows()) {
    std::vector<float> gm(m.grads.begin() + r.offset, m.grads.begin() + r.offset + r.numel);
    std::vector<float> gf(f.grads.begin() + r.offset, f.grads.begin() + r.offset + r.numel);
    expect_close(gm, gf, r.name.c_str());
  }
}

// A backend that is not cpu_backend() gets the materialized path through scatter_add/gather_add
// and its own copy of the support, which must follow a support reloaded into the buffer table
// (as a checkpoint or weights load does). A second CpuBackend stands in for a GPU here.
TEST(SLTrainLinear, OffHostBackendMirrorsTheSupportAndFollowsReloads) {
  const int64_t out = 30, in = 26, N = 11;
  const CpuBackend off_host(cpu_gemm(CpuMath::fp32));
  Harness h(sltrain_cfg(4, 0.2f, "auto"), out, in), other(sltrain_cfg(4, 0.2f, "auto"), out, in, /*seed=*/9);
  auto* lin = static_cast<SLTrainLinear*>(h.lin.get());
  EXPECT_EQ(lin->path_on(off_host, N), SLTrainPath::materialized);
  const auto x = randn(N * in, 3);
  expect_close(h.forward(x, N), h.forward(x, N, off_host), "y before the reload");
  ASSERT_NE(h.buffers.rows()[0].data, other.buffers.rows()[0].data);
  h.buffers.rows()[0].data = other.buffers.rows()[0].data;
  h.params = other.params;
  expect_close(other.forward(x, N), h.forward(x, N, off_host), "y after the reload");

  Harness f(sltrain_cfg(4, 0.2f, "factored"), out, in);
  EXPECT_NE(error_of([&] { f.forward(x, N, off_host); }).find("sltrain_path = \"factored\""), std::string::npos);
}

TEST(SLTrainLinear, ZeroDensityEqualsLowRankExactly) {
  const int64_t out = 12, in = 10, N = 9;
  Harness lr(lowrank_cfg(4), out, in), sl(sltrain_cfg(4, 0.0f, "factored"), out, in);
  ASSERT_EQ(static_cast<SLTrainLinear*>(sl.lin.get())->nnz(), 0);
  // Same factors in both (their init streams differ by the support seed draw).
  std::copy(lr.params.begin(), lr.params.end(), sl.params.begin());
  const auto x = randn(N * in, 1), dy = randn(N * out, 2);
  EXPECT_EQ(lr.forward(x, N), sl.forward(x, N));
  EXPECT_EQ(lr.backward(dy, x, N), sl.backward(dy, x, N));
  EXPECT_TRUE(std::equal(lr.grads.begin(), lr.grads.end(), sl.grads.begin()));
}

TEST(SLTrainLinear, DenseWeightIsScaledProductPlusSparse) {
  const int64_t out = 11, in = 9, r = 3;
  const float alpha = 5.0f;
  Harness h(sltrain_cfg(r, 0.2f, "factored", alpha), out, in);
  const auto& t = h.table;
  const float* B = h.params.data() + t.at("model.layers.0.mlp.up_proj.lora_B").offset;
  const float* A = h.params.data() + t.at("model.layers.0.mlp.up_proj.lora_A").offset;
  const float* v = h.params.data() + t.at("model.layers.0.mlp.up_proj.sparse_value").offset;
  const auto& idx = h.buffers.rows()[0].data;
  ASSERT_EQ(h.buffers.rows()[0].name, "model.layers.0.mlp.up_proj.sparse_index");
  std::vector<double> ref(size_t(out * in), 0.0);
  for (int64_t i = 0; i < out; ++i)
    for (int64_t j = 0; j < in; ++j)
      for (int64_t k = 0; k < r; ++k) ref[size_t(i * in + j)] += double(alpha) / double(r) * B[i * r + k] * A[k * in + j];
  for (size_t k = 0; k < idx.size(); ++k) ref[size_t(idx[k])] += v[k];
  std::vector<float> W(size_t(out * in));
  h.lin->dense_weight(W.data(), h.params, h.buffers);
  for (size_t i = 0; i < W.size(); ++i) EXPECT_NEAR(W[i], ref[i], 1e-6) << i;
  // And the forward computes x·Wᵀ.
  const int64_t N = 3;
  const auto x = randn(N * in, 4), y = h.forward(x, N);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t i = 0; i < out; ++i) {
      double s = 0;
      for (int64_t j = 0; j < in; ++j) s += double(x[size_t(n * in + j)]) * ref[size_t(i * in + j)];
      EXPECT_NEAR(y[size_t(n * out + i)], s, 1e-5);
    }
}

TEST(SLTrainLinear, InitFollowsTheOfficialCode) {
  const int64_t out = 30, in = 25;
  LinearConfig c = sltrain_cfg(4, 0.2f, "auto");
  auto lin = make_linear(c, "w", out, in, 0);
  ParamTable t;
  BufferTable b;
  lin->declare(t, b);
  std::vector<float> p(size_t(t.total()), 7.0f);
  Rng rng(1);
  lin->init(p, b, rng);
  const float a = 1.0f / std::sqrt(float(in));
  for (float v : row_span(std::span<const float>(p), t.at("w.lora_B"))) EXPECT_EQ(v, 0.0f);
  for (const char* name : {"w.lora_A", "w.sparse_value"}) {
    float lo = 1, hi = -1;
    for (float v : row_span(std::span<const float>(p), t.at(name))) lo = std::min(lo, v), hi = std::max(hi, v);
    EXPECT_GE(lo, -a);
    EXPECT_LE(hi, a);
    EXPECT_LT(lo, -0.8f * a) << name;
    EXPECT_GT(hi, 0.8f * a) << name;
  }
  EXPECT_EQ(t.at("w.lora_B").role, ParamRole::lowrank_factor);
  EXPECT_EQ(t.at("w.lora_A").shape, (std::vector<int64_t>{4, 25}));
  EXPECT_EQ(t.at("w.sparse_value").role, ParamRole::sparse_values);
  EXPECT_EQ(t.at("w.sparse_value").numel, 150);
}

// ---- the support ----

TEST(SLTrainSupport, CountRoundsDownFromTheDecimalDensity) {
  EXPECT_EQ(sltrain_nnz(0.03f, 512, 512), 7864);
  EXPECT_EQ(sltrain_nnz(0.03f, 10, 10), 3);  // 0.03f·100 = 2.99999… must not lose one
  EXPECT_EQ(sltrain_nnz(0.05f, 11008, 4096), 2254438);
  EXPECT_EQ(sltrain_nnz(0.0f, 8, 8), 0);
}

TEST(SLTrainSupport, SortedUniqueInRangeDeterministic) {
  const int64_t out = 300, in = 200, nnz = sltrain_nnz(0.03f, out, in);
  Rng a(42), b(42), c(43);
  const auto s = sltrain_support(out, in, nnz, a);
  ASSERT_EQ(int64_t(s.size()), nnz);
  EXPECT_TRUE(std::adjacent_find(s.begin(), s.end(), [](int32_t x, int32_t y) { return x >= y; }) == s.end());
  EXPECT_GE(s.front(), 0);
  EXPECT_LT(s.back(), out * in);
  EXPECT_EQ(s, sltrain_support(out, in, nnz, b));
  EXPECT_NE(s, sltrain_support(out, in, nnz, c));
  // Taking every entry is the full range.
  Rng d(1);
  const auto all = sltrain_support(3, 4, 12, d);
  for (int32_t i = 0; i < 12; ++i) EXPECT_EQ(all[size_t(i)], i);
}

double chi_square(const std::vector<int64_t>& counts, double expected) {
  double s = 0;
  for (int64_t c : counts) s += (double(c) - expected) * (double(c) - expected) / expected;
  return s;
}

// Pearson's statistic with df degrees of freedom has mean df and sd sqrt(2·df); 6 sd is generous.
// A support drawn per row, or biased to low indices, fails.
TEST(SLTrainSupport, UniformOverRowsAndColumns) {
  const int64_t out = 400, in = 300, nnz = sltrain_nnz(0.05f, out, in);
  Rng rng(2024);
  const auto s = sltrain_support(out, in, nnz, rng);
  std::vector<int64_t> rows(size_t(out), 0), cols(size_t(in), 0);
  for (int32_t f : s) ++rows[size_t(f / in)], ++cols[size_t(f % in)];
  const double df_r = double(out - 1), df_c = double(in - 1);
  EXPECT_LT(chi_square(rows, double(nnz) / double(out)), df_r + 6 * std::sqrt(2 * df_r));
  EXPECT_LT(chi_square(cols, double(nnz) / double(in)), df_c + 6 * std::sqrt(2 * df_c));
  // Halves of the flat range hold about half each (a low-index bias shows here).
  const int64_t low = std::count_if(s.begin(), s.end(), [&](int32_t f) { return f < out * in / 2; });
  EXPECT_NEAR(double(low) / double(nnz), 0.5, 6 * 0.5 / std::sqrt(double(nnz)));
}

// Every 2-subset of 6 entries comes out equally often (15 subsets, 14 degrees of freedom).
TEST(SLTrainSupport, EverySubsetEquallyLikely) {
  std::map<std::vector<int32_t>, int64_t> seen;
  Rng rng(7);
  const int64_t draws = 30000;
  for (int64_t t = 0; t < draws; ++t) ++seen[sltrain_support(2, 3, 2, rng)];
  ASSERT_EQ(seen.size(), 15u);
  std::vector<int64_t> counts;
  for (const auto& [k, c] : seen) counts.push_back(c);
  EXPECT_LT(chi_square(counts, double(draws) / 15.0), 14 + 6 * std::sqrt(28.0));
}

TEST(SLTrainSupport, TooLargeForInt32IsAnError) {
  Rng rng(1);
  EXPECT_THROW(sltrain_support(65536, 65536, 1, rng), Error);
}

// ---- the whole model ----

ModelConfig tiny(LinearKind kind, const std::string& path = "auto") {
  ModelConfig c;
  c.vocab_size = 11;
  c.dim = 8;
  c.n_layers = 2;
  c.n_heads = 2;
  c.ffn_dim = 12;
  c.seq_len = 6;
  c.linear.kind = kind;
  c.linear.rank = 3;
  c.linear.alpha = 6.0f;
  c.linear.density = 0.25f;
  c.linear.sltrain_path = *choice_from_name<SLTrainPathSetting>(path);
  return c;
}

TEST(SLTrainModel, LowRankGradientsMatchFiniteDifferences) { check_model_gradients(tiny(LinearKind::lowrank)); }
TEST(SLTrainModel, MaterializedGradientsMatchFiniteDifferences) {
  check_model_gradients(tiny(LinearKind::sltrain, "materialized"));
}
TEST(SLTrainModel, FactoredGradientsMatchFiniteDifferences) {
  check_model_gradients(tiny(LinearKind::sltrain, "factored"));
}

TEST(SLTrainModel, SupportIdenticalForOneSeedDistinctAcrossLayersAndSeeds) {
  const ModelConfig c = tiny(LinearKind::sltrain);
  LlamaModel a(c, cpu_backend(), 1), b(c, cpu_backend(), 1), d(c, cpu_backend(), 1);
  a.init_weights(11);
  b.init_weights(11);
  d.init_weights(12);
  const auto& ra = a.buffers().rows();
  ASSERT_EQ(ra.size(), 14u);  // 7 weights × 2 layers
  EXPECT_EQ(ra[0].name, "model.layers.0.self_attn.q_proj.sparse_index");
  for (size_t i = 0; i < ra.size(); ++i) {
    EXPECT_EQ(ra[i].data, b.buffers().rows()[i].data) << ra[i].name;
    EXPECT_NE(ra[i].data, d.buffers().rows()[i].data) << ra[i].name;
  }
  // q, k, v, o of layer 0 have the same shape but their own supports.
  const std::set<std::vector<int32_t>> qkvo{ra[0].data, ra[1].data, ra[2].data, ra[3].data};
  EXPECT_EQ(qkvo.size(), 4u);
  const std::set<std::vector<int32_t>> layers{ra[0].data, ra[7].data};
  EXPECT_EQ(layers.size(), 2u);
  EXPECT_EQ(a.param_span()[0], b.param_span()[0]);
}

TEST(SLTrainModel, WeightsRoundTripWithSupports) {
  const ModelConfig c = tiny(LinearKind::sltrain);
  LlamaModel a(c, cpu_backend(), 2), b(c, cpu_backend(), 2);
  a.init_weights(21);
  Rng rng(4);
  for (auto& p : a.param_span()) p += 0.1f * rng.normal();  // B nonzero too
  b.init_weights(22);
  const std::string path = (std::filesystem::temp_directory_path() / "cairn_sltrain_roundtrip.h5").string();
  save_model_weights(a, path, "[model]\n");
  load_model_weights(b, path);
  std::filesystem::remove(path);
  for (const auto& r : a.params().rows()) {
    const auto pa = row_span(a.param_span(), r), pb = row_span(b.param_span(), r);
    EXPECT_TRUE(std::equal(pa.begin(), pa.end(), pb.begin())) << r.name;
  }
  for (size_t i = 0; i < a.buffers().rows().size(); ++i)
    EXPECT_EQ(a.buffers().rows()[i].data, b.buffers().rows()[i].data);
  const auto in = random_tokens(12, c.vocab_size, 1), tg = random_tokens(12, c.vocab_size, 2);
  EXPECT_EQ(a.forward_loss(in.data(), tg.data(), 2), b.forward_loss(in.data(), tg.data(), 2));
  for (size_t i = 0; i < a.linears().size(); ++i) {
    const int64_t n = a.linears()[i]->out_features() * a.linears()[i]->in_features();
    std::vector<float> wa(static_cast<size_t>(n)), wb(static_cast<size_t>(n));
    a.linears()[i]->dense_weight(wa.data(), a.param_span(), a.buffers());
    b.linears()[i]->dense_weight(wb.data(), b.param_span(), b.buffers());
    EXPECT_EQ(wa, wb);
  }
}

TEST(SLTrainModel, ParameterCountsEqualTheFormula) {
  for (LinearKind kind : {LinearKind::dense, LinearKind::lowrank, LinearKind::sltrain}) {
    const ModelConfig c = tiny(kind);
    LlamaModel m(c, cpu_backend(), 1);
    EXPECT_EQ(m.params().count(), model_param_count(c)) << linear_kind_name(kind);
    const auto& t = m.params();
    EXPECT_EQ(t.count(ParamRole::matrix) + t.count(ParamRole::lowrank_factor) + t.count(ParamRole::sparse_values),
              linear_param_count(c));
  }
  // By kind, for the SLTrain tiny model: r·(out+in) per weight, floor(δ·out·in) values.
  const ModelConfig c = tiny(LinearKind::sltrain);
  LlamaModel m(c, cpu_backend(), 1);
  EXPECT_EQ(m.params().count(ParamRole::lowrank_factor), 2 * (4 * 3 * 16 + 3 * 3 * 20));
  EXPECT_EQ(m.params().count(ParamRole::sparse_values), 2 * (4 * 16 + 3 * 24));
  EXPECT_EQ(m.params().count(ParamRole::matrix), 0);
}

// The paper: 60M SLTrain (r 128, alpha 32, δ 0.03) ≈ 44M parameters against ≈ 58M full-rank,
// 130M (r 256, δ 0.03) ≈ 97M against ≈ 134M. The 60M table is built to check it against the formula.
TEST(SLTrainModel, PaperPresetParameterCounts) {
  ModelConfig c;
  c.vocab_size = 32000, c.dim = 512, c.n_layers = 8, c.n_heads = 8, c.ffn_dim = 1376, c.seq_len = 16;
  EXPECT_NEAR(double(model_param_count(c)) / 1e6, 58.0, 0.5);
  c.linear = sltrain_cfg(128, 0.03f, "auto", 32.0f);
  EXPECT_NEAR(double(model_param_count(c)) / 1e6, 44.0, 1.0);
  LlamaModel m(c, cpu_backend(), 1);
  EXPECT_EQ(m.params().count(), model_param_count(c));
  ModelConfig d;
  d.vocab_size = 32000, d.dim = 768, d.n_layers = 12, d.n_heads = 12, d.ffn_dim = 2048, d.seq_len = 16;
  EXPECT_NEAR(double(model_param_count(d)) / 1e6, 134.0, 1.0);
  d.linear = sltrain_cfg(256, 0.03f, "auto", 16.0f);
  EXPECT_NEAR(double(model_param_count(d)) / 1e6, 97.0, 1.0);
}

TEST(SLTrainModel, InvalidPathIsRejected) {
  TrainConfig t;  // a path that is none of them is refused where the config is read
  EXPECT_NE(error_of([&] { config_apply_override(t, "model.sltrain_path=sparse"); })
                .find("is \"sparse\": use \"auto\", \"materialized\" or \"factored\""),
            std::string::npos);
}

}  // namespace
}  // namespace cairn
