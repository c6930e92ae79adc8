// The Communicator: everything the trainer needs from a group of data-parallel ranks (rank, size,
// all-reduce, reduce-scatter, all-gather, broadcast, barrier, abort). The trainer holds a
// `Communicator&` and never calls MPI itself; implementations are a single-process one
// (self_communicator.cpp), MPI (mpi_communicator.cpp) and, on GPUs, NCCL (nccl_communicator.h,
// device pointers). make_communicator() picks between self and MPI.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "comm/wire_precision.h"

namespace cairn {

// avg is sum divided by size() (floating-point types only).
enum class ReduceOp { sum, avg, max };

// Element types a collective can carry; the typed overloads below choose it.
enum class CommType { f32, f64, i64 };

struct CommOptions {
  // A collective that has not completed this many seconds after it started blocking ends the whole
  // job with a message naming the collective and the rank (a dead or hung peer must never hang the
  // job silently). <= 0 waits forever.
  double timeout_seconds = 600.0;
  // Largest element count passed to one MPI call; bigger buffers are split into chunks. MPI counts
  // are `int`, so the default is INT_MAX; tests set it small to exercise the chunked paths.
  int64_t max_count = 2147483647;
  // Float sums and averages reduce within each host first (shared memory), then across hosts,
  // then share the result within the host: each host's link carries the buffer's bytes once per
  // direction instead of once per rank on it. Needs the same number of ranks on every host.
  bool hierarchical = false;
  // The ranks of one host, for the hierarchical all-reduce: 0 = as MPI sees them (shared memory);
  // k > 0 groups consecutive ranks k at a time, so tests and benchmarks on one machine can act
  // as several hosts.
  int ranks_per_host = 0;
  // Float sums and averages among more than 2 ranks (per exchange: all ranks, or those of a host or
  // across hosts when hierarchical) go around a ring, one flow per neighbour, from this many bytes
  // up, and by pairwise exchange below (fewer steps in sequence); 0: always the ring; negative:
  // never. From the same size a flat fp32 all-reduce among an even number of ranks (4 or more)
  // runs as pairs: within consecutive pairs, then among the ranks of each parity (ring or pairwise),
  // then within the pairs again (comm/mpi_pairwise_allreduce.h). A bf16 wire always uses the
  // pairwise exchange (it sums in fp32 at the owner).
  int64_t ring_min_bytes = int64_t(4) << 20;
};

// A non-blocking all-reduce in flight. Move-only; Communicator::wait completes it (applying the avg
// scaling when asked). The buffer must not be touched until then. Destroying or overwriting a
// pending Request waits for it first, so the buffer is never left in use by a forgotten handle.
// Every Request must complete before its communicator is destroyed.
class Request {
 public:
  // What an implementation keeps for one pending operation.
  class State {
   public:
    virtual ~State() = default;
    virtual bool test() = 0;  // drives progress; true once complete (then wait() is immediate)
    virtual void wait() = 0;  // blocks until complete, under the communicator's timeout
  };

  Request() = default;
  explicit Request(std::unique_ptr<State> state) : state_(std::move(state)) {}
  Request(Request&& other) noexcept = default;
  Request& operator=(Request&& other) noexcept;
  Request(const Request&) = delete;
  Request& operator=(const Request&) = delete;
  ~Request();

  bool pending() const { return state_ != nullptr; }

 private:
  friend class Communicator;
  void finish();
  std::unique_ptr<State> state_;
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual int local_rank() const = 0;  // rank among the ranks on this host
  virtual int local_size() const = 0;  // number of ranks on this host
  virtual std::string host() const = 0;
  virtual std::string name() const = 0;  // "self", "mpi" or "nccl"

  // In place over data[0, n): every rank ends with the element-wise reduction over all ranks.
  // ReduceOp::avg is not allowed for int64_t.
  void all_reduce(float* data, int64_t n, ReduceOp op);
  void all_reduce(double* data, int64_t n, ReduceOp op);
  void all_reduce(int64_t* data, int64_t n, ReduceOp op);

  // Non-blocking all-reduce: starts the reduction and returns at once. Several may be in flight
  // (on disjoint buffers); every rank must start them in the same order. Complete with wait();
  // test() drives progress (MPI progresses non-blocking collectives only inside MPI calls, so a
  // caller overlapping work should test() now and then) and says whether it is done.
  // `wire` says what float data travels as (bf16: sum and avg only; communicators without it throw).
  Request all_reduce_start(float* data, int64_t n, ReduceOp op, WirePrecision wire = WirePrecision::fp32);
  Request all_reduce_start(double* data, int64_t n, ReduceOp op);
  void wait(Request& request);
  bool test(Request& request);

  // data is partitioned into size() contiguous segments, segment r of counts[r] elements (sizes may
  // differ, and may be 0). reduce_scatter: afterwards rank r's own segment holds the reduction over
  // all ranks of that segment; the other segments hold unspecified values. all_gather: every rank
  // contributes its own segment and receives all the others'.
  void reduce_scatter(float* data, const std::vector<int64_t>& counts, ReduceOp op);
  void all_gather(float* data, const std::vector<int64_t>& counts);

  // Copies `bytes` bytes at data on rank `root` to data on every other rank.
  void broadcast(void* data, int64_t bytes, int root);
  virtual void barrier() = 0;

  // Every rank's string, indexed by rank (for the startup rank/host table).
  virtual std::vector<std::string> all_gather_strings(const std::string& mine) = 0;

  // Ends the whole job (every rank) with a non-zero exit after printing message to stderr.
  [[noreturn]] virtual void abort(const std::string& message) = 0;

 protected:
  // The typed public calls check their contracts and forward here; n counts elements.
  virtual void all_reduce_impl(void* data, int64_t n, CommType type, ReduceOp op) = 0;
  virtual Request all_reduce_start_impl(void* data, int64_t n, CommType type, ReduceOp op, WirePrecision wire) = 0;
  virtual void reduce_scatter_impl(float* data, const std::vector<int64_t>& counts, ReduceOp op) = 0;
  virtual void all_gather_impl(float* data, const std::vector<int64_t>& counts) = 0;
  virtual void broadcast_impl(void* data, int64_t bytes, int root) = 0;

 private:
  void check_segments(const std::vector<int64_t>& counts, const char* what) const;
};

// One process, size 1: every collective is the identity.
std::unique_ptr<Communicator> make_self_communicator();

// Initialises MPI (once per process, asking for MPI_THREAD_SERIALIZED: only the thread that
// created the communicator may call it, and the communicator's own progress thread advances
// all-reduces in flight while that thread computes) and returns a communicator over a private
// duplicate of MPI_COMM_WORLD. Several may exist; MPI is finalised when the last one is destroyed, after which
// MPI cannot be started again. Throws cairn::Error when built without MPI.
std::unique_ptr<Communicator> make_mpi_communicator(int* argc, char*** argv,
                                                    const CommOptions& options = {});

// True when this process was started by mpirun/mpiexec or srun (their environment variables are set).
bool launched_by_mpi();

// MPI when launched_by_mpi(), self otherwise, so `cairn train` works both ways without flags.
std::unique_ptr<Communicator> make_communicator(int* argc, char*** argv,
                                                const CommOptions& options = {});

// Threads each rank should use so ranks sharing a host split its cores: max(1, hw / local_size()).
int threads_per_rank(const Communicator& comm, int hardware_threads);

}  // namespace cairn
