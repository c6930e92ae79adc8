// Seeded, checkpointable random numbers. The whole state is one 64-bit word, so a generator's
// position can be saved and restored exactly; `Rng(seed, stream)` gives independent streams
// (data order, init, SLTrain support, ...) from one run seed.
#pragma once

#include <cmath>
#include <cstdint>

namespace cairn {

class Rng {
 public:
  explicit Rng(uint64_t seed, uint64_t stream = 0) : state_(mix(seed ^ mix(stream + 0x632be59bd9b4e019ULL))) {}

  uint64_t next_u64() {  // splitmix64
    state_ += 0x9e3779b97f4a7c15ULL;
    return mix(state_);
  }
  // Uniform in [0, 1) with 24 random bits (exactly representable as float).
  float uniform() { return float(next_u64() >> 40) * 0x1.0p-24f; }
  float uniform(float lo, float hi) { return lo + (hi - lo) * uniform(); }
  // Uniform integer in [0, n) without modulo bias worth caring about (n << 2^64).
  uint64_t below(uint64_t n) {
    __extension__ using u128 = unsigned __int128;
    return uint64_t(u128(next_u64()) * n >> 64);
  }
  // Standard normal (Box-Muller; one value per call keeps the state a single word).
  float normal() {
    double u1 = (double(next_u64() >> 11) + 0.5) * 0x1.0p-53;
    double u2 = double(next_u64() >> 11) * 0x1.0p-53;
    return float(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
  }

  uint64_t state() const { return state_; }
  void set_state(uint64_t s) { state_ = s; }

 private:
  static uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  uint64_t state_;
};

}  // namespace cairn
