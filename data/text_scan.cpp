// UTF-8 validation and JSON Lines member extraction (see text_scan.h). Both run over the whole
// corpus, so ASCII is skipped 32 bytes at a time and nothing is allocated but the decoded string.
#include "data/text_scan.h"

#include <cstdint>
#include <cstring>

#include "util/error.h"

namespace cairn {

namespace {

using uchar = unsigned char;

// Bytes from p that hold only ASCII (a multiple of 32, then byte by byte up to the first non-ASCII).
const uchar* skip_ascii(const uchar* p, const uchar* end) {
  while (end - p >= 32) {
    uint64_t w[4];
    std::memcpy(w, p, 32);
    if (((w[0] | w[1] | w[2] | w[3]) & 0x8080808080808080ULL) != 0) break;
    p += 32;
  }
  while (p < end && *p < 0x80) ++p;
  return p;
}

// Bytes from p up to the first that ends a plain run inside a JSON string: '"', '\\', a control
// character or a non-ASCII byte. Eight bytes at a time (SWAR: a byte b is found when b - k
// borrows, for the zero-tests of b ^ '"', b ^ '\\' and b - 0x20).
const uchar* skip_plain(const uchar* p, const uchar* end) {
  constexpr uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
  auto zero_byte = [&](uint64_t v) { return (v - ones) & ~v & highs; };
  while (end - p >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    const uint64_t hit = zero_byte(w ^ (ones * '"')) | zero_byte(w ^ (ones * '\\')) | ((w - ones * 0x20) & ~w & highs) |
                         (w & highs);
    if (hit) break;
    p += 8;
  }
  while (p < end && *p != '"' && *p != '\\' && *p >= 0x20 && *p < 0x80) ++p;
  return p;
}

// Length of the UTF-8 sequence starting at p (a byte >= 0x80), 0 when it is invalid. `truncated`
// is set when the sequence is a valid prefix cut off by `end`.
int utf8_sequence(const uchar* p, const uchar* end, bool& truncated) {
  truncated = false;
  const uchar c = *p;
  int n;
  uchar lo = 0x80, hi = 0xBF;  // range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;  // no UTF-16 surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    return 0;
  }
  for (int i = 1; i < n; ++i) {
    if (p + i >= end) {
      truncated = true;
      return 0;
    }
    const uchar b = p[i];
    if (i == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return 0;
  }
  return n;
}

class JsonScanner {
 public:
  explicit JsonScanner(std::string_view s)
      : begin_(reinterpret_cast<const uchar*>(s.data())), p_(begin_), end_(begin_ + s.size()) {}

  std::string member(std::string_view key, std::string& out) {
    bool found = false, is_string = false;
    const char* found_type = "";
    ws();
    if (p_ >= end_) return invalid("empty record");
    if (*p_ != '{') return str("is not a JSON object (it starts with '", char(*p_), "')");
    ++p_;
    ws();
    if (p_ < end_ && *p_ == '}') {
      ++p_;
    } else {
      for (;;) {
        ws();
        if (p_ >= end_ || *p_ != '"') return invalid("expected a member name");
        key_.clear();
        if (!string(&key_)) return error_;
        ws();
        if (p_ >= end_ || *p_ != ':') return invalid("expected ':' after a member name");
        ++p_;
        ws();
        // The last duplicate wins, as in Python's json module.
        if (key_ == key) {
          found = true;
          is_string = p_ < end_ && *p_ == '"';
          found_type = value_type();
          if (is_string) {
            out.clear();
            if (!string(&out)) return error_;
          } else if (!value(0)) {
            return error_;
          }
        } else if (!value(0)) {
          return error_;
        }
        ws();
        if (p_ < end_ && *p_ == ',') {
          ++p_;
          continue;
        }
        if (p_ < end_ && *p_ == '}') {
          ++p_;
          break;
        }
        return invalid("expected ',' or '}' in an object");
      }
    }
    ws();
    if (p_ != end_) return invalid("text after the record's closing '}'");
    if (!found) return str("has no \"", key, "\" member");
    if (!is_string) return str("has \"", key, "\" as ", found_type, ", not a string");
    return {};
  }

 private:
  static constexpr int kMaxDepth = 512;

  void ws() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) ++p_;
  }
  std::string invalid(const char* what) {
    if (error_.empty()) error_ = str("is not valid JSON (", what, " at column ", p_ - begin_ + 1, ")");
    return error_;
  }
  bool fail(const char* what) {
    invalid(what);
    return false;
  }
  const char* value_type() const {
    if (p_ >= end_) return "nothing";
    switch (*p_) {
      case '{': return "an object";
      case '[': return "an array";
      case '"': return "a string";
      case 't': case 'f': return "a boolean";
      case 'n': return "null";
      default: return "a number";
    }
  }

  // At '"': decodes the string into *out (when not null) and moves past its closing quote.
  bool string(std::string* out) {
    ++p_;
    for (;;) {
      const uchar* run = p_;
      for (;;) {
        p_ = skip_plain(p_, end_);
        if (p_ >= end_ || *p_ < 0x80) break;
        bool truncated;
        const int n = utf8_sequence(p_, end_, truncated);
        if (n == 0) return fail("invalid UTF-8 in a string");
        p_ += n;
      }
      if (out) out->append(reinterpret_cast<const char*>(run), size_t(p_ - run));
      if (p_ >= end_) return fail("unterminated string");
      if (*p_ == '"') {
        ++p_;
        return true;
      }
      if (*p_ < 0x20) return fail("control character in a string");
      if (!escape(out)) return false;
    }
  }

  bool escape(std::string* out) {
    ++p_;  // the backslash
    if (p_ >= end_) return fail("unterminated escape");
    const uchar c = *p_++;
    char plain = 0;
    switch (c) {
      case '"': plain = '"'; break;
      case '\\': plain = '\\'; break;
      case '/': plain = '/'; break;
      case 'b': plain = '\b'; break;
      case 'f': plain = '\f'; break;
      case 'n': plain = '\n'; break;
      case 'r': plain = '\r'; break;
      case 't': plain = '\t'; break;
      case 'u': break;
      default: return fail("invalid escape");
    }
    if (plain) {
      if (out) out->push_back(plain);
      return true;
    }
    uint32_t cp;
    if (!hex4(cp)) return false;
    if (cp >= 0xDC00 && cp <= 0xDFFF) return fail("lone low surrogate \\u escape");
    if (cp >= 0xD800 && cp <= 0xDBFF) {
      uint32_t low;
      if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u') return fail("lone high surrogate \\u escape");
      p_ += 2;
      if (!hex4(low)) return false;
      if (low < 0xDC00 || low > 0xDFFF) return fail("high surrogate \\u escape without a low one");
      cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
    }
    if (out) append_utf8(*out, cp);
    return true;
  }

  bool hex4(uint32_t& cp) {
    if (end_ - p_ < 4) return fail("short \\u escape");
    cp = 0;
    for (int i = 0; i < 4; ++i, ++p_) {
      const uchar h = *p_;
      const int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
      if (d < 0) return fail("invalid \\u escape");
      cp = cp * 16 + uint32_t(d);
    }
    return true;
  }

  static void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out.push_back(char(cp));
    } else if (cp < 0x800) {
      out.push_back(char(0xC0 | (cp >> 6)));
      out.push_back(char(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out.push_back(char(0xE0 | (cp >> 12)));
      out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(char(0x80 | (cp & 0x3F)));
    } else {
      out.push_back(char(0xF0 | (cp >> 18)));
      out.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
      out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(char(0x80 | (cp & 0x3F)));
    }
  }

  bool literal(const char* word) {
    const size_t n = std::strlen(word);
    if (size_t(end_ - p_) < n || std::memcmp(p_, word, n) != 0) return fail("invalid literal");
    p_ += n;
    return true;
  }

  bool number() {
    auto digits = [&] {
      const uchar* s = p_;
      while (p_ < end_ && *p_ >= '0' && *p_ <= '9') ++p_;
      return p_ > s;
    };
    if (p_ < end_ && *p_ == '-') ++p_;
    if (p_ < end_ && *p_ == '0') {
      ++p_;
    } else if (!digits()) {
      return fail("invalid number");
    }
    if (p_ < end_ && *p_ == '.') {
      ++p_;
      if (!digits()) return fail("invalid number");
    }
    if (p_ < end_ && (*p_ == 'e' || *p_ == 'E')) {
      ++p_;
      if (p_ < end_ && (*p_ == '+' || *p_ == '-')) ++p_;
      if (!digits()) return fail("invalid number");
    }
    return true;
  }

  // Validates one value and moves past it (nested values up to kMaxDepth deep).
  bool value(int depth) {
    if (depth > kMaxDepth) return fail("nesting deeper than 512");
    if (p_ >= end_) return fail("expected a value");
    switch (*p_) {
      case '"': return string(nullptr);
      case 't': return literal("true");
      case 'f': return literal("false");
      case 'n': return literal("null");
      case '[': case '{': {
        const bool object = *p_ == '{';
        const uchar close = object ? '}' : ']';
        ++p_;
        ws();
        if (p_ < end_ && *p_ == close) {
          ++p_;
          return true;
        }
        for (;;) {
          ws();
          if (object) {
            if (p_ >= end_ || *p_ != '"') return fail("expected a member name");
            if (!string(nullptr)) return false;
            ws();
            if (p_ >= end_ || *p_ != ':') return fail("expected ':' after a member name");
            ++p_;
            ws();
          }
          if (!value(depth + 1)) return false;
          ws();
          if (p_ < end_ && *p_ == ',') {
            ++p_;
            continue;
          }
          if (p_ < end_ && *p_ == close) {
            ++p_;
            return true;
          }
          return fail(object ? "expected ',' or '}' in an object" : "expected ',' or ']' in an array");
        }
      }
      default: return number();
    }
  }

  const uchar* begin_;
  const uchar* p_;
  const uchar* end_;
  std::string key_, error_;
};

}  // namespace

size_t utf8_invalid_offset(std::string_view s, bool truncated_ok) {
  const uchar* begin = reinterpret_cast<const uchar*>(s.data());
  const uchar* end = begin + s.size();
  const uchar* p = begin;
  for (;;) {
    p = skip_ascii(p, end);
    if (p >= end) return std::string_view::npos;
    bool truncated;
    const int n = utf8_sequence(p, end, truncated);
    if (n == 0) return truncated && truncated_ok ? std::string_view::npos : size_t(p - begin);
    p += n;
  }
}

bool looks_binary(std::string_view head) {
  return head.find('\0') != std::string_view::npos || utf8_invalid_offset(head, true) != std::string_view::npos;
}

bool is_blank(std::string_view s) {
  for (char c : s)
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != '\v' && c != '\f') return false;
  return true;
}

std::string json_string_member(std::string_view line, std::string_view key, std::string& out) {
  return JsonScanner(line).member(key, out);
}

}  // namespace cairn
