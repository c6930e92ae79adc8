// The bf16 roundings of backend/bf16.h (used by the CUDA backend's bf16 mode), checked on the CPU:
// round-to-nearest-even against a reference built from the two bf16 neighbours, stochastic
// rounding exactly unbiased over its 2¹⁶ random values, the parameter rounding's hash unbiased
// over element indices, and special values (±0, ±Inf, NaN, subnormals) kept. Then training with
// those roundings (tests/bf16_emulation.h) against fp32: the basis of the GPU check's tolerance.
#include "backend/bf16.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "model/llama.h"
#include "tests/bf16_emulation.h"
#include "tests/cuda_cases.h"
#include "util/rng.h"

namespace cairn {
namespace {

float from_bits(uint32_t u) {
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

// The bf16 values just below and above |x| (same sign as x), as floats.
void neighbours(float x, float* lo, float* hi) {
  const uint32_t u = bf16_float_bits(x) & 0xffff0000u;
  *lo = from_bits(u);
  *hi = from_bits(u + 0x10000u);
}

// Values over many binades, both signs, including subnormals.
std::vector<float> samples() {
  std::vector<float> xs;
  Rng rng(17);
  for (int i = 0; i < 20000; ++i) {
    const double mant = 1.0 + double(rng.next_u64() >> 11) * 0x1p-53;
    const int e = int(rng.next_u64() % 260) - 140;
    xs.push_back(float((rng.next_u64() & 1 ? -1.0 : 1.0) * std::ldexp(mant, e)));
  }
  return xs;
}

TEST(Bf16, RoundNearestIsTheNearerNeighbourTiesToEven) {
  for (float x : samples()) {
    float lo, hi;
    neighbours(x, &lo, &hi);
    const float got = bf16_to_float(bf16_round_nearest(x));
    const double dlo = std::abs(double(x) - double(lo)), dhi = std::abs(double(x) - double(hi));
    const bool lo_even = ((bf16_float_bits(lo) >> 16) & 1u) == 0;
    const float want = dlo < dhi ? lo : dhi < dlo ? hi : (lo_even ? lo : hi);
    ASSERT_EQ(bf16_float_bits(got), bf16_float_bits(want)) << "x = " << x;
  }
  EXPECT_EQ(bf16_to_float(bf16_round_nearest(from_bits(0x3f808000u))), 1.0f);           // tie, even below
  EXPECT_EQ(bf16_to_float(bf16_round_nearest(from_bits(0x3f818000u))), from_bits(0x3f820000u));  // tie, even above
}

TEST(Bf16, RepresentableValuesRoundTripUnderBothRoundings) {
  Rng rng(5);
  for (float x : samples()) {
    const float b = from_bits(bf16_float_bits(x) & 0xffff0000u);
    EXPECT_EQ(bf16_float_bits(bf16_to_float(bf16_round_nearest(b))), bf16_float_bits(b));
    EXPECT_EQ(bf16_float_bits(bf16_to_float(bf16_round_stochastic(b, uint32_t(rng.next_u64())))), bf16_float_bits(b));
    EXPECT_EQ(bf16_float_bits(bf16_to_float(bf16_round_param(int64_t(rng.next_u64() >> 20), b))), bf16_float_bits(b));
  }
}

TEST(Bf16, SpecialValuesAreKept) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  for (uint32_t r : {0u, 0xffffu, 0x12345u}) {
    EXPECT_EQ(bf16_to_float(bf16_round_stochastic(inf, r)), inf);
    EXPECT_EQ(bf16_to_float(bf16_round_stochastic(-inf, r)), -inf);
    EXPECT_TRUE(std::isnan(bf16_to_float(bf16_round_stochastic(nan, r))));
    EXPECT_EQ(bf16_float_bits(bf16_to_float(bf16_round_stochastic(-0.0f, r))), 0x80000000u);
  }
  EXPECT_EQ(bf16_to_float(bf16_round_nearest(inf)), inf);
  EXPECT_TRUE(std::isnan(bf16_to_float(bf16_round_nearest(nan))));
  EXPECT_TRUE(std::isnan(bf16_to_float(bf16_round_nearest(from_bits(0x7f800001u)))));  // NaN with a low payload only
  EXPECT_EQ(bf16_to_float(bf16_round_nearest(std::numeric_limits<float>::max())), inf);  // beyond the largest bf16
}

// Over all 2¹⁶ values of the random bits, exactly (dropped bits) of them round up: the mean is x.
TEST(Bf16, StochasticRoundingIsExactlyUnbiasedOverItsRandomBits) {
  int checked = 0;
  for (float x : samples()) {
    if (++checked > 300) break;
    float lo, hi;
    neighbours(x, &lo, &hi);
    double sum = 0;
    for (uint32_t r = 0; r < 65536; ++r) {
      const float y = bf16_to_float(bf16_round_stochastic(x, r));
      ASSERT_TRUE(y == lo || y == hi) << x;
      sum += double(y);
    }
    EXPECT_EQ(sum / 65536.0, double(x)) << x;
  }
}

// The parameter rounding draws its bits from (index, value): over many indices of one value that
// sits 0.3 ulp above a bf16 value, round-to-nearest is off by −0.3 ulp and the mean of the
// parameter rounding must be within 6 standard deviations (6·sqrt(0.21/n) ulp) of x.
TEST(Bf16, ParameterRoundingIsUnbiasedOverIndicesAndAPureFunction) {
  const int64_t n = 1 << 20;
  for (float x : {1.0f + 0.3f * 0x1p-7f, -3.0f - 0.7f * 0x1p-6f, 1e-3f}) {
    float lo, hi;
    neighbours(x, &lo, &hi);
    const double ulp = std::abs(double(hi) - double(lo));
    double sum = 0;
    int64_t ups = 0;
    for (int64_t i = 0; i < n; ++i) {
      const uint16_t h = bf16_round_param(i, x);
      ASSERT_EQ(h, bf16_round_param(i, x));
      const float y = bf16_to_float(h);
      sum += double(y);
      ups += y == hi;
    }
    const double frac = std::abs(double(x) - double(lo)) / ulp;
    const double bias_ulp = (sum / double(n) - double(x)) / ulp;
    EXPECT_LT(std::abs(bias_ulp), 6 * std::sqrt(frac * (1 - frac) / double(n))) << "x = " << x << " ups " << ups;
  }
  // The bits change with the value, not only with the index.
  int differ = 0;
  for (int64_t i = 0; i < 64; ++i)
    differ += bf16_param_random_bits(i, 1.0f) != bf16_param_random_bits(i, std::nextafter(1.0f, 2.0f));
  EXPECT_EQ(differ, 64);
}

// The GPU check model_*_bf16_training (tests/cuda_cases.cpp) with the CPU emulation of the bf16
// mode in place of the GPU: 5 AdamW steps of a tiny model with bf16 GEMM inputs follow fp32 within
// its 5e-3 per loss (measured: ~5e-5), and keep learning.
TEST(Bf16, EmulatedTrainingFollowsFp32) {
  for (LinearKind kind : {LinearKind::dense, LinearKind::lowrank}) {
    const ModelConfig cfg = check_model_config(kind);
    const int64_t b = 3, n = b * cfg.seq_len;
    const auto [in, tg] = check_tokens(n, 11);
    const Bf16EmulationBackend emulation;
    std::vector<float> losses[2];
    const Backend* backends[2] = {&cpu_backend(), &emulation};
    for (int k = 0; k < 2; ++k) {
      LlamaModel m(cfg, *backends[k], b);
      m.init_weights(5);
      const int64_t total = m.params().total();
      DeviceArray<float> mom(*backends[k], total), var(*backends[k], total);
      mom.zero();
      var.zero();
      for (int t = 1; t <= 5; ++t) {
        m.zero_grads();
        losses[k].push_back(m.forward_backward(in.data(), tg.data(), b, 1.0f));
        backends[k]->adamw_update(m.param_data(), m.grad_data(), mom.data(), var.data(), total, 2e-3f, 0.9f, 0.95f,
                                  1e-8f, 0.1f, 1.0f - std::pow(0.9f, float(t)), 1.0f - std::pow(0.95f, float(t)));
      }
      losses[k].push_back(m.forward_loss(in.data(), tg.data(), b));
    }
    for (size_t i = 0; i < losses[0].size(); ++i)
      EXPECT_NEAR(losses[1][i], losses[0][i], 5e-3 * losses[0][i]) << linear_kind_name(kind) << " loss " << i;
    EXPECT_LT(losses[1].back(), losses[1].front() - 0.5f) << linear_kind_name(kind);
  }
}

}  // namespace
}  // namespace cairn
