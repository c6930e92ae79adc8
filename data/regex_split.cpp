// PCRE2 pre-tokenization (see regex_split.h).
#include "data/regex_split.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "util/error.h"

namespace cairn {

namespace {

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof buf);
  return reinterpret_cast<const char*>(buf);
}

// A repeated group keeps a backtracking frame per repetition on the JIT stack: PCRE2's default
// 32 KiB ends at a few thousand, real corpora have megabyte-long runs of letters or spaces.
constexpr size_t kJitStackMax = 64 << 20;

// Oniguruma's \s (used by `tokenizers`) is Unicode White_Space; PCRE2's also matches U+180E,
// MONGOLIAN VOWEL SEPARATOR (white space until Unicode 6.3). As a class body, for use in a class.
constexpr const char* kWhiteSpace = R"(\t\n\x0b\f\r\x20\x85\xa0\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000})";

// The pattern with \s and \S spelled as Oniguruma means them (\S inside a class is left alone).
std::string oniguruma_spaces(const std::string& pattern) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char e = pattern[++i];
      if (e == 's') out += in_class ? str(kWhiteSpace) : str("[", kWhiteSpace, "]");
      else if (e == 'S' && !in_class) out += str("[^", kWhiteSpace, "]");
      else out += {c, e};
      continue;
    }
    out += c;
    if (!in_class && c == '[') {
      in_class = true;
      // A ']' right after '[' or '[^' is a literal member, not the end of the class.
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') out += pattern[++i];
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') out += pattern[++i];
    } else if (in_class && c == '[' && i + 1 < pattern.size() && pattern[i + 1] == ':') {
      const size_t end = pattern.find(":]", i + 2);  // a POSIX class such as [:alpha:]
      if (end != std::string::npos) {
        out.append(pattern, i + 1, end + 1 - i);
        i = end + 1;
      }
    } else if (in_class && c == ']') {
      in_class = false;
    }
  }
  return out;
}

}  // namespace

struct RegexSplitter::Code {
  pcre2_code* re = nullptr;
  bool jit = false;
  ~Code() { pcre2_code_free(re); }
};

class RegexSplitter::Scratch {
 public:
  explicit Scratch(const pcre2_code* re)
      : match(pcre2_match_data_create_from_pattern(re, nullptr)), context(pcre2_match_context_create(nullptr)),
        stack(pcre2_jit_stack_create(32 << 10, kJitStackMax, nullptr)) {
    if (!match || !context || !stack) throw Error("out of memory for PCRE2 match data");
    pcre2_jit_stack_assign(context, nullptr, stack);
  }
  ~Scratch() {
    pcre2_jit_stack_free(stack);
    pcre2_match_context_free(context);
    pcre2_match_data_free(match);
  }
  pcre2_match_data* match;
  pcre2_match_context* context;
  pcre2_jit_stack* stack;
};

RegexSplitter::RegexSplitter(const std::string& pattern, bool literal, const std::string& where)
    : code_(std::make_unique<Code>()) {
  // MULTILINE: in Oniguruma's Ruby syntax, which `tokenizers` uses, ^ and $ match at every line.
  uint32_t options = PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE | PCRE2_NO_UTF_CHECK;
  if (literal) options = PCRE2_UTF | PCRE2_LITERAL | PCRE2_NO_UTF_CHECK;
  int err = 0;
  PCRE2_SIZE offset = 0;
  const std::string source = literal ? pattern : oniguruma_spaces(pattern);
  code_->re = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(source.data()), source.size(), options, &err, &offset,
                            nullptr);
  if (!code_->re)
    throw Error(str(where, ": the pattern '", pattern, "' does not compile in PCRE2: ", pcre2_message(err)));
  code_->jit = pcre2_jit_compile(code_->re, PCRE2_JIT_COMPLETE) == 0;
}

RegexSplitter::~RegexSplitter() = default;

std::unique_ptr<RegexSplitter::Scratch, void (*)(RegexSplitter::Scratch*)> RegexSplitter::make_scratch() const {
  return {new Scratch(code_->re), [](Scratch* s) { delete s; }};
}

void RegexSplitter::split(std::string_view text, Scratch& scratch,
                          const std::function<void(std::string_view)>& piece) const {
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  const size_t n = text.size();
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(scratch.match);
  size_t search_from = 0, emitted = 0;
  bool matched = false;
  size_t last_match_end = 0;
  while (search_from <= n) {
    const int rc = code_->jit
                       ? pcre2_jit_match(code_->re, subject, n, search_from, 0, scratch.match, scratch.context)
                       : pcre2_match(code_->re, subject, n, search_from, PCRE2_NO_UTF_CHECK, scratch.match,
                                     scratch.context);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) throw Error(str("pre-tokenizer regex failed: ", pcre2_message(rc)));
    const size_t start = ov[0], end = ov[1];
    // Oniguruma's find_iter: an empty match right where the previous match ended is skipped by
    // moving on one character.
    if (start == end && matched && last_match_end == end) {
      if (search_from == n) break;
      ++search_from;
      while (search_from < n && (uint8_t(text[search_from]) & 0xc0) == 0x80) ++search_from;
      continue;
    }
    matched = true;
    search_from = last_match_end = end;
    if (start > emitted) piece(text.substr(emitted, start - emitted));
    if (end > start) piece(text.substr(start, end - start));
    emitted = end;
  }
  if (emitted < n) piece(text.substr(emitted));
}

}  // namespace cairn
