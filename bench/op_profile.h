// Where a step's time goes, op by op: a backend wrapper (ForwardingBackend) that sums the wall
// time of every op it forwards. For an asynchronous backend (CUDA) pass `sync`, which must wait
// for the device (e.g. cudaDeviceSynchronize): it runs before and after each op, so the shares are
// right but the total includes launch gaps that normal runs overlap; measure throughput without it.
// It never captures graphs: its sync returns data to the host, which a capture refuses, and a
// replayed graph would hide the ops it times.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "backend/forwarding_backend.h"

namespace cairn {

class OpProfile final : public ForwardingBackend {
 public:
  explicit OpProfile(const Backend& inner, std::function<void()> sync = {})
      : ForwardingBackend(inner), sync_(std::move(sync)) {}

  void reset() const { totals_.clear(); }

  // Every op runs (and is timed) on its own: no bracket is captured or replayed.
  bool graph_begin(uint64_t) const override { return false; }
  void graph_end(uint64_t) const override {}
  bool graph_abort(const std::string&) const override { return false; }

  // One line per op, largest first: calls, total ms, ms per step, share of the ops' total.
  std::string report(int steps) const {
    std::vector<std::pair<std::string, Total>> rows(totals_.begin(), totals_.end());
    std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.seconds > b.second.seconds; });
    double all = 0;
    for (const auto& r : rows) all += r.second.seconds;
    std::string out;
    char line[160];
    for (const auto& [op, t] : rows) {
      std::snprintf(line, sizeof line, "  %-32s %8lld calls %10.2f ms %9.3f ms/step %6.1f%%\n", op.c_str(),
                    (long long)t.calls, 1e3 * t.seconds, 1e3 * t.seconds / std::max(steps, 1), 100 * t.seconds / all);
      out += line;
    }
    std::snprintf(line, sizeof line, "  %-32s %8s       %10.2f ms %9.3f ms/step\n", "all ops", "", 1e3 * all,
                  1e3 * all / std::max(steps, 1));
    return out + line;
  }

 protected:
  void enter(const char*) const override {
    if (sync_) sync_();
    start_ = std::chrono::steady_clock::now();
  }
  void leave(const char* op) const override {
    if (sync_) sync_();
    Total& t = totals_[op];
    t.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    ++t.calls;
  }

 private:
  struct Total {
    double seconds = 0;
    int64_t calls = 0;
  };
  std::function<void()> sync_;
  mutable std::map<std::string, Total> totals_;
  mutable std::chrono::steady_clock::time_point start_;
};

}  // namespace cairn
