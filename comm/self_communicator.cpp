// The single-process Communicator: one rank, so every reduction is the identity (the sum, average
// and maximum over one rank are the rank's own values) and every copy is a no-op. The trainer runs
// unchanged on it.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "comm/communicator.h"

namespace cairn {
namespace {

class SelfCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  int local_rank() const override { return 0; }
  int local_size() const override { return 1; }
  std::string host() const override {
    char name[256] = {};
    if (gethostname(name, sizeof(name) - 1) != 0) return "localhost";
    return name;
  }
  std::string name() const override { return "self"; }

  void barrier() override {}
  std::vector<std::string> all_gather_strings(const std::string& mine) override { return {mine}; }

  [[noreturn]] void abort(const std::string& message) override {
    std::fprintf(stderr, "cairn: aborting: %s\n", message.c_str());
    std::fflush(stderr);
    std::_Exit(1);  // like MPI_Abort: no destructors, no buffered output from elsewhere
  }

 protected:
  void all_reduce_impl(void*, int64_t, CommType, ReduceOp) override {}
  Request all_reduce_start_impl(void*, int64_t, CommType, ReduceOp, WirePrecision) override { return Request(); }
  void reduce_scatter_impl(float*, const std::vector<int64_t>&, ReduceOp) override {}
  void all_gather_impl(float*, const std::vector<int64_t>&) override {}
  void broadcast_impl(void*, int64_t, int) override {}
};

}  // namespace

std::unique_ptr<Communicator> make_self_communicator() { return std::make_unique<SelfCommunicator>(); }

}  // namespace cairn
