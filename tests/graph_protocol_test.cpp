// What happens around a graph bracket (Backend::graph_begin/graph_end, Backend::run_graph) when
// something goes wrong, on the CPU stand-in that follows the CUDA backend's protocol
// (tests/graph_emulation.h): an op throwing inside a capture ends it, turns graphs off with one
// message and the micro-step still runs; an exception outside a capture is the caller's; a release
// inside a capture never throws; memory moving after a key's warm-up does not delay its capture;
// and the op profiler (bench/op_profile.h), whose sync reads the device, never captures.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "bench/op_profile.h"
#include "backend/forwarding_backend.h"
#include "model/llama.h"
#include "tests/cuda_cases.h"  // check_model_config, check_tokens
#include "tests/graph_emulation.h"

namespace cairn {
namespace {

constexpr int64_t kBatch = 2;

// Losses of `steps` micro-steps on alternating token batches, fixed weights.
std::vector<float> micro_steps(const Backend& be, int steps) {
  const ModelConfig cfg = check_model_config();
  LlamaModel m(cfg, be, kBatch);
  m.init_weights(3);
  const CheckTokens t[2] = {check_tokens(kBatch * cfg.seq_len, 1), check_tokens(kBatch * cfg.seq_len, 2)};
  std::vector<float> losses;
  for (int s = 0; s < steps; ++s) {
    m.zero_grads();
    losses.push_back(m.forward_backward(t[s % 2].inputs.data(), t[s % 2].targets.data(), kBatch, 1.0f));
  }
  return losses;
}

// The emulation with one op throwing once, in the bracket numbered `bracket` (1: a key's eager
// warm-up, 2: its capture).
class ThrowingOnce final : public ForwardingBackend {
 public:
  ThrowingOnce(const Backend& inner, int bracket) : ForwardingBackend(inner), bracket_(bracket) {}
  bool graph_begin(uint64_t key) const override {
    ++brackets_;
    return inner().graph_begin(key);
  }
  mutable bool thrown = false;

 protected:
  void run_op(const char* op, const std::function<void()>& call) const override {
    if (brackets_ == bracket_ && !thrown && std::string(op) == "swiglu_backward") {
      thrown = true;
      throw Error("swiglu_backward failed (injected)");
    }
    call();
  }

 private:
  int bracket_;
  mutable int brackets_ = 0;
};

int count(const std::vector<std::string>& log, const std::string& op) {
  return int(std::count(log.begin(), log.end(), op));
}

TEST(GraphProtocol, AnOpThrowingInsideACaptureRunsTheStepEagerlyAndTurnsGraphsOffOnce) {
  const std::vector<float> want = micro_steps(cpu_backend(), 6);
  const GraphEmulationBackend graphs;
  const ThrowingOnce failing(graphs, 2);
  testing::internal::CaptureStderr();
  std::vector<float> got;
  ASSERT_NO_THROW(got = micro_steps(failing, 6));
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_TRUE(failing.thrown);
  EXPECT_EQ(got, want);  // the same kernels: bit for bit, the failed capture's step included
  EXPECT_EQ(graphs.replays, 0) << "graphs stay off after the failed capture";
  EXPECT_EQ(count(graphs.log, "swiglu_backward"), 6 * 2) << "every step ran eagerly (2 layers each)";
  size_t messages = 0;
  for (size_t at = err.find("off for the rest of this process"); at != std::string::npos;
       at = err.find("off for the rest of this process", at + 1))
    ++messages;
  EXPECT_EQ(messages, 1u) << err;
  EXPECT_NE(err.find("swiglu_backward failed (injected)"), std::string::npos) << err;
}

TEST(GraphProtocol, AnExceptionOutsideACaptureIsTheCallersAndLeavesGraphsOn) {
  const GraphEmulationBackend graphs;
  const ThrowingOnce failing(graphs, 1);  // in the eager warm-up: nothing is being captured
  const ModelConfig cfg = check_model_config();
  LlamaModel m(cfg, failing, kBatch);
  m.init_weights(3);
  const CheckTokens t = check_tokens(kBatch * cfg.seq_len, 1);
  EXPECT_THROW(m.forward_backward(t.inputs.data(), t.targets.data(), kBatch, 1.0f), Error);
  for (int s = 0; s < 3; ++s) {
    m.zero_grads();
    m.forward_backward(t.inputs.data(), t.targets.data(), kBatch, 1.0f);
  }
  EXPECT_EQ(graphs.replays, 3) << "the key's second bracket is recorded and run, the later ones replayed";
}

TEST(GraphProtocol, AReleaseInsideACaptureIsDeferredAndTheOpsRerun) {
  const GraphEmulationBackend graphs;
  DeviceArray<float> a(graphs, 8), b(graphs, 8);
  a.zero();
  int runs = 0;
  const auto ops = [&] {
    ++runs;
    graphs.scale_inplace(a.data(), 2.0f, 8);
    if (runs == 2) b.reset();  // inside the capture: as a temporary's destructor during unwinding
  };
  graphs.run_graph(7, ops);  // warm-up, eager
  EXPECT_NO_THROW(graphs.run_graph(7, ops));
  EXPECT_EQ(runs, 3) << "the recording ended with memory released in it: its ops rerun eagerly";
  EXPECT_EQ(b.data(), nullptr);
  EXPECT_EQ(graphs.replays, 0);
}

// A release between a key's warm-up and its second bracket (the CUDA backend's scratch growing
// after the first micro-step) drops the graphs but not the warm-up: the second bracket captures,
// so a benchmark's warm-up of two steps leaves only replays for its timed steps.
TEST(GraphProtocol, MemoryMovingAfterTheWarmUpDoesNotDelayTheCapture) {
  const GraphEmulationBackend graphs;
  const ModelConfig cfg = check_model_config();
  LlamaModel m(cfg, graphs, kBatch);
  m.init_weights(3);
  const CheckTokens t = check_tokens(kBatch * cfg.seq_len, 1);
  m.forward_backward(t.inputs.data(), t.targets.data(), kBatch, 1.0f);
  DeviceArray<float>(graphs, 64).reset();  // as the scratch growing in the first step
  m.forward_backward(t.inputs.data(), t.targets.data(), kBatch, 1.0f);
  EXPECT_EQ(graphs.replays, 1) << "the second micro-step was captured (and run)";
  m.forward_backward(t.inputs.data(), t.targets.data(), kBatch, 1.0f);
  EXPECT_EQ(graphs.replays, 2) << "the third replayed";
}

// cuda_bench --profile 1: the profiler's sync reads the device after every op (a host op, which a
// capture refuses); it must bracket nothing, so every op runs and is timed.
TEST(OpProfile, NeverCapturesAGraph) {
  const GraphEmulationBackend graphs;
  DeviceArray<float> probe(graphs, 1);
  probe.zero();
  const OpProfile profiler(graphs, [&] { (void)graphs.sum_squares(probe.data(), 1); });
  std::vector<float> got;
  ASSERT_NO_THROW(got = micro_steps(profiler, 4));
  EXPECT_EQ(got, micro_steps(cpu_backend(), 4));
  EXPECT_EQ(graphs.replays, 0);
  EXPECT_NE(profiler.report(4).find("swiglu_backward"), std::string::npos) << profiler.report(4);
}

}  // namespace
}  // namespace cairn
