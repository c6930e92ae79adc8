// Inline float exp that GCC vectorizes (glibc's expf is a scalar call in our loops unless
// -ffast-math). Cephes' expf: exp(x) = 2^k·exp(r), |r| ≤ ln2/2, degree-6 polynomial; relative
// error about 2e-7 over the clamped range [-87.3, 88.7] (below it the result is 2^-126, not 0).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace cairn {

inline float fast_exp(float x) {
  x = x < -87.3f ? -87.3f : (x > 88.7f ? 88.7f : x);
  const float k = std::floor(x * 1.44269504088896341f + 0.5f);
  const float r = x - k * 0.693359375f + k * 2.12194440e-4f;  // ln2 split in two for accuracy
  const float z = r * r;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float e = p * z + r + 1.0f;
  const int32_t bits = (int32_t(k) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return e * scale;
}

}  // namespace cairn
