// The single-process Communicator: one rank, every collective the identity (avg over one rank
// included), plus the contract checks every implementation shares and the rank-count helpers.
// Multi-rank behaviour is tested under mpirun by tests/mpi/comm_mpi.cpp.
#include <gtest/gtest.h>

#include <cstdlib>
#include <numeric>
#include <vector>

#include "comm/communicator.h"
#include "util/error.h"

namespace cairn {
namespace {

TEST(SelfCommunicator, IsOneRankOnOneHost) {
  auto comm = make_self_communicator();
  EXPECT_EQ(comm->rank(), 0);
  EXPECT_EQ(comm->size(), 1);
  EXPECT_EQ(comm->local_rank(), 0);
  EXPECT_EQ(comm->local_size(), 1);
  EXPECT_FALSE(comm->host().empty());
  EXPECT_EQ(comm->name(), "self");
  EXPECT_EQ(comm->all_gather_strings("rank 0"), std::vector<std::string>{"rank 0"});
  comm->barrier();
}

TEST(SelfCommunicator, ReductionsAreTheIdentity) {
  auto comm = make_self_communicator();
  for (ReduceOp op : {ReduceOp::sum, ReduceOp::avg, ReduceOp::max}) {
    std::vector<float> f = {1.5f, -2.0f, 3.25f};
    comm->all_reduce(f.data(), int64_t(f.size()), op);
    EXPECT_EQ(f, (std::vector<float>{1.5f, -2.0f, 3.25f}));
    std::vector<double> d = {0.1, -7.0};
    comm->all_reduce(d.data(), int64_t(d.size()), op);
    EXPECT_EQ(d, (std::vector<double>{0.1, -7.0}));
  }
  std::vector<int64_t> i = {int64_t(1) << 40, -3};
  comm->all_reduce(i.data(), 2, ReduceOp::sum);
  comm->all_reduce(i.data(), 2, ReduceOp::max);
  EXPECT_EQ(i, (std::vector<int64_t>{int64_t(1) << 40, -3}));
}

TEST(SelfCommunicator, NonBlockingAllReduceCompletes) {
  auto comm = make_self_communicator();
  std::vector<float> a = {1, 2}, b = {3};
  Request ra = comm->all_reduce_start(a.data(), 2, ReduceOp::avg);
  Request rb = comm->all_reduce_start(b.data(), 1, ReduceOp::sum);
  EXPECT_TRUE(comm->test(rb));
  comm->wait(ra);
  comm->wait(rb);
  EXPECT_FALSE(ra.pending());
  EXPECT_EQ(a, (std::vector<float>{1, 2}));
  EXPECT_EQ(b, (std::vector<float>{3}));
}

TEST(SelfCommunicator, SegmentedCollectivesKeepTheOwnSegment) {
  auto comm = make_self_communicator();
  std::vector<float> x(5);
  std::iota(x.begin(), x.end(), 1.0f);
  const std::vector<float> before = x;
  comm->reduce_scatter(x.data(), {5}, ReduceOp::avg);
  EXPECT_EQ(x, before);
  comm->all_gather(x.data(), {5});
  EXPECT_EQ(x, before);
  comm->broadcast(x.data(), int64_t(x.size() * sizeof(float)), 0);
  EXPECT_EQ(x, before);
}

TEST(Communicator, ContractViolationsAreCaught) {
  auto comm = make_self_communicator();
  std::vector<float> x(4);
  std::vector<int64_t> i(2);
  EXPECT_ANY_THROW(comm->reduce_scatter(x.data(), {2, 2}, ReduceOp::sum));  // 2 segments, 1 rank
  EXPECT_ANY_THROW(comm->all_gather(x.data(), {-1}));
  EXPECT_ANY_THROW(comm->broadcast(x.data(), 4, 1));  // root out of range
  EXPECT_ANY_THROW(comm->all_reduce(x.data(), -1, ReduceOp::sum));
  EXPECT_ANY_THROW(comm->all_reduce(i.data(), 2, ReduceOp::avg));
}

TEST(Communicator, AbortEndsTheProcessWithNonZeroExit) {
  auto comm = make_self_communicator();
  EXPECT_EXIT(comm->abort("checksum mismatch"), testing::ExitedWithCode(1), "checksum mismatch");
}

TEST(Communicator, ThreadsPerRankSplitsTheHost) {
  auto comm = make_self_communicator();
  EXPECT_EQ(threads_per_rank(*comm, 8), 8);
  EXPECT_EQ(threads_per_rank(*comm, 0), 1);
}

TEST(Communicator, FactoryPicksSelfOutsideMpirun) {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"}) unsetenv(var);
  EXPECT_FALSE(launched_by_mpi());
  EXPECT_EQ(make_communicator(nullptr, nullptr)->name(), "self");
  setenv("PMI_SIZE", "2", 1);
  EXPECT_TRUE(launched_by_mpi());
  unsetenv("PMI_SIZE");
}

TEST(Communicator, FactoryWithoutMpiSaysHowToRebuild) {
  if (CAIRN_HAVE_MPI) GTEST_SKIP() << "built with MPI: comm_mpi tests the MPI side";
  setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
  EXPECT_THROW(make_communicator(nullptr, nullptr), Error);
  unsetenv("OMPI_COMM_WORLD_SIZE");
}

}  // namespace
}  // namespace cairn
