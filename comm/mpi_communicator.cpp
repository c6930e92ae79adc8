// The MPI Communicator (Open MPI 4.1). Every collective is a non-blocking MPI call polled with
// MPI_Testall until a deadline, so a dead or hung peer ends the job with a message naming the
// collective and the ranks (and their hosts) that no longer answer, instead of a silent hang.
// Buffers larger than CommOptions::max_count elements are split into chunks because MPI counts are
// `int`. MPI errors are returned, reported with the call, MPI's error string and file:line, and end
// the job.
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
#include <thread>

#define CAIRN_MPI_CHECK(call) ::cairn::mpi_check((call), #call, __FILE__, __LINE__)

namespace cairn {
namespace {

// A failed MPI call leaves the peers inside a collective that will never complete, so the only safe
// reaction is to end the job; throwing would let this rank exit while the others wait.
void mpi_check(int rc, const char* call, const char* file, int line) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  MPI_Error_string(rc, text, &len);
  int rank = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  std::fprintf(stderr, "cairn: rank %d: %s failed at %s:%d: %s\n", rank, call, file, line, text);
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 1);
  std::_Exit(1);
}

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
      int provided = 0;
      MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
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
    char name[MPI_MAX_PROCESSOR_NAME] = {};
    int len = 0;
    CAIRN_MPI_CHECK(MPI_Get_processor_name(name, &len));
    host_.assign(name, size_t(len));
    yield_when_idle_ = unsigned(local_size_) > std::thread::hardware_concurrency();
    // Who runs where, kept so a timeout can name the host of a silent peer: by then it cannot ask.
    CAIRN_MPI_CHECK(MPI_Comm_dup(comm_, &probe_comm_));
    hosts_ = all_gather_strings(host_);
  }

  ~MpiCommunicator() override {
    CAIRN_MPI_CHECK(MPI_Comm_free(&probe_comm_));
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
    std::vector<MPI_Request> reqs(1);
    CAIRN_MPI_CHECK(MPI_Ibarrier(comm_, &reqs[0]));
    wait_all(reqs, "barrier", 0);
  }

  std::vector<std::string> all_gather_strings(const std::string& mine) override {
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

  // Polls until every request completes or the timeout passes. Open MPI advances a non-blocking
  // collective only inside MPI calls, so a rank with a core of its own polls without pause, as
  // MPI's blocking calls do. Only when this host has more ranks than cores does a waiting rank
  // yield, so the peer it waits for can run.
  void wait_all(std::vector<MPI_Request>& reqs, const char* what, int64_t count) {
    const auto start = std::chrono::steady_clock::now();
    for (int polls = 0;; ++polls) {
      int done = 0;
      CAIRN_MPI_CHECK(MPI_Testall(int(reqs.size()), reqs.data(), &done, MPI_STATUSES_IGNORE));
      if (done) return;
      if (yield_when_idle_) std::this_thread::yield();
      if (polls % 64 != 0) continue;  // the deadline is checked on every 64th poll
      const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (options_.timeout_seconds > 0 && waited > options_.timeout_seconds) timed_out(what, count, waited);
    }
  }

  bool test_all(std::vector<MPI_Request>& reqs) {
    int done = 0;
    CAIRN_MPI_CHECK(MPI_Testall(int(reqs.size()), reqs.data(), &done, MPI_STATUSES_IGNORE));
    return done != 0;
  }

 protected:
  void all_reduce_impl(void* data, int64_t n, CommType type, ReduceOp op) override {
    std::vector<MPI_Request> reqs = start_all_reduce(data, n, type, op);
    wait_all(reqs, "all_reduce", n);
    if (op == ReduceOp::avg) scale(data, n, type, size_);
  }

  Request all_reduce_start_impl(void* data, int64_t n, CommType type, ReduceOp op) override {
    return Request(std::make_unique<PendingAllReduce>(*this, start_all_reduce(data, n, type, op),
                                                      data, n, type, op == ReduceOp::avg));
  }

  // One MPI_Ireduce_scatter when counts fit in an int; otherwise each segment is reduced onto its
  // owner in chunks. MPI_IN_PLACE leaves the result at the start of the buffer, hence the move.
  void reduce_scatter_impl(float* data, const std::vector<int64_t>& counts, ReduceOp op) override {
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
    std::vector<MPI_Request> reqs;
    char* p = static_cast<char*>(data);
    for_chunks(bytes, options_.max_count, [&](int64_t off, int count) {
      reqs.emplace_back();
      CAIRN_MPI_CHECK(MPI_Ibcast(p + off, count, MPI_BYTE, root, comm_, &reqs.back()));
    });
    wait_all(reqs, "broadcast", bytes);
  }

 private:
  class PendingAllReduce final : public Request::State {
   public:
    PendingAllReduce(MpiCommunicator& comm, std::vector<MPI_Request> reqs, void* data, int64_t n,
                     CommType type, bool avg)
        : comm_(comm), reqs_(std::move(reqs)), data_(data), n_(n), type_(type), avg_(avg) {}
    bool test() override {
      if (!comm_.test_all(reqs_)) return false;
      complete();
      return true;
    }
    void wait() override {
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
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
  std::string host_;
  bool yield_when_idle_ = false;  // more ranks than cores on this host
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
