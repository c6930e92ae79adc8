// The data-parallel step model behind `cairn plan --nodes` (see comm_plan.h).
#include "trainer/comm_plan.h"

#include <algorithm>

namespace cairn {

CommPlan plan_data_parallel(const CommPlanInput& in) {
  CommPlan p;
  const double N = in.nodes, P = in.ranks_per_node;
  p.wire_bytes = double(in.params) * (in.bf16_wire ? 2.0 : 4.0);
  if (in.nodes > 1) {
    // Reduce-scatter + all-gather: a bandwidth-optimal all-reduce moves 2(N-1)/N of the buffer
    // over each host's link. Flat with P ranks per host, every rank exchanges its own share with
    // every rank elsewhere: P times that.
    p.link_bytes = 2.0 * (N - 1) / N * p.wire_bytes * (in.hierarchical ? 1.0 : P);
    // ZeRO-1 then gathers every rank's updated fp32 rows: each host receives the other hosts'.
    if (in.zero1) p.link_bytes += (N - 1) / N * double(in.params) * 4.0 * P;
  }
  const double rate = in.link_gbps * 1e9 / 8 * kLinkPayloadShare;
  p.comm_s = p.link_bytes / rate;
  // Backward is about 2/3 of a micro-step's FLOPs; buckets leave as it finishes them, but the
  // embedding's gradient is final only at its end, so its share always waits.
  p.hideable_s = in.compute_s / double(in.grad_accum) * 2.0 / 3.0;
  const double tail = in.params > 0 ? p.comm_s * double(in.last_rows) / double(in.params) : 0;
  p.exposed_s = in.nodes > 1 ? std::max(p.comm_s - p.hideable_s, tail) : 0;
  p.step_s = in.compute_s + p.exposed_s;
  p.tokens_per_s = p.step_s > 0 ? double(in.tokens_per_rank) * N * P / p.step_s : 0;
  p.efficiency = p.step_s > 0 ? in.compute_s / p.step_s : 0;
  return p;
}

}  // namespace cairn
