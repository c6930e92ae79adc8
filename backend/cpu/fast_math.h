// Inline float exp that GCC vectorizes (glibc's expf is a scalar call in our loops unless
// -ffast-math). Cephes' expf: exp(x) = 2^k·exp(r), |r| ≤ ln2/2, degree-6 polynomial; relative
// error about 2e-7 for x in [-87, 88]. Below that it returns a tiny positive number instead of
// 0 (softmax never needs more); above, a large finite one.
#pragma once

#include <algorithm>
#include <cstdint>
#include <bit>

namespace cairn {

inline float fast_exp(float x) {
  x = std::min(std::max(x, -87.0f), 88.0f);
  // Round x/ln2 to the nearest integer by adding and subtracting 1.5·2^23 (std::floor does not
  // vectorize without -fno-trapping-math).
  const float k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float r = x - k * 0.693359375f + k * 2.12194440e-4f;  // ln2 split in two for accuracy
  const float z = r * r;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float e = p * z + r + 1.0f;
  return e * std::bit_cast<float>((int32_t(k) + 127) << 23);
}

}  // namespace cairn
