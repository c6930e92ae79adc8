// Failing together: a rank that hits an error (a full disk on rank 0's metrics write) must not leave
// the others waiting in the next collective. Each rank captures its own error, then all agree.
#pragma once

#include <filesystem>
#include <string>

#include "comm/communicator.h"
#include "util/error.h"

namespace cairn {

// An Error every rank throws at the same point, after agreeing on it: no rank is left waiting in a
// collective, so the job can end on every rank without MPI_Abort.
class CollectiveError : public Error {
 public:
  using Error::Error;
};

// Collective: `error` is what went wrong on this rank ("" for nothing). When any rank has one,
// every rank throws CollectiveError with the message of the lowest such rank.
void throw_if_any_failed(Communicator& comm, const std::string& error);

// Runs f; returns the message of the cairn::Error or std::filesystem::filesystem_error it throws,
// or "" when it throws none (other exceptions pass through).
template <typename F>
std::string capture_error(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  } catch (const std::filesystem::filesystem_error& e) {
    return e.what();
  }
  return "";
}

}  // namespace cairn
