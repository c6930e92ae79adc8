// The MPI Communicator under mpirun (any number of ranks, see comm.cmake): every collective
// against a closed form or a straightforward reference, once with whole buffers and once with
// MPI calls limited to 7 elements so the chunked paths run. The job fails if any rank fails.
// `--scenario=timeout|kill` instead runs a failure (a hung or a killed rank) for expect_failure.sh.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <memory>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "comm/communicator.h"
#include "backend/bf16.h"

namespace cairn {
namespace {

Communicator* whole_comm = nullptr;    // default options
Communicator* chunked_comm = nullptr;  // max_count = 7
// Hierarchical, consecutive ranks grouped 2 per host when the rank count is even (else 1 per
// host): whole messages, and at most 7 elements per message.
Communicator* hier_comm = nullptr;
Communicator* hier_chunked_comm = nullptr;
// The ring schedule at every size (ring_min_bytes = 0; it needs more than 2 ranks in an exchange):
// flat, whole and in 7-element messages; hierarchical with all ranks on one "host" (the exchange
// within the host is the ring), and with one rank per host in 7-element messages (the exchange
// across hosts is the ring).
Communicator* ring_comm = nullptr;
Communicator* ring_chunked_comm = nullptr;
Communicator* hier_ring_local_comm = nullptr;
Communicator* hier_ring_across_chunked_comm = nullptr;

class CommMpi : public testing::TestWithParam<bool> {
 protected:
  Communicator& comm() { return GetParam() ? *chunked_comm : *whole_comm; }
  // Sizes around the chunk limit of 7, and larger ones where chunking is cheap.
  std::vector<int64_t> sizes() {
    if (GetParam()) return {0, 1, 6, 7, 8, 15, 100};
    return {0, 1, 7, 1000, 100003};
  }
};

TEST_P(CommMpi, KnowsRanksAndHosts) {
  Communicator& c = comm();
  EXPECT_GE(c.size(), 2);
  EXPECT_GE(c.rank(), 0);
  EXPECT_LT(c.rank(), c.size());
  EXPECT_EQ(c.local_size(), c.size());  // mpirun in CTest runs every rank on this host
  EXPECT_LT(c.local_rank(), c.local_size());
  EXPECT_EQ(threads_per_rank(c, 2 * c.size()), 2);
  EXPECT_EQ(threads_per_rank(c, 1), 1);
  std::vector<std::string> table = c.all_gather_strings(std::string(size_t(c.rank()), 'x') + c.host());
  ASSERT_EQ(int(table.size()), c.size());
  for (int r = 0; r < c.size(); ++r) EXPECT_EQ(table[size_t(r)], std::string(size_t(r), 'x') + c.host());
  c.barrier();
}

TEST_P(CommMpi, AllReduceFloatSumAvgMax) {
  Communicator& c = comm();
  const int n = c.size(), me = c.rank();
  for (int64_t len : sizes()) {
    std::vector<float> x(static_cast<size_t>(len));
    for (int64_t i = 0; i < len; ++i) x[size_t(i)] = float(me + i % 1000);
    c.all_reduce(x.data(), len, ReduceOp::sum);
    for (int64_t i = 0; i < len; ++i) {
      ASSERT_EQ(x[size_t(i)], float(n * (n - 1) / 2 + n * (i % 1000))) << "len " << len << " i " << i;
    }
    for (int64_t i = 0; i < len; ++i) x[size_t(i)] = float(me);
    c.all_reduce(x.data(), len, ReduceOp::avg);
    for (int64_t i = 0; i < len; ++i) ASSERT_EQ(x[size_t(i)], float(n - 1) / 2.0f) << "len " << len;
    for (int64_t i = 0; i < len; ++i) x[size_t(i)] = i % 2 ? float(me) : -float(me);
    c.all_reduce(x.data(), len, ReduceOp::max);
    for (int64_t i = 0; i < len; ++i) ASSERT_EQ(x[size_t(i)], i % 2 ? float(n - 1) : 0.0f);
  }
}

TEST_P(CommMpi, AllReduceDoubleAndInt64) {
  Communicator& c = comm();
  const int n = c.size(), me = c.rank();
  for (int64_t len : sizes()) {
    std::vector<double> d(size_t(len), 0.25 + me);
    c.all_reduce(d.data(), len, ReduceOp::sum);
    for (double v : d) ASSERT_EQ(v, 0.25 * n + n * (n - 1) / 2);
    std::vector<int64_t> t(size_t(len), (int64_t(1) << 40) + me);  // beyond float and int32
    c.all_reduce(t.data(), len, ReduceOp::sum);
    for (int64_t v : t) ASSERT_EQ(v, n * (int64_t(1) << 40) + n * (n - 1) / 2);
    std::fill(t.begin(), t.end(), -(int64_t(1) << 40) * me);
    c.all_reduce(t.data(), len, ReduceOp::max);
    for (int64_t v : t) ASSERT_EQ(v, 0);
    std::fill(d.begin(), d.end(), 3.0 * me);
    c.all_reduce(d.data(), len, ReduceOp::avg);
    for (double v : d) ASSERT_EQ(v, 1.5 * (n - 1));
  }
}

TEST_P(CommMpi, SeveralNonBlockingAllReducesInFlight) {
  Communicator& c = comm();
  const int n = c.size(), me = c.rank();
  std::vector<std::vector<float>> bufs;
  for (int64_t len : sizes()) bufs.emplace_back(size_t(len), float(me + 1));
  std::vector<double> dbuf(33, 3.0 * me);
  std::vector<Request> reqs;
  for (size_t b = 0; b < bufs.size(); ++b) {
    reqs.push_back(c.all_reduce_start(bufs[b].data(), int64_t(bufs[b].size()),
                                      b % 2 ? ReduceOp::avg : ReduceOp::sum));
  }
  Request dreq = c.all_reduce_start(dbuf.data(), int64_t(dbuf.size()), ReduceOp::avg);
  while (!c.test(dreq)) {  // completion seen by test(), then wait() must not scale again
  }
  c.wait(dreq);
  EXPECT_FALSE(dreq.pending());
  for (size_t b = reqs.size(); b-- > 0;) c.wait(reqs[b]);  // completion order need not match
  for (size_t b = 0; b < bufs.size(); ++b) {
    const float want = b % 2 ? float(n + 1) / 2.0f : float(n * (n + 1) / 2);
    for (float v : bufs[b]) ASSERT_EQ(v, want) << "buffer " << b;
  }
  for (double v : dbuf) ASSERT_EQ(v, 1.5 * (n - 1));
  // A Request dropped without wait() completes in its destructor.
  std::vector<float> last(5, 1.0f);
  { Request dropped = c.all_reduce_start(last.data(), 5, ReduceOp::sum); }
  for (float v : last) ASSERT_EQ(v, float(n));
}

// Uneven segments, one of them empty: rank r owns counts[r] elements.
std::vector<int64_t> uneven_counts(int n, bool chunked) {
  std::vector<int64_t> counts;
  for (int r = 0; r < n; ++r) counts.push_back(r == 1 ? 0 : (chunked ? 9 : 1001) + 5 * r);
  return counts;
}

TEST_P(CommMpi, ReduceScatterUnevenSegments) {
  Communicator& c = comm();
  const int n = c.size(), me = c.rank();
  const std::vector<int64_t> counts = uneven_counts(n, GetParam());
  const int64_t total = std::accumulate(counts.begin(), counts.end(), int64_t(0));
  const int64_t begin = std::accumulate(counts.begin(), counts.begin() + me, int64_t(0));
  for (ReduceOp op : {ReduceOp::sum, ReduceOp::avg, ReduceOp::max}) {
    std::vector<float> x(static_cast<size_t>(total));
    for (int64_t i = 0; i < total; ++i) x[size_t(i)] = float(1000 * me + i);
    c.reduce_scatter(x.data(), counts, op);
    // Reference: the reduction over ranks r of 1000·r + i.
    for (int64_t i = begin; i < begin + counts[size_t(me)]; ++i) {
      double sum = 0, max = -1e30;
      for (int r = 0; r < n; ++r) {
        sum += 1000.0 * r + double(i);
        max = std::max(max, 1000.0 * r + double(i));
      }
      const double want = op == ReduceOp::sum ? sum : op == ReduceOp::avg ? sum / n : max;
      ASSERT_EQ(x[size_t(i)], float(want)) << "op " << int(op) << " i " << i;
    }
  }
}

TEST_P(CommMpi, AllGatherUnevenSegments) {
  Communicator& c = comm();
  const int n = c.size(), me = c.rank();
  const std::vector<int64_t> counts = uneven_counts(n, GetParam());
  const int64_t total = std::accumulate(counts.begin(), counts.end(), int64_t(0));
  std::vector<float> x(size_t(total), -1.0f);
  for (int64_t i = 0, r = 0, off = 0; r < n; off += counts[size_t(r)], ++r) {
    for (i = 0; i < counts[size_t(r)]; ++i) {
      if (r == me) x[size_t(off + i)] = float(1000 * r + i);
    }
  }
  c.all_gather(x.data(), counts);
  for (int64_t r = 0, off = 0; r < n; off += counts[size_t(r)], ++r) {
    for (int64_t i = 0; i < counts[size_t(r)]; ++i) ASSERT_EQ(x[size_t(off + i)], float(1000 * r + i));
  }
}

TEST_P(CommMpi, ReduceScatterThenAllGatherIsAllReduce) {
  Communicator& c = comm();
  const std::vector<int64_t> counts = uneven_counts(c.size(), GetParam());
  const int64_t total = std::accumulate(counts.begin(), counts.end(), int64_t(0));
  std::vector<float> a(static_cast<size_t>(total)), b;
  for (int64_t i = 0; i < total; ++i) a[size_t(i)] = float((i * 7 + c.rank() * 13) % 64);
  b = a;
  c.reduce_scatter(a.data(), counts, ReduceOp::sum);
  c.all_gather(a.data(), counts);
  c.all_reduce(b.data(), total, ReduceOp::sum);
  EXPECT_EQ(a, b);
}

TEST_P(CommMpi, BroadcastFromLastRank) {
  Communicator& c = comm();
  const int root = c.size() - 1;
  for (int64_t bytes : {int64_t(0), int64_t(1), int64_t(13), int64_t(4099)}) {
    std::vector<unsigned char> x(size_t(bytes), 0);
    if (c.rank() == root) {
      for (int64_t i = 0; i < bytes; ++i) x[size_t(i)] = (unsigned char)(i * 31 + 7);
    }
    c.broadcast(x.data(), bytes, root);
    for (int64_t i = 0; i < bytes; ++i) ASSERT_EQ(x[size_t(i)], (unsigned char)(i * 31 + 7)) << i;
  }
}

// Every float all-reduce path: flat and hierarchical, pairwise and ring, whole and in 7-element
// messages.
class FloatAllReduce : public testing::TestWithParam<int> {
 protected:
  Communicator& comm() { return *paths()[size_t(GetParam())].comm; }
  // Ranks per host of a hierarchical path (0: flat).
  int per_host() { return paths()[size_t(GetParam())].per_host; }
  std::vector<int64_t> sizes() { return {0, 1, 3, 7, 15, 1000, 100003}; }

 private:
  struct Path {
    Communicator* comm;
    int per_host;
  };
  std::vector<Path> paths() {
    const int n = whole_comm->size(), pairs = n % 2 == 0 ? 2 : 1;
    return {{whole_comm, 0}, {chunked_comm, 0}, {hier_comm, pairs}, {hier_chunked_comm, pairs},
            {ring_comm, 0}, {ring_chunked_comm, 0}, {hier_ring_local_comm, n}, {hier_ring_across_chunked_comm, 1}};
  }
};

// Non-blocking sums and averages of several buffers in flight, against the closed forms.
TEST_P(FloatAllReduce, SumsAndAveragesInFlight) {
  Communicator& c = comm();
  const int n = c.size(), me = c.rank();
  std::vector<std::vector<float>> bufs;
  std::vector<Request> reqs;
  for (int64_t len : sizes()) {
    bufs.emplace_back(size_t(len));
    for (int64_t i = 0; i < len; ++i) bufs.back()[size_t(i)] = float(me + i % 1000);
  }
  for (size_t b = 0; b < bufs.size(); ++b)
    reqs.push_back(c.all_reduce_start(bufs[b].data(), int64_t(bufs[b].size()), b % 2 ? ReduceOp::avg : ReduceOp::sum));
  for (size_t b = reqs.size(); b-- > 0;) c.wait(reqs[b]);
  for (size_t b = 0; b < bufs.size(); ++b) {
    for (size_t i = 0; i < bufs[b].size(); ++i) {
      const float sum = float(n * (n - 1) / 2 + n * int64_t(i % 1000));
      ASSERT_EQ(bufs[b][i], b % 2 ? sum * (1.0f / float(n)) : sum) << "buffer " << b << " i " << i;
    }
  }
}

// A bf16 wire rounds each rank's contribution once and sums in fp32: result = bf16(Σ bf16(x_r))
// exactly (the inputs are chosen so those fp32 sums are exact), the same on every rank. A bf16 sum
// passed from rank to rank would round the partial sums too, and differ.
TEST_P(FloatAllReduce, Bf16WireSumsInFp32) {
  Communicator& c = comm();
  const int host_ranks = per_host();
  const int n = c.size(), me = c.rank();
  for (int64_t len : sizes()) {
    for (ReduceOp op : {ReduceOp::sum, ReduceOp::avg}) {
      auto value = [](int r, int64_t i) { return 1.0f + float(i % 128) / 128.0f + float(r) / 1024.0f; };
      std::vector<float> x(static_cast<size_t>(len));
      for (int64_t i = 0; i < len; ++i) x[size_t(i)] = value(me, i);
      Request req = c.all_reduce_start(x.data(), len, op, WirePrecision::bf16);
      c.wait(req);
      std::vector<float> mine(x);
      whole_comm->broadcast(mine.data(), len * 4, 0);  // (the chunked ones would send 7 bytes a message)
      EXPECT_EQ(x, mine) << "ranks disagree, len " << len;
      for (int64_t i = 0; i < len; ++i) {
        float want = 0;
        if (host_ranks > 0) {
          // Each host's fp32 sum is the contribution that is rounded (unless there is one host).
          for (int h = 0; h < n / host_ranks; ++h) {
            float host = 0;
            for (int r = h * host_ranks; r < (h + 1) * host_ranks; ++r) host += value(r, i);
            want += n / host_ranks == 1 ? host : bf16_to_float(bf16_round_nearest(host));
          }
        } else {
          for (int r = 0; r < n; ++r) want += bf16_to_float(bf16_round_nearest(value(r, i)));
        }
        if (op == ReduceOp::avg) want *= 1.0f / float(n);
        if (host_ranks == 0 || n / host_ranks > 1) want = bf16_to_float(bf16_round_nearest(want));
        ASSERT_EQ(x[size_t(i)], want) << "len " << len << " i " << i << " op " << int(op);
      }
    }
  }
}

// Sums are added in a fixed order, the same in every run: element i of chunk c (elements
// [len·c/g, len·(c+1)/g)) is x_c + x_{c-1} + ... + x_{c-g+1} by pairwise exchange (its owner c
// adds the others' copies in step order) and ((x_c + x_{c+1}) + ...) + x_{c-1} around the ring; at
// 4 ranks the ring's place is taken by pairs: (x_o + x_{o^1}) + (x_{o^2} + x_{o^3}), where o owns
// the element (half h of the buffer, quarter q of that half: o = 2q + h).
// The inputs make fp32 rounding depend on the order, so a different order fails.
TEST_P(FloatAllReduce, SumsInTheDocumentedOrder) {
  if (per_host() != 0) GTEST_SKIP() << "flat paths only (hierarchical sums are ordered by host first)";
  Communicator& c = comm();
  const int g = c.size(), me = c.rank();
  const bool ring = GetParam() >= 4 && g > 2;
  // Full 24-bit mantissas at magnitudes 2^-10, 1 and 2^10: most sums round differently by order.
  auto value = [](int r, int64_t i) {
    const uint32_t h = (uint32_t(r) * 2654435761u ^ (uint32_t(i) * 40503u + 12345u)) * 2246822519u;
    return std::ldexp(1.0f + float(h >> 9) / float(1 << 23), int((h >> 3) % 3) * 10 - 10);
  };
  for (int64_t len : {int64_t(5), int64_t(1000), int64_t(100003)}) {
    std::vector<float> x(static_cast<size_t>(len));
    for (int64_t i = 0; i < len; ++i) x[size_t(i)] = value(me, i);
    c.all_reduce(x.data(), len, ReduceOp::sum);
    int64_t order_matters = 0;
    if (ring && g == 4) {
      for (int h = 0; h < 2; ++h) {
        const int64_t hb = len * h / 2, he = len * (h + 1) / 2;
        for (int q = 0; q < 2; ++q)
          for (int64_t i = hb + (he - hb) * q / 2; i < hb + (he - hb) * (q + 1) / 2; ++i) {
            const int o = 2 * q + h;
            const float want = (value(o, i) + value(o ^ 1, i)) + (value(o ^ 2, i) + value(o ^ 3, i));
            const float other = ((value(0, i) + value(1, i)) + value(2, i)) + value(3, i);
            order_matters += want != other;
            ASSERT_EQ(x[size_t(i)], want) << "len " << len << " i " << i << " owner " << o;
          }
      }
      if (len > 5) {
        EXPECT_GT(order_matters, 0) << "inputs whose sum does not depend on the order";
      }
      continue;
    }
    for (int ch = 0; ch < g; ++ch) {
      std::vector<int> order;  // ranks in the order their values are added
      for (int k = 0; k < g; ++k) order.push_back(ring ? (ch + k) % g : (ch - k + g) % g);
      for (int64_t i = len * ch / g; i < len * (ch + 1) / g; ++i) {
        float want = 0, reverse = 0;
        for (size_t k = 0; k < order.size(); ++k) {
          want += value(order[k], i);
          reverse += value(order[order.size() - 1 - k], i);
        }
        order_matters += want != reverse;
        ASSERT_EQ(x[size_t(i)], want) << "len " << len << " i " << i << " chunk " << ch;
      }
    }
    if (g > 2 && len > 5) {
      EXPECT_GT(order_matters, 0) << "inputs whose sum does not depend on the order";
    }
  }
}

std::string float_path_name(const testing::TestParamInfo<int>& p) {
  const char* names[] = {"flat", "flat_chunked", "hierarchical", "hierarchical_chunked",
                         "ring", "ring_chunked", "hierarchical_ring_local", "hierarchical_ring_across_chunked"};
  return names[p.param];
}

INSTANTIATE_TEST_SUITE_P(FlatAndHierarchical, FloatAllReduce, testing::Range(0, 8), float_path_name);

INSTANTIATE_TEST_SUITE_P(WholeAndChunked, CommMpi, testing::Bool(),
                         [](const testing::TestParamInfo<bool>& p) { return p.param ? "chunked" : "whole"; });

// One rank stops answering (sleeps) while the others wait in an all-reduce: they must end the job.
int run_timeout_scenario(int* argc, char*** argv) {
  auto comm = make_mpi_communicator(argc, argv, {.timeout_seconds = 2.0});
  comm->barrier();
  float x = 1.0f;
  if (comm->rank() == comm->size() - 1) std::this_thread::sleep_for(std::chrono::seconds(60));
  comm->all_reduce(&x, 1, ReduceOp::sum);
  return 0;  // not reached by the waiting ranks; the sleeper is ended by MPI_Abort
}

// One rank dies by SIGKILL between collectives; the timeout is long, so it is mpirun that must end
// the job.
int run_kill_scenario(int* argc, char*** argv) {
  auto comm = make_mpi_communicator(argc, argv, {.timeout_seconds = 300.0});
  std::vector<float> x(1024, 1.0f);
  comm->all_reduce(x.data(), 1024, ReduceOp::sum);
  if (comm->rank() == comm->size() - 1) std::raise(SIGKILL);
  for (int step = 0; step < 1000000; ++step) comm->all_reduce(x.data(), 1024, ReduceOp::avg);
  return 0;
}

}  // namespace
}  // namespace cairn

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--scenario=timeout") == 0) return cairn::run_timeout_scenario(&argc, &argv);
    if (std::strcmp(argv[i], "--scenario=kill") == 0) return cairn::run_kill_scenario(&argc, &argv);
  }
  // A failed ASSERT returns early on one rank and leaves the others in a collective: the short
  // timeout turns that into a quick failure.
  auto whole = cairn::make_mpi_communicator(&argc, &argv, {.timeout_seconds = 20.0});
  auto chunked = cairn::make_mpi_communicator(&argc, &argv, {.timeout_seconds = 20.0, .max_count = 7});
  const int per_host = whole->size() % 2 == 0 ? 2 : 1;
  auto hier = cairn::make_mpi_communicator(&argc, &argv, {.timeout_seconds = 20.0, .hierarchical = true,
                                                          .ranks_per_host = per_host});
  auto hier_chunked = cairn::make_mpi_communicator(
      &argc, &argv, {.timeout_seconds = 20.0, .max_count = 7, .hierarchical = true, .ranks_per_host = per_host});
  const int n = whole->size();
  auto ring = cairn::make_mpi_communicator(&argc, &argv, {.timeout_seconds = 20.0, .ring_min_bytes = 0});
  auto ring_chunked =
      cairn::make_mpi_communicator(&argc, &argv, {.timeout_seconds = 20.0, .max_count = 7, .ring_min_bytes = 0});
  auto hier_ring_local = cairn::make_mpi_communicator(
      &argc, &argv, {.timeout_seconds = 20.0, .hierarchical = true, .ranks_per_host = n, .ring_min_bytes = 0});
  auto hier_ring_across_chunked = cairn::make_mpi_communicator(
      &argc, &argv,
      {.timeout_seconds = 20.0, .max_count = 7, .hierarchical = true, .ranks_per_host = 1, .ring_min_bytes = 0});
  cairn::ring_comm = ring.get();
  cairn::ring_chunked_comm = ring_chunked.get();
  cairn::hier_ring_local_comm = hier_ring_local.get();
  cairn::hier_ring_across_chunked_comm = hier_ring_across_chunked.get();
  cairn::whole_comm = whole.get();
  cairn::chunked_comm = chunked.get();
  cairn::hier_comm = hier.get();
  cairn::hier_chunked_comm = hier_chunked.get();
  if (whole->rank() != 0) GTEST_FLAG_SET(brief, true);  // other ranks print only their failures
  testing::InitGoogleTest(&argc, argv);
  int64_t failed = RUN_ALL_TESTS() != 0;
  whole->all_reduce(&failed, 1, cairn::ReduceOp::max);
  if (whole->rank() == 0 && failed) std::fprintf(stderr, "comm_mpi: a test failed on some rank\n");
  return failed ? 1 : 0;
}
