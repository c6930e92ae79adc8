// Failing together (see collective_error.h).
#include "comm/collective_error.h"

namespace cairn {

void throw_if_any_failed(Communicator& comm, const std::string& error) {
  if (comm.size() == 1) {
    if (!error.empty()) throw CollectiveError(error);
    return;
  }
  for (const auto& e : comm.all_gather_strings(error))
    if (!e.empty()) throw CollectiveError(e);
}

}  // namespace cairn
