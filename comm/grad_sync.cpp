// Bucketed gradient all-reduce, ZeRO-1 row ownership and the gradients' communicator (see grad_sync.h).
#include "comm/grad_sync.h"

#include <algorithm>
#include <chrono>

#include "util/error.h"

namespace cairn {

static double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::vector<int> partition_rows(const ParamTable& table, int parts) {
  const auto& rows = table.rows();
  std::vector<int> bounds{0};
  const double total = double(table.total());
  // Greedy: rank k's range ends at the row boundary closest to the ideal cut total·(k+1)/parts.
  for (int k = 0; k + 1 < parts; ++k) {
    const double ideal = total * double(k + 1) / double(parts);
    int b = bounds.back();
    while (b < int(rows.size()) && double(rows[size_t(b)].offset + rows[size_t(b)].numel) <= ideal) ++b;
    if (b < int(rows.size()) && b > bounds.back()) {
      const double before = double(rows[size_t(b)].offset), after = before + double(rows[size_t(b)].numel);
      if (after - ideal < ideal - before) ++b;
    }
    bounds.push_back(b);
  }
  bounds.push_back(int(rows.size()));
  return bounds;
}

GradientSync::GradientSync(Communicator& comm, const ParamTable& table, float* grads, int64_t bucket_floats, bool shard,
                           WirePrecision wire)
    : comm_(comm), grads_(grads), total_(table.total()), shard_(shard && comm.size() > 1), wire_(wire) {
  const int world = comm_.size(), rank = comm_.rank();
  const std::vector<int> bounds = shard_ ? partition_rows(table, world) : std::vector<int>{0, int(table.rows().size())};
  auto row_start = [&](int r) { return r < int(table.rows().size()) ? table.row(r).offset : total_; };
  const int me = shard_ ? rank : 0;
  for (int r = bounds[size_t(me)]; r < bounds[size_t(me) + 1]; ++r) owned_rows_.push_back(r);
  seg_begin_ = row_start(bounds[size_t(me)]);
  seg_end_ = row_start(bounds[size_t(me) + 1]);
  if (shard_)
    for (int k = 0; k < world; ++k) segment_counts_.push_back(row_start(bounds[size_t(k) + 1]) - row_start(bounds[size_t(k)]));
  if (world > 1) {
    const int64_t size = std::max<int64_t>(bucket_floats, 1);
    for (int64_t end = total_; end > 0; end -= size) buckets_.push_back({std::max<int64_t>(0, end - size), end, Request(), false});
  }
}

void GradientSync::begin() {
  for (auto& b : buckets_) b.started = false;
  next_ = 0;
  first_start_ = 0;
}

void GradientSync::ready_from(int64_t offset) {
  while (next_ < buckets_.size() && buckets_[next_].begin >= offset) {
    Bucket& b = buckets_[next_++];
    if (first_start_ == 0) first_start_ = now_s();
    b.request = comm_.all_reduce_start(grads_ + b.begin, b.end - b.begin, ReduceOp::avg, wire_);
    b.started = true;
  }
  // MPI progresses non-blocking collectives only inside MPI calls.
  for (size_t i = 0; i < next_; ++i)
    if (buckets_[i].request.pending()) comm_.test(buckets_[i].request);
}

void GradientSync::finish() {
  if (buckets_.empty()) return;
  ready_from(0);
  const double wait_start = now_s();
  for (auto& b : buckets_) comm_.wait(b.request);
  const double end = now_s();
  const double span = end - first_start_;
  wait_s_ = end - wait_start;
  overlap_ = span > 0 ? std::clamp(1.0 - wait_s_ / span, 0.0, 1.0) : 0.0;
}

void GradientSync::gather_params(float* params) {
  if (shard_) comm_.all_gather(params, segment_counts_);
}

GradientCommunicator::GradientCommunicator(Communicator& host, bool device_gradients, const CommOptions& options)
    : host_(host) {
  if (device_gradients && host.size() > 1) device_ = make_nccl_communicator(host, options);
}

GradientCommunicator::~GradientCommunicator() = default;

void GradientCommunicator::set_compute_stream(void* cuda_stream) {
  if (device_) device_->set_compute_stream(cuda_stream);
}

}  // namespace cairn
