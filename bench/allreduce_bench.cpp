// Bus bandwidth of Communicator::all_reduce (non-blocking MPI polled under a timeout), the same
// split into chunks of max_count elements (several MPI_Iallreduce in flight), a plain blocking
// MPI_Allreduce, and the time of Communicator::reduce_scatter over even segments (ZeRO-1's
// gradient path; it moves half an all-reduce's bytes); float sum, 1 KiB .. 256 MiB. Run under
// mpirun, e.g.
//   mpirun --allow-run-as-root -np 2 build/bench/allreduce_bench [max_mib=256] [max_count=262144]
// Bus bandwidth = 2(n-1)/n · bytes / time (NCCL's convention): comparable across rank counts.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "comm/communicator.h"

namespace {

// Median seconds per call over `iters` timed calls after one warm-up; every rank agrees on the
// value (max over ranks of each rank's median).
template <typename F>
double time_call(cairn::Communicator& comm, int iters, F f) {
  f();
  std::vector<double> t;
  for (int i = 0; i < iters; ++i) {
    comm.barrier();
    const auto start = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::nth_element(t.begin(), t.begin() + iters / 2, t.end());
  double median = t[size_t(iters / 2)];
  comm.all_reduce(&median, 1, cairn::ReduceOp::max);
  return median;
}

}  // namespace

int main(int argc, char** argv) {
  auto comm = cairn::make_mpi_communicator(&argc, &argv);
  const int64_t max_bytes = (argc > 1 ? std::atoll(argv[1]) : 256) << 20;
  cairn::CommOptions chunked_options;
  chunked_options.max_count = argc > 2 ? std::atoll(argv[2]) : 262144;
  auto chunked = cairn::make_mpi_communicator(&argc, &argv, chunked_options);
  const int n = comm->size();
  if (comm->rank() == 0) {
    std::printf("all-reduce (float sum), %d ranks, median of timed calls; busbw = 2(n-1)/n*bytes/t\n", n);
    std::printf("%10s %6s %10s %10s %10s %10s %10s %10s %10s\n", "bytes", "iters", "comm us", "comm GB/s",
                "chunk us", "chunk GB/s", "MPI us", "MPI GB/s", "r-s us");
  }
  for (int64_t bytes = 1024; bytes <= max_bytes; bytes *= 4) {
    const int64_t count = bytes / 4;
    std::vector<float> x(size_t(count), 1.0f);
    const int iters = int(std::clamp<int64_t>((int64_t(1) << 30) / bytes, 5, 200));
    const double t_comm = time_call(*comm, iters, [&] { comm->all_reduce(x.data(), count, cairn::ReduceOp::sum); });
    const double t_chunk = time_call(*comm, iters, [&] { chunked->all_reduce(x.data(), count, cairn::ReduceOp::sum); });
    const double t_mpi = time_call(*comm, iters, [&] {
      MPI_Allreduce(MPI_IN_PLACE, x.data(), int(count), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    });
    std::vector<int64_t> segments(size_t(n), count / n);
    segments.back() += count % n;
    const double t_rs = time_call(*comm, iters, [&] { comm->reduce_scatter(x.data(), segments, cairn::ReduceOp::sum); });
    const double bus = 2.0 * (n - 1) / n * double(bytes) / 1e9;
    if (comm->rank() == 0) {
      std::printf("%10lld %6d %10.1f %10.2f %10.1f %10.2f %10.1f %10.2f %10.1f\n", (long long)bytes, iters,
                  t_comm * 1e6, bus / t_comm, t_chunk * 1e6, bus / t_chunk, t_mpi * 1e6, bus / t_mpi, t_rs * 1e6);
    }
  }
  return 0;
}
