// Fira / GaLore per-matrix step against a double-precision reference written here from the
// official code's math (xichen-fy/Fira fira_adamw.py + gradient_projection.py), with its own SVD
// (LAPACK dgesdd on a column-major copy), for both orientations; refresh timing; the limiter; and
// a closed form: full-rank GaLore on gradients with fixed right singular vectors is alpha·Adam.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "trainer/optim/fira.h"
#include "util/error.h"
#include "util/rng.h"

extern "C" void dgesdd_(const char* jobz, const int* m, const int* n, double* a, const int* lda,
                        double* s, double* u, const int* ldu, double* vt, const int* ldvt, double* work,
                        const int* lwork, int* iwork, int* info, size_t jobz_len);

namespace cairn {
namespace {

using Vec = std::vector<double>;

// C (a×b) = A (a×c) · B (c×b), row-major, with optional transposes given as stored shapes.
Vec matmul(const Vec& A, const Vec& B, int64_t a, int64_t c, int64_t b, bool ta = false, bool tb = false) {
  Vec C(static_cast<size_t>(a * b), 0.0);
  for (int64_t i = 0; i < a; ++i)
    for (int64_t j = 0; j < b; ++j) {
      double acc = 0;
      for (int64_t k = 0; k < c; ++k)
        acc += (ta ? A[k * a + i] : A[i * c + k]) * (tb ? B[j * c + k] : B[k * b + j]);
      C[i * b + j] = acc;
    }
  return C;
}

double norm(const Vec& x) {
  double s = 0;
  for (double v : x) s += v * v;
  return std::sqrt(s);
}

// torch.linalg.svd(G, full_matrices=False) then Vh[:r] (right) or U[:, :r] (left), signs fixed
// so each vector's largest-|entry| is positive.
Vec reference_projection(const Vec& G, int64_t m, int64_t n, int64_t r, bool right) {
  const int im = int(m), in = int(n), k = int(std::min(m, n));
  Vec a(static_cast<size_t>(m * n));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) a[i + j * m] = G[i * n + j];  // column-major m×n
  Vec s(static_cast<size_t>(k)), u(static_cast<size_t>(m * k)), vt(static_cast<size_t>(k * n));
  std::vector<int> iwork(static_cast<size_t>(8 * k));
  int lwork = -1, info = 0;
  double q = 0;
  dgesdd_("S", &im, &in, a.data(), &im, s.data(), u.data(), &im, vt.data(), &k, &q, &lwork, iwork.data(), &info, 1);
  lwork = int(q) + 1;
  Vec work(static_cast<size_t>(lwork));
  dgesdd_("S", &im, &in, a.data(), &im, s.data(), u.data(), &im, vt.data(), &k, work.data(), &lwork,
          iwork.data(), &info, 1);
  EXPECT_EQ(info, 0);
  Vec P;
  if (right) {  // r×n: row i = Vh[i, :] = vt(i, j) column-major
    P.resize(static_cast<size_t>(r * n));
    for (int64_t i = 0; i < r; ++i)
      for (int64_t j = 0; j < n; ++j) P[i * n + j] = vt[i + j * k];
    for (int64_t i = 0; i < r; ++i) {
      int64_t best = 0;
      for (int64_t j = 1; j < n; ++j)
        if (std::fabs(P[i * n + j]) > std::fabs(P[i * n + best])) best = j;
      if (P[i * n + best] < 0)
        for (int64_t j = 0; j < n; ++j) P[i * n + j] = -P[i * n + j];
    }
  } else {  // m×r: column i = U[:, i]
    P.resize(static_cast<size_t>(m * r));
    for (int64_t j = 0; j < m; ++j)
      for (int64_t i = 0; i < r; ++i) P[j * r + i] = u[j + i * m];
    for (int64_t i = 0; i < r; ++i) {
      int64_t best = 0;
      for (int64_t j = 1; j < m; ++j)
        if (std::fabs(P[j * r + i]) > std::fabs(P[best * r + i])) best = j;
      if (P[best * r + i] < 0)
        for (int64_t j = 0; j < m; ++j) P[j * r + i] = -P[j * r + i];
    }
  }
  return P;
}

// The official step, literally: project, Adam on R, norm_dim chosen from the low-rank shape,
// residual, limiter with the stored norm, update, weight decay after.
struct Reference {
  LowRankConfig cfg;
  int64_t m, n, r;
  bool right;
  Vec P, m1, m2;
  bool has_norm = false;
  double prev = 0;
  int64_t t = 0;
  int limited = 0;  // steps on which the limiter scaled S down

  Reference(const LowRankConfig& c, int64_t m_, int64_t n_)
      : cfg(c), m(m_), n(n_), r(std::min({c.rank, m_, n_})), right(m_ >= n_) {}

  Vec back(const Vec& X) const {  // project_back without the alpha
    return right ? matmul(X, P, m, r, n) : matmul(P, X, m, r, n);
  }

  void step(Vec& W, const Vec& G, double lr) {
    if (P.empty() || t % cfg.update_gap == 0) P = reference_projection(G, m, n, r, right);
    const int64_t lr_rows = right ? m : r, lr_cols = right ? r : n;
    Vec R = right ? matmul(G, P, m, n, r, false, true) : matmul(P, G, r, m, n, true, false);
    if (m1.empty()) m1.assign(R.size(), 0.0), m2.assign(R.size(), 0.0);
    ++t;
    const double b1 = cfg.beta1, b2 = cfg.beta2;
    Vec N(R.size());
    for (size_t i = 0; i < R.size(); ++i) {
      m1[i] = b1 * m1[i] + (1 - b1) * R[i];
      m2[i] = b2 * m2[i] + (1 - b2) * R[i] * R[i];
      N[i] = m1[i] / (std::sqrt(m2[i]) + double(cfg.eps));
    }
    const double step_size = lr * std::sqrt(1 - std::pow(b2, double(t))) / (1 - std::pow(b1, double(t)));
    Vec U = back(N);
    for (double& u : U) u *= cfg.alpha;
    if (cfg.residual) {
      const double sub = cfg.residual_form == LowRankConfig::ResidualForm::code ? cfg.alpha : 1.0;
      Vec subgrad = back(R);
      const int norm_dim = lr_rows < lr_cols ? 0 : 1;
      Vec S(static_cast<size_t>(m * n));
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          // norm_dim 1: φ has one entry per row of the low-rank matrix, unsqueezed to [rows, 1]
          // and broadcast over G's rows; norm_dim 0: one per column, broadcast over G's columns.
          const int64_t idx = norm_dim == 1 ? i : j;
          double nn = 0, rr = 0;
          if (norm_dim == 1)
            for (int64_t b = 0; b < lr_cols; ++b) nn += N[idx * lr_cols + b] * N[idx * lr_cols + b], rr += R[idx * lr_cols + b] * R[idx * lr_cols + b];
          else
            for (int64_t b = 0; b < lr_rows; ++b) nn += N[b * lr_cols + idx] * N[b * lr_cols + idx], rr += R[b * lr_cols + idx] * R[b * lr_cols + idx];
          S[i * n + j] = (G[i * n + j] - sub * subgrad[i * n + j]) * (std::sqrt(nn) / (std::sqrt(rr) + 1e-8));
        }
      const double sn = norm(S);
      if (has_norm) {
        const double limiter = std::max(sn / (prev + 1e-8), double(cfg.limiter_gamma)) / cfg.limiter_gamma;
        if (limiter > 1) ++limited;
        for (double& v : S) v /= limiter;
        prev = sn / limiter;
      } else {
        prev = sn;
        has_norm = true;
      }
      for (size_t i = 0; i < U.size(); ++i) U[i] += S[i];
    }
    for (size_t i = 0; i < W.size(); ++i) W[i] -= step_size * U[i];
    if (cfg.weight_decay > 0)
      for (double& w : W) w -= lr * cfg.weight_decay * w;
  }
};

// The implementation under test, holding its state the way FiraOptimizer lays it out.
struct Impl {
  LowRankConfig cfg;
  LowRankShape s;
  std::vector<float> P, m1, m2;
  float prev = 0;
  int64_t t = 0;
  LowRankWorkspace ws;

  Impl(const LowRankConfig& c, int64_t m, int64_t n) : cfg(c), s(lowrank_shape(c, m, n)) {
    P.assign(static_cast<size_t>(s.proj_numel()), 0);
    m1.assign(static_cast<size_t>(s.moment_numel()), 0);
    m2 = m1;
    ws.reserve(s);
  }
  // A copy continues from the same state with a workspace of its own.
  Impl(const Impl& o) : cfg(o.cfg), s(o.s), P(o.P), m1(o.m1), m2(o.m2), prev(o.prev), t(o.t) { ws.reserve(s); }
  void step(std::vector<float>& W, const std::vector<float>& G, float lr) {
    lowrank_step(cfg, s, W.data(), G.data(), P.data(), m1.data(), m2.data(), &prev, t++, lr, ws);
  }
};

std::vector<float> random_matrix(Rng& rng, int64_t count, float scale = 1.0f) {
  std::vector<float> v(static_cast<size_t>(count));
  for (float& x : v) x = scale * rng.normal();
  return v;
}
Vec to_double(const std::vector<float>& v) { return Vec(v.begin(), v.end()); }

double max_abs_diff(const std::vector<float>& a, const Vec& b) {
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::fabs(double(a[i]) - b[i]));
  return d;
}

LowRankConfig small_config() {
  LowRankConfig c;
  c.rank = 3;
  c.update_gap = 3;
  return c;
}

// Runs impl and reference side by side over `steps` random gradients; returns the reference.
Reference run_against_reference(const LowRankConfig& cfg, int64_t m, int64_t n, int steps, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> W = random_matrix(rng, m * n);
  Vec Wr = to_double(W);
  Impl impl(cfg, m, n);
  Reference ref(cfg, m, n);
  for (int k = 0; k < steps; ++k) {
    // Gradients of varying scale so the residual norm both grows and shrinks.
    std::vector<float> G = random_matrix(rng, m * n, 0.5f + 1.5f * rng.uniform());
    impl.step(W, G, 0.01f);
    ref.step(Wr, to_double(G), 0.01);
    EXPECT_LT(max_abs_diff(W, Wr), 2e-6) << m << "x" << n << " step " << k;
    EXPECT_LT(max_abs_diff(impl.P, ref.P), 1e-4) << m << "x" << n << " step " << k;
    EXPECT_LT(max_abs_diff(impl.m2, ref.m2), 1e-4) << m << "x" << n << " step " << k;
    if (cfg.residual) {
      EXPECT_NEAR(impl.prev, ref.prev, 1e-4 * ref.prev) << m << "x" << n << " step " << k;
    }
  }
  return ref;
}

TEST(Fira, MatchesDoubleReferenceBothOrientations) {
  for (auto [m, n] : {std::pair<int64_t, int64_t>{12, 8}, {8, 12}}) {
    LowRankConfig cfg = small_config();
    Reference ref = run_against_reference(cfg, m, n, 8, 11);  // refreshes at steps 0, 3, 6
    EXPECT_GT(ref.limited, 0) << "the limiter never fired: the test does not cover it";
    EXPECT_LT(ref.limited, 7) << "the limiter fired every step: the unlimited path is not covered";
  }
}

TEST(Fira, PaperResidualFormAndWeightDecayMatchReference) {
  for (auto [m, n] : {std::pair<int64_t, int64_t>{12, 8}, {8, 12}}) {
    LowRankConfig cfg = small_config();
    cfg.residual_form = LowRankConfig::ResidualForm::paper;
    cfg.weight_decay = 0.1f;
    cfg.alpha = 0.5f;
    run_against_reference(cfg, m, n, 7, 12);
  }
}

TEST(GaLore, MatchesDoubleReferenceWithoutResidual) {
  for (auto [m, n] : {std::pair<int64_t, int64_t>{12, 8}, {8, 12}}) {
    LowRankConfig cfg = small_config();
    cfg.residual = false;
    run_against_reference(cfg, m, n, 7, 13);
  }
}

TEST(GaLore, EqualsFiraWithResidualOffAndDiffersWithItOn) {
  LowRankConfig fira = small_config(), galore = small_config();
  galore.residual = false;
  Rng rng(5);
  std::vector<float> W0 = random_matrix(rng, 12 * 8);
  std::vector<float> Wf = W0, Wg = W0, Wf_off = W0;
  Impl f(fira, 12, 8), g(galore, 12, 8);
  LowRankConfig off = fira;
  off.residual = false;
  Impl f_off(off, 12, 8);
  for (int k = 0; k < 4; ++k) {
    std::vector<float> G = random_matrix(rng, 12 * 8);
    f.step(Wf, G, 0.01f);
    g.step(Wg, G, 0.01f);
    f_off.step(Wf_off, G, 0.01f);
  }
  EXPECT_EQ(Wg, Wf_off);
  EXPECT_GT(max_abs_diff(Wf, to_double(Wg)), 1e-3);  // the residual moves W well beyond rounding
}

TEST(Fira, ProjectionRefreshesExactlyEveryGap) {
  for (auto [m, n] : {std::pair<int64_t, int64_t>{12, 8}, {8, 12}}) {
    LowRankConfig cfg = small_config();
    cfg.update_gap = 4;
    Impl impl(cfg, m, n);
    Rng rng(7);
    std::vector<float> W = random_matrix(rng, m * n);
    std::vector<float> last;
    for (int k = 0; k < 13; ++k) {
      std::vector<float> G = random_matrix(rng, m * n);
      impl.step(W, G, 0.01f);
      if (k % 4 == 0) {
        EXPECT_NE(impl.P, last) << "no refresh at step " << k;
        // The new P is exactly the projection of this step's gradient.
        std::vector<float> expect(impl.P.size());
        lowrank_refresh_projection(cpu_backend(), expect.data(), G.data(), impl.s);
        EXPECT_EQ(impl.P, expect) << "step " << k;
      } else {
        EXPECT_EQ(impl.P, last) << "P changed between refreshes at step " << k;
      }
      last = impl.P;
    }
  }
}

// Step 0 with G; step 1 adds a large component orthogonal to P's subspace, so R (hence N and φ)
// barely changes while the residual's norm jumps: the limiter must cap it at exactly γ·prev.
TEST(Fira, LimiterCapsGrowthAndSkipsTheFirstStep) {
  const int64_t m = 12, n = 8;
  LowRankConfig cfg = small_config();
  cfg.update_gap = 100;
  Rng rng(9);
  std::vector<float> W0 = random_matrix(rng, m * n);
  std::vector<float> G1 = random_matrix(rng, m * n);

  Impl impl(cfg, m, n);
  Reference ref(cfg, m, n);
  std::vector<float> W = W0;
  Vec Wr = to_double(W0);
  impl.step(W, G1, 0.01f);
  ref.step(Wr, to_double(G1), 0.01);
  // The stored norm starts at 0: limiting step 0 would have shrunk S to ~γ·1e-8, so matching the
  // unlimited reference shows step 0 is left alone.
  EXPECT_LT(max_abs_diff(W, Wr), 2e-6);
  EXPECT_GT(impl.prev, 0.1f);
  const float first = impl.prev;

  // X·(I − PᵀP): orthogonal to the rows of P.
  Vec X = to_double(random_matrix(rng, m * n, 50.0f));
  Vec P = to_double(impl.P);
  Vec XPt = matmul(X, P, m, n, cfg.rank, false, true);
  Vec XPtP = matmul(XPt, P, m, cfg.rank, n);
  std::vector<float> G2(static_cast<size_t>(m * n));
  for (size_t i = 0; i < G2.size(); ++i) G2[i] = G1[i] + float(X[i] - XPtP[i]);

  std::vector<float> W_unlimited = W;
  Impl unlimited = impl;
  unlimited.cfg.limiter_gamma = 1e30f;
  impl.step(W, G2, 0.01f);
  unlimited.step(W_unlimited, G2, 0.01f);
  ref.step(Wr, to_double(G2), 0.01);
  EXPECT_EQ(ref.limited, 1);
  EXPECT_NEAR(impl.prev, 1.01 * (double(first) + 1e-8), 1e-6 * first);
  EXPECT_GT(unlimited.prev, 10 * first);
  EXPECT_LT(max_abs_diff(W, Wr), 2e-6);
  EXPECT_GT(max_abs_diff(W_unlimited, Wr), 1e-3);

  // Shrinking residual (G1 with its out-of-subspace part scaled by 0.1; R unchanged): no limiting.
  Vec G1d = to_double(G1);
  Vec G1P = matmul(matmul(G1d, P, m, n, cfg.rank, false, true), P, m, cfg.rank, n);
  std::vector<float> G3(G1.size());
  for (size_t i = 0; i < G3.size(); ++i) G3[i] = float(G1P[i] + 0.1 * (G1d[i] - G1P[i]));
  impl.step(W, G3, 0.01f);
  ref.step(Wr, to_double(G3), 0.01);
  EXPECT_EQ(ref.limited, 1);
  EXPECT_LT(impl.prev, first);  // code form keeps (1−alpha) of the in-subspace part in S
  EXPECT_NEAR(impl.prev, ref.prev, 1e-4 * ref.prev);
  EXPECT_LT(max_abs_diff(W, Wr), 2e-6);
}

// Closed form. G_t = Q_t·diag(σ) with Q_t orthonormal columns and σ decreasing: G's right singular
// vectors are the standard basis in order, so with r = n the projection is the identity and
// full-rank GaLore is exactly alpha·Adam(G) (the code's bias-corrected form) on the whole matrix.
// (Adam is not rotation-invariant, so for general G full-rank GaLore is Adam in a rotated basis.)
// With the paper's residual form the residual vanishes at full rank, so Fira equals it too.
TEST(GaLore, FullRankIsAlphaTimesAdam) {
  const int64_t m = 12, n = 8;
  LowRankConfig galore;
  galore.rank = n;
  galore.update_gap = 2;
  galore.residual = false;
  LowRankConfig fira_paper = galore;
  fira_paper.residual = true;
  fira_paper.residual_form = LowRankConfig::ResidualForm::paper;

  Rng rng(3);
  std::vector<float> W0 = random_matrix(rng, m * n);
  std::vector<float> Wg = W0, Wf = W0;
  Vec Wa = to_double(W0), ma(static_cast<size_t>(m * n), 0.0), va(static_cast<size_t>(m * n), 0.0);
  Impl g(galore, m, n), f(fira_paper, m, n);
  for (int t = 1; t <= 6; ++t) {
    Vec Q = to_double(random_matrix(rng, m * n));
    for (int64_t j = 0; j < n; ++j) {  // Gram-Schmidt on columns
      for (int64_t p = 0; p < j; ++p) {
        double d = 0;
        for (int64_t i = 0; i < m; ++i) d += Q[i * n + j] * Q[i * n + p];
        for (int64_t i = 0; i < m; ++i) Q[i * n + j] -= d * Q[i * n + p];
      }
      double s = 0;
      for (int64_t i = 0; i < m; ++i) s += Q[i * n + j] * Q[i * n + j];
      for (int64_t i = 0; i < m; ++i) Q[i * n + j] /= std::sqrt(s);
    }
    std::vector<float> G(static_cast<size_t>(m * n));
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) G[i * n + j] = float(Q[i * n + j] * double(n - j));
    g.step(Wg, G, 0.01f);
    f.step(Wf, G, 0.01f);
    const double ss = 0.01 * std::sqrt(1 - std::pow(0.999, t)) / (1 - std::pow(0.9, t));
    for (size_t i = 0; i < Wa.size(); ++i) {
      ma[i] = 0.9 * ma[i] + 0.1 * G[i];
      va[i] = 0.999 * va[i] + 0.001 * double(G[i]) * G[i];
      Wa[i] -= ss * galore.alpha * ma[i] / (std::sqrt(va[i]) + 1e-6);
    }
    EXPECT_LT(max_abs_diff(Wg, Wa), 2e-6) << "step " << t;
    EXPECT_LT(max_abs_diff(Wf, Wa), 2e-6) << "step " << t;
  }
}

TEST(Fira, RankIsClampedToTheSmallerSide) {
  LowRankConfig cfg;
  cfg.rank = 20;
  LowRankShape s = lowrank_shape(cfg, 12, 8);
  EXPECT_EQ(s.r, 8);
  EXPECT_TRUE(s.clamped);
  EXPECT_TRUE(s.right);
  s = lowrank_shape(cfg, 8, 30);
  EXPECT_EQ(s.r, 8);
  EXPECT_FALSE(s.right);
  EXPECT_EQ(s.proj_numel(), 8 * 8);
  EXPECT_EQ(s.moment_numel(), 8 * 30);
  cfg.rank = 4;
  s = lowrank_shape(cfg, 1376, 512);
  EXPECT_FALSE(s.clamped);
  EXPECT_EQ(s.state_numel(true), 4 * 512 + 2 * 1376 * 4 + 1);
  EXPECT_EQ(s.state_numel(false), 4 * 512 + 2 * 1376 * 4);
}

TEST(Fira, ConfigValidationNamesTheField) {
  LowRankConfig cfg;
  cfg.update_gap = 0;
  try {
    validate(cfg);
    FAIL() << "update_gap 0 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("update_gap"), std::string::npos);
  }
}

}  // namespace
}  // namespace cairn
