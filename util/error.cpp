// Reporting of failed invariants (see error.h).
#include "util/error.h"

namespace cairn {

void fail_assert(const char* expr, const char* file, int line, const std::string& msg) {
  throw std::logic_error(str("internal error: ", expr, " failed at ", file, ":", line,
                             msg.empty() ? "" : ": ", msg));
}

}  // namespace cairn
