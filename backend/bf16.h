// bf16 rounding of fp32 values, as bit patterns (uint16_t), for host and device code alike: the
// CUDA backend's bf16 mode rounds GEMM inputs with these, and tests/bf16_test.cpp checks them on
// the CPU. bf16 is the top 16 bits of an fp32 (sign, 8-bit exponent, 7-bit mantissa), so both
// roundings are integer operations on the fp32 bit pattern.
#pragma once

#include <cstdint>
#include <cstring>

#ifdef __CUDACC__
#define CAIRN_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define CAIRN_HOST_DEVICE inline
#endif

namespace cairn {

CAIRN_HOST_DEVICE uint32_t bf16_float_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}

CAIRN_HOST_DEVICE float bf16_to_float(uint16_t h) {
  const uint32_t u = uint32_t(h) << 16;
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

// NaN stays a (quiet) NaN with its sign; ±Inf stays ±Inf. Only called when the exponent is all ones.
CAIRN_HOST_DEVICE uint16_t bf16_special(uint32_t u) {
  return (u & 0x007fffffu) ? uint16_t((u >> 16) | 0x0040u) : uint16_t(u >> 16);
}

// Round to nearest, ties to even (what __float2bfloat16_rn does).
CAIRN_HOST_DEVICE uint16_t bf16_round_nearest(float x) {
  const uint32_t u = bf16_float_bits(x);
  if ((u & 0x7f800000u) == 0x7f800000u) return bf16_special(u);
  return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// Stochastic rounding with the random bits `r` (the low 16 are used): rounds the magnitude up
// with probability (dropped low 16 bits) / 2¹⁶, so E[result] = x over uniform r — unbiased, where
// round-to-nearest is biased for values that sit off-centre between two bf16 neighbours. The bit
// pattern is monotone in the magnitude, so the carry into the exponent gives the next bf16 up.
CAIRN_HOST_DEVICE uint16_t bf16_round_stochastic(float x, uint32_t r) {
  const uint32_t u = bf16_float_bits(x);
  if ((u & 0x7f800000u) == 0x7f800000u) return bf16_special(u);
  return uint16_t((u + (r & 0xffffu)) >> 16);
}

// The random bits of the stochastic rounding of a parameter: a hash of its element index in the
// registered parameter buffer and of its fp32 value's bits (a splitmix64 finalizer). A pure
// function of (index, value), so a parameter's bf16 copy is a function of the fp32 master alone:
// the same on every rank, after a resume, and whichever path (optimizer step or refresh) wrote it.
CAIRN_HOST_DEVICE uint32_t bf16_param_random_bits(int64_t index, float value) {
  uint64_t z = uint64_t(index) * 0x9e3779b97f4a7c15ull + (uint64_t(bf16_float_bits(value)) << 1) + 0x632be59bd9b4e019ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return uint32_t(z >> 32);
}

// A parameter's bf16 copy: stochastic rounding with bf16_param_random_bits.
CAIRN_HOST_DEVICE uint16_t bf16_round_param(int64_t index, float value) {
  return bf16_round_stochastic(value, bf16_param_random_bits(index, value));
}

}  // namespace cairn
