// A CPU stand-in for CUDA graphs (Backend::graph_begin/graph_end), for tests of code that brackets
// its steady-state work: the CPU backend, forwarded, with the CUDA backend's protocol — a key's
// first bracket runs eagerly, its second is recorded (each op with its arguments by value, as a
// stream capture bakes kernel parameters in) and then run, later ones replay the recording. So a
// caller whose key misses an argument that changed replays the stale one here, as on a GPU; and an
// op that returns data or reads the host inside a recording throws, as CUDA refuses it. Every op
// is logged by name ("graph" for a replay) and counted as one launch, a replay too.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "model/forwarding_backend.h"
#include "util/error.h"

namespace cairn {

class GraphEmulationBackend final : public ForwardingBackend {
 public:
  GraphEmulationBackend() : ForwardingBackend(cpu_backend()) {}
  std::string name() const override { return "cpu-graph-emulation"; }

  bool graph_begin(uint64_t key) const override {
    CAIRN_ASSERT(!recording_, "graph_begin inside a recording");
    if (const auto it = graphs_.find(key); it != graphs_.end()) {
      replay(it->second);
      return true;
    }
    if (seen_[key]++ == 0) return false;
    recording_ = true;
    tape_.clear();
    return false;
  }
  void graph_end(uint64_t key) const override {
    if (!recording_) return;
    recording_ = false;
    replay(graphs_[key] = std::move(tape_));
  }
  void* alloc(int64_t bytes) const override {
    refuse("alloc");
    return inner().alloc(bytes);
  }
  void release(void* p) const override {
    refuse("release");
    graphs_.clear();  // as the CUDA backend: a graph may use p
    seen_.clear();
    inner().release(p);
  }

  mutable std::vector<std::string> log;  // every op by name, "graph" for a replay
  mutable int64_t replays = 0;

 protected:
  void run_op(const char* op, const std::function<void()>& call) const override {
    if (recording_) {
      tape_.push_back(call);
      return;
    }
    log.push_back(op);
    call();
  }
  void host_op(const char* op) const override {
    refuse(op);
    log.push_back(op);
  }

 private:
  void refuse(const char* op) const {
    if (recording_) throw Error(str(op, " inside a graph capture: CUDA would refuse it, or replay stale host data"));
  }
  void replay(const std::vector<std::function<void()>>& tape) const {
    log.push_back("graph");
    ++replays;
    for (const auto& call : tape) call();
  }

  mutable bool recording_ = false;
  mutable std::vector<std::function<void()>> tape_;
  mutable std::map<uint64_t, std::vector<std::function<void()>>> graphs_;
  mutable std::map<uint64_t, int> seen_;
};

}  // namespace cairn
