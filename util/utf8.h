// UTF-8 validation: well-formed sequences only (no overlong forms, surrogates, or code points above
// U+10FFFF), as Unicode defines them and as Rust's and ICU's decoders accept them.
#pragma once

#include <cstddef>
#include <string_view>

namespace cairn {

// Length (1..4) of the well-formed UTF-8 sequence that starts at s[i], or 0 if none does.
int utf8_sequence_length(std::string_view s, size_t i);

// Index of the first byte at or after `from` that does not start a well-formed sequence, or npos.
size_t invalid_utf8_at(std::string_view s, size_t from = 0);

}  // namespace cairn
