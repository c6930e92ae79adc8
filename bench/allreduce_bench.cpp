// cairn's gradient all-reduce (Communicator::all_reduce_start + wait, average, under the
// communicator's timeout: the path training uses) against a blocking MPI_Allreduce of the same
// buffer, size by size, one line per size and algorithm as soon as it is measured. The two are
// timed in alternation (cairn, MPI, cairn, ...) so a shared machine's load hits both alike; each
// size runs for about --seconds. Run under mpirun, e.g.
//   mpirun --allow-run-as-root --oversubscribe -np 2 build/bench/allreduce_bench --max-bytes 64Mi
// Columns: busbw = 2(n-1)/n · bytes / time (NCCL's convention, comparable across rank counts);
// vs_mpi = MPI's time / cairn's time; vs_link = the time the busiest host link needs at
// --link-gbps for the bytes a bandwidth-optimal all-reduce must move between hosts
// (2(H-1)/H · bytes, halved for a bf16 wire) / the measured time.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "util/error.h"

namespace {

struct Options {
  int64_t min_bytes = 1 << 20, max_bytes = int64_t(256) << 20;
  double seconds = 1.0, link_gbps = 0;
  int ranks_per_host = 0;
  int64_t ring_min_bytes = cairn::CommOptions{}.ring_min_bytes;
  std::vector<std::string> algos{"flat", "bf16", "hier", "hier-bf16"};
};

const char* kUsage =
    "usage: allreduce_bench [--min-bytes B] [--max-bytes B] [--seconds S] [--link-gbps G]\n"
    "                       [--algos flat,bf16,hier,hier-bf16] [--ranks-per-host P] [--ring-min-bytes B]\n"
    "  sizes go up by 4x from --min-bytes (default 1Mi) to --max-bytes (default 256Mi); K/M/Gi suffixes\n"
    "  --seconds: time per size and algorithm (default 1); --link-gbps: the host link cap for vs_link\n"
    "  hier: reduce within each host first; --ranks-per-host groups consecutive ranks as hosts\n"
    "  (default: the hosts MPI sees)\n"
    "  --ring-min-bytes: fp32 exchanges among more than 2 ranks go around a ring from B bytes up (0: always,\n"
    "  -1: never; default: the communicator's)\n";

int64_t parse_bytes(const std::string& s) {
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  const std::string unit(end);
  const double mult = unit.empty() ? 1 : unit == "Ki" || unit == "K" ? 1024 : unit == "Mi" || unit == "M" ? 1 << 20
                      : unit == "Gi" || unit == "G" ? double(1 << 30) : -1;
  if (!(v > 0) || mult < 0) throw cairn::Error("bad byte count '" + s + "' (e.g. 4096, 64Ki, 16Mi, 1Gi)");
  return int64_t(v * mult);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw cairn::Error(a + " needs a value");
      return argv[++i];
    };
    if (a == "--min-bytes") o.min_bytes = parse_bytes(value());
    else if (a == "--max-bytes") o.max_bytes = parse_bytes(value());
    else if (a == "--seconds") o.seconds = std::atof(value().c_str());
    else if (a == "--link-gbps") o.link_gbps = std::atof(value().c_str());
    else if (a == "--ranks-per-host") o.ranks_per_host = std::atoi(value().c_str());
    else if (a == "--ring-min-bytes") {
      const std::string v = value();
      o.ring_min_bytes = v.rfind('-', 0) == 0 ? -1 : v == "0" ? 0 : parse_bytes(v);
    }
    else if (a == "--algos") {
      o.algos.clear();
      std::stringstream ss(value());
      for (std::string x; std::getline(ss, x, ',');) {
        if (x != "flat" && x != "bf16" && x != "hier" && x != "hier-bf16") throw cairn::Error("unknown algorithm '" + x + "'");
        o.algos.push_back(x);
      }
    } else {
      throw cairn::Error("unknown option '" + a + "'\n" + kUsage);
    }
  }
  if (o.min_bytes > o.max_bytes || !(o.seconds > 0) || o.link_gbps < 0)
    throw cairn::Error(std::string("need --min-bytes <= --max-bytes, --seconds > 0, --link-gbps >= 0\n") + kUsage);
  return o;
}

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

double load_average() {
  std::ifstream f("/proc/loadavg");
  double l = -1;
  f >> l;
  return l;
}

// Times a() and b() alternately for about `seconds` (at least 3 pairs, after one warm-up pair).
// Returns the medians; every rank agrees on them (the max over ranks of each rank's median).
std::pair<double, double> time_pair(double seconds, const std::function<void()>& a, const std::function<void()>& b,
                                    int* iters) {
  auto timed = [](const std::function<void()>& f) {
    MPI_Barrier(MPI_COMM_WORLD);
    const double t0 = now();
    f();
    return now() - t0;
  };
  double pair = timed(a) + timed(b);
  MPI_Allreduce(MPI_IN_PLACE, &pair, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  *iters = int(std::clamp(seconds / pair, 3.0, 1000.0));
  std::vector<double> ta, tb;
  for (int i = 0; i < *iters; ++i) {
    ta.push_back(timed(a));
    tb.push_back(timed(b));
  }
  auto median = [](std::vector<double>& t) {
    std::nth_element(t.begin(), t.begin() + std::ptrdiff_t(t.size() / 2), t.end());
    return t[t.size() / 2];
  };
  double m[2] = {median(ta), median(tb)};
  MPI_Allreduce(MPI_IN_PLACE, m, 2, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return {m[0], m[1]};
}

}  // namespace

int main(int argc, char** argv) {
  // MPI first (parse errors are printed by rank 0 only); its own communicator, not the measured one.
  auto world = cairn::make_mpi_communicator(&argc, &argv);
  Options o;
  try {
    o = parse(argc, argv);
  } catch (const cairn::Error& e) {
    if (world->rank() == 0) std::fprintf(stderr, "allreduce_bench: %s\n", e.what());
    return 2;
  }
  cairn::CommOptions flat_options;
  flat_options.ring_min_bytes = o.ring_min_bytes;
  auto flat = cairn::make_mpi_communicator(&argc, &argv, flat_options);
  cairn::CommOptions hier_options = flat_options;
  hier_options.hierarchical = true;
  hier_options.ranks_per_host = o.ranks_per_host;
  auto hier = cairn::make_mpi_communicator(&argc, &argv, hier_options);
  const int n = flat->size();
  const int per_host = o.ranks_per_host > 0 ? o.ranks_per_host : flat->local_size();
  const int hosts = n / per_host;
  if (flat->rank() == 0) {
    std::printf("# all-reduce (float average; cairn's gradient path vs blocking MPI_Allreduce sum), %d ranks on %d "
                "host%s (%d per host), link %s, load average %.2f at start\n",
                n, hosts, hosts == 1 ? "" : "s", per_host,
                o.link_gbps > 0 ? (std::to_string(o.link_gbps) + " Gbit/s").c_str() : "not given", load_average());
    std::printf("%11s %-9s %5s %10s %9s %10s %9s %7s %7s\n", "bytes", "algo", "iters", "cairn_us", "busbw_GB/s",
                "mpi_us", "mpi_GB/s", "vs_mpi", "vs_link");
    std::fflush(stdout);
  }
  for (int64_t bytes = o.min_bytes; bytes <= o.max_bytes; bytes *= 4) {
    const int64_t count = bytes / 4;
    std::vector<float> x(size_t(count), 0.0f);  // zeros stay zeros under sums and averages
    for (const std::string& algo : o.algos) {
      cairn::Communicator& comm = algo.rfind("hier", 0) == 0 ? *hier : *flat;
      const bool bf16 = algo.find("bf16") != std::string::npos;
      const auto wire = bf16 ? cairn::WirePrecision::bf16 : cairn::WirePrecision::fp32;
      int iters = 0;
      const auto [t_cairn, t_mpi] = time_pair(
          o.seconds,
          [&] {
            cairn::Request r = comm.all_reduce_start(x.data(), count, cairn::ReduceOp::avg, wire);
            comm.wait(r);
          },
          [&] { MPI_Allreduce(MPI_IN_PLACE, x.data(), int(count), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD); }, &iters);
      const double bus = 2.0 * (n - 1) / n * double(bytes) / 1e9;
      if (flat->rank() == 0) {
        char link[16] = "-";
        if (o.link_gbps > 0 && hosts > 1) {
          const double ideal = 2.0 * (hosts - 1) / hosts * double(bytes) * (bf16 ? 0.5 : 1.0) / (o.link_gbps * 1e9 / 8);
          std::snprintf(link, sizeof link, "%.2f", ideal / t_cairn);
        }
        std::printf("%11lld %-9s %5d %10.1f %9.2f %10.1f %9.2f %7.2f %7s\n", (long long)bytes, algo.c_str(), iters,
                    t_cairn * 1e6, bus / t_cairn, t_mpi * 1e6, bus / t_mpi, t_mpi / t_cairn, link);
        std::fflush(stdout);
      }
    }
  }
  return 0;
}
