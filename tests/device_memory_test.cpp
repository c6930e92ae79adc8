// The trainer never touches backend memory from the host except through the backend: it trains,
// validates, checkpoints, resumes, grows and writes its weights on a GuardedBackend (a CPU backend
// whose memory faults outside its own ops), for every weight kind and optimizer — what a GPU run
// needs, checked without a GPU. Losses must equal the plain CPU backend's (same kernels). And a
// step makes the host wait for the device only where it needs a number back.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "backend/forwarding_backend.h"
#include "tests/graph_emulation.h"
#include "tests/guarded_backend.h"
#include "tests/test_support.h"
#include "trainer/run.h"
#include "trainer/trainer.h"

namespace cairn {
namespace {

struct Variant {
  const char* name;
  LinearKind kind;
  const char* optimizer;
};

class DeviceMemoryTest : public ScratchDirTest {
 protected:
  void SetUp() override {
    ScratchDirTest::SetUp();
    write_byte_dataset(path("data.h5"), 60, 6, random_letter_docs(3, 30, 30));
    comm_ = make_self_communicator();
  }
  TrainConfig config(const std::string& run) const {
    TrainConfig c = tiny_train_config(path("data.h5"), path(run));
    c.training.steps = 6;
    c.training.eval_every = 3;
    c.training.eval_windows = 4;
    c.checkpoint.every = 3;
    return c;
  }
  // The run `run` with a variant's weight kind and optimizer (ranks 4, projections refreshed every
  // 2 steps, SLTrain on the materialized path a GPU takes, on both backends).
  TrainConfig config(const std::string& run, const Variant& v) const {
    TrainConfig c = config(str(run, "_", v.name));
    c.model.linear.kind = v.kind;
    if (v.kind != LinearKind::dense) c.model.linear.rank = 4;
    if (v.kind == LinearKind::sltrain) {
      c.model.linear.density = 0.1f;
      c.model.linear.sltrain_path = SLTrainPathSetting::materialized;
    }
    c.optimizer.name = *choice_from_name<OptimizerName>(v.optimizer);
    c.optimizer.rank = 4;
    c.optimizer.update_gap = 2;
    return c;
  }
  std::unique_ptr<Communicator> comm_;
};

TEST_F(DeviceMemoryTest, EveryWeightKindAndOptimizerTrainsResumesAndSavesThroughTheBackend) {
  for (const Variant& v : {Variant{"dense_adamw", LinearKind::dense, "adamw"},
                           Variant{"lowrank_adamw", LinearKind::lowrank, "adamw"},
                           Variant{"sltrain_adamw", LinearKind::sltrain, "adamw"},
                           Variant{"dense_fira", LinearKind::dense, "fira"},
                           Variant{"dense_galore", LinearKind::dense, "galore"}}) {
    SCOPED_TRACE(v.name);
    const TrainConfig c = config("run", v);

    std::vector<float> want;
    {
      Trainer plain(c, *comm_);
      for (int s = 0; s < 6; ++s) want.push_back(plain.train_step().loss);
    }
    const GuardedBackend guarded;
    std::string ckpt;
    {
      Trainer t(c, *comm_, &guarded);
      for (int s = 0; s < 3; ++s) EXPECT_EQ(t.train_step().loss, want[size_t(s)]) << "step " << s + 1;
      ckpt = TrainingRun(t).save_checkpoint();
    }
    Trainer resumed(c, *comm_, &guarded);
    TrainingRun(resumed).load_checkpoint(ckpt);
    for (int s = 3; s < 6; ++s) EXPECT_EQ(resumed.train_step().loss, want[size_t(s)]) << "step " << s + 1;
  }
}

TEST_F(DeviceMemoryTest, AWholeRunWithValidationGrowthAndWeightsStaysOnTheBackend) {
  const GuardedBackend guarded;
  TrainConfig c = config("run_whole");
  c.training.steps = 8;
  c.growth.at_tokens = 4 * c.training.micro_batch * c.model.seq_len;  // G_stack after step 4
  c.growth.factor = 2;
  Trainer t(c, *comm_, &guarded);
  TrainingRun t_run(t);
  t_run.run();
  EXPECT_EQ(t.state().step, 8);
  EXPECT_EQ(t.model().config().n_layers, 4);  // grown from 2
  EXPECT_TRUE(std::filesystem::exists(path("run_whole/model.h5")));
}

// Records every op a step runs, to see where the host would wait for a device backend.
class OpRecorder final : public ForwardingBackend {
 public:
  OpRecorder() : ForwardingBackend(cpu_backend()) {}
  mutable std::vector<std::string> ops;

 protected:
  void enter(const char* op) const override { ops.push_back(op); }
};

// A GPU step runs ahead of the host except where it must return a number: the loss of each
// micro-step, read after its backward is queued (so the GPU never idles between forward and
// backward), and the gradient norm for clipping. Optimizer steps (AdamW, Fira's limiter, SLTrain's
// sparse values) stay on the device; only a projection refresh (an SVD, every update_gap steps) waits.
TEST_F(DeviceMemoryTest, AStepWaitsForTheDeviceOnlyForItsLossesAndGradientNorm) {
  for (const Variant& v : {Variant{"dense_adamw", LinearKind::dense, "adamw"},
                           Variant{"sltrain_adamw", LinearKind::sltrain, "adamw"},
                           Variant{"dense_fira", LinearKind::dense, "fira"},
                           Variant{"lowrank_galore", LinearKind::lowrank, "galore"}}) {
    SCOPED_TRACE(v.name);
    TrainConfig c = config("run_waits", v);
    c.training.grad_accum = 2;
    const OpRecorder recorder;
    Trainer t(c, *comm_, &recorder);
    t.train_step();  // refreshes the projections
    recorder.ops.clear();
    t.train_step();  // an ordinary step
    std::vector<std::string> waits;
    for (size_t i = 0; i < recorder.ops.size(); ++i) {
      const std::string& op = recorder.ops[i];
      if (op != "copy_to_host" && op != "sum_squares" && op != "top_singular_vectors") continue;
      waits.push_back(op);
      if (op == "copy_to_host") {
        ASSERT_GT(i, 0u);
        EXPECT_EQ(recorder.ops[i - 1], "embedding_backward") << "a loss read before the backward was queued";
      }
    }
    EXPECT_EQ(waits, (std::vector<std::string>{"copy_to_host", "copy_to_host", "sum_squares"}));
  }
}

// Launches of one eager micro-step (a key's first, or any on a backend without graphs): dense q/k/v
// and gate/up weights take one batched GEMM forward, and every dense projection one
// linear_backward (its weight and input gradients: in bf16 its operands rounded once); the LM
// head's logits, loss and gradients are three ops per chunk of logits; RoPE rotates q and k (dq and
// dk) in one op. 11 ops per layer forward, 9 backward, 11 more per micro-step with one chunk
// (uploads, embedding, final norm, head, loss read), 14 with two. Unfused, a layer took 35 ops.
TEST_F(DeviceMemoryTest, AMicroStepLaunchesOneGemmOpPerFusedProjection) {
  ModelConfig cfg = tiny_train_config(path("data.h5"), path("run_ops")).model;
  cfg.vocab_size = 64;
  const int64_t B = 2, N = B * cfg.seq_len, L = cfg.n_layers;
  std::vector<int32_t> in(static_cast<size_t>(N)), tg(static_cast<size_t>(N));
  for (int64_t i = 0; i < N; ++i) in[size_t(i)] = tg[size_t(i)] = int32_t(i % 7);
  for (int64_t chunks : {1, 2}) {
    SCOPED_TRACE(chunks);
    const OpRecorder recorder;
    LlamaModel m(cfg, recorder, B, (N + chunks - 1) / chunks);
    m.init_weights(1);
    recorder.ops.clear();
    m.forward_backward(in.data(), tg.data(), B, 1.0f);
    auto count = [&](const char* op) { return std::count(recorder.ops.begin(), recorder.ops.end(), op); };
    EXPECT_EQ(count("matmul_batched"), 2 * L);
    EXPECT_EQ(count("linear_backward"), 4 * L + chunks);
    EXPECT_EQ(count("matmul"), 2 * L + chunks);
    EXPECT_EQ(count("crossentropy_forward_backward"), chunks);
    EXPECT_EQ(count("rope_forward") + count("rope_backward"), 2 * L);
    EXPECT_EQ(int64_t(recorder.ops.size()), 20 * L + 8 + 3 * chunks);
  }
}

// The trainer on a backend that replays a micro-step as a graph (tests/graph_emulation.h): the
// losses equal the plain CPU's bit for bit for every weight kind (low-rank and SLTrain projections
// are not fused, the ops inside the graph are theirs), across validation and a checkpoint; and
// after the first two micro-steps (eager, then recorded) every one is a replay.
TEST_F(DeviceMemoryTest, AMicroStepReplaysAsAGraphWithTheSameLosses) {
  for (const Variant& v : {Variant{"dense_adamw", LinearKind::dense, "adamw"},
                           Variant{"lowrank_adamw", LinearKind::lowrank, "adamw"},
                           Variant{"sltrain_adamw", LinearKind::sltrain, "adamw"},
                           Variant{"dense_fira", LinearKind::dense, "fira"}}) {
    SCOPED_TRACE(v.name);
    TrainConfig c = config("run_graph", v);
    c.training.grad_accum = 2;
    std::vector<float> want;
    {
      Trainer plain(c, *comm_);
      for (int s = 0; s < 6; ++s) want.push_back(plain.train_step().loss);
    }
    const GraphEmulationBackend graphs;
    Trainer t(c, *comm_, &graphs);
    for (int s = 0; s < 6; ++s) EXPECT_EQ(t.train_step().loss, want[size_t(s)]) << "step " << s + 1;
    EXPECT_EQ(graphs.replays, 6 * 2 - 1);
  }
}

// A steady step with graphs: per micro-step two uploads, one graph, one loss read; then the
// gradient norm; the optimizer's ops. Nothing else waits for the device.
TEST_F(DeviceMemoryTest, AStepWithGraphsIsOneLaunchPerMicroStep) {
  TrainConfig c = config("run_graph_step");
  c.training.grad_accum = 2;
  const GraphEmulationBackend graphs;
  Trainer t(c, *comm_, &graphs);
  t.train_step();
  t.train_step();
  graphs.log.clear();
  t.train_step();
  const std::vector<std::string> micro = {"copy_to_device", "copy_to_device", "graph", "copy_to_host"};
  ASSERT_GE(graphs.log.size(), 2 * micro.size() + 1);
  auto at = std::find(graphs.log.begin(), graphs.log.end(), "copy_to_device");
  ASSERT_NE(at, graphs.log.end());
  EXPECT_EQ(std::vector<std::string>(at, at + 8), (std::vector<std::string>{
                                                      "copy_to_device", "copy_to_device", "graph", "copy_to_host",
                                                      "copy_to_device", "copy_to_device", "graph", "copy_to_host"}));
  EXPECT_EQ(*(at + 8), "sum_squares");
  EXPECT_EQ(std::count(graphs.log.begin(), graphs.log.end(), "copy_to_host"), 2);
  for (const std::string& op : graphs.log)
    EXPECT_TRUE(op != "matmul" && op != "matmul_batched" && op != "linear_backward") << op << " outside the graphs";
}

}  // namespace
}  // namespace cairn
