// SLTrain linear weight (see linear_sltrain.h): support sampling, the two compute paths and the
// host sparse kernels they use. The sparse kernels walk the sorted flat support once per block of
// activation rows: the row of S changes at most `out` times per walk (one division each), so no
// CSR row-pointer array has to be built, cached or kept consistent with a reloaded support.
#include "model/linear_sltrain.h"

#include <omp.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>

#include "util/error.h"

namespace cairn {

int64_t sltrain_nnz(float density, int64_t out, int64_t in) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.7g", double(density));
  return int64_t(std::floor(std::strtod(buf, nullptr) * double(out) * double(in)));
}

std::vector<int32_t> sltrain_support(int64_t out, int64_t in, int64_t nnz, Rng& rng) {
  const int64_t M = out * in;
  if (M > std::numeric_limits<int32_t>::max())
    throw Error(str("an SLTrain weight of ", out, "x", in, " has more entries than 32-bit support indices "
                    "can address: use a smaller model.ffn_dim / model.dim or a dense weight"));
  CAIRN_ASSERT(nnz >= 0 && nnz <= M);
  std::vector<int32_t> support;
  if (nnz == 0) return support;
  // Floyd: for j = M−nnz … M−1 draw t uniform in [0, j]; take t, or j if t is taken already.
  // Every nnz-subset comes out with equal probability.
  std::vector<uint64_t> taken(size_t((M + 63) / 64), 0);
  auto test = [&](int64_t b) { return (taken[size_t(b >> 6)] >> (b & 63)) & 1u; };
  auto set = [&](int64_t b) { taken[size_t(b >> 6)] |= uint64_t(1) << (b & 63); };
  for (int64_t j = M - nnz; j < M; ++j) {
    const int64_t t = int64_t(rng.below(uint64_t(j + 1)));
    set(test(t) ? j : t);
  }
  support.reserve(size_t(nnz));
  for (size_t w = 0; w < taken.size(); ++w)
    for (uint64_t word = taken[w]; word; word &= word - 1)
      support.push_back(int32_t(int64_t(w) * 64 + std::countr_zero(word)));
  CAIRN_ASSERT(int64_t(support.size()) == nnz);
  return support;
}

// Cost of one sparse multiply-add (gathered, not vectorized) in GEMM FLOPs. Fitted to
// `sltrain_bench paths` on the 60M/130M shapes, 2 threads: ≈ 40, so that the factored path wins
// only where forming W (8·out·in·r) outweighs the GEMMs saved, i.e. for wide MLP shapes at small N
// (60M 1376x512 and 512x1376 at N = 256); at the presets' N = 2048 materialized is faster on CPU.
static constexpr double kSparseCost = 40.0;

SLTrainPath sltrain_auto_path(int64_t out, int64_t in, int64_t rank, int64_t nnz, int64_t N) {
  const double o = double(out), i = double(in), r = double(rank), n = double(N);
  // Forward + backward, in GEMM FLOPs. Materialized: W = s·B·A twice, y, dx, dW, dB, dA.
  const double materialized = 8.0 * o * i * r + 6.0 * n * o * i;
  // Factored: x·Aᵀ twice, ·Bᵀ, dB, dy·B, dA, dx, plus three sparse passes of N·nnz.
  const double factored = 2.0 * n * r * (4.0 * i + 3.0 * o) + kSparseCost * 6.0 * n * double(nnz);
  return factored < materialized ? SLTrainPath::factored : SLTrainPath::materialized;
}

namespace {

constexpr int64_t kRows = 8;  // activation rows per walk over the support

// y[N, out] += x[N, in]·Sᵀ.
void sparse_forward_add(float* y, const float* x, const int32_t* idx, const float* v, int64_t nnz,
                        int64_t N, int64_t out, int64_t in) {
#pragma omp parallel for schedule(static)
  for (int64_t n0 = 0; n0 < N; n0 += kRows) {
    const int64_t nr = std::min(kRows, N - n0);
    const float* xb = x + n0 * in;
    float* yb = y + n0 * out;
    float acc[kRows] = {};
    int64_t row = -1, base = 0, end = 0;
    for (int64_t k = 0; k < nnz; ++k) {
      const int64_t f = idx[k];
      if (f >= end) {
        if (row >= 0)
          for (int64_t r = 0; r < nr; ++r) yb[r * out + row] += acc[r], acc[r] = 0.0f;
        row = f / in;
        base = row * in;
        end = base + in;
      }
      const float vk = v[k];
      const int64_t col = f - base;
      for (int64_t r = 0; r < nr; ++r) acc[r] += vk * xb[r * in + col];
    }
    if (row >= 0)
      for (int64_t r = 0; r < nr; ++r) yb[r * out + row] += acc[r];
  }
}

// dx[N, in] += dy[N, out]·S.
void sparse_backward_input_add(float* dx, const float* dy, const int32_t* idx, const float* v, int64_t nnz,
                               int64_t N, int64_t out, int64_t in) {
#pragma omp parallel for schedule(static)
  for (int64_t n0 = 0; n0 < N; n0 += kRows) {
    const int64_t nr = std::min(kRows, N - n0);
    float* dxb = dx + n0 * in;
    const float* dyb = dy + n0 * out;
    float d[kRows] = {};
    int64_t base = 0, end = 0;
    for (int64_t k = 0; k < nnz; ++k) {
      const int64_t f = idx[k];
      if (f >= end) {
        const int64_t row = f / in;
        base = row * in;
        end = base + in;
        for (int64_t r = 0; r < nr; ++r) d[r] = dyb[r * out + row];
      }
      const float vk = v[k];
      const int64_t col = f - base;
      for (int64_t r = 0; r < nr; ++r) dxb[r * in + col] += vk * d[r];
    }
  }
}

// dvalues[k] += Σ_n dy[n, i_k]·x[n, j_k]: the weight gradient sampled at the support only. Each
// thread owns a range of k; rows n go in blocks so the blocks of x and dy stay in cache.
void sampled_gradient_add(float* dvalues, const float* dy, const float* x, const int32_t* idx, int64_t nnz,
                          int64_t N, int64_t out, int64_t in) {
  constexpr int64_t kBlock = 32;
#pragma omp parallel
  {
    const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t k0 = nnz * t / nt, k1 = nnz * (t + 1) / nt;
    for (int64_t n0 = 0; n0 < N && k0 < k1; n0 += kBlock) {
      const int64_t nr = std::min(kBlock, N - n0);
      const float* xb = x + n0 * in;
      const float* dyb = dy + n0 * out;
      int64_t row = 0, base = 0, end = 0;
      for (int64_t k = k0; k < k1; ++k) {
        const int64_t f = idx[k];
        if (f >= end) {
          row = f / in;
          base = row * in;
          end = base + in;
        }
        const int64_t col = f - base;
        float s = 0.0f;
        for (int64_t r = 0; r < nr; ++r) s += dyb[r * out + row] * xb[r * in + col];
        dvalues[k] += s;
      }
    }
  }
}

}  // namespace

SLTrainLinear::SLTrainLinear(std::string name, int64_t out, int64_t in, int layer, int64_t rank, float alpha,
                             float density, SLTrainPathSetting path)
    : LowRankLinear(std::move(name), out, in, layer, rank, alpha), nnz_(sltrain_nnz(density, out, in)), path_(path) {}

void SLTrainLinear::declare(ParamTable& params, BufferTable& buffers) {
  LowRankLinear::declare(params, buffers);
  offset_values_ = params.row(params.add(name_ + ".sparse_value", {nnz_}, ParamRole::sparse_values, layer_)).offset;
  index_name_ = name_ + ".sparse_index";
  buffers.add(index_name_, {nnz_}, layer_);
  index_row_ = int(buffers.rows().size()) - 1;
}

void SLTrainLinear::init(std::span<float> params, BufferTable& buffers, Rng& rng) const {
  init_factors(params, rng, /*zero_B=*/true);  // the paper's init: S alone carries W at step 0
  Rng support_rng(rng.next_u64(), /*stream=*/0x5117a1);
  buffers.rows()[size_t(index_row_)].data = sltrain_support(out_, in_, nnz_, support_rng);
  const float a = 1.0f / std::sqrt(float(in_));
  float* values = params.data() + offset_values_;
  for (int64_t k = 0; k < nnz_; ++k) values[k] = rng.uniform(-a, a);
}

const int32_t* SLTrainLinear::support(const BufferTable& buffers) const {
  const BufferRow& b = buffers.rows()[size_t(index_row_)];
  CAIRN_ASSERT(b.name == index_name_ && int64_t(b.data.size()) == nnz_, "support buffer of ", name_);
  return b.data.data();
}

SLTrainPath SLTrainLinear::path_for(int64_t N) const {
  if (path_ == SLTrainPathSetting::materialized) return SLTrainPath::materialized;
  if (path_ == SLTrainPathSetting::factored) return SLTrainPath::factored;
  return sltrain_auto_path(out_, in_, rank_, nnz_, N);
}

int64_t SLTrainLinear::workspace_floats(int64_t N) const {
  if (path_ == SLTrainPathSetting::materialized) return out_ * in_;
  if (path_ == SLTrainPathSetting::factored) return N * rank_;
  // Auto may take either path for a smaller N than the largest.
  return std::max(out_ * in_, N * rank_);
}

bool sltrain_host_backend(const Backend& be) { return &be == &cpu_backend(); }

SLTrainPath SLTrainLinear::path_on(const Backend& be, int64_t N) const {
  if (sltrain_host_backend(be)) return path_for(N);
  // The factored path's sparse kernels are host code; elsewhere W is formed and GEMMs do the rest.
  if (path_ == SLTrainPathSetting::factored)
    throw Error(str("model.sltrain_path = \"factored\" runs its sparse kernels on the host; the ", be.name(),
                    " backend uses \"materialized\" (or \"auto\", which picks it there)"));
  return SLTrainPath::materialized;
}

const int32_t* SLTrainLinear::support_on(const Backend& be, const BufferTable& buffers) const {
  const int32_t* host = support(buffers);
  if (sltrain_host_backend(be)) return host;
  if (device_support_.size() != nnz_ || device_support_version_ != buffers.version()) {
    if (device_support_.size() != nnz_) device_support_ = DeviceArray<int32_t>(be, nnz_);
    be.copy_to_device(device_support_.data(), host, nnz_ * int64_t(sizeof(int32_t)));
    device_support_version_ = buffers.version();
  }
  return device_support_.data();
}

LinearFlops SLTrainLinear::flops(const Backend& be, int64_t N) const {
  const double n = double(N), o = double(out_), i = double(in_), r = double(rank_), z = double(nnz_);
  if (path_on(be, N) == SLTrainPath::factored) {
    LinearFlops f = lowrank_flops(N);
    f.forward += 2.0 * n * z;
    f.backward += 4.0 * n * z;
    return f;
  }
  const double form = 2.0 * o * i * r + z;
  return {form + 2.0 * n * o * i, form + 4.0 * n * o * i + 4.0 * o * i * r + z};
}

// W = s·B·A + S in the workspace.
void SLTrainLinear::form_weight(const Backend& be, float* W, const float* params, const int32_t* idx) const {
  be.matmul(W, params + offset_B_, params + offset_A_, out_, in_, rank_, false, false, scale_, 0.0f);
  be.scatter_add(W, idx, params + offset_values_, nnz_);
}

void SLTrainLinear::forward(const Backend& be, float* y, const float* x, int64_t N, const float* params,
                            const BufferTable& buffers, float* ws) const {
  const int32_t* idx = support_on(be, buffers);
  if (path_on(be, N) == SLTrainPath::factored) {
    lowrank_forward(be, y, x, N, params, ws);
    sparse_forward_add(y, x, idx, params + offset_values_, nnz_, N, out_, in_);
    return;
  }
  form_weight(be, ws, params, idx);
  be.matmul(y, x, ws, N, out_, in_, false, true, 1.0f, 0.0f);
}

void SLTrainLinear::backward(const Backend& be, float* dx, bool accumulate_dx, float* grads, const float* dy,
                             const float* x, int64_t N, const float* params, const BufferTable& buffers,
                             float* ws) const {
  const int32_t* idx = support_on(be, buffers);
  float* dvalues = grads + offset_values_;
  if (path_on(be, N) == SLTrainPath::factored) {
    lowrank_backward(be, dx, accumulate_dx, grads, dy, x, N, params, ws);
    sparse_backward_input_add(dx, dy, idx, params + offset_values_, nnz_, N, out_, in_);
    sampled_gradient_add(dvalues, dy, x, idx, nnz_, N, out_, in_);
    return;
  }
  // W again (not kept from forward), dx = dy·W; then dW = dyᵀ·x over it in the same workspace.
  form_weight(be, ws, params, idx);
  be.matmul(dx, dy, ws, N, in_, out_, false, false, 1.0f, accumulate_dx ? 1.0f : 0.0f);
  be.matmul(ws, dy, x, out_, in_, N, true, false, 1.0f, 0.0f);
  be.matmul(grads + offset_B_, ws, params + offset_A_, out_, rank_, in_, false, true, scale_, 1.0f);
  be.matmul(grads + offset_A_, params + offset_B_, ws, rank_, in_, out_, true, false, scale_, 1.0f);
  be.gather_add(dvalues, ws, idx, nnz_);
}

void SLTrainLinear::dense_weight(float* W, std::span<const float> params, const BufferTable& buffers) const {
  LowRankLinear::dense_weight(W, params, buffers);
  const int32_t* idx = support(buffers);
  const float* values = params.data() + offset_values_;
  for (int64_t k = 0; k < nnz_; ++k) W[idx[k]] += values[k];
}

}  // namespace cairn
