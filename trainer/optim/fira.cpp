// Fira / GaLore step as backend ops (GEMMs, the SVD, Adam in the subspace, the residual's scaling),
// the optimizer over ParamTable rows, and the optimizer-state memory report.
//
// Follows xichen-fy/Fira optimizer_torch/fira_adamw.py (AdamW.step) and gradient_projection.py
// (GradientProjector, proj_type "std"); GaLore is galore_adamw.py, i.e. the same step without the
// residual. Deliberate differences, all outside the paper runs' behaviour or within rounding:
//  - rank > min(m, n) is clamped (the code's Vh[:rank] slice does the same silently); reported.
//  - singular vector signs are fixed (largest-|entry| positive) so LAPACK and cuSOLVER agree;
//    torch leaves them to the SVD library. Only matters across a refresh (moments are kept).
//  - norms accumulate in double; the code uses fp32 (bf16 R for bf16 weights). cairn keeps fp32.
//  - "first step" for the limiter is t == 0 rather than "no stored norm yet": equal from a fresh
//    start, and a resumed run restores the norm with the step count.
//  - plain rows run Backend::adamw_update with eps/sqrt(1-β2^t), which is algebraically the code's
//    lr·sqrt(bc2)/bc1·m/(sqrt(v)+eps); its weight decay uses W before the update where the code
//    decays after it (identical at the paper's weight decay 0). Low-rank rows decay after, as the code.
#include "trainer/optim/fira.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "util/error.h"

namespace cairn {

void validate(const LowRankConfig& c) {
  if (c.rank < 1) throw Error(str("optimizer.rank is ", c.rank, ": it must be at least 1"));
  if (c.update_gap < 1) throw Error(str("optimizer.update_gap is ", c.update_gap, ": it must be at least 1"));
  if (!(c.limiter_gamma >= 1.0f))
    throw Error(str("optimizer.limiter_gamma is ", c.limiter_gamma, ": it must be at least 1 (the paper uses 1.01)"));
  if (!(c.beta1 >= 0 && c.beta1 < 1 && c.beta2 >= 0 && c.beta2 < 1))
    throw Error(str("optimizer betas (", c.beta1, ", ", c.beta2, ") must lie in [0, 1)"));
  if (!(c.eps >= 0)) throw Error(str("optimizer.eps is ", c.eps, ": it must be non-negative"));
}

LowRankShape lowrank_shape(const LowRankConfig& cfg, int64_t m, int64_t n) {
  CAIRN_ASSERT(m > 0 && n > 0, "matrix ", m, "x", n);
  LowRankShape s;
  s.m = m;
  s.n = n;
  s.right = m >= n;
  s.r = std::min({cfg.rank, m, n});
  s.clamped = cfg.rank > std::min(m, n);
  return s;
}

namespace {

// out (m×n) = a·back(x) + beta·out: x·P when right (x m×r, P r×n), P·x when left (P m×r, x r×n).
void project_back(const Backend& be, float* out, const float* x, const float* proj, const LowRankShape& s, float a,
                  float beta) {
  if (s.right)
    be.matmul(out, x, proj, s.m, s.n, s.r, false, false, a, beta);
  else
    be.matmul(out, proj, x, s.m, s.n, s.r, false, false, a, beta);
}

void grow(const Backend& be, DeviceArray<float>& a, int64_t n) {
  if (a.size() < n) a = DeviceArray<float>(be, n);
}

}  // namespace

void LowRankWorkspaceSize::fit(const LowRankShape& s) {
  low = std::max(low, 2 * s.moment_numel());
  full = std::max(full, s.m * s.n);
  phi = std::max(phi, std::max(s.m, s.n));
}

void LowRankWorkspace::reserve(const LowRankShape& s) {
  LowRankWorkspaceSize need;
  need.fit(s);
  grow(*be_, low, need.low);
  grow(*be_, full, need.full);
  grow(*be_, phi, need.phi);
}

void lowrank_refresh_projection(const Backend& be, float* proj, const float* g, const LowRankShape& s) {
  be.top_singular_vectors(proj, g, s.m, s.n, s.r, s.right);
}

void lowrank_step(const LowRankConfig& cfg, const LowRankShape& s, float* w, const float* g,
                  float* proj, float* exp_avg, float* exp_avg_sq, float* limiter_norm, int64_t t,
                  float lr, LowRankWorkspace& ws) {
  const Backend& be = ws.backend();
  const int64_t m = s.m, n = s.n, r = s.r, nl = s.moment_numel();
  CAIRN_ASSERT(ws.full.size() >= m * n && ws.low.size() >= 2 * nl && ws.phi.size() >= std::max(m, n),
               "LowRankWorkspace not reserved for ", m, "x", n);
  // gradient_projection.py project(): new P at iter % update_proj_gap == 0, iter = steps so far.
  if (t % cfg.update_gap == 0) lowrank_refresh_projection(be, proj, g, s);
  float* R = ws.low.data();
  float* N = R + nl;
  if (s.right)
    be.matmul(R, g, proj, m, r, n, false, true, 1.0f, 0.0f);  // R = G·Pᵀ
  else
    be.matmul(R, proj, g, r, n, m, true, false, 1.0f, 0.0f);  // R = Pᵀ·G

  // Adam on R; bias correction folded into the step size (fira_adamw.py, correct_bias=True).
  be.adam_direction(N, exp_avg, exp_avg_sq, R, nl, cfg.beta1, cfg.beta2, cfg.eps);
  const double step = double(t + 1);
  const double bc1 = 1.0 - std::pow(double(cfg.beta1), step), bc2 = 1.0 - std::pow(double(cfg.beta2), step);
  const float step_size = float(double(lr) * std::sqrt(bc2) / bc1);

  float* U = ws.full.data();
  if (cfg.residual) {
    // φ along the rank dimension: one per row of R (m×r) when right, one per column of R (r×n)
    // when left — the code's norm_dim = 0 if rows < cols else 1.
    float* phi = ws.phi.data();
    be.norm_ratio(phi, N, R, s.right ? m : n, r, s.right);
    // S = (G − sub·back(R))·φ with sub = alpha (code: project_back multiplies by alpha) or 1.
    const float sub = cfg.residual_form == LowRankConfig::ResidualForm::code ? cfg.alpha : 1.0f;
    be.zero(U, m * n * 4);
    be.add_inplace(U, g, m * n);
    project_back(be, U, R, proj, s, -sub, 1.0f);
    be.scale_by(U, phi, m, n, s.right);
    // Norm-growth limiter: limiter = max(‖S‖/(prev+1e-8), γ)/γ; S /= limiter; prev = ‖S‖/limiter.
    // On the backend, so a GPU step never waits for the host.
    be.limit_norm_growth(U, m * n, limiter_norm, cfg.limiter_gamma, t == 0);
    project_back(be, U, N, proj, s, cfg.alpha, 1.0f);  // U = alpha·back(N) + S
  } else {
    project_back(be, U, N, proj, s, cfg.alpha, 0.0f);  // GaLore: U = alpha·back(N)
  }
  // Decoupled weight decay after the update, as the code's "fixed version".
  be.apply_update(w, U, m * n, step_size, cfg.weight_decay > 0 ? lr * cfg.weight_decay : 0.0f);
}

FiraOptimizer::FiraOptimizer(const ParamTable& table, std::vector<int> owned_rows, const LowRankConfig& cfg,
                             const PlainAdamConfig& plain, const Backend& backend)
    : table_(table), cfg_(cfg), plain_(plain), backend_(backend), ws_(backend) {
  validate(cfg_);
  int64_t total = 0;
  for (int row : owned_rows) {
    CAIRN_ASSERT(row >= 0 && row < int(table.rows().size()), "row index ", row, " out of range");
    const ParamRow& pr = table.row(row);
    Slot slot;
    slot.row = row;
    slot.offset = total;
    // Fira's target modules are the attention and MLP nn.Linear weights; SLTrain factors and
    // sparse values, norms, embeddings and the LM head get plain Adam.
    slot.lowrank = pr.role == ParamRole::matrix;
    if (slot.lowrank) {
      CAIRN_ASSERT(pr.shape.size() == 2, "matrix row ", pr.name, " is not 2-D");
      slot.shape = lowrank_shape(cfg_, pr.shape[0], pr.shape[1]);
      ws_.reserve(slot.shape);
      total += slot.shape.state_numel(cfg_.residual);
    } else {
      total += 2 * pr.numel;
    }
    slots_.push_back(slot);
  }
  state_ = DeviceArray<float>(backend, total);
  state_.zero();
}

void FiraOptimizer::step(std::span<float> params, std::span<const float> grads, float lr) {
  CAIRN_ASSERT(int64_t(params.size()) >= table_.total() && int64_t(grads.size()) >= table_.total(),
               "flat buffers smaller than the parameter table");
  const double t1 = double(steps_ + 1);
  const float bc1 = float(1.0 - std::pow(double(plain_.beta1), t1));
  const float bc2 = float(1.0 - std::pow(double(plain_.beta2), t1));
  const float plain_eps = float(double(plain_.eps) / std::sqrt(double(bc2)));
  for (const Slot& slot : slots_) {
    const ParamRow& pr = table_.row(slot.row);
    float* w = params.data() + pr.offset;
    const float* g = grads.data() + pr.offset;
    float* st = state_.data() + slot.offset;
    if (slot.lowrank) {
      const LowRankShape& s = slot.shape;
      float* proj = st;
      float* m1 = proj + s.proj_numel();
      float* m2 = m1 + s.moment_numel();
      float* lim = cfg_.residual ? m2 + s.moment_numel() : nullptr;
      lowrank_step(cfg_, s, w, g, proj, m1, m2, lim, steps_, lr, ws_);
    } else {
      backend_.adamw_update(w, g, st, st + pr.numel, pr.numel, lr, plain_.beta1, plain_.beta2, plain_eps,
                            plain_.weight_decay, bc1, bc2);
    }
  }
  ++steps_;
}

std::vector<StateTensor> FiraOptimizer::state() {
  std::vector<StateTensor> out;
  for (const Slot& slot : slots_) {
    const ParamRow& pr = table_.row(slot.row);
    float* st = state_.data() + slot.offset;
    auto add = [&](const char* kind, std::vector<int64_t> shape, float* p, int64_t n) {
      out.push_back(StateTensor{str(kind, "/", pr.name), std::move(shape), std::span<float>(p, size_t(n))});
    };
    if (slot.lowrank) {
      const LowRankShape& s = slot.shape;
      std::vector<int64_t> pshape = s.right ? std::vector<int64_t>{s.r, s.n} : std::vector<int64_t>{s.m, s.r};
      std::vector<int64_t> mshape = s.right ? std::vector<int64_t>{s.m, s.r} : std::vector<int64_t>{s.r, s.n};
      add("proj", pshape, st, s.proj_numel());
      st += s.proj_numel();
      add("exp_avg", mshape, st, s.moment_numel());
      st += s.moment_numel();
      add("exp_avg_sq", mshape, st, s.moment_numel());
      st += s.moment_numel();
      if (cfg_.residual) add("limiter_norm", {1}, st, 1);
    } else {
      add("exp_avg", pr.shape, st, pr.numel);
      add("exp_avg_sq", pr.shape, st + pr.numel, pr.numel);
    }
  }
  return out;
}

OptimizerStateMemory optimizer_state_memory(const ParamTable& table, OptimizerName optimizer, const LowRankConfig& cfg) {
  std::vector<int> rows(table.rows().size());
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = int(i);
  return optimizer_state_memory(table, rows, optimizer, cfg);
}

OptimizerStateMemory optimizer_state_memory(const ParamTable& table, const std::vector<int>& rows,
                                            OptimizerName optimizer, const LowRankConfig& cfg) {
  OptimizerStateMemory mem;
  for (int row : rows) {
    const ParamRow& pr = table.row(row);
    if (pr.role != ParamRole::matrix) {
      mem.other_floats += 2 * pr.numel;
      continue;
    }
    ++mem.matrix_rows;
    mem.matrix_floats_adamw += 2 * pr.numel;
    if (optimizer == OptimizerName::adamw) {
      mem.matrix_floats += 2 * pr.numel;
    } else {
      LowRankShape s = lowrank_shape(cfg, pr.shape.at(0), pr.shape.at(1));
      mem.matrix_floats += s.state_numel(optimizer == OptimizerName::fira);
      mem.clamped_rows += s.clamped ? 1 : 0;
      mem.workspace.fit(s);
      if (s.m * s.n > mem.largest_matrix_m * mem.largest_matrix_n) mem.largest_matrix_m = s.m, mem.largest_matrix_n = s.n;
    }
  }
  return mem;
}

std::string describe_optimizer_state_memory(const OptimizerStateMemory& mem, OptimizerName optimizer,
                                            const LowRankConfig& cfg) {
  constexpr double MiB = 1024.0 * 1024.0;
  char buf[512];
  if (optimizer == OptimizerName::adamw) {
    std::snprintf(buf, sizeof buf, "optimizer state (adamw): %.1f MiB (matrices %.1f MiB, other rows %.1f MiB)",
                  mem.bytes() / MiB, 4.0 * mem.matrix_floats / MiB, 4.0 * mem.other_floats / MiB);
    return buf;
  }
  std::snprintf(buf, sizeof buf,
                "optimizer state (%s, rank %lld, gap %lld): %.1f MiB = %lld matrices %.1f MiB "
                "(AdamW would hold %.1f MiB) + other rows %.1f MiB",
                choice_name(optimizer).data(), (long long)cfg.rank, (long long)cfg.update_gap, mem.bytes() / MiB,
                (long long)mem.matrix_rows, 4.0 * mem.matrix_floats / MiB, 4.0 * mem.matrix_floats_adamw / MiB,
                4.0 * mem.other_floats / MiB);
  std::string out = buf;
  if (mem.clamped_rows > 0)
    out += str("; rank clamped to min(out, in) on ", mem.clamped_rows, " matrices");
  return out;
}

}  // namespace cairn
