// Pairwise-exchange all-reduce over MPI point-to-point (see mpi_pairwise_allreduce.h).
#if CAIRN_HAVE_MPI

#include "comm/mpi_pairwise_allreduce.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "backend/bf16.h"
#include "util/error.h"

namespace cairn {

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

bool on_one_host(MPI_Comm comm) {
  int size = 0, shared = 0;
  MPI_Comm host;
  CAIRN_MPI_CHECK(MPI_Comm_size(comm, &size));
  CAIRN_MPI_CHECK(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &host));
  CAIRN_MPI_CHECK(MPI_Comm_size(host, &shared));
  CAIRN_MPI_CHECK(MPI_Comm_free(&host));
  return shared == size;
}

PairwiseAllReduce::PairwiseAllReduce(const PairwisePlan& plan, float* data, int64_t n, bool avg, int world)
    : plan_(plan), data_(data), avg_(avg), world_(world) {
  CAIRN_ASSERT(plan.segment >= 1 && plan.one_host_segment >= 1 && plan.window >= 1, "segment ", plan.segment,
               " one-host segment ", plan.one_host_segment, " window ", plan.window);
  // bf16 only where something crosses between ranks (hosts, when hierarchical).
  const bool bf16 = plan.wire == WirePrecision::bf16 && (plan.hierarchical ? plan.cross.size : plan.flat.size) > 1;
  const bool pairs = !plan.hierarchical && !bf16 && plan.pair.size == 2 && plan.ring_min_bytes >= 0 &&
                     n * int64_t(sizeof(float)) >= plan.ring_min_bytes;
  if (!plan.hierarchical && !pairs) {
    phases_.push_back(make_phase(Kind::reduce_scatter, plan.flat, 0, n, bf16));
    phases_.push_back(make_phase(Kind::all_gather, plan.flat, 0, n, bf16));
    return;
  }
  // Shared memory within the host carries fp32; only the inter-host exchange is bf16.
  const MpiGroup& local = pairs ? plan.pair : plan.local;
  const MpiGroup& cross = pairs ? plan.parity : plan.cross;
  const Phase local_rs = make_phase(Kind::reduce_scatter, local, 0, n, false);
  const int own = owned_chunk(local_rs);
  const int64_t lb = chunk_begin(local_rs, own), le = chunk_begin(local_rs, own + 1);
  phases_.push_back(local_rs);
  phases_.push_back(make_phase(Kind::reduce_scatter, cross, lb, le, bf16));
  phases_.push_back(make_phase(Kind::all_gather, cross, lb, le, bf16));
  phases_.push_back(make_phase(Kind::all_gather, local, 0, n, false));
}

PairwiseAllReduce::Phase PairwiseAllReduce::make_phase(Kind kind, const MpiGroup& group, int64_t begin, int64_t end,
                                                       bool bf16) const {
  // With 2 ranks the ring and the pairwise exchange are the same messages.
  const bool ring = !bf16 && group.size > 2 && plan_.ring_min_bytes >= 0 &&
                    (end - begin) * int64_t(sizeof(float)) >= plan_.ring_min_bytes;
  return {kind, group, begin, end, bf16, ring, group.one_host ? plan_.one_host_segment : plan_.segment};
}

// Free staging slot, or -1 when none is (the caller then waits for a message to complete).
int PairwiseAllReduce::take_slot(std::vector<int>& free) {
  if (free.empty()) return -1;
  const int s = free.back();
  free.pop_back();
  return s;
}

// Segment j of chunk c for every step k = 1..g-1, segment by segment (all peers at once, so one
// slow peer does not stall the others); ascending on both ends of every pair, as MPI matches.
// A segment's receives are reduced in step order, so every sum is added in the same order.
void PairwiseAllReduce::plan_pairwise(const Phase& p) {
  const int g = p.group.size, r = p.group.rank;
  const int64_t longest = (p.end - p.begin + g - 1) / g;
  for (int64_t off = 0; off < longest; off += p.segment) {
    for (int k = 1; k < g; ++k) {
      const int to = (r + k) % g, from = (r - k + g) % g;
      auto add = [&](std::vector<Message>& list, int peer, int c, bool last) {
        const int64_t b = chunk_begin(p, c) + off, e = chunk_begin(p, c + 1);
        if (b < e) list.push_back({peer, b, std::min(p.segment, e - b), last});
      };
      add(sends_, to, p.kind == Kind::reduce_scatter ? to : r, false);
      add(receives_, from, p.kind == Kind::reduce_scatter ? r : from, k == g - 1);
    }
  }
}

// Steps s = 0..g-2, each chunk cut into segments. What rank r sends in step s > 0 is the chunk it
// received in step s-1 (reduce-scatter: with its own contribution added), so each such send waits
// for that segment's receive; both ends list a pair's messages in the same order.
void PairwiseAllReduce::plan_ring(const Phase& p) {
  const int g = p.group.size, r = p.group.rank, to = (r + 1) % g, from = (r - 1 + g) % g;
  const bool rs = p.kind == Kind::reduce_scatter;
  size_t previous = 0;  // index of the previous step's first receive
  for (int s = 0; s + 1 < g; ++s) {
    const int send_chunk = ((rs ? r - s : r + 1 - s) % g + g) % g;
    const int receive_chunk = ((rs ? r - s - 1 : r - s) % g + g) % g;
    const size_t first = receives_.size();
    const int64_t sb = chunk_begin(p, send_chunk), se = chunk_begin(p, send_chunk + 1);
    for (int64_t b = sb, j = 0; b < se; b += p.segment, ++j) {
      Message m{to, b, std::min(p.segment, se - b)};
      if (s > 0) m.after = int64_t(previous) + j;
      sends_.push_back(m);
    }
    for (int64_t b = chunk_begin(p, receive_chunk), e = chunk_begin(p, receive_chunk + 1); b < e; b += p.segment)
      receives_.push_back({from, b, std::min(p.segment, e - b), rs && s == g - 2});
    previous = first;
  }
}

void PairwiseAllReduce::start_phase() {
  const Phase& p = phases_[phase_];
  sends_.clear();
  receives_.clear();
  next_send_ = next_receive_ = 0;
  const int r = p.group.rank;
  if (p.ring) {
    plan_ring(p);
  } else {
    plan_pairwise(p);
  }
  scale_on_receive_ = avg_ && last_reduce(phase_);
  const bool rs = p.kind == Kind::reduce_scatter;
  slot_elems_ = 0;
  for (const auto* list : {&sends_, &receives_})
    for (const Message& m : *list) slot_elems_ = std::max(slot_elems_, m.elems);
  const int send_slots = int(std::min<size_t>(size_t(plan_.window), sends_.size()));
  const int receive_slots = int(std::min<size_t>(size_t(plan_.window), receives_.size()));
  const size_t send_elems = size_t(send_slots) * size_t(slot_elems_), receive_elems = size_t(receive_slots) * size_t(slot_elems_);
  send_stage_.reset(p.bf16 && send_slots ? new uint16_t[send_elems] : nullptr);
  receive_stage_.reset(p.bf16 && receive_slots ? new uint16_t[receive_elems] : nullptr);
  receive_f32_.reset(!p.bf16 && rs && receive_slots ? new float[receive_elems] : nullptr);
  free_send_.clear();
  free_receive_.clear();
  for (int s = 0; s < send_slots; ++s) free_send_.push_back(s);
  for (int s = 0; s < receive_slots; ++s) free_receive_.push_back(s);
  if (p.bf16) {
    // Rounding this rank's own chunk as well treats every contribution alike (reduce-scatter), and
    // in the all-gather the owner keeps exactly the value every other rank receives.
    float* x = data_ + chunk_begin(p, r);
    const int64_t m = chunk_begin(p, r + 1) - chunk_begin(p, r);
    for (int64_t i = 0; i < m; ++i) x[i] = bf16_to_float(bf16_round_nearest(x[i]));
  }
}

void PairwiseAllReduce::finish_phase() {
  const Phase& p = phases_[phase_];
  if (avg_ && last_reduce(phase_) && p.group.size == 1) {
    // Alone in the group, no receive scaled this rank's chunk (see complete_receive).
    float* x = data_ + chunk_begin(p, p.group.rank);
    const int64_t m = chunk_begin(p, p.group.rank + 1) - chunk_begin(p, p.group.rank);
    const float s = 1.0f / float(world_);
    for (int64_t i = 0; i < m; ++i) x[i] *= s;
  }
  ++phase_;
  send_stage_.reset();
  receive_stage_.reset();
  receive_f32_.reset();
}

void PairwiseAllReduce::post_sends() {
  const Phase& p = phases_[phase_];
  while (next_send_ < sends_.size() && sending_.size() < size_t(plan_.window)) {
    Message& m = sends_[next_send_];
    // Receives complete in the order they were posted: the first next_receive_ - receiving_.size().
    if (m.after >= 0 && size_t(m.after) >= next_receive_ - receiving_.size()) return;
    const int tag = plan_.tag + int(phase_);
    if (p.bf16) {
      m.slot = take_slot(free_send_);
      if (m.slot < 0) return;
      uint16_t* stage = send_stage_.get() + size_t(m.slot) * size_t(slot_elems_);
      const float* x = data_ + m.offset;
      for (int64_t i = 0; i < m.elems; ++i) stage[i] = bf16_round_nearest(x[i]);
      CAIRN_MPI_CHECK(MPI_Isend(stage, int(m.elems), MPI_UINT16_T, m.peer, tag, p.group.comm, &m.request));
    } else {
      CAIRN_MPI_CHECK(MPI_Isend(data_ + m.offset, int(m.elems), MPI_FLOAT, m.peer, tag, p.group.comm, &m.request));
    }
    sending_.push_back(next_send_++);
  }
}

void PairwiseAllReduce::post_receives() {
  const Phase& p = phases_[phase_];
  const bool rs = p.kind == Kind::reduce_scatter;
  while (next_receive_ < receives_.size() && receiving_.size() < size_t(plan_.window)) {
    Message& m = receives_[next_receive_];
    const int tag = plan_.tag + int(phase_);
    if (p.bf16) {
      m.slot = take_slot(free_receive_);
      if (m.slot < 0) return;
      uint16_t* stage = receive_stage_.get() + size_t(m.slot) * size_t(slot_elems_);
      CAIRN_MPI_CHECK(MPI_Irecv(stage, int(m.elems), MPI_UINT16_T, m.peer, tag, p.group.comm, &m.request));
    } else if (rs) {
      m.slot = take_slot(free_receive_);
      if (m.slot < 0) return;
      float* stage = receive_f32_.get() + size_t(m.slot) * size_t(slot_elems_);
      CAIRN_MPI_CHECK(MPI_Irecv(stage, int(m.elems), MPI_FLOAT, m.peer, tag, p.group.comm, &m.request));
    } else {
      CAIRN_MPI_CHECK(MPI_Irecv(data_ + m.offset, int(m.elems), MPI_FLOAT, m.peer, tag, p.group.comm, &m.request));
    }
    receiving_.push_back(next_receive_++);
  }
}

// A received segment: added into this rank's chunk (reduce-scatter) or widened into place
// (bf16 all-gather; an fp32 all-gather received in place).
void PairwiseAllReduce::complete_receive(Message& m) {
  const Phase& p = phases_[phase_];
  float* x = data_ + m.offset;
  if (m.slot < 0) return;
  // avg: the chunk this rank owns holds the sum over every rank once the last contribution is
  // added; it is scaled in the same pass, before it is shared (rather than the whole buffer on
  // every rank afterwards).
  const bool scale = scale_on_receive_ && m.last;
  const float s = 1.0f / float(world_);
  if (p.bf16) {
    const uint16_t* in = receive_stage_.get() + size_t(m.slot) * size_t(slot_elems_);
    if (p.kind == Kind::all_gather)
      for (int64_t i = 0; i < m.elems; ++i) x[i] = bf16_to_float(in[i]);
    else if (scale)
      for (int64_t i = 0; i < m.elems; ++i) x[i] = (x[i] + bf16_to_float(in[i])) * s;
    else
      for (int64_t i = 0; i < m.elems; ++i) x[i] += bf16_to_float(in[i]);
  } else {
    const float* in = receive_f32_.get() + size_t(m.slot) * size_t(slot_elems_);
    if (scale)
      for (int64_t i = 0; i < m.elems; ++i) x[i] = (x[i] + in[i]) * s;
    else
      for (int64_t i = 0; i < m.elems; ++i) x[i] += in[i];
  }
  free_receive_.push_back(m.slot);
}

bool PairwiseAllReduce::progress() {
  std::vector<MPI_Request> reqs;
  std::vector<int> indices;
  while (!done()) {
    if (!phase_started_) {
      start_phase();
      phase_started_ = true;
    }
    // Sends first: Open MPI's TCP path moved 32 MiB each way between two nodes in 0.3 s when each
    // rank posted its send before its receive, 0.6 s the other way round.
    post_sends();
    post_receives();
    if (sending_.empty() && receiving_.empty()) {
      // Every message of the phase has completed (a ring's sends wait only on receives).
      CAIRN_ASSERT(next_send_ == sends_.size() && next_receive_ == receives_.size(), "all-reduce phase stalled");
      finish_phase();
      phase_started_ = false;
      continue;
    }
    reqs.clear();
    for (size_t i : sending_) reqs.push_back(sends_[i].request);
    for (size_t i : receiving_) reqs.push_back(receives_[i].request);
    int completed = 0;
    indices.resize(reqs.size());
    CAIRN_MPI_CHECK(MPI_Testsome(int(reqs.size()), reqs.data(), &completed, indices.data(), MPI_STATUSES_IGNORE));
    if (completed == 0 || completed == MPI_UNDEFINED) return false;
    size_t k = 0;
    for (size_t i : sending_) sends_[i].request = reqs[k++];
    for (size_t i : receiving_) receives_[i].request = reqs[k++];
    // Sends complete in any order; their slots are free again.
    std::deque<size_t> still;
    for (size_t i : sending_) {
      if (sends_[i].request != MPI_REQUEST_NULL) {
        still.push_back(i);
      } else if (sends_[i].slot >= 0) {
        free_send_.push_back(sends_[i].slot);
      }
    }
    sending_.swap(still);
    // Receives are reduced in the order they were posted, so sums do not depend on timing.
    while (!receiving_.empty() && receives_[receiving_.front()].request == MPI_REQUEST_NULL) {
      complete_receive(receives_[receiving_.front()]);
      receiving_.pop_front();
    }
  }
  return true;
}

}  // namespace cairn

#endif  // CAIRN_HAVE_MPI
