// The implementation-independent half of the Communicator: contract checks shared by every
// implementation and Request's lifetime rules (the choice of communicator: make_communicator.cpp).
#include "comm/communicator.h"

#include "util/error.h"

namespace cairn {

Request& Request::operator=(Request&& other) noexcept {
  if (this != &other) {
    finish();
    state_ = std::move(other.state_);
  }
  return *this;
}

// Waiting here (rather than leaking an in-flight MPI request) keeps the buffer safe to free; a
// peer that never arrives ends the job through the timeout instead of hanging the destructor.
Request::~Request() { finish(); }

void Request::finish() {
  if (state_) {
    state_->wait();
    state_.reset();
  }
}

void Communicator::wait(Request& request) { request.finish(); }

bool Communicator::test(Request& request) {
  if (!request.state_) return true;
  if (!request.state_->test()) return false;
  request.finish();
  return true;
}

void Communicator::all_reduce(float* data, int64_t n, ReduceOp op) {
  CAIRN_ASSERT(n >= 0 && (data || n == 0), "all_reduce of ", n, " elements");
  all_reduce_impl(data, n, CommType::f32, op);
}

void Communicator::all_reduce(double* data, int64_t n, ReduceOp op) {
  CAIRN_ASSERT(n >= 0 && (data || n == 0), "all_reduce of ", n, " elements");
  all_reduce_impl(data, n, CommType::f64, op);
}

void Communicator::all_reduce(int64_t* data, int64_t n, ReduceOp op) {
  CAIRN_ASSERT(n >= 0 && (data || n == 0), "all_reduce of ", n, " elements");
  CAIRN_ASSERT(op != ReduceOp::avg, "the average of integers is not an integer: use sum");
  all_reduce_impl(data, n, CommType::i64, op);
}

Request Communicator::all_reduce_start(float* data, int64_t n, ReduceOp op, WirePrecision wire) {
  CAIRN_ASSERT(n >= 0 && (data || n == 0), "all_reduce_start of ", n, " elements");
  CAIRN_ASSERT(wire == WirePrecision::fp32 || op != ReduceOp::max, "a bf16 wire is for sums and averages");
  return all_reduce_start_impl(data, n, CommType::f32, op, wire);
}

Request Communicator::all_reduce_start(double* data, int64_t n, ReduceOp op) {
  CAIRN_ASSERT(n >= 0 && (data || n == 0), "all_reduce_start of ", n, " elements");
  return all_reduce_start_impl(data, n, CommType::f64, op, WirePrecision::fp32);
}

void Communicator::check_segments(const std::vector<int64_t>& counts, const char* what) const {
  CAIRN_ASSERT(int64_t(counts.size()) == size(), what, " needs one segment per rank: got ",
               counts.size(), " for ", size(), " ranks");
  for (int64_t c : counts) CAIRN_ASSERT(c >= 0, what, " segment of ", c, " elements");
}

void Communicator::reduce_scatter(float* data, const std::vector<int64_t>& counts, ReduceOp op) {
  check_segments(counts, "reduce_scatter");
  reduce_scatter_impl(data, counts, op);
}

void Communicator::all_gather(float* data, const std::vector<int64_t>& counts) {
  check_segments(counts, "all_gather");
  all_gather_impl(data, counts);
}

void Communicator::broadcast(void* data, int64_t bytes, int root) {
  CAIRN_ASSERT(bytes >= 0 && (data || bytes == 0), "broadcast of ", bytes, " bytes");
  CAIRN_ASSERT(root >= 0 && root < size(), "broadcast root ", root, " of ", size(), " ranks");
  broadcast_impl(data, bytes, root);
}

}  // namespace cairn
