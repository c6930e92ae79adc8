// Byte-level checks on corpus text, fast enough to run on every byte of a corpus: UTF-8
// validation, the binary-file sniff, and extraction of one string member from a JSON Lines record
// (validating the whole record as JSON on the way).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace cairn {

// Offset of the first byte of `s` that does not start a valid UTF-8 sequence (overlong forms,
// surrogates and code points above U+10FFFF are invalid), or std::string_view::npos when `s` is
// valid. With `truncated_ok`, a sequence cut off by the end of `s` counts as valid.
size_t utf8_invalid_offset(std::string_view s, bool truncated_ok = false);

// True when the first bytes of a file (`head`, possibly cut mid-character) are not text: they
// hold a NUL byte or invalid UTF-8.
bool looks_binary(std::string_view head);

// True when `s` holds only ASCII whitespace.
bool is_blank(std::string_view s);

// Parses `line` as one JSON text that must be an object, and decodes the string value of its
// top-level member `key` into `out` (UTF-8; escapes resolved). Returns an empty string on success,
// else the problem, e.g. "is not valid JSON (unterminated string at column 17)" or
// "has no \"text\" member" or "has \"text\" as a number, not a string".
std::string json_string_member(std::string_view line, std::string_view key, std::string& out);

}  // namespace cairn
