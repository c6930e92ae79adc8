// Pre-tokenization by regex with PCRE2 (UTF, UCP so that \p{L}, \p{N} and \s are Unicode classes,
// JIT-compiled where the platform has it): a `tokenizers` Split with behavior "Isolated" — every
// match and every stretch between matches is a piece — with Oniguruma's rules for empty matches,
// since `tokenizers` runs its regexes in Oniguruma.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace cairn {

class RegexSplitter {
 public:
  // Per-thread matching state (match data, JIT stack); one per thread per splitter.
  class Scratch;

  // `literal`: the pattern is a plain string, not a regex. Throws cairn::Error naming `where` (a
  // JSON path) and PCRE2's message when the pattern does not compile.
  RegexSplitter(const std::string& pattern, bool literal, const std::string& where);
  ~RegexSplitter();
  RegexSplitter(const RegexSplitter&) = delete;
  RegexSplitter& operator=(const RegexSplitter&) = delete;

  std::unique_ptr<Scratch, void (*)(Scratch*)> make_scratch() const;
  // Calls piece(p) for each non-empty piece of `text` (valid UTF-8), in order; the pieces
  // concatenate to `text`. Throws cairn::Error when PCRE2 fails (e.g. its JIT stack limit).
  void split(std::string_view text, Scratch& scratch, const std::function<void(std::string_view)>& piece) const;

 private:
  struct Code;
  std::unique_ptr<Code> code_;
};

}  // namespace cairn
