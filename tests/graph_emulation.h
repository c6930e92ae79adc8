// A CPU stand-in for CUDA graphs (Backend::graph_begin/graph_end), for tests of code that brackets
// its steady-state work: the CPU backend, forwarded, with the CUDA backend's protocol — a key's
// first bracket runs eagerly, its second is recorded (each op with its arguments by value, as a
// stream capture bakes kernel parameters in) and then run, later ones replay the recording. So a
// caller whose key misses an argument that changed replays the stale one here, as on a GPU; and an
// op that returns data or reads the host inside a recording throws, as CUDA refuses it. Every op
// is logged by name ("graph" for a replay) and counted as one launch, a replay too. Failures as
// on the GPU: an exception out of a recording ends it (graph_abort: graphs off, one message on
// stderr), and a release inside one is deferred to its end, never thrown.
#pragma once

#include <cstdio>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "backend/forwarding_backend.h"
#include "util/error.h"

namespace cairn {

class GraphEmulationBackend final : public ForwardingBackend {
 public:
  GraphEmulationBackend() : ForwardingBackend(cpu_backend()) {}
  std::string name() const override { return "cpu-graph-emulation"; }

  bool graph_begin(uint64_t key) const override {
    CAIRN_ASSERT(!recording_, "graph_begin inside a recording");
    if (off_) return false;
    if (const auto it = graphs_.find(key); it != graphs_.end()) {
      replay(it->second);
      return true;
    }
    if (seen_[key]++ == 0) return false;
    recording_ = unrun_ = true;
    tape_.clear();
    return false;
  }
  void graph_end(uint64_t key) const override {
    if (!recording_) return;
    recording_ = false;
    if (release_deferred()) throw Error("memory was released inside a graph capture: the graph would use freed memory");
    replay(graphs_[key] = std::move(tape_));
    unrun_ = false;
  }
  bool graph_abort(const std::string& why) const override {
    if (recording_) {
      recording_ = false;
      tape_.clear();
      release_deferred();
    }
    if (!unrun_) return false;
    unrun_ = false;
    off_ = true;
    graphs_.clear();
    std::fprintf(stderr, "CUDA graphs (emulated): off for the rest of this process: %s\n", why.c_str());
    return true;
  }
  void* alloc(int64_t bytes) const override {
    refuse("alloc");
    return inner().alloc(bytes);
  }
  void release(void* p) const override {
    if (recording_) {  // as the CUDA backend: released when the recording ends
      deferred_.push_back(p);
      return;
    }
    graphs_.clear();  // as the CUDA backend: a graph may use p (the keys' warm-ups still count)
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
  // Releases what came during a recording; true when there was any.
  bool release_deferred() const {
    std::vector<void*> ps;
    ps.swap(deferred_);
    for (void* p : ps) release(p);
    return !ps.empty();
  }
  void replay(const std::vector<std::function<void()>>& tape) const {
    log.push_back("graph");
    ++replays;
    for (const auto& call : tape) call();
  }

  mutable bool recording_ = false, unrun_ = false, off_ = false;
  mutable std::vector<void*> deferred_;
  mutable std::vector<std::function<void()>> tape_;
  mutable std::map<uint64_t, std::vector<std::function<void()>>> graphs_;
  mutable std::map<uint64_t, int> seen_;
};

}  // namespace cairn
