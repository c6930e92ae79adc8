// One error family for cairn. `cairn::Error` is for what a user can cause (bad config, missing file,
// corrupt data): its message says what is wrong and what to do. CAIRN_ASSERT guards invariants and
// stays on in Release builds. Both throw, so tests can check error paths and `main` reports them.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace cairn {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Concatenates any streamable arguments: str("step ", 3, " of ", 10).
template <typename... Args>
std::string str(const Args&... args) {
  std::ostringstream os;
  ((os << args), ...);
  return os.str();
}

[[noreturn]] void fail_assert(const char* expr, const char* file, int line, const std::string& msg);

}  // namespace cairn

#define CAIRN_ASSERT(cond, ...)                                                       \
  do {                                                                                \
    if (!(cond)) ::cairn::fail_assert(#cond, __FILE__, __LINE__, ::cairn::str(__VA_ARGS__)); \
  } while (0)
