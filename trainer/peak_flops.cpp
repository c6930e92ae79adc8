// Peak FLOP/s for MFU: the measurement and its per-host cache (see peak_flops.h).
#include "trainer/peak_flops.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/bf16.h"
#include "backend/cpu/gemm.h"
#include "util/error.h"

namespace cairn {

namespace {

// The math mode of `be` when it is one of cpu_backend()'s instances.
std::optional<CpuMath> cpu_math_of(const Backend& be) {
  for (CpuMath m : {CpuMath::fp32, CpuMath::bf16})
    if (&be == &cpu_backend(m)) return m;
  return std::nullopt;
}

struct Shape {
  int64_t M, N, K;
};
// Two square GEMMs and one shaped like a projection (2048 rows through a 512 → 1376 weight):
// GEMM kernels peak at different shapes, and the best of them is the machine's peak.
constexpr Shape kShapes[] = {{1024, 1024, 1024}, {2048, 2048, 2048}, {2048, 1376, 512}};

int64_t largest_operand() {
  int64_t elems = 0;
  for (const Shape& s : kShapes) elems = std::max({elems, s.M * s.K, s.K * s.N, s.M * s.N});
  return elems;
}

// The best FLOP/s of `gemm(shape)` over the shapes, each the best of several timings of enough
// repetitions to run for about 0.1 s. `finish` waits for queued work (a GPU backend's).
double best_rate(const std::function<void(const Shape&)>& gemm, const std::function<void()>& finish) {
  auto time = [&](const Shape& s, int64_t reps) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < reps; ++i) gemm(s);
    finish();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  constexpr double kTimingSeconds = 0.1;  // long enough that one preemption barely shows
  constexpr int kTimings = 5;             // best of: another process's burst only lowers some
  double best = 0;
  for (const Shape& s : kShapes) {
    time(s, 1);  // warm up: thread pools, page faults, library heuristics
    const double once = std::max(time(s, 1), 1e-7);
    const int64_t reps = std::clamp<int64_t>(int64_t(std::ceil(kTimingSeconds / once)), 1, 100000);
    for (int t = 0; t < kTimings; ++t)
      best = std::max(best, 2.0 * double(s.M) * double(s.N) * double(s.K) * double(reps) / time(s, reps));
  }
  return best;
}

// The best rate of any CPU GEMM library of the mode, on operands of its own type (no rounding).
double measure_cpu_gemms(CpuMath math) {
  const int64_t elems = largest_operand();
  const std::vector<float> a(size_t(elems), 0.5f), b(size_t(elems), 0.5f);
  const std::vector<uint16_t> ha(size_t(elems), bf16_round_nearest(0.5f)), hb = ha;
  std::vector<float> c(static_cast<size_t>(elems));
  double best = 0;
  for (const CpuGemm& g : cpu_gemms()) {
    if (g.math != math) continue;
    const void* pa = math == CpuMath::bf16 ? static_cast<const void*>(ha.data()) : a.data();
    const void* pb = math == CpuMath::bf16 ? static_cast<const void*>(hb.data()) : b.data();
    best = std::max(best, best_rate([&](const Shape& s) { g.run(c.data(), pa, pb, s.M, s.N, s.K, false, false, 1.0f, 0.0f); },
                                    [] {}));
  }
  return best;
}

}  // namespace

double measure_matmul_peak(const Backend& be) {
  if (const std::optional<CpuMath> math = cpu_math_of(be)) return measure_cpu_gemms(*math);
  const int64_t elems = largest_operand();
  DeviceArray<float> a(be, elems), b(be, elems), c(be, elems);
  const std::vector<float> host(static_cast<size_t>(elems), 0.5f);
  be.copy_to_device(a.data(), host.data(), elems * 4);
  be.copy_to_device(b.data(), host.data(), elems * 4);
  float sink = 0;
  // A GPU backend returns before its GEMMs end, so copying one result back waits for them.
  return best_rate([&](const Shape& s) { be.matmul(c.data(), a.data(), b.data(), s.M, s.N, s.K, false, false, 1.0f, 0.0f); },
                   [&] { be.copy_to_host(&sink, c.data(), 4); });
}

std::string peak_cache_path() {
  namespace fs = std::filesystem;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) return (fs::path(xdg) / "cairn" / "peak.json").string();
  if (const char* home = std::getenv("HOME"); home && *home)
    return (fs::path(home) / ".cache" / "cairn" / "peak.json").string();
  return "";
}

std::string peak_cache_key(const Backend& be, int threads) {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0) std::snprintf(host, sizeof host, "unknown-host");
  std::string key = str(host, " ", be.name(), " ", threads, " threads");
  // A CPU peak is the best of the mode's GEMM libraries: a build with other libraries measures anew
  // (named in sorted order: which one the backend prefers does not change the best).
  if (const std::optional<CpuMath> math = cpu_math_of(be)) {
    std::vector<std::string> names;
    for (const CpuGemm& g : cpu_gemms())
      if (g.math == *math) names.push_back(g.name);
    std::sort(names.begin(), names.end());
    std::string libs;
    for (const std::string& n : names) libs += (libs.empty() ? "" : "+") + n;
    key += str(" [", libs, "]");
  }
  // OpenBLAS's kernels differ by core type (the design notes: 175 against 300 GFLOP/s here).
  if (const char* core = std::getenv("OPENBLAS_CORETYPE"); core && *core) key += str(" ", core);
  return key;
}

namespace {

constexpr int kCacheFormat = 2;  // 2: CPU peaks are the best of the mode's GEMM libraries

// The cache's peaks object; empty when the file is missing, unreadable or not this format.
nlohmann::json read_peak_cache(const std::string& path) {
  std::ifstream in(path);
  if (!in) return nlohmann::json::object();
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object() || j.value("format", 0) != kCacheFormat || !j.contains("peaks") ||
      !j["peaks"].is_object())
    return nlohmann::json::object();
  return j["peaks"];
}

// Writes peaks to the cache (a temporary file renamed over it); "" on success, else the reason.
std::string write_peak_cache(const std::string& path, const nlohmann::json& peaks) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(fs::path(path).parent_path(), ec);
  if (ec) return str("cannot create '", fs::path(path).parent_path().string(), "': ", ec.message());
  const std::string tmp = str(path, ".tmp.", ::getpid());
  {
    std::ofstream out(tmp);
    out << nlohmann::json{{"format", kCacheFormat}, {"peaks", peaks}}.dump(1) << "\n";
    out.close();
    if (!out) {
      fs::remove(tmp, ec);
      return str("cannot write '", tmp, "'");
    }
  }
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    return str("cannot rename '", tmp, "' to '", path, "': ", ec.message());
  }
  return "";
}

}  // namespace

PeakFlops resolve_peak_flops(double configured, const Backend& be, int threads) {
  if (configured > 0) return {configured, "configured: training.peak_flops"};
  // A device's datasheet peak for its math mode is the number MFU is conventionally quoted against,
  // and timing it here would only read lower.
  if (const Backend::Peak device = be.peak_flops(); device.flops > 0) return {device.flops, device.source};
  const std::string path = peak_cache_path(), key = peak_cache_key(be, threads);
  nlohmann::json peaks = path.empty() ? nlohmann::json::object() : read_peak_cache(path);
  if (const auto it = peaks.find(key); it != peaks.end() && it->is_number()) {
    const double cached = it->get<double>();
    if (std::isfinite(cached) && cached > 0)
      return {cached, str("measured ", be.name(), " GEMM, cached in ", path, " for '", key, "'")};
  }
  const double measured = measure_matmul_peak(be);
  if (path.empty()) return {measured, str("measured ", be.name(), " GEMM; not cached: neither XDG_CACHE_HOME nor HOME is set")};
  peaks[key] = measured;
  const std::string failure = write_peak_cache(path, peaks);
  if (!failure.empty()) return {measured, str("measured ", be.name(), " GEMM; not cached: ", failure)};
  return {measured, str("measured ", be.name(), " GEMM now, cached in ", path, " for '", key, "'")};
}

}  // namespace cairn
