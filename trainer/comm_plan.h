// What a data-parallel step costs on a cluster, predicted before running it (`cairn plan --nodes`):
// the gradient bytes each host's link must carry per step for the all-reduce cairn runs (flat or
// hierarchical, fp32 or bf16 on the wire; plus ZeRO-1's parameter gather), the time that takes at
// the link's rate, how much of it backward can hide, and the resulting step time, tokens/s and
// scaling efficiency. Bytes within a host (shared memory) are taken as free.
#pragma once

#include <cstdint>

namespace cairn {

struct CommPlanInput {
  int64_t params = 0;          // gradient elements (every trainable parameter)
  int64_t last_rows = 0;       // of them, the ones final only when backward ends (the embedding)
  double compute_s = 0;        // one rank's compute time per optimizer step, no communication
  int64_t grad_accum = 1;      // micro-steps per step (only the last one's backward hides comm)
  int64_t tokens_per_rank = 0; // tokens one rank trains on per step
  int nodes = 1, ranks_per_node = 1;
  double link_gbps = 1;        // each host's link, each direction
  bool bf16_wire = false, hierarchical = false, zero1 = false;
};

struct CommPlan {
  double wire_bytes = 0;   // gradient bytes per all-reduce (params x 4, or x 2 for bf16)
  double link_bytes = 0;   // bytes each host's link carries each way per step
  double comm_s = 0;       // link_bytes at the link's payload rate
  double hideable_s = 0;   // backward of the last micro-step, when buckets can travel
  double exposed_s = 0;    // communication the step waits for
  double step_s = 0, tokens_per_s = 0;
  double efficiency = 0;   // compute_s / step_s: per-rank throughput against no communication
};

// TCP payload per byte a tc rate cap counts (1448 of 1514 bytes per full frame); measured
// iperf3 goodput on the calibrated harness was 90-95% of the cap (docs/cluster.md).
inline constexpr double kLinkPayloadShare = 0.95;

CommPlan plan_data_parallel(const CommPlanInput& in);

}  // namespace cairn
