// The memory plan: it equals, byte for byte, what the model and the optimizer allocate in the
// backend (for every weight kind, optimizer and norm layout, the SLTrain support copies of an
// off-host backend, the peak of an in-run G_stack growth, a backend's own attention scratch); a run
// that does not fit is refused before anything is allocated, naming the largest micro_batch that
// fits and a grad_accum that keeps the global batch; `cairn train --dry-run` prints the plan, exits
// and leaves the run directory alone.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "comm/communicator.h"
#include "backend/forwarding_backend.h"
#include "tests/test_support.h"
#include "trainer/memory_plan.h"
#include "trainer/trainer.h"

namespace cairn {
namespace {

// The CPU backend, counting the bytes its alloc hands out: live now and at most.
class CountingBackend : public ForwardingBackend {
 public:
  CountingBackend() : ForwardingBackend(cpu_backend()) {}
  void* alloc(int64_t bytes) const override {
    void* p = ForwardingBackend::alloc(bytes);
    sizes_[p] = bytes;
    live_ += bytes;
    peak_ = std::max(peak_, live_);
    return p;
  }
  void release(void* p) const override {
    live_ -= sizes_.at(p);
    sizes_.erase(p);
    ForwardingBackend::release(p);
  }
  int64_t live() const { return live_; }
  int64_t peak() const { return peak_; }

 private:
  mutable std::map<void*, int64_t> sizes_;
  mutable int64_t live_ = 0, peak_ = 0;
};

// Also keeps backend-owned attention scratch as the CUDA backend does (its bf16 copies and cuDNN's
// workspace): one buffer, grown on the first forward at a shape to attention_workspace_bytes.
class AttentionScratchBackend final : public CountingBackend {
 public:
  ~AttentionScratchBackend() override {
    if (scratch_) release(scratch_);
  }
  int64_t attention_workspace_bytes(int64_t B, int64_t T, int64_t NH, int64_t HS) const override {
    return 6 * B * T * NH * HS + 1000;
  }
  void attention_forward(float* out, float* saved, const float* q, const float* k, const float* v, int64_t B,
                         int64_t T, int64_t NH, int64_t HS) const override {
    if (const int64_t bytes = attention_workspace_bytes(B, T, NH, HS); bytes > scratch_bytes_) {
      if (scratch_) release(scratch_);
      scratch_ = alloc(bytes);
      scratch_bytes_ = bytes;
    }
    CountingBackend::attention_forward(out, saved, q, k, v, B, T, NH, HS);
  }

 private:
  mutable void* scratch_ = nullptr;
  mutable int64_t scratch_bytes_ = 0;
};

// Sets an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) { setenv(name, value.c_str(), 1); }
  ~ScopedEnv() { unsetenv(name_); }

 private:
  const char* name_;
};

class MemoryPlanTest : public ScratchDirTest {
 protected:
  void SetUp() override {
    ScratchDirTest::SetUp();
    write_byte_dataset(path("data.h5"), 40, 4, random_letter_docs(9, 30, 30));
    comm_ = make_self_communicator();
  }
  TrainConfig config(LinearKind kind, OptimizerName optimizer) const {
    TrainConfig c = tiny_train_config(path("data.h5"), path("run"));
    c.model.linear.kind = kind;
    if (kind != LinearKind::dense) c.model.linear.rank = 4;
    if (kind == LinearKind::sltrain) c.model.linear.density = 0.1f;
    c.optimizer.name = optimizer;
    c.optimizer.rank = 4;
    c.optimizer.update_gap = 2;
    return c;
  }
  // Trains a 2-layer model past its growth to 4 layers (at step 4) on `be`; returns the plan of
  // the run as configured (the small model's).
  MemoryPlan plan_of_a_growth(const CountingBackend& be) const {
    TrainConfig c = config(LinearKind::dense, OptimizerName::adamw);
    c.training.steps = 8;
    c.growth.at_tokens = 3 * 2 * 16 + 1;  // crossed at step 4 (2 sequences of 16 tokens per step)
    c.growth.factor = 2;
    Trainer t(c, *comm_, &be);
    for (int s = 0; s < 5; ++s) t.train_step();
    EXPECT_EQ(t.config().model.n_layers, 4);
    TrainConfig small = t.config();
    small.model.n_layers = 2;
    return plan_memory(small, be, 1, 0, 2);
  }
  std::unique_ptr<Communicator> comm_;
};

TEST_F(MemoryPlanTest, PlanEqualsWhatTheModelAndOptimizerAllocate) {
  for (LinearKind kind : {LinearKind::dense, LinearKind::lowrank, LinearKind::sltrain})
    for (const char* optimizer : {"adamw", "fira"}) {
      SCOPED_TRACE(str(linear_kind_name(kind), " ", optimizer));
      const CountingBackend be;
      {
        Trainer t(config(kind, *choice_from_name<OptimizerName>(optimizer)), *comm_, &be);
        t.train_step();  // the first step makes SLTrain's support copies and Fira's first projection
        t.train_step();
        const MemoryPlan plan = plan_memory(t.config(), be, 1, 0, t.config().training.micro_batch);
        EXPECT_EQ(be.live(), plan.bytes(MemoryPlace::backend));
        EXPECT_EQ(t.model().activation_bytes(),
                  LlamaModel::activation_arena_bytes(LlamaModel::activation_sizes(t.config().model, be, 2)));
      }
      EXPECT_EQ(be.live(), 0);
    }
}

// Mix-LN's Post-LN layers keep ffn_out instead of ln1 and need one more backward buffer; LayerNorm
// Scaling allocates what Pre-LN does. The plan follows each layout.
TEST_F(MemoryPlanTest, PlanEqualsWhatTheModelAllocatesForEachNormLayout) {
  for (const char* layout : {"pre", "mix", "scaled"}) {
    SCOPED_TRACE(layout);
    TrainConfig c = config(LinearKind::dense, OptimizerName::adamw);
    c.model.norm_layout = std::string(layout) == "mix" ? NormLayout::mix : NormLayout::pre;
    c.model.mix_ln_alpha = 0.5;  // layer 0 of 2 Post-LN
    c.model.norm_scaling = std::string(layout) == "scaled";
    const CountingBackend be;
    ModelConfig resolved;  // with the dataset's vocabulary
    {
      Trainer t(c, *comm_, &be);
      t.train_step();
      EXPECT_EQ(be.live(), plan_memory(t.config(), be, 1, 0, t.config().training.micro_batch).bytes(MemoryPlace::backend));
      resolved = t.config().model;
    }
    std::map<std::string, int64_t> sizes;
    for (const auto& b : LlamaModel::activation_sizes(resolved, be, 2)) sizes[b.name] = b.count;
    const bool mix = c.model.norm_layout == NormLayout::mix;
    EXPECT_EQ(sizes.count("layers.0.ln1"), mix ? 0u : 1u);
    EXPECT_EQ(sizes.count("layers.0.ffn_out"), mix ? 1u : 0u);
    EXPECT_EQ(sizes.count("layers.1.ln1"), 1u);
    EXPECT_EQ(sizes.count("dffn_out"), mix ? 1u : 0u);
  }
}

// Grouped-query attention with an explicit head size (4 query heads of 12 sharing 2 key/value
// heads at width 32): q, k, v, o of their own shapes and the shared repeated-k/v scratch, with
// AdamW and with Fira (whose projections follow each matrix's shape), dense and low-rank.
TEST_F(MemoryPlanTest, PlanEqualsWhatAGroupedQueryModelAllocates) {
  for (LinearKind kind : {LinearKind::dense, LinearKind::lowrank})
    for (OptimizerName optimizer : {OptimizerName::adamw, OptimizerName::fira}) {
      SCOPED_TRACE(str(linear_kind_name(kind), " ", choice_name(optimizer)));
      TrainConfig c = config(kind, optimizer);
      c.model.n_heads = 4;
      c.model.n_kv_heads = 2;
      c.model.head_dim = 12;
      const CountingBackend be;
      {
        Trainer t(c, *comm_, &be);
        t.train_step();
        t.train_step();
        EXPECT_EQ(be.live(), plan_memory(t.config(), be, 1, 0, t.config().training.micro_batch).bytes(MemoryPlace::backend));
        std::map<std::string, int64_t> sizes;
        for (const auto& b : LlamaModel::activation_sizes(t.config().model, be, 2)) sizes[b.name] = b.count;
        EXPECT_EQ(sizes.at("kv_repeated"), 2 * 2 * 16 * 48);  // k and v for 4 heads of 12, 2·16 rows
        EXPECT_EQ(sizes.at("layers.0.qkv"), 2 * 16 * (48 + 2 * 24));
      }
      EXPECT_EQ(be.live(), 0);
    }
}

// The real CPU backend: no support copies, and the model's own buffers are the plan's model items.
TEST_F(MemoryPlanTest, OnTheCpuBackendSLTrainKeepsItsSupportOnTheHost) {
  TrainConfig c = config(LinearKind::sltrain, OptimizerName::adamw);
  c.model.vocab_size = 257;
  const MemoryPlan on_cpu = plan_memory(c, cpu_backend(), 1, 0, 2);
  const CountingBackend counting;
  const MemoryPlan off_host = plan_memory(c, counting, 1, 0, 2);
  const int64_t support = off_host.bytes(MemoryPlace::backend) - on_cpu.bytes(MemoryPlace::backend);
  EXPECT_GT(support, 0);
  bool listed = false;
  for (const auto& item : on_cpu.items)
    if (item.what == "SLTrain support indices") {
      EXPECT_EQ(item.place, MemoryPlace::host);
      EXPECT_EQ(item.bytes, support);
      listed = true;
    }
  EXPECT_TRUE(listed);
  LlamaModel model(c.model, cpu_backend(), 2);
  // Parameters and gradients (padding included), the arena, and AdamW's two moments per trainable value.
  EXPECT_EQ(8 * model.params().total() + model.activation_bytes() + 8 * model.params().count(),
            on_cpu.bytes(MemoryPlace::backend));
}

// In-run growth: the peak is while the grown model is built beside the small one and its optimizer.
TEST_F(MemoryPlanTest, PlanCoversThePeakOfAnInRunGrowth) {
  const CountingBackend be;
  EXPECT_EQ(be.peak(), plan_of_a_growth(be).bytes(MemoryPlace::backend));
}

// A backend's own attention scratch is planned once: with one model, and across a growth (the grown
// model runs attention at the same shape in the same buffer).
TEST_F(MemoryPlanTest, PlanCountsTheBackendsAttentionScratchOnce) {
  {
    const AttentionScratchBackend be;
    Trainer t(config(LinearKind::dense, OptimizerName::adamw), *comm_, &be);
    t.train_step();
    EXPECT_EQ(be.live(), plan_memory(t.config(), be, 1, 0, 2).bytes(MemoryPlace::backend));
  }
  const AttentionScratchBackend be;
  EXPECT_EQ(be.peak(), plan_of_a_growth(be).bytes(MemoryPlace::backend));
}

TEST_F(MemoryPlanTest, ARunThatDoesNotFitIsRefusedBeforeAllocatingWithTheLargestMicroBatch) {
  TrainConfig c = config(LinearKind::dense, OptimizerName::adamw);
  c.training.micro_batch = 8;
  c.training.grad_accum = 3;
  TrainConfig resolved = c;
  resolved.model.vocab_size = 257;
  // Room for exactly 5 sequences per micro-step: 5 does not divide 24 sequences per step, 4 does.
  const int64_t limit = plan_memory(resolved, cpu_backend(), 1, 0, 5).host_bytes();
  ASSERT_GT(plan_memory(resolved, cpu_backend(), 1, 0, 6).host_bytes(), limit);
  const ScopedEnv env("CAIRN_MEMORY_LIMIT_BYTES", std::to_string(limit));
  const CountingBackend be;
  const std::string msg = error_of([&] { Trainer t(c, *comm_, &be); });
  EXPECT_NE(msg.find("training.micro_batch = 8 needs"), std::string::npos) << msg;
  EXPECT_NE(msg.find("CAIRN_MEMORY_LIMIT_BYTES"), std::string::npos) << msg;
  EXPECT_NE(msg.find("the largest training.micro_batch that fits is 5"), std::string::npos) << msg;
  EXPECT_NE(msg.find("training.micro_batch = 4 with training.grad_accum = 6 keeps the global batch"), std::string::npos)
      << msg;
  EXPECT_EQ(be.peak(), 0) << "nothing may be allocated before the refusal";
  EXPECT_FALSE(std::filesystem::exists(path("run")));
}

TEST_F(MemoryPlanTest, EvenOneSequenceNotFittingSaysSoAndABadLimitIsAnError) {
  {
    const ScopedEnv env("CAIRN_MEMORY_LIMIT_BYTES", "1000");
    const std::string msg = error_of([&] { Trainer t(config(LinearKind::dense, OptimizerName::adamw), *comm_); });
    EXPECT_NE(msg.find("even training.micro_batch = 1 does not fit"), std::string::npos) << msg;
  }
  const ScopedEnv env("CAIRN_MEMORY_LIMIT_BYTES", "16G");
  EXPECT_NE(error_of([] { available_host_memory(); }).find("CAIRN_MEMORY_LIMIT_BYTES = '16G'"), std::string::npos);
}

TEST_F(MemoryPlanTest, AvailableHostMemoryIsAtMostTheMachines) {
  const AvailableMemory a = available_host_memory();
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  int64_t total_kb = 0;
  while (meminfo >> key >> total_kb && key != "MemTotal:") meminfo.ignore(1 << 20, '\n');
  ASSERT_EQ(key, "MemTotal:");
  EXPECT_GT(a.bytes, 0) << a.source;
  EXPECT_LE(a.bytes, total_kb * 1024) << a.source;
  EXPECT_NE(a.source.find("MemAvailable"), std::string::npos) << a.source;
}

class DryRunTest : public MemoryPlanTest {
 protected:
  int cairn(const std::string& args, std::string& output, const std::string& env = "") {
    return run_cairn(args, path("out.txt"), output, env);
  }
  std::string args() const {
    return "train --set data.train=" + path("data.h5") +
           " --set model.dim=32 --set model.n_layers=1 --set model.n_heads=2 --set model.ffn_dim=32"
           " --set model.seq_len=16 --set model.vocab_size=0 --set training.micro_batch=4 --set training.steps=3"
           " --set training.threads=1 --set output.plot=false --set output.run_dir=" + path("run") + " --dry-run";
  }
};

TEST_F(DryRunTest, PrintsThePlanAndExitsWithoutTouchingTheRunDirectory) {
  std::string out;
  EXPECT_EQ(cairn(args(), out), 0) << out;
  for (const char* want : {"memory plan per rank (training.micro_batch = 4)", "parameters", "logits and losses",
                           "optimizer state (adamw)", "host memory", "fits"})
    EXPECT_NE(out.find(want), std::string::npos) << want << " in:\n" << out;
  EXPECT_FALSE(std::filesystem::exists(path("run"))) << "--dry-run created the run directory";
  EXPECT_EQ(out.find("step 1/"), std::string::npos) << "--dry-run trained:\n" << out;

  EXPECT_EQ(cairn(args(), out, "CAIRN_MEMORY_LIMIT_BYTES=200000"), 1) << out;
  EXPECT_NE(out.find("does not fit: memory plan: training.micro_batch = 4 needs"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(path("run")));
}

}  // namespace
}  // namespace cairn
