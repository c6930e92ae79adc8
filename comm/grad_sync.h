// Data-parallel gradient synchronization over the flat gradient buffer.
//
// Buckets: the buffer is cut into buckets of about `bucket_floats` from its end, because backward
// completes gradients from the end (LM head, last block) towards the start (embedding). When the
// model reports that gradients [offset, end) are final, every bucket inside that range starts its
// non-blocking all-reduce (average) at once, so communication overlaps the rest of backward.
//
// Sharding (ZeRO-1): rows are split into `size()` contiguous ranges balanced by size; rank r owns
// range r and keeps optimizer state only for those rows. After the optimizer step, each rank's
// segment of the parameter buffer is gathered to all ranks.
//
// The gradients' communicator (GradientCommunicator) is picked here too, so that the trainer names
// no backend: MPI (or the single process) for host gradients, NCCL for GPU gradients.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "comm/communicator.h"
#include "comm/nccl_communicator.h"
#include "model/param_table.h"

namespace cairn {

// Contiguous balanced partition of rows over `parts` ranks: returns parts+1 row boundaries.
std::vector<int> partition_rows(const ParamTable& table, int parts);

class GradientSync {
 public:
  // wire: what the gradients travel as between hosts (see WirePrecision).
  GradientSync(Communicator& comm, const ParamTable& table, float* grads, int64_t bucket_floats, bool shard,
               WirePrecision wire = WirePrecision::fp32);

  // Rows this rank updates (all rows unless sharded).
  const std::vector<int>& owned_rows() const { return owned_rows_; }
  // [begin, end) of this rank's segment in floats (the whole buffer unless sharded).
  int64_t segment_begin() const { return seg_begin_; }
  int64_t segment_end() const { return seg_end_; }

  // Arms the buckets for the coming backward (the last micro-step of a step).
  void begin();
  // Gradients [offset, end of buffer) are final: start the buckets they cover, drive progress.
  void ready_from(int64_t offset);
  // Starts what is left and waits for every bucket: afterwards grads hold the rank average.
  void finish();
  // Fraction of all-reduce time hidden behind backward in the last step (0..1), for reporting:
  // 1 − (time waiting in finish) / (time from first start to last completion).
  double last_overlap() const { return overlap_; }
  // Seconds the last step waited in finish() for its all-reduces: the step less this is the time
  // the rank computed (bench/scaling.sh compares the prediction on it).
  double last_wait_s() const { return wait_s_; }

  // Gathers every rank's parameter segment to all ranks (no-op unless sharded).
  void gather_params(float* params);
  int64_t num_buckets() const { return int64_t(buckets_.size()); }

 private:
  Communicator& comm_;
  float* grads_;
  int64_t total_;
  bool shard_;
  WirePrecision wire_;
  std::vector<int> owned_rows_;
  std::vector<int64_t> segment_counts_;
  int64_t seg_begin_ = 0, seg_end_ = 0;
  struct Bucket {
    int64_t begin, end;
    Request request;
    bool started = false;
  };
  std::vector<Bucket> buckets_;  // from the end of the buffer to its start
  size_t next_ = 0;              // first bucket not started
  double first_start_ = 0, overlap_ = 0, wait_s_ = 0;
};

// The communicator gradients travel on, picked for where they live: with gradients in GPU memory
// on several ranks, NCCL over the GPUs, bootstrapped by `host`; otherwise `host` itself (MPI, or
// the single process), which carries everything else in any case.
class GradientCommunicator {
 public:
  // Collective. On GPUs, make it before the CUDA backend is first used: NCCL selects this rank's
  // GPU (local rank % GPUs on the host), which the backend then binds to. `host` must outlive it.
  GradientCommunicator(Communicator& host, bool device_gradients, const CommOptions& options);
  ~GradientCommunicator();
  // Orders each gradient collective after the work queued on cuda_stream (the CUDA backend's
  // compute stream; see NcclCommunicator::set_compute_stream). Nothing to order on the host.
  void set_compute_stream(void* cuda_stream);
  Communicator& get() { return device_ ? *device_ : host_; }

 private:
  Communicator& host_;
  std::unique_ptr<NcclCommunicator> device_;
};

}  // namespace cairn
