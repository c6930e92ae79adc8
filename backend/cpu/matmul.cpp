// The CPU backend's matmuls through its GEMM library (backend/cpu/gemm.h), and in bf16 mode the
// operand roundings of the CUDA backend's CudaMath::bf16: registered parameters read from a kept
// copy rounded stochastically (bf16_round_param of the element's index in its buffer), every other
// operand rounded to nearest into the backend's staging, fp32 accumulation and outputs.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "backend/bf16.h"
#include "backend/cpu/cpu_backend.h"
#include "util/error.h"

namespace cairn {

void CpuBackend::register_parameters(const float* base, int64_t n) const {
  if (!bf16()) return;
  copies_.push_back({base, n, std::make_unique<uint16_t[]>(size_t(n))});
  written(base, n * 4);
}

void CpuBackend::written(const void* p, int64_t bytes) const {
  if (!bf16() || bytes <= 0) return;
  const auto lo = reinterpret_cast<uintptr_t>(p), hi = lo + uintptr_t(bytes);
  for (const ParamCopy& c : copies_) {
    const auto base = reinterpret_cast<uintptr_t>(c.base), end = base + uintptr_t(c.n) * 4;
    if (hi <= base || lo >= end) continue;
    // The floats of the buffer that the written bytes touch, partly written ones included.
    const int64_t first = int64_t((std::max(lo, base) - base) / 4), last = int64_t((std::min(hi, end) - base + 3) / 4);
    const float* master = c.base;
    uint16_t* copy = c.bf16.get();
#pragma omp parallel for simd schedule(static)
    for (int64_t i = first; i < last; ++i) copy[i] = bf16_round_param(i, master[i]);
  }
}

int64_t CpuBackend::own_bytes() const {
  int64_t bytes = 2 * int64_t(staging_[0].size() + staging_[1].size());
  for (const ParamCopy& c : copies_) bytes += 2 * c.n;
  return bytes;
}

uint16_t* CpuBackend::param_copy(const float* p, int64_t n, int64_t* first) const {
  const auto at = reinterpret_cast<uintptr_t>(p);
  for (const ParamCopy& c : copies_) {
    const auto base = reinterpret_cast<uintptr_t>(c.base);
    if (at >= base && at + uintptr_t(n) * 4 <= base + uintptr_t(c.n) * 4) {
      *first = p - c.base;
      return c.bf16.get() + *first;
    }
  }
  return nullptr;
}

const uint16_t* CpuBackend::bf16_operand(const float* p, int64_t n, int area) const {
  int64_t first = 0;
  if (const uint16_t* copy = param_copy(p, n, &first)) return copy;
  std::vector<uint16_t>& stage = staging_[area];
  if (int64_t(stage.size()) < n) stage.resize(size_t(n));
  cpu_round_bf16(stage.data(), p, n);
  return stage.data();
}

void CpuBackend::matmul(float* out, const float* a, const float* b, int64_t M, int64_t N, int64_t K, bool trans_a,
                        bool trans_b, float alpha, float beta) const {
  if (M == 0 || N == 0) return;
  if (K == 0) {  // an empty sum: out = beta·out (libraries differ on K = 0)
    scale_inplace(out, beta, M * N);
    if (beta == 0.0f) zero(out, M * N * 4);
    return;
  }
  if (!bf16()) {
    gemm_.run(out, a, b, M, N, K, trans_a, trans_b, alpha, beta);
    return;
  }
  const uint16_t* ha = bf16_operand(a, M * K, 0);
  const uint16_t* hb = bf16_operand(b, K * N, 1);
  gemm_.run(out, ha, hb, M, N, K, trans_a, trans_b, alpha, beta);
  written(out, M * N * 4);
}

void CpuBackend::matmul_batched(float* out, const float* a, const float* b, int64_t M, int64_t N, int64_t K,
                                bool trans_a, bool trans_b, float alpha, float beta, int64_t batch,
                                int64_t stride_out, int64_t stride_a, int64_t stride_b) const {
  if (!bf16() || M == 0 || N == 0 || K == 0) {
    Backend::matmul_batched(out, a, b, M, N, K, trans_a, trans_b, alpha, beta, batch, stride_out, stride_a, stride_b);
    return;
  }
  // A shared operand (stride 0) is rounded once for the whole batch.
  const uint16_t* ha = stride_a == 0 ? bf16_operand(a, M * K, 0) : nullptr;
  const uint16_t* hb = stride_b == 0 ? bf16_operand(b, K * N, 1) : nullptr;
  for (int64_t i = 0; i < batch; ++i) {
    const uint16_t* ai = ha ? ha : bf16_operand(a + i * stride_a, M * K, 0);
    const uint16_t* bi = hb ? hb : bf16_operand(b + i * stride_b, K * N, 1);
    gemm_.run(out + i * stride_out, ai, bi, M, N, K, trans_a, trans_b, alpha, beta);
    written(out + i * stride_out, M * N * 4);
  }
}

void CpuBackend::linear_backward(float* dw, float* dx, const float* dy, const float* x, const float* w, int64_t N,
                                 int64_t out, int64_t in, int64_t k, bool accumulate_dx) const {
  if (!bf16() || N == 0 || out == 0 || in == 0) {
    Backend::linear_backward(dw, dx, dy, x, w, N, out, in, k, accumulate_dx);
    return;
  }
  // dy (all k products) and x rounded once for both products, as the CUDA backend does; x's
  // staging is free once the dW products are done, for a weight that is not registered.
  const uint16_t* hdy = bf16_operand(dy, k * N * out, 0);
  const uint16_t* hx = bf16_operand(x, N * in, 1);
  for (int64_t i = 0; i < k; ++i) {
    gemm_.run(dw + i * out * in, hdy + i * N * out, hx, out, in, N, true, false, 1.0f, 1.0f);
    written(dw + i * out * in, out * in * 4);
  }
  for (int64_t i = 0; i < k; ++i) {
    const uint16_t* hw = bf16_operand(w + i * out * in, out * in, 1);
    gemm_.run(dx, hdy + i * N * out, hw, N, in, out, false, false, 1.0f, accumulate_dx || i > 0 ? 1.0f : 0.0f);
  }
  written(dx, N * in * 4);
}

}  // namespace cairn
