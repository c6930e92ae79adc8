// UTF-8 validation (see utf8.h). ASCII, by far the most common, is skipped eight bytes at a time.
#include "util/utf8.h"

#include <cstdint>
#include <cstring>

namespace cairn {

int utf8_sequence_length(std::string_view s, size_t i) {
  const auto c = uint8_t(s[i]);
  if (c < 0x80) return 1;
  const int n = (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
  if (n == 0 || i + size_t(n) > s.size()) return 0;
  uint32_t cp = n == 2 ? c & 0x1f : n == 3 ? c & 0x0f : c & 0x07;
  for (int k = 1; k < n; ++k) {
    const auto d = uint8_t(s[i + size_t(k)]);
    if ((d >> 6) != 0x2) return 0;
    cp = (cp << 6) | (d & 0x3f);
  }
  const uint32_t min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < min_cp[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;  // overlong, surrogate
  return n;
}

size_t invalid_utf8_at(std::string_view s, size_t from) {
  size_t i = from;
  while (i < s.size()) {
    if (i + 8 <= s.size()) {
      uint64_t word;
      std::memcpy(&word, s.data() + i, 8);
      if ((word & 0x8080808080808080ull) == 0) {
        i += 8;
        continue;
      }
    }
    const int n = utf8_sequence_length(s, i);
    if (n == 0) return i;
    i += size_t(n);
  }
  return std::string_view::npos;
}

}  // namespace cairn
