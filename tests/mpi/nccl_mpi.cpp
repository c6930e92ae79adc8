// The NCCL Communicator under mpirun (see nccl.cmake): every collective on device buffers against a
// closed form or a host reference. Needs one GPU per rank; without a CUDA device, or with fewer
// GPUs than ranks on this host, every rank exits 77 and CTest reports the test as skipped.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "comm/nccl_communicator.h"

namespace cairn {
namespace {

NcclCommunicator* nccl = nullptr;

void check(cudaError_t rc, const char* what) {
  if (rc != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(rc));
}

// A device copy of a host vector, freed with its owner.
template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(const std::vector<T>& host) : n_(host.size()) {
    check(cudaMalloc(&data_, std::max<size_t>(1, n_) * sizeof(T)), "cudaMalloc");
    check(cudaMemcpy(data_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy to device");
  }
  ~DeviceBuffer() { cudaFree(data_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  T* get() { return data_; }
  std::vector<T> host() const {
    std::vector<T> out(n_);
    check(cudaMemcpy(out.data(), data_, n_ * sizeof(T), cudaMemcpyDeviceToHost), "cudaMemcpy to host");
    return out;
  }

 private:
  size_t n_;
  T* data_ = nullptr;
};

TEST(NcclMpi, KnowsRanksAndHosts) {
  EXPECT_EQ(nccl->name(), "nccl");
  EXPECT_GE(nccl->size(), 2);
  std::vector<std::string> table = nccl->all_gather_strings(std::to_string(nccl->rank()));
  ASSERT_EQ(int(table.size()), nccl->size());
  for (int r = 0; r < nccl->size(); ++r) EXPECT_EQ(table[size_t(r)], std::to_string(r));
  nccl->barrier();
}

TEST(NcclMpi, AllReduceFloatSumAvgMax) {
  const int n = nccl->size(), me = nccl->rank();
  for (int64_t len : {int64_t(1), int64_t(7), int64_t(1000), int64_t(100003)}) {
    std::vector<float> x(static_cast<size_t>(len));
    for (int64_t i = 0; i < len; ++i) x[size_t(i)] = float(me + i % 1000);
    DeviceBuffer<float> sum(x);
    nccl->all_reduce(sum.get(), len, ReduceOp::sum);
    x = sum.host();
    for (int64_t i = 0; i < len; ++i) {
      ASSERT_EQ(x[size_t(i)], float(n * (n - 1) / 2 + n * (i % 1000))) << "len " << len << " i " << i;
    }
    DeviceBuffer<float> avg(std::vector<float>(static_cast<size_t>(len), float(me)));
    nccl->all_reduce(avg.get(), len, ReduceOp::avg);
    for (float v : avg.host()) ASSERT_EQ(v, float(n - 1) / 2.0f) << "len " << len;
    for (int64_t i = 0; i < len; ++i) x[size_t(i)] = i % 2 ? float(me) : -float(me);
    DeviceBuffer<float> max(x);
    nccl->all_reduce(max.get(), len, ReduceOp::max);
    x = max.host();
    for (int64_t i = 0; i < len; ++i) ASSERT_EQ(x[size_t(i)], i % 2 ? float(n - 1) : 0.0f);
  }
}

TEST(NcclMpi, AllReduceDoubleAndInt64) {
  const int n = nccl->size(), me = nccl->rank();
  DeviceBuffer<double> d(std::vector<double>(1001, 0.25 + me));
  nccl->all_reduce(d.get(), 1001, ReduceOp::sum);
  for (double v : d.host()) ASSERT_EQ(v, 0.25 * n + n * (n - 1) / 2);
  DeviceBuffer<int64_t> t(std::vector<int64_t>(1001, (int64_t(1) << 40) + me));  // beyond float, int32
  nccl->all_reduce(t.get(), 1001, ReduceOp::sum);
  for (int64_t v : t.host()) ASSERT_EQ(v, n * (int64_t(1) << 40) + n * (n - 1) / 2);
  DeviceBuffer<int64_t> m(std::vector<int64_t>(17, -(int64_t(1) << 40) * me));
  nccl->all_reduce(m.get(), 17, ReduceOp::max);
  for (int64_t v : m.host()) ASSERT_EQ(v, 0);
}

TEST(NcclMpi, SeveralNonBlockingAllReducesInFlight) {
  const int n = nccl->size(), me = nccl->rank();
  const std::vector<int64_t> lens = {5, 100003, 1, 4096};
  std::vector<std::unique_ptr<DeviceBuffer<float>>> bufs;
  std::vector<Request> reqs;
  for (size_t k = 0; k < lens.size(); ++k) {
    bufs.push_back(std::make_unique<DeviceBuffer<float>>(std::vector<float>(size_t(lens[k]), float(me + k))));
    reqs.push_back(nccl->all_reduce_start(bufs.back()->get(), lens[k], k % 2 ? ReduceOp::avg : ReduceOp::sum));
  }
  nccl->test(reqs[0]);
  for (size_t k = lens.size(); k-- > 0;) nccl->wait(reqs[k]);  // reverse order is allowed
  for (size_t k = 0; k < lens.size(); ++k) {
    const float sum = float(n * (n - 1) / 2 + n * int(k));
    for (float v : bufs[k]->host()) ASSERT_EQ(v, k % 2 ? sum / float(n) : sum) << "buffer " << k;
  }
}

// A copy queued on the compute stream must land before the all-reduce reads the buffer.
TEST(NcclMpi, ComputeStreamOrdersTheAllReduce) {
  const int n = nccl->size(), me = nccl->rank();
  const int64_t len = 1 << 22;
  DeviceBuffer<float> src(std::vector<float>(size_t(len), float(me + 1)));
  DeviceBuffer<float> dst(std::vector<float>(size_t(len), 0.0f));
  cudaStream_t compute = nullptr;
  check(cudaStreamCreateWithFlags(&compute, cudaStreamNonBlocking), "cudaStreamCreate");
  nccl->set_compute_stream(compute);
  for (int rep = 0; rep < 4; ++rep) {  // several copies queued: the last one decides
    check(cudaMemcpyAsync(dst.get(), src.get(), size_t(len) * sizeof(float), cudaMemcpyDeviceToDevice, compute),
          "cudaMemcpyAsync");
  }
  Request req = nccl->all_reduce_start(dst.get(), len, ReduceOp::sum);
  nccl->wait(req);
  nccl->set_compute_stream(nullptr);
  check(cudaStreamSynchronize(compute), "cudaStreamSynchronize");
  check(cudaStreamDestroy(compute), "cudaStreamDestroy");
  for (float v : dst.host()) ASSERT_EQ(v, float(n * (n + 1) / 2));
}

// Uneven segments with a zero one (every odd rank owns nothing).
std::vector<int64_t> uneven_counts(int n) {
  std::vector<int64_t> counts(static_cast<size_t>(n));
  for (int r = 0; r < n; ++r) counts[size_t(r)] = r % 2 ? 0 : 37 + 1000 * r;
  return counts;
}

TEST(NcclMpi, ReduceScatterUnevenAgainstHostReference) {
  const int n = nccl->size(), me = nccl->rank();
  const std::vector<int64_t> counts = uneven_counts(n);
  std::vector<int64_t> offsets(size_t(n) + 1, 0);
  std::inclusive_scan(counts.begin(), counts.end(), offsets.begin() + 1);
  const int64_t total = offsets.back();
  auto value = [](int64_t i, int r) { return float((i * 7 + r * 13) % 64); };
  for (ReduceOp op : {ReduceOp::sum, ReduceOp::avg, ReduceOp::max}) {
    std::vector<float> x(static_cast<size_t>(total));
    for (int64_t i = 0; i < total; ++i) x[size_t(i)] = value(i, me);
    DeviceBuffer<float> buf(x);
    nccl->reduce_scatter(buf.get(), counts, op);
    x = buf.host();
    for (int64_t i = offsets[size_t(me)]; i < offsets[size_t(me) + 1]; ++i) {
      float ref = op == ReduceOp::max ? value(i, 0) : 0.0f;
      for (int r = 0; r < n; ++r) ref = op == ReduceOp::max ? std::max(ref, value(i, r)) : ref + value(i, r);
      if (op == ReduceOp::avg) ref /= float(n);
      ASSERT_EQ(x[size_t(i)], ref) << "op " << int(op) << " i " << i;
    }
  }
}

TEST(NcclMpi, AllGatherUneven) {
  const int n = nccl->size(), me = nccl->rank();
  const std::vector<int64_t> counts = uneven_counts(n);
  const int64_t total = std::accumulate(counts.begin(), counts.end(), int64_t(0));
  std::vector<float> x(size_t(total), -1.0f);
  for (int64_t r = 0, off = 0; r < n; off += counts[size_t(r)], ++r) {
    for (int64_t i = 0; i < counts[size_t(r)]; ++i) {
      if (r == me) x[size_t(off + i)] = float(1000 * r + i);
    }
  }
  DeviceBuffer<float> buf(x);
  nccl->all_gather(buf.get(), counts);
  x = buf.host();
  for (int64_t r = 0, off = 0; r < n; off += counts[size_t(r)], ++r) {
    for (int64_t i = 0; i < counts[size_t(r)]; ++i) ASSERT_EQ(x[size_t(off + i)], float(1000 * r + i));
  }
}

TEST(NcclMpi, BroadcastFromLastRank) {
  const int root = nccl->size() - 1;
  for (int64_t bytes : {int64_t(1), int64_t(13), int64_t(4099)}) {
    std::vector<unsigned char> x(size_t(bytes), 0);
    if (nccl->rank() == root) {
      for (int64_t i = 0; i < bytes; ++i) x[size_t(i)] = (unsigned char)(i * 31 + 7);
    }
    DeviceBuffer<unsigned char> buf(x);
    nccl->broadcast(buf.get(), bytes, root);
    x = buf.host();
    for (int64_t i = 0; i < bytes; ++i) ASSERT_EQ(x[size_t(i)], (unsigned char)(i * 31 + 7)) << i;
  }
}

// 0: runnable; 1: no CUDA device; 2: fewer GPUs than ranks on this host.
int64_t skip_reason(const Communicator& mpi) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) return 1;
  return devices < mpi.local_size() ? 2 : 0;
}

}  // namespace
}  // namespace cairn

int main(int argc, char** argv) {
  auto mpi = cairn::make_mpi_communicator(&argc, &argv, {.timeout_seconds = 20.0});
  int64_t skip = cairn::skip_reason(*mpi);
  mpi->all_reduce(&skip, 1, cairn::ReduceOp::max);  // every rank skips, or none
  if (skip) {
    if (mpi->rank() == 0) {
      std::printf("%s: skipped\n", skip == 1 ? "no CUDA device" : "needs one GPU per rank");
    }
    return 77;
  }
  int64_t failed = 0;
  {
    auto nccl = cairn::make_nccl_communicator(*mpi, {.timeout_seconds = 20.0});
    cairn::nccl = nccl.get();
    if (mpi->rank() != 0) GTEST_FLAG_SET(brief, true);  // other ranks print only their failures
    testing::InitGoogleTest(&argc, argv);
    failed = RUN_ALL_TESTS() != 0;
  }
  mpi->all_reduce(&failed, 1, cairn::ReduceOp::max);
  if (mpi->rank() == 0 && failed) std::fprintf(stderr, "nccl_mpi: a test failed on some rank\n");
  return failed ? 1 : 0;
}
