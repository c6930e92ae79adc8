// The float all-reduce behind MpiCommunicator's sums and averages (the gradient path): a
// reduce-scatter then an all-gather by pairwise exchange (or around a ring, below) over MPI
// point-to-point, cut into segments with a bounded number in flight, advanced by progress()
// without ever blocking, so the caller can poll it under the communicator's timeout. Open MPI's
// non-blocking MPI_Iallreduce (libnbc) runs in-place all-reduces as a binomial reduce + broadcast,
// one whole-buffer round at a time, which reached 0.2x-0.6x of a blocking MPI_Allreduce; this
// moves each byte once per phase, pipelines the reduction with the transfers and keeps every link
// busy in both directions.
//
// Algorithm, for g ranks (chunk c = elements [n·c/g, n·(c+1)/g)): reduce-scatter in steps
// k = 1..g-1, rank r sending its copy of chunk r+k to rank r+k and adding rank r-k's copy of chunk
// r into its own (in that fixed order, so results are reproducible); the owner scales its chunk
// for avg; the all-gather sends the reduced chunk r to every rank the same way. Each rank sends
// 2(g-1)/g of the buffer, like a ring, but every step is independent of the others.
//
// Ring (more than 2 ranks, buffers of at least PairwisePlan::ring_min_bytes, fp32 on the wire):
// the same reduce-scatter and all-gather as g-1 steps around the ring, rank r sending only to
// r+1 and receiving only from r-1: in reduce-scatter step s it forwards chunk r-s (its own
// contribution at s = 0, else the partial sum it received in step s-1, segment by segment as each
// arrives) and adds chunk r-s-1 from r-1; rank r ends owning chunk r+1, summed in the fixed order
// x_{c} + x_{c+1} + ... + x_{c-1}; the all-gather forwards the reduced chunks the same way. One
// flow per link where the pairwise exchange keeps flows to every peer in flight: across hosts,
// with 4 ranks, the pairwise exchange's all-to-all flows lost to MPI's ring (issue 23). A bf16
// wire keeps the pairwise exchange, whose owner adds every rank's rounded contribution in fp32
// (a ring would pass rounded partial sums along).
//
// Pairs (flat, fp32, an even number of ranks of at least 4, buffers of at least ring_min_bytes):
// the hierarchical composition below with consecutive pairs of ranks as the "hosts": a pairwise
// reduce-scatter within each pair (2r, 2r+1), an all-reduce of each half among the ranks of the same
// parity (ring or pairwise by its size), an all-gather within the pair. Each rank sends as many bytes
// as around one ring, but where consecutive ranks share a host (how mpirun and Slurm place them by
// default) the halving crosses each host's link once per direction, where the flat ring's edges
// from host to host carried 1.5x that with 2 ranks per host (0.83x MPI_Allreduce at 64 MiB, 2
// hosts x 2). The groups come from rank numbers, never from hosts, so the sums are the same for
// every placement: chunk element = (x_o + x_{o^1}) + (x_{o^2} + x_{o^3}) at 4 ranks, o its owner.
//
// Hierarchical (several ranks per host): reduce-scatter within the host (shared memory), then each
// local rank all-reduces its chunk with the ranks of the same local rank on the other hosts, then
// an all-gather within the host. Each host's link carries 2(N-1)/N of the buffer for N hosts, as
// an all-reduce among one leader per host would, but all local ranks drive the link together.
//
// bf16 wire: what crosses between hosts (every exchange when flat; only the inter-host all-reduce
// when hierarchical) is bf16, rounded to nearest even. Sums are fp32: each contribution (the
// owner's own included) is rounded to bf16 once, and the chunk's owner adds them in fp32 (never a
// bf16 running sum passed along a ring); the reduced chunk (averaged first for avg) is rounded to
// bf16 once for the all-gather, and the owner keeps the rounded value too, so every rank ends with
// identical values: result = bf16(Σ_r bf16(x_r)) (· 1/n inside the outer rounding for avg). When
// hierarchical, a contribution is one host's fp32 sum.
//
// MPI-only header: included by mpi_communicator.cpp and nothing else.
#pragma once

#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "comm/communicator.h"

#define CAIRN_MPI_CHECK(call) ::cairn::mpi_check((call), #call, __FILE__, __LINE__)

namespace cairn {

// A failed MPI call leaves the peers inside a collective that will never complete, so the only safe
// reaction is to end the job (reporting the call, MPI's error string and file:line); throwing would
// let this rank exit while the others wait.
void mpi_check(int rc, const char* call, const char* file, int line);

// A group of ranks the algorithm exchanges within: a communicator and this rank's place in it.
struct MpiGroup {
  MPI_Comm comm = MPI_COMM_NULL;
  int rank = 0, size = 1;
  bool one_host = false;  // every rank of the group shares one host's memory
};

// Whether every rank of `comm` runs on one host (shared memory): the same answer on every rank.
bool on_one_host(MPI_Comm comm);

// How one all-reduce is carried out.
struct PairwisePlan {
  MpiGroup flat;        // every rank (used when local/cross are unset)
  MpiGroup local;       // ranks on this host (hierarchical only)
  MpiGroup cross;       // ranks with this local rank on every host (hierarchical only)
  MpiGroup pair;        // ranks 2i and 2i+1 (flat fp32 pairs; unset, size 1, for an odd count or 2)
  MpiGroup parity;      // the ranks of this rank's parity (pairs)
  bool hierarchical = false;
  WirePrecision wire = WirePrecision::fp32;
  // Elements per message: across hosts 256 KiB (1 MiB messages lost 10-20% at 4 MiB on the
  // namespace cluster), within one host's shared memory 1 MiB (fewer matches and copies per byte:
  // 0.95-1.86x MPI_Allreduce against 0.79-1.08x at 1-16 MiB, back to back).
  int64_t segment = 1 << 16, one_host_segment = 1 << 18;
  int window = 8;             // messages in flight per direction (sends, receives)
  // An fp32 exchange among more than 2 ranks runs as a ring from this many bytes of its buffer up;
  // 0: always; negative: never (the pairwise exchange).
  int64_t ring_min_bytes = 0;
  int tag = 0;                // distinguishes concurrent all-reduces on the same communicators
};

class PairwiseAllReduce {
 public:
  // Starts the all-reduce of data[0, n) (sum, or avg = sum / world size) and posts its first
  // messages. data must stay untouched until progress() returns true.
  PairwiseAllReduce(const PairwisePlan& plan, float* data, int64_t n, bool avg, int world);
  PairwiseAllReduce(const PairwiseAllReduce&) = delete;
  PairwiseAllReduce& operator=(const PairwiseAllReduce&) = delete;

  // Advances whatever the network allows without blocking; true once complete.
  bool progress();
  bool done() const { return phase_ == phases_.size(); }

 private:
  enum class Kind { reduce_scatter, all_gather };
  // One exchange phase over `group` on data[begin, end): chunk c of it belongs to group rank c.
  struct Phase {
    Kind kind;
    MpiGroup group;
    int64_t begin, end;
    bool bf16;        // bf16 on the wire for this phase
    bool ring;        // ring schedule instead of the pairwise exchange
    int64_t segment;  // elements per message
  };
  // One message: `elems` elements at data offset `offset` to/from `peer`; slot is the staging
  // buffer index (-1: sent or received directly from/to data).
  struct Message {
    int peer;
    int64_t offset, elems;
    bool last = false;  // a reduce-scatter's final contribution to its segment
    MPI_Request request = MPI_REQUEST_NULL;
    int slot = -1;
    int64_t after = -1;  // a send that forwards what this receive (index) brings (ring)
  };

  int64_t chunk_begin(const Phase& p, int c) const { return p.begin + (p.end - p.begin) * c / p.group.size; }
  // The chunk this rank holds reduced after a reduce-scatter (and shares first in the all-gather).
  int owned_chunk(const Phase& p) const { return p.ring ? (p.group.rank + 1) % p.group.size : p.group.rank; }
  bool last_reduce(size_t phase) const {
    return phases_[phase].kind == Kind::reduce_scatter && phase + 1 < phases_.size() &&
           phases_[phase + 1].kind == Kind::all_gather;
  }
  Phase make_phase(Kind kind, const MpiGroup& group, int64_t begin, int64_t end, bool bf16) const;
  void start_phase();
  void plan_pairwise(const Phase& p);
  void plan_ring(const Phase& p);
  void finish_phase();
  void post_sends();
  void post_receives();
  void complete_receive(Message& m);
  int take_slot(std::vector<int>& free);

  PairwisePlan plan_;
  float* data_;
  bool avg_;
  int world_;
  std::vector<Phase> phases_;
  size_t phase_ = 0;
  bool phase_started_ = false;
  bool scale_on_receive_ = false;  // avg: the last contributions are added and scaled in one pass
  // The current phase's messages, in the order they are posted (the order each peer expects).
  std::vector<Message> sends_, receives_;
  size_t next_send_ = 0, next_receive_ = 0;
  std::deque<size_t> sending_, receiving_;  // posted, not yet completed (receives in post order)
  // Staging slots of slot_elems_ elements (the phase's largest message), as many as the window
  // can use; left uninitialised, since every slot is written before it is read.
  int64_t slot_elems_ = 0;
  std::unique_ptr<uint16_t[]> send_stage_, receive_stage_;  // bf16 wire
  std::unique_ptr<float[]> receive_f32_;  // fp32 reduce-scatter: received, then added into data
  std::vector<int> free_send_, free_receive_;
};

}  // namespace cairn
