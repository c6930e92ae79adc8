// Table-driven gradient checks of every backend op: one record per op gives its forward and
// backward on flat inputs; the harness compares backward against central finite differences of
// L = Σ r ⊙ forward(x) for a fixed random r. A new op needs one new record.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <vector>

#include "backend/backend.h"
#include "util/rng.h"

namespace cairn {
namespace {

using Vec = std::vector<float>;

struct OpCase {
  const char* name;
  std::vector<int64_t> input_sizes;
  std::vector<bool> differentiable;  // per input
  std::function<Vec(const std::vector<Vec>&)> forward;
  // Gradients of Σ dout ⊙ forward(x) w.r.t. each input (empty for non-differentiable ones).
  std::function<std::vector<Vec>(const std::vector<Vec>&, const Vec&)> backward;
  float h = 1e-2f, rtol = 2e-2f, atol = 2e-4f;
};

const Backend& be = cpu_backend();
constexpr int64_t B = 2, T = 5, NH = 2, HS = 4, C = NH * HS, V = 7, F = 6;

Vec rope_table(bool cosine) {
  Vec t(size_t(T * HS / 2));
  for (int64_t p = 0; p < T; ++p)
    for (int64_t j = 0; j < HS / 2; ++j) {
      double a = double(p) * std::pow(10000.0, -2.0 * double(j) / double(HS));
      t[size_t(p * HS / 2 + j)] = float(cosine ? std::cos(a) : std::sin(a));
    }
  return t;
}

std::vector<OpCase> op_cases() {
  std::vector<OpCase> cases;
  cases.push_back({"matmul_nt", {3 * 4, 5 * 4}, {true, true},
                   [](const std::vector<Vec>& x) {
                     Vec y(15);
                     be.matmul(y.data(), x[0].data(), x[1].data(), 3, 5, 4, false, true, 1, 0);
                     return y;
                   },
                   [](const std::vector<Vec>& x, const Vec& dy) {
                     Vec da(12), db(20);
                     be.matmul(da.data(), dy.data(), x[1].data(), 3, 4, 5, false, false, 1, 0);
                     be.matmul(db.data(), dy.data(), x[0].data(), 5, 4, 3, true, false, 1, 0);
                     return std::vector<Vec>{da, db};
                   }});
  cases.push_back({"rmsnorm", {B * T * C, C}, {true, true},
                   [](const std::vector<Vec>& x) {
                     Vec y(size_t(B * T * C)), r(size_t(B * T));
                     be.rmsnorm_forward(y.data(), r.data(), x[0].data(), x[1].data(), B * T, C, 1e-5f);
                     return y;
                   },
                   [](const std::vector<Vec>& x, const Vec& dy) {
                     Vec y(size_t(B * T * C)), r(size_t(B * T)), dx(x[0].size(), 0.0f), dw(x[1].size(), 0.0f);
                     be.rmsnorm_forward(y.data(), r.data(), x[0].data(), x[1].data(), B * T, C, 1e-5f);
                     be.rmsnorm_backward(dx.data(), dw.data(), dy.data(), x[0].data(), x[1].data(), r.data(), B * T, C);
                     return std::vector<Vec>{dx, dw};
                   }});
  cases.push_back({"rope", {B * T * C}, {true},
                   [](const std::vector<Vec>& x) {
                     Vec y = x[0], c = rope_table(true), s = rope_table(false);
                     be.rope_forward(y.data(), c.data(), s.data(), B, T, NH, HS);
                     return y;
                   },
                   [](const std::vector<Vec>&, const Vec& dy) {
                     Vec dx = dy, c = rope_table(true), s = rope_table(false);
                     be.rope_backward(dx.data(), c.data(), s.data(), B, T, NH, HS);
                     return std::vector<Vec>{dx};
                   }});
  cases.push_back({"attention", {B * T * C, B * T * C, B * T * C}, {true, true, true},
                   [](const std::vector<Vec>& x) {
                     Vec y(size_t(B * T * C)), p(size_t(be.attention_saved_floats(B, T, NH, HS)));
                     be.attention_forward(y.data(), p.data(), x[0].data(), x[1].data(), x[2].data(), B, T, NH, HS);
                     return y;
                   },
                   [](const std::vector<Vec>& x, const Vec& dy) {
                     Vec y(size_t(B * T * C)), p(size_t(be.attention_saved_floats(B, T, NH, HS)));
                     Vec s(size_t(be.attention_scratch_floats(B, T, NH, HS)));
                     Vec dq(y.size()), dk(y.size()), dv(y.size());
                     be.attention_forward(y.data(), p.data(), x[0].data(), x[1].data(), x[2].data(), B, T, NH, HS);
                     be.attention_backward(dq.data(), dk.data(), dv.data(), s.data(), dy.data(), x[0].data(),
                                           x[1].data(), x[2].data(), y.data(), p.data(), B, T, NH, HS);
                     return std::vector<Vec>{dq, dk, dv};
                   }});
  // A longer sequence (T = 70) than the other cases, as kernels that tile over T would need.
  constexpr int64_t TL = 70, BL = 1;
  cases.push_back({"attention_long", {BL * TL * C, BL * TL * C, BL * TL * C}, {true, true, true},
                   [](const std::vector<Vec>& x) {
                     Vec y(size_t(BL * TL * C)), p(size_t(be.attention_saved_floats(BL, TL, NH, HS)));
                     be.attention_forward(y.data(), p.data(), x[0].data(), x[1].data(), x[2].data(), BL, TL, NH, HS);
                     return y;
                   },
                   [](const std::vector<Vec>& x, const Vec& dy) {
                     Vec y(size_t(BL * TL * C)), p(size_t(be.attention_saved_floats(BL, TL, NH, HS)));
                     Vec s(size_t(be.attention_scratch_floats(BL, TL, NH, HS)));
                     Vec dq(y.size()), dk(y.size()), dv(y.size());
                     be.attention_forward(y.data(), p.data(), x[0].data(), x[1].data(), x[2].data(), BL, TL, NH, HS);
                     be.attention_backward(dq.data(), dk.data(), dv.data(), s.data(), dy.data(), x[0].data(),
                                           x[1].data(), x[2].data(), y.data(), p.data(), BL, TL, NH, HS);
                     return std::vector<Vec>{dq, dk, dv};
                   }});
  // Grouped-query attention: 2 key/value heads, each shared by 3 query heads.
  constexpr int64_t NKV = 2, G = 3;
  cases.push_back({"repeat_kv", {B * T * NKV * HS}, {true},
                   [](const std::vector<Vec>& x) {
                     Vec y(size_t(B * T * NKV * G * HS));
                     be.repeat_kv_forward(y.data(), x[0].data(), B * T, NKV, G, HS);
                     return y;
                   },
                   [](const std::vector<Vec>& x, const Vec& dy) {
                     Vec dx(x[0].size(), 123.0f);  // overwritten
                     be.repeat_kv_backward(dx.data(), dy.data(), B * T, NKV, G, HS);
                     return std::vector<Vec>{dx};
                   }});
  cases.push_back({"swiglu", {B * T * F, B * T * F}, {true, true},
                   [](const std::vector<Vec>& x) {
                     Vec y(x[0].size());
                     be.swiglu_forward(y.data(), x[0].data(), x[1].data(), int64_t(y.size()));
                     return y;
                   },
                   [](const std::vector<Vec>& x, const Vec& dy) {
                     Vec dg(x[0].size()), du(x[0].size());
                     be.swiglu_backward(dg.data(), du.data(), dy.data(), x[0].data(), x[1].data(), int64_t(dg.size()));
                     return std::vector<Vec>{dg, du};
                   }});
  // Cross-entropy: forward returns the per-row losses; its backward scales by dloss (here the
  // weights r are per row, so run the fused kernel with scale 1 and weight each row).
  static const std::vector<int32_t> targets = {0, 6, 3, -1, 2};
  cases.push_back({"crossentropy", {5 * V}, {true},
                   [](const std::vector<Vec>& x) {
                     Vec l(5);
                     be.crossentropy_forward(l.data(), x[0].data(), targets.data(), 5, V);
                     return l;
                   },
                   [](const std::vector<Vec>& x, const Vec& dl) {
                     Vec g = x[0], l(5);
                     be.crossentropy_forward_backward(l.data(), g.data(), targets.data(), 5, V, 1.0f);
                     for (int64_t n = 0; n < 5; ++n)
                       for (int64_t j = 0; j < V; ++j) g[size_t(n * V + j)] *= dl[size_t(n)];
                     return std::vector<Vec>{g};
                   }});
  static const std::vector<int32_t> tokens = {3, 1, 3, 0, 6, 3};
  cases.push_back({"embedding", {V * C}, {true},
                   [](const std::vector<Vec>& x) {
                     Vec y(tokens.size() * C);
                     be.embedding_forward(y.data(), tokens.data(), x[0].data(), int64_t(tokens.size()), C);
                     return y;
                   },
                   [](const std::vector<Vec>& x, const Vec& dy) {
                     Vec d(x[0].size(), 0.0f);
                     be.embedding_backward(d.data(), dy.data(), tokens.data(), int64_t(tokens.size()), C, V);
                     return std::vector<Vec>{d};
                   }});
  return cases;
}

void PrintTo(const OpCase& c, std::ostream* os) { *os << c.name; }

class OpGradient : public ::testing::TestWithParam<OpCase> {};

TEST_P(OpGradient, MatchesFiniteDifferences) {
  const OpCase& op = GetParam();
  Rng rng(42);
  std::vector<Vec> x;
  for (int64_t n : op.input_sizes) {
    Vec v(static_cast<size_t>(n));
    for (auto& e : v) e = rng.normal();
    x.push_back(v);
  }
  const Vec y = op.forward(x);
  Vec r(y.size());
  for (auto& e : r) e = rng.normal();
  auto objective = [&](const std::vector<Vec>& in) {
    Vec out = op.forward(in);
    double s = 0;
    for (size_t i = 0; i < out.size(); ++i) s += double(out[i]) * r[i];
    return s;
  };
  const std::vector<Vec> grads = op.backward(x, r);
  ASSERT_EQ(grads.size(), x.size());
  for (size_t k = 0; k < x.size(); ++k) {
    if (!op.differentiable[k]) continue;
    ASSERT_EQ(grads[k].size(), x[k].size());
    double max_err = 0;
    for (size_t i = 0; i < x[k].size(); ++i) {
      std::vector<Vec> xp = x, xm = x;
      xp[k][i] += op.h;
      xm[k][i] -= op.h;
      const double fd = (objective(xp) - objective(xm)) / (2.0 * op.h);
      const double err = std::abs(fd - grads[k][i]);
      EXPECT_LE(err, op.atol + op.rtol * std::abs(fd)) << op.name << " input " << k << " element " << i;
      max_err = std::max(max_err, err);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Cpu, OpGradient, ::testing::ValuesIn(op_cases()),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(Ops, SumSquaresIsIndependentOfThreads) {
  Vec x(100000);
  Rng rng(1);
  for (auto& e : x) e = rng.normal();
  const double a = be.sum_squares(x.data(), int64_t(x.size()));
  cpu_set_threads(1);
  const double b = be.sum_squares(x.data(), int64_t(x.size()));
  cpu_set_threads(2);
  EXPECT_EQ(a, b);
  double ref = 0;
  for (float e : x) ref += double(e) * e;
  EXPECT_NEAR(a, ref, 1e-9 * ref);
}

TEST(Ops, AdamWMatchesClosedFormFirstStep) {
  // First step: m̂ = g, v̂ = g², so p' = p(1 − lr·wd) − lr·g/(|g|+eps).
  float p[3] = {1.0f, -2.0f, 0.5f}, g[3] = {0.1f, -0.3f, 2.0f}, m[3] = {}, v[3] = {};
  const float lr = 0.01f, wd = 0.1f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f;
  float expect[3];
  for (int i = 0; i < 3; ++i) expect[i] = p[i] * (1 - lr * wd) - lr * g[i] / (std::abs(g[i]) + eps);
  be.adamw_update(p, g, m, v, 3, lr, b1, b2, eps, wd, 1 - b1, 1 - b2);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(p[i], expect[i], 1e-6f);
}

}  // namespace
}  // namespace cairn

#include "backend/cpu/fast_math.h"

namespace cairn {
namespace {

TEST(Ops, FastExpIsAccurate) {
  double worst = 0;
  for (float x = -80.0f; x < 80.0f; x += 0.01337f) {
    const double ref = std::exp(double(x));
    worst = std::max(worst, std::abs(double(fast_exp(x)) - ref) / ref);
  }
  EXPECT_LT(worst, 5e-7);
  EXPECT_EQ(fast_exp(0.0f), 1.0f);
  EXPECT_GT(fast_exp(-1000.0f), 0.0f);
  EXPECT_LT(fast_exp(-1000.0f), 1e-37f);
}

}  // namespace
}  // namespace cairn
