// The NCCL Communicator (see nccl_communicator.h): NCCL collectives on device buffers, all on one
// communication stream, completed through CUDA events polled under the communicator's timeout so a
// dead peer ends the job instead of hanging it. Rank bookkeeping and host-side calls go through the
// bootstrap (MPI) communicator, which also carries the NCCL unique id at start-up. Compiled into
// the CUDA module (util/cuda_module.h) when NCCL is found; comm/nccl_entry.cpp reaches it.
#include "comm/nccl_communicator.h"

#include "util/error.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <numeric>
#include <thread>

#define CAIRN_NCCL_CHECK(expr) ::cairn::nccl_check((expr), #expr, __FILE__, __LINE__)
#define CAIRN_CUDART_CHECK(expr) ::cairn::cudart_check((expr), #expr, __FILE__, __LINE__)

namespace cairn {
namespace {

void nccl_check(ncclResult_t rc, const char* expr, const char* file, int line) {
  if (rc == ncclSuccess) return;
  throw Error(str(expr, " failed: ", ncclGetErrorString(rc), " (", file, ":", line, ")"));
}

void cudart_check(cudaError_t rc, const char* expr, const char* file, int line) {
  if (rc == cudaSuccess) return;
  throw Error(str(expr, " failed: ", cudaGetErrorString(rc), " (", file, ":", line, ")"));
}

ncclDataType_t nccl_type(CommType type) {
  switch (type) {
    case CommType::f32: return ncclFloat32;
    case CommType::f64: return ncclFloat64;
    case CommType::i64: return ncclInt64;
  }
  return ncclFloat32;
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return ncclSum;
    case ReduceOp::avg: return ncclAvg;  // NCCL divides by the rank count itself (NCCL >= 2.10)
    case ReduceOp::max: return ncclMax;
  }
  return ncclSum;
}

// A CUDA event without timing (cheaper to record and query), destroyed with its owner.
class Event {
 public:
  Event() { CAIRN_CUDART_CHECK(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming)); }
  ~Event() { cudaEventDestroy(event_); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  cudaEvent_t get() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
};

class NcclCommunicatorImpl final : public NcclCommunicator {
 public:
  NcclCommunicatorImpl(Communicator& bootstrap, const CommOptions& options)
      : boot_(bootstrap), options_(options) {
    select_device();
    ncclUniqueId id{};
    if (boot_.rank() == 0) CAIRN_NCCL_CHECK(ncclGetUniqueId(&id));
    boot_.broadcast(&id, sizeof(id), 0);
    cudaStream_t stream = nullptr;
    CAIRN_CUDART_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    stream_.reset(stream);
    done_ = std::make_unique<Event>();
    compute_done_ = std::make_unique<Event>();
    ncclComm_t comm = nullptr;
    CAIRN_NCCL_CHECK(ncclCommInitRank(&comm, boot_.size(), id, boot_.rank()));
    comm_.reset(comm);
  }

  int rank() const override { return boot_.rank(); }
  int size() const override { return boot_.size(); }
  int local_rank() const override { return boot_.local_rank(); }
  int local_size() const override { return boot_.local_size(); }
  std::string host() const override { return boot_.host(); }
  std::string name() const override { return "nccl"; }

  void barrier() override { boot_.barrier(); }
  std::vector<std::string> all_gather_strings(const std::string& mine) override {
    return boot_.all_gather_strings(mine);
  }

  [[noreturn]] void abort(const std::string& message) override {
    // ncclCommAbort stops this rank's kernels, which would otherwise spin waiting for dead peers.
    if (comm_) ncclCommAbort(comm_.release());
    boot_.abort(message);
    std::_Exit(1);  // not reached: the bootstrap's abort ends the job (GCC cannot see through virtual)
  }

  void set_compute_stream(void* cuda_stream) override {
    compute_stream_ = static_cast<cudaStream_t>(cuda_stream);
  }

  // True once the work before `event` is done. A CUDA or asynchronous NCCL error ends the job: the
  // peers are inside the same collective and cannot finish it.
  bool done(cudaEvent_t event, const char* what, int64_t count) {
    const cudaError_t rc = cudaEventQuery(event);
    if (rc == cudaSuccess) return true;
    if (rc != cudaErrorNotReady) {
      abort(str(what, " of ", count, " elements failed on the GPU: ", cudaGetErrorString(rc)));
    }
    ncclResult_t async = ncclSuccess;
    CAIRN_NCCL_CHECK(ncclCommGetAsyncError(comm_.get(), &async));
    if (async != ncclSuccess && async != ncclInProgress) {
      abort(str(what, " of ", count, " elements failed: NCCL reports ", ncclGetErrorString(async)));
    }
    return false;
  }

  // Polls instead of cudaEventSynchronize so a hung peer meets the timeout rather than blocking
  // this thread inside CUDA forever.
  void wait_event(cudaEvent_t event, const char* what, int64_t count) {
    const auto start = std::chrono::steady_clock::now();
    for (int polls = 0; !done(event, what, count); ++polls) {
      std::this_thread::yield();
      if (polls % 64 != 0 || options_.timeout_seconds <= 0) continue;
      const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (waited > options_.timeout_seconds) {
        abort(str(what, " of ", count, " elements did not complete within the communicator timeout of ",
                  options_.timeout_seconds, " s (waited ", waited, " s): a peer rank has died, hung "
                  "or fallen far behind. If the peers are only slow, raise the timeout."));
      }
    }
  }

 protected:
  void all_reduce_impl(void* data, int64_t n, CommType type, ReduceOp op) override {
    if (n == 0) return;  // every rank skips it alike (same n by contract)
    run("all_reduce", n, [&] {
      CAIRN_NCCL_CHECK(ncclAllReduce(data, data, size_t(n), nccl_type(type), nccl_op(op), comm_.get(), stream_.get()));
    });
  }

  Request all_reduce_start_impl(void* data, int64_t n, CommType type, ReduceOp op, WirePrecision wire) override {
    if (wire != WirePrecision::fp32)
      throw Error("a bf16 gradient wire is implemented by the MPI communicator only: on GPUs set "
                  "training.grad_wire = \"fp32\"");
    if (n == 0) return Request();
    auto pending = std::make_unique<PendingAllReduce>(*this, n);
    after_compute();
    CAIRN_NCCL_CHECK(ncclAllReduce(data, data, size_t(n), nccl_type(type), nccl_op(op), comm_.get(), stream_.get()));
    CAIRN_CUDART_CHECK(cudaEventRecord(pending->event.get(), stream_.get()));
    return Request(std::move(pending));
  }

  // NCCL's ReduceScatter needs equal segments; uneven ones are one grouped ncclReduce per segment
  // onto its owner (in place: the owner's segment receives the result, the others are untouched).
  void reduce_scatter_impl(float* data, const std::vector<int64_t>& counts, ReduceOp op) override {
    grouped("reduce_scatter", data, counts, [&](float* seg, int64_t count, int owner) {
      CAIRN_NCCL_CHECK(ncclReduce(seg, seg, size_t(count), ncclFloat32, nccl_op(op), owner, comm_.get(), stream_.get()));
    });
  }

  // Likewise for AllGather: one grouped ncclBroadcast of each segment from its owner.
  void all_gather_impl(float* data, const std::vector<int64_t>& counts) override {
    grouped("all_gather", data, counts, [&](float* seg, int64_t count, int owner) {
      CAIRN_NCCL_CHECK(ncclBroadcast(seg, seg, size_t(count), ncclFloat32, owner, comm_.get(), stream_.get()));
    });
  }

  void broadcast_impl(void* data, int64_t bytes, int root) override {
    if (bytes == 0) return;
    run("broadcast", bytes, [&] {
      CAIRN_NCCL_CHECK(ncclBroadcast(data, data, size_t(bytes), ncclUint8, root, comm_.get(), stream_.get()));
    });
  }

 private:
  struct PendingAllReduce final : Request::State {
    PendingAllReduce(NcclCommunicatorImpl& comm, int64_t n) : comm(comm), n(n) {}
    bool test() override { return comm.done(event.get(), "all_reduce (non-blocking)", n); }
    void wait() override { comm.wait_event(event.get(), "all_reduce (non-blocking)", n); }
    NcclCommunicatorImpl& comm;
    int64_t n;
    Event event;
  };

  // Picks this rank's GPU, local rank % visible devices, and checks that no two ranks of a host
  // picked the same physical GPU (by PCI bus id): comparing the device count with the ranks per
  // host would refuse the usual cluster setup where each rank sees only its own GPU
  // (CUDA_VISIBLE_DEVICES or Slurm's GPU binding: one device each, all different). Every rank sees
  // every rank's answer, so all of them throw together instead of the healthy ones waiting for the
  // unique id until the bootstrap's timeout.
  void select_device() {
    int devices = 0;
    const cudaError_t rc = cudaGetDeviceCount(&devices);
    std::string problem, mine;
    if (rc != cudaSuccess || devices == 0) {
      problem = str("no CUDA device is visible (", rc == cudaSuccess ? "0 devices" : cudaGetErrorString(rc), ")");
    } else {
      char bus[64] = {};
      const cudaError_t brc = cudaDeviceGetPCIBusId(bus, int(sizeof bus), boot_.local_rank() % devices);
      if (brc != cudaSuccess)
        problem = str("cannot read the PCI bus id of GPU ", boot_.local_rank() % devices, ": ", cudaGetErrorString(brc));
      else
        mine = str(boot_.host(), " GPU ", bus);
    }
    const std::vector<std::string> all = boot_.all_gather_strings(mine);
    if (problem.empty())
      for (int r = 0; r < int(all.size()); ++r)
        if (r != boot_.rank() && all[size_t(r)] == mine)
          problem = str("ranks ", boot_.rank(), " and ", r, " would share ", mine, " (", devices, " visible per rank, ",
                        boot_.local_size(), " ranks on this host); NCCL needs one GPU per rank: start at most one rank "
                        "per GPU, or give each rank its own GPU (CUDA_VISIBLE_DEVICES)");
    const bool any_failed = std::any_of(all.begin(), all.end(), [](const std::string& e) { return e.empty(); }) ||
                            std::any_of(all.begin(), all.end(), [&](const std::string& e) {
                              return std::count(all.begin(), all.end(), e) > 1;
                            });
    if (any_failed || !problem.empty()) {
      throw Error(str("the NCCL communicator cannot start: rank ", boot_.rank(), " on ", boot_.host(), ": ",
                      problem.empty() ? "fine, but another rank failed (see its message)" : problem));
    }
    CAIRN_CUDART_CHECK(cudaSetDevice(boot_.local_rank() % devices));
  }

  // Makes the communication stream wait for the compute stream's queued work, if one is set.
  void after_compute() {
    if (!compute_stream_) return;
    CAIRN_CUDART_CHECK(cudaEventRecord(compute_done_->get(), compute_stream_));
    CAIRN_CUDART_CHECK(cudaStreamWaitEvent(stream_.get(), compute_done_->get(), 0));
  }

  // A blocking collective: enqueue, then wait for it under the timeout.
  template <typename F>
  void run(const char* what, int64_t count, F enqueue) {
    after_compute();
    enqueue();
    CAIRN_CUDART_CHECK(cudaEventRecord(done_->get(), stream_.get()));
    wait_event(done_->get(), what, count);
  }

  // One NCCL group of per-segment calls f(segment, count, owner); empty segments are skipped.
  template <typename F>
  void grouped(const char* what, float* data, const std::vector<int64_t>& counts, F f) {
    std::vector<int64_t> offsets(counts.size() + 1, 0);
    std::inclusive_scan(counts.begin(), counts.end(), offsets.begin() + 1);
    run(what, offsets.back(), [&] {
      CAIRN_NCCL_CHECK(ncclGroupStart());
      for (int r = 0; r < size(); ++r) {
        if (counts[size_t(r)] > 0) f(data + offsets[size_t(r)], counts[size_t(r)], r);
      }
      CAIRN_NCCL_CHECK(ncclGroupEnd());
    });
  }

  Communicator& boot_;
  CommOptions options_;
  cudaStream_t compute_stream_ = nullptr;
  // Declared so that the communicator goes first, then the events, then the stream.
  std::unique_ptr<CUstream_st, cudaError_t (*)(cudaStream_t)> stream_{nullptr, cudaStreamDestroy};
  std::unique_ptr<Event> done_, compute_done_;
  std::unique_ptr<ncclComm, ncclResult_t (*)(ncclComm_t)> comm_{nullptr, ncclCommDestroy};
};

}  // namespace

}  // namespace cairn

cairn::NcclCommunicator* cairn_make_nccl_communicator(cairn::Communicator& bootstrap,
                                                      const cairn::CommOptions& options) {
  return new cairn::NcclCommunicatorImpl(bootstrap, options);
}
