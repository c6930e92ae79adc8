// The MPI Communicator (Open MPI 4.1). Every collective is non-blocking and polled until a
// deadline, so a dead or hung peer ends the job with a message naming the collective and the
// ranks (and their hosts) that no longer answer, instead of a silent hang. Float sums and
// averages (gradients) run cairn's own all-reduce (pairwise exchange or ring) over point-to-point
// messages (mpi_pairwise_allreduce.h), as fast as a blocking MPI_Allreduce; the rest are MPI's
// non-blocking collectives, split into chunks of CommOptions::max_count elements because MPI
// counts are `int`. MPI errors are reported with the call, MPI's error string and file:line,
// and end the job.
#include "comm/communicator.h"

#include "util/error.h"

#if CAIRN_HAVE_MPI

// Only MPI's C interface: cairn links MPI::MPI_C, not the deprecated C++ bindings.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "comm/mpi_pairwise_allreduce.h"

namespace cairn {
namespace {

MPI_Datatype mpi_type(CommType type) {
  switch (type) {
    case CommType::f32: return MPI_FLOAT;
    case CommType::f64: return MPI_DOUBLE;
    case CommType::i64: return MPI_INT64_T;
  }
  return MPI_DATATYPE_NULL;
}

size_t type_bytes(CommType type) { return type == CommType::f32 ? 4 : 8; }

MPI_Op mpi_op(ReduceOp op) { return op == ReduceOp::max ? MPI_MAX : MPI_SUM; }  // avg = sum, scaled

void scale(void* data, int64_t n, CommType type, int size) {
  if (type == CommType::f32) {
    float* x = static_cast<float*>(data);
    const float s = 1.0f / float(size);
    for (int64_t i = 0; i < n; ++i) x[i] *= s;
  } else if (type == CommType::f64) {
    double* x = static_cast<double*>(data);
    const double s = 1.0 / double(size);
    for (int64_t i = 0; i < n; ++i) x[i] *= s;
  }
}

// Calls f(offset, count) over [0, n) in pieces of at most max_count elements.
template <typename F>
void for_chunks(int64_t n, int64_t max_count, F f) {
  for (int64_t off = 0; off < n; off += max_count) f(off, int(std::min(max_count, n - off)));
}

// Instances share one MPI initialisation; the last one out finalises if we initialised.
int live_instances = 0;
bool we_initialized = false;

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(int* argc, char*** argv, const CommOptions& options) : options_(options) {
    if (options.max_count < 1 || options.max_count > 2147483647) {
      throw Error(str("communicator max_count ", options.max_count, " must be in [1, 2^31-1]"));
    }
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (finalized) {
      throw Error("MPI was already finalised in this process (the last MPI communicator was "
                  "destroyed): keep one communicator alive for the whole run");
    }
    if (!initialized) {
      // Open MPI's TCP path sends large messages whose receive is already posted by an emulated
      // RDMA put; between two nodes on a 1 Gbit/s link that halved what a 64 MiB MPI_Allreduce
      // and cairn's all-reduce reached (1.25 s against 0.7 s with send/receive only). Unless the
      // user chose the flags (mpirun --mca btl_tcp_flags ... sets this variable), use send/receive.
      setenv("OMPI_MCA_btl_tcp_flags", "send,inplace,need-ack,need-csum", 0);
      int provided = 0;
      MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided);
      we_initialized = true;
      if (provided < MPI_THREAD_FUNNELED) abort("this MPI library does not support MPI_THREAD_FUNNELED");
    }
    CAIRN_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    CAIRN_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &comm_));  // private traffic; inherits errhandler
    ++live_instances;
    CAIRN_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
    CAIRN_MPI_CHECK(MPI_Comm_size(comm_, &size_));
    MPI_Comm local;
    CAIRN_MPI_CHECK(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local));
    CAIRN_MPI_CHECK(MPI_Comm_rank(local, &local_rank_));
    CAIRN_MPI_CHECK(MPI_Comm_size(local, &local_size_));
    CAIRN_MPI_CHECK(MPI_Comm_free(&local));
    plan_.flat = {comm_, rank_, size_, local_size_ == size_};
    plan_.hierarchical = options.hierarchical;
    plan_.segment = std::min<int64_t>(plan_.segment, options.max_count);
    plan_.one_host_segment = std::min<int64_t>(plan_.one_host_segment, options.max_count);
    plan_.ring_min_bytes = options.ring_min_bytes;
    if (options.hierarchical) make_host_groups(options.ranks_per_host);
    if (size_ >= 4 && size_ % 2 == 0) split_groups(2, &plan_.pair, &plan_.parity);
    char name[MPI_MAX_PROCESSOR_NAME] = {};
    int len = 0;
    CAIRN_MPI_CHECK(MPI_Get_processor_name(name, &len));
    host_.assign(name, size_t(len));
    yield_when_idle_ = local_size_ < size_ || unsigned(local_size_) > std::thread::hardware_concurrency();
    // Who runs where, kept so a timeout can name the host of a silent peer: by then it cannot ask.
    CAIRN_MPI_CHECK(MPI_Comm_dup(comm_, &probe_comm_));
    hosts_ = all_gather_strings(host_);
    int level = 0;
    MPI_Query_thread(&level);
    // Only with a core to spare: where the ranks already hold every core, a third thread waking
    // for each all-reduce displaces a polling rank (a 2-core host with 2 ranks lost 25% at 1 MiB).
    if (level >= MPI_THREAD_SERIALIZED && unsigned(local_size_) < std::thread::hardware_concurrency())
      progress_thread_ = std::thread([this] { progress_in_background(); });
  }

  ~MpiCommunicator() override {
    if (progress_thread_.joinable()) {
      {
        std::lock_guard<std::recursive_mutex> lock(mpi_mutex_);
        stopping_ = true;
      }
      work_.notify_one();
      progress_thread_.join();
    }
    CAIRN_MPI_CHECK(MPI_Comm_free(&probe_comm_));
    CAIRN_ASSERT(in_flight_.empty(), "an all-reduce is still in flight as its communicator is destroyed");
    for (MpiGroup* g : {&plan_.local, &plan_.cross, &plan_.pair, &plan_.parity})
      if (g->comm != MPI_COMM_NULL) CAIRN_MPI_CHECK(MPI_Comm_free(&g->comm));
    CAIRN_MPI_CHECK(MPI_Comm_free(&comm_));
    if (--live_instances == 0 && we_initialized) MPI_Finalize();
  }

  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_rank() const override { return local_rank_; }
  int local_size() const override { return local_size_; }
  std::string host() const override { return host_; }
  std::string name() const override { return "mpi"; }

  void barrier() override {
    Foreground fg(*this);
    std::vector<MPI_Request> reqs(1);
    CAIRN_MPI_CHECK(MPI_Ibarrier(comm_, &reqs[0]));
    wait_all(reqs, "barrier", 0);
  }

  std::vector<std::string> all_gather_strings(const std::string& mine) override {
    Foreground fg(*this);
    CAIRN_ASSERT(mine.size() < (1u << 20), "all_gather_strings is for short strings");
    int len = int(mine.size());
    std::vector<int> lens(size_t(size_), 0);
    std::vector<MPI_Request> reqs(1);
    CAIRN_MPI_CHECK(MPI_Iallgather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, comm_, &reqs[0]));
    wait_all(reqs, "all_gather_strings (lengths)", 1);
    std::vector<int> displs(size_t(size_), 0);
    std::exclusive_scan(lens.begin(), lens.end(), displs.begin(), 0);
    std::string all(size_t(displs.back() + lens.back()), '\0');
    CAIRN_MPI_CHECK(MPI_Iallgatherv(mine.data(), len, MPI_CHAR, all.data(), lens.data(),
                                    displs.data(), MPI_CHAR, comm_, &reqs[0]));
    wait_all(reqs, "all_gather_strings", int64_t(all.size()));
    std::vector<std::string> out;
    for (int r = 0; r < size_; ++r) out.push_back(all.substr(size_t(displs[r]), size_t(lens[r])));
    return out;
  }

  [[noreturn]] void abort(const std::string& message) override {
    std::fprintf(stderr, "cairn: rank %d of %d (%s): aborting the job: %s\n", rank_, size_,
                 host_.c_str(), message.c_str());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    std::_Exit(1);
  }

  // Polls `done` until it returns true or the timeout passes. Open MPI advances non-blocking
  // operations only inside MPI calls, so a waiting rank polls rather than sleeps. Where some peers
  // are on other hosts (or this host has more ranks than cores), it yields the core after every
  // poll that did not finish: a rank alone on its core comes straight back, and where cores are
  // shared the others run, the kernel's TCP work included. On the 1 Gbit/s namespace cluster
  // (4 nodes on 2 cores) that took a 64 MiB all-reduce from 1.07-1.17 s to 0.86 s. Ranks that
  // all share one host's memory need no kernel work, and there yielding cost: 2 ranks on 2 busy
  // cores had 4 MiB all-reduces of 3-10 ms instead of 0.6-0.8 ms whenever a build ran beside them.
  template <typename Done>
  void poll_until(Done done, const char* what, int64_t count) {
    const auto start = std::chrono::steady_clock::now();
    for (int polls = 0;; ++polls) {
      if (done()) return;
      if (yield_when_idle_) std::this_thread::yield();
      if (polls % 64 != 0) continue;  // the deadline is checked on every 64th poll
      const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (options_.timeout_seconds > 0 && waited > options_.timeout_seconds) timed_out(what, count, waited);
    }
  }

  void wait_all(std::vector<MPI_Request>& reqs, const char* what, int64_t count) {
    poll_until([&] { return test_all(reqs); }, what, count);
  }

  bool test_all(std::vector<MPI_Request>& reqs) {
    int done = 0;
    CAIRN_MPI_CHECK(MPI_Testall(int(reqs.size()), reqs.data(), &done, MPI_STATUSES_IGNORE));
    return done != 0;
  }

 protected:
  void all_reduce_impl(void* data, int64_t n, CommType type, ReduceOp op) override {
    Foreground fg(*this);
    if (type == CommType::f32 && op != ReduceOp::max) {
      Request r = all_reduce_start_impl(data, n, type, op, WirePrecision::fp32);
      wait(r);
      return;
    }
    std::vector<MPI_Request> reqs = start_all_reduce(data, n, type, op);
    wait_all(reqs, "all_reduce", n);
    if (op == ReduceOp::avg) scale(data, n, type, size_);
  }

  Request all_reduce_start_impl(void* data, int64_t n, CommType type, ReduceOp op, WirePrecision wire) override {
    Foreground fg(*this);
    if (type == CommType::f32 && op != ReduceOp::max) {
      PairwisePlan plan = plan_;
      plan.wire = wire;
      plan.tag = int(next_tag_++ % 4096) * 4;  // 4 phases at most; tags stay below 2^15
      auto pending = std::make_unique<PendingPairwise>(*this, plan, static_cast<float*>(data), n, op == ReduceOp::avg);
      in_flight_.push_back(&pending->all_reduce);
      work_.notify_one();
      return Request(std::move(pending));
    }
    CAIRN_ASSERT(wire == WirePrecision::fp32, "a bf16 wire is for float sums and averages");
    return Request(std::make_unique<PendingAllReduce>(*this, start_all_reduce(data, n, type, op),
                                                      data, n, type, op == ReduceOp::avg));
  }

  // One MPI_Ireduce_scatter when counts fit in an int; otherwise each segment is reduced onto its
  // owner in chunks. MPI_IN_PLACE leaves the result at the start of the buffer, hence the move.
  void reduce_scatter_impl(float* data, const std::vector<int64_t>& counts, ReduceOp op) override {
    Foreground fg(*this);
    const std::vector<int64_t> offsets = segment_offsets(counts);
    std::vector<MPI_Request> reqs;
    if (offsets.back() <= options_.max_count) {
      std::vector<int> icounts(counts.begin(), counts.end());
      reqs.resize(1);
      CAIRN_MPI_CHECK(MPI_Ireduce_scatter(MPI_IN_PLACE, data, icounts.data(), MPI_FLOAT, mpi_op(op),
                                          comm_, &reqs[0]));
      wait_all(reqs, "reduce_scatter", offsets.back());
      std::memmove(data + offsets[size_t(rank_)], data, size_t(counts[size_t(rank_)]) * sizeof(float));
    } else {
      for (int r = 0; r < size_; ++r) {
        float* seg = data + offsets[size_t(r)];
        for_chunks(counts[size_t(r)], options_.max_count, [&](int64_t off, int count) {
          reqs.emplace_back();
          const void* send = r == rank_ ? MPI_IN_PLACE : seg + off;
          CAIRN_MPI_CHECK(MPI_Ireduce(send, seg + off, count, MPI_FLOAT, mpi_op(op), r, comm_, &reqs.back()));
        });
      }
      wait_all(reqs, "reduce_scatter", offsets.back());
    }
    if (op == ReduceOp::avg) scale(data + offsets[size_t(rank_)], counts[size_t(rank_)], CommType::f32, size_);
  }

  // One MPI_Iallgatherv when counts and offsets fit in an int; otherwise each owner broadcasts its
  // segment in chunks.
  void all_gather_impl(float* data, const std::vector<int64_t>& counts) override {
    Foreground fg(*this);
    const std::vector<int64_t> offsets = segment_offsets(counts);
    std::vector<MPI_Request> reqs;
    if (offsets.back() <= options_.max_count) {
      std::vector<int> icounts(counts.begin(), counts.end());
      std::vector<int> idispls(offsets.begin(), offsets.end() - 1);
      reqs.resize(1);
      CAIRN_MPI_CHECK(MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, data, icounts.data(),
                                      idispls.data(), MPI_FLOAT, comm_, &reqs[0]));
    } else {
      for (int r = 0; r < size_; ++r) {
        float* seg = data + offsets[size_t(r)];
        for_chunks(counts[size_t(r)], options_.max_count, [&](int64_t off, int count) {
          reqs.emplace_back();
          CAIRN_MPI_CHECK(MPI_Ibcast(seg + off, count, MPI_FLOAT, r, comm_, &reqs.back()));
        });
      }
    }
    wait_all(reqs, "all_gather", offsets.back());
  }

  void broadcast_impl(void* data, int64_t bytes, int root) override {
    Foreground fg(*this);
    std::vector<MPI_Request> reqs;
    char* p = static_cast<char*>(data);
    for_chunks(bytes, options_.max_count, [&](int64_t off, int count) {
      reqs.emplace_back();
      CAIRN_MPI_CHECK(MPI_Ibcast(p + off, count, MPI_BYTE, root, comm_, &reqs.back()));
    });
    wait_all(reqs, "broadcast", bytes);
  }

 private:
  // MPI_THREAD_SERIALIZED: the progress thread and the caller's thread take turns. Every call into
  // this communicator holds the lock for its whole length (recursive: calls nest), so the
  // background thread advances the all-reduces in flight only while the caller computes.
  struct Foreground {
    explicit Foreground(MpiCommunicator& c) : lock(c.mpi_mutex_) {}
    std::unique_lock<std::recursive_mutex> lock;
  };

  // Open MPI advances messages only inside MPI calls. While the caller computes (the rest of
  // backward), this thread polls the all-reduces in flight every kPollInterval so the links stay
  // busy; it sleeps on work_ when there are none. It first waits one interval and then only tries
  // the lock, so a caller that waits at once (holding the lock) is never slowed by it.
  void progress_in_background() {
    static constexpr auto kPollInterval = std::chrono::microseconds(200);
    std::unique_lock<std::recursive_mutex> lock(mpi_mutex_, std::defer_lock);
    while (true) {
      lock.lock();
      work_.wait(lock, [&] { return stopping_ || !in_flight_.empty(); });
      if (stopping_) return;
      lock.unlock();
      std::this_thread::sleep_for(kPollInterval);
      if (lock.try_lock()) {
        progress_in_flight();
        lock.unlock();
      }
    }
  }

  // A pairwise all-reduce in the in-flight queue; completing it takes it out.
  class PendingPairwise final : public Request::State {
   public:
    PendingPairwise(MpiCommunicator& comm, const PairwisePlan& plan, float* data, int64_t n, bool avg)
        : all_reduce(plan, data, n, avg, comm.size()), comm_(comm), n_(n) {}
    bool test() override {
      Foreground fg(comm_);
      comm_.progress_in_flight();
      return all_reduce.done();
    }
    void wait() override {
      Foreground fg(comm_);
      comm_.poll_until([&] { return test(); }, "all_reduce", n_);
    }
    PairwiseAllReduce all_reduce;

   private:
    MpiCommunicator& comm_;
    int64_t n_;
  };

  // Advances the oldest all-reduces in flight. Every rank starts them in the same order, and only
  // the first kActive send anything, so they share the links in order (the first bucket
  // finishes first) and staging memory stays bounded however many buckets are started.
  void progress_in_flight() {
    static constexpr size_t kActive = 2;
    for (size_t i = 0; i < in_flight_.size() && i < kActive;) {
      if (in_flight_[i]->progress()) {
        in_flight_.erase(in_flight_.begin() + std::ptrdiff_t(i));
      } else {
        ++i;
      }
    }
  }

  // Host groups for the hierarchical all-reduce: `local` holds the ranks of this host, `cross` the
  // ranks with this local rank on every host. Every host must hold the same number of ranks.
  void make_host_groups(int ranks_per_host) {
    MPI_Comm local, cross;
    if (ranks_per_host > 0) {
      CAIRN_MPI_CHECK(MPI_Comm_split(comm_, rank_ / ranks_per_host, rank_, &local));
    } else {
      CAIRN_MPI_CHECK(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local));
    }
    int lr = 0, ls = 0;
    CAIRN_MPI_CHECK(MPI_Comm_rank(local, &lr));
    CAIRN_MPI_CHECK(MPI_Comm_size(local, &ls));
    int sizes[2] = {ls, -ls};
    CAIRN_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, sizes, 2, MPI_INT, MPI_MAX, comm_));
    if (sizes[0] != -sizes[1]) {
      CAIRN_MPI_CHECK(MPI_Comm_free(&local));
      throw Error(str("the hierarchical all-reduce needs the same number of ranks on every host, but hosts hold "
                      "between ", -sizes[1], " and ", sizes[0], " ranks: start as many ranks on each host, "
                      "or set training.grad_hierarchical = false"));
    }
    CAIRN_MPI_CHECK(MPI_Comm_split(comm_, lr, rank_, &cross));
    plan_.local = group(local);
    plan_.cross = group(cross);
  }

  // Consecutive ranks k at a time (`within`) and the ranks with the same place in theirs (`across`).
  void split_groups(int k, MpiGroup* within, MpiGroup* across) {
    MPI_Comm a, b;
    CAIRN_MPI_CHECK(MPI_Comm_split(comm_, rank_ / k, rank_, &a));
    CAIRN_MPI_CHECK(MPI_Comm_split(comm_, rank_ % k, rank_, &b));
    *within = group(a);
    *across = group(b);
  }

  static MpiGroup group(MPI_Comm comm) {
    int r = 0, s = 0;
    CAIRN_MPI_CHECK(MPI_Comm_rank(comm, &r));
    CAIRN_MPI_CHECK(MPI_Comm_size(comm, &s));
    return {comm, r, s, on_one_host(comm)};
  }

  class PendingAllReduce final : public Request::State {
   public:
    PendingAllReduce(MpiCommunicator& comm, std::vector<MPI_Request> reqs, void* data, int64_t n,
                     CommType type, bool avg)
        : comm_(comm), reqs_(std::move(reqs)), data_(data), n_(n), type_(type), avg_(avg) {}
    bool test() override {
      Foreground fg(comm_);
      if (!comm_.test_all(reqs_)) return false;
      complete();
      return true;
    }
    void wait() override {
      Foreground fg(comm_);
      comm_.wait_all(reqs_, "all_reduce (non-blocking)", n_);
      complete();
    }

   private:
    void complete() {
      if (avg_) scale(data_, n_, type_, comm_.size());
      avg_ = false;  // scale once even if test() and wait() both see completion
    }
    MpiCommunicator& comm_;
    std::vector<MPI_Request> reqs_;
    void* data_;
    int64_t n_;
    CommType type_;
    bool avg_;
  };

  std::vector<MPI_Request> start_all_reduce(void* data, int64_t n, CommType type, ReduceOp op) {
    std::vector<MPI_Request> reqs;
    char* p = static_cast<char*>(data);
    const size_t bytes = type_bytes(type);
    for_chunks(n, options_.max_count, [&](int64_t off, int count) {
      reqs.emplace_back();
      CAIRN_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, p + size_t(off) * bytes, count, mpi_type(type),
                                     mpi_op(op), comm_, &reqs.back()));
    });
    return reqs;
  }

  // offsets[r] = start of segment r; offsets[size] = total.
  static std::vector<int64_t> segment_offsets(const std::vector<int64_t>& counts) {
    std::vector<int64_t> offsets(counts.size() + 1, 0);
    std::inclusive_scan(counts.begin(), counts.end(), offsets.begin() + 1);
    return offsets;
  }

  [[noreturn]] void timed_out(const char* what, int64_t count, double waited) {
    abort(str(what, " of ", count, " elements did not complete within the communicator timeout of ",
              options_.timeout_seconds, " s (waited ", waited, " s); ", silent_peers(),
              ". If the peers are only slow, raise the timeout."));
  }

  // Which peers still answer, once a collective has timed out: this rank sends one byte to every
  // other on a communicator of its own and waits up to the probe window for one from each. Live
  // peers stuck in the same collective time out moments apart and probe in turn, so they answer;
  // a rank on a lost node (link down, node crashed) or a dead one stays silent. MPI errors here
  // count as silence: the job ends either way, this only decides what the message says.
  std::string silent_peers() {
    const double window = std::clamp(options_.timeout_seconds / 4, 2.0, 30.0);
    const int tag = 7;
    std::vector<char> out(size_t(size_), 1), in(size_t(size_), 0);
    std::vector<MPI_Request> sends(size_t(size_), MPI_REQUEST_NULL), recvs(size_t(size_), MPI_REQUEST_NULL);
    for (int r = 0; r < size_; ++r) {
      if (r == rank_) continue;
      MPI_Isend(&out[size_t(r)], 1, MPI_CHAR, r, tag, probe_comm_, &sends[size_t(r)]);
      MPI_Irecv(&in[size_t(r)], 1, MPI_CHAR, r, tag, probe_comm_, &recvs[size_t(r)]);
    }
    std::vector<bool> answered(size_t(size_), false);
    answered[size_t(rank_)] = true;
    const auto start = std::chrono::steady_clock::now();
    int missing = size_ - 1;
    while (missing > 0 && std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < window) {
      for (int r = 0; r < size_; ++r) {
        if (answered[size_t(r)]) continue;
        int done = 0;
        if (MPI_Test(&recvs[size_t(r)], &done, MPI_STATUS_IGNORE) == MPI_SUCCESS && done) {
          answered[size_t(r)] = true;
          --missing;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (missing == 0)
      return str("every other rank answered within ", window, " s: none is lost, one is hung or ranks "
                 "called different collectives");
    std::string silent;
    for (int r = 0; r < size_; ++r)
      if (!answered[size_t(r)]) silent += str(silent.empty() ? "" : ", ", "rank ", r, " on host ",
                                                    hosts_.empty() ? "(not known yet)" : hosts_[size_t(r)]);
    return str("no answer within ", window, " s from ", silent, " (their node is lost or unreachable, "
               "or they died or hang outside MPI)");
  }

  CommOptions options_;
  MPI_Comm comm_ = MPI_COMM_NULL;
  MPI_Comm probe_comm_ = MPI_COMM_NULL;  // silent_peers' own traffic
  std::vector<std::string> hosts_;       // host of every rank, by rank
  PairwisePlan plan_;                          // how float sums run (flat or by host)
  std::vector<PairwiseAllReduce*> in_flight_;  // started, not complete, oldest first
  uint64_t next_tag_ = 0;
  std::recursive_mutex mpi_mutex_;              // held by whichever thread is calling MPI
  std::condition_variable_any work_;            // an all-reduce was started, or stopping_
  bool stopping_ = false;
  std::thread progress_thread_;                 // see progress_in_background
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
  std::string host_;
  bool yield_when_idle_ = false;  // peers on other hosts, or more ranks than cores here
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(int* argc, char*** argv, const CommOptions& options) {
  return std::make_unique<MpiCommunicator>(argc, argv, options);
}

}  // namespace cairn

#else  // !CAIRN_HAVE_MPI

namespace cairn {

std::unique_ptr<Communicator> make_mpi_communicator(int*, char***, const CommOptions&) {
  throw Error("cairn was built without MPI (CAIRN_MPI=OFF): rebuild with -DCAIRN_MPI=ON to run on "
              "several ranks");
}

}  // namespace cairn

#endif
