// FiraOptimizer over a ParamTable: low-rank state only on ParamRole::matrix rows, only owned rows
// move, state() round trip gives a bit-identical continuation (and every state tensor matters),
// state_bytes agrees with the memory report, and the report's numbers for the 60M preset.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "trainer/optim/fira.h"
#include "util/error.h"
#include "util/rng.h"

namespace cairn {
namespace {

ParamTable small_table() {
  ParamTable t;
  t.add("model.embed_tokens.weight", {20, 8}, ParamRole::embedding, -1);
  t.add("model.layers.0.self_attn.q_proj.weight", {12, 8}, ParamRole::matrix, 0);
  t.add("model.layers.0.mlp.down_proj.weight", {8, 12}, ParamRole::matrix, 0);
  t.add("model.layers.0.input_layernorm.weight", {8}, ParamRole::norm, 0);
  t.add("lm_head.weight", {20, 8}, ParamRole::lm_head, -1);
  return t;
}

std::vector<int> all_rows(const ParamTable& t) {
  std::vector<int> rows(t.rows().size());
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = int(i);
  return rows;
}

LowRankConfig small_config() {
  LowRankConfig c;
  c.rank = 3;
  c.update_gap = 2;
  return c;
}

std::vector<float> random_flat(Rng& rng, int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = rng.normal();
  return v;
}

// Runs `steps` steps with gradients drawn from grad_rng.
void run(FiraOptimizer& opt, std::vector<float>& params, Rng& grad_rng, int steps, int64_t total) {
  for (int k = 0; k < steps; ++k) {
    std::vector<float> g = random_flat(grad_rng, total);
    opt.step(params, g, 0.01f);
  }
}

void copy_state(FiraOptimizer& from, FiraOptimizer& to, const std::string& skip_kind = "") {
  auto src = from.state(), dst = to.state();
  ASSERT_EQ(src.size(), dst.size());
  for (size_t i = 0; i < src.size(); ++i) {
    ASSERT_EQ(src[i].name, dst[i].name);
    ASSERT_EQ(src[i].shape, dst[i].shape);
    if (!skip_kind.empty() && src[i].name.rfind(skip_kind + "/", 0) == 0) continue;
    std::copy(src[i].data.begin(), src[i].data.end(), dst[i].data.begin());
  }
  to.set_steps(from.steps());
}

TEST(FiraOptimizer, StateRoundTripIsBitIdenticalAndComplete) {
  for (bool residual : {true, false}) {
    ParamTable table = small_table();
    LowRankConfig cfg = small_config();
    cfg.residual = residual;
    Rng init(1);
    std::vector<float> p0 = random_flat(init, table.total());

    FiraOptimizer a(table, all_rows(table), cfg, PlainAdamConfig{}, cpu_backend());
    std::vector<float> pa = p0;
    Rng ga(2);
    run(a, pa, ga, 3, table.total());  // steps 0..2: refreshes at 0 and 2, limiter active

    // Resume into a fresh optimizer after step 3, then both continue across another refresh.
    FiraOptimizer b(table, all_rows(table), cfg, PlainAdamConfig{}, cpu_backend());
    copy_state(a, b);
    std::vector<float> pb = pa;
    Rng gb = ga;
    run(a, pa, ga, 4, table.total());
    run(b, pb, gb, 4, table.total());
    EXPECT_EQ(0, std::memcmp(pa.data(), pb.data(), pa.size() * sizeof(float))) << "residual " << residual;
    EXPECT_EQ(a.steps(), 7);

    // Every kind of state matters: leaving one out changes the continuation.
    std::vector<std::string> kinds = {"proj", "exp_avg", "exp_avg_sq"};
    if (residual) kinds.push_back("limiter_norm");
    for (const std::string& kind : kinds) {
      FiraOptimizer c(table, all_rows(table), cfg, PlainAdamConfig{}, cpu_backend());
      FiraOptimizer d(table, all_rows(table), cfg, PlainAdamConfig{}, cpu_backend());
      std::vector<float> pc = p0, pd = p0;
      Rng gc(2), gd(2);
      run(c, pc, gc, 3, table.total());
      copy_state(c, d, kind);
      pd = pc;
      gd = gc;
      // The next step (t = 3) is not a refresh step at gap 2, so a missing projection is not
      // silently recomputed.
      run(c, pc, gc, 1, table.total());
      run(d, pd, gd, 1, table.total());
      EXPECT_NE(pc, pd) << "state kind " << kind << " made no difference";
    }
  }
}

TEST(FiraOptimizer, StateNamesShapesAndBytes) {
  ParamTable table = small_table();
  LowRankConfig cfg = small_config();
  FiraOptimizer opt(table, all_rows(table), cfg, PlainAdamConfig{}, cpu_backend());
  EXPECT_EQ(opt.name(), "fira");
  int64_t floats = 0;
  bool saw_proj_right = false, saw_proj_left = false;
  for (const StateTensor& t : opt.state()) {
    floats += int64_t(t.data.size());
    if (t.name == "proj/model.layers.0.self_attn.q_proj.weight") {
      saw_proj_right = true;
      EXPECT_EQ(t.shape, (std::vector<int64_t>{3, 8}));
    }
    if (t.name == "proj/model.layers.0.mlp.down_proj.weight") {
      saw_proj_left = true;
      EXPECT_EQ(t.shape, (std::vector<int64_t>{8, 3}));
    }
    if (t.name == "exp_avg/model.layers.0.mlp.down_proj.weight") {
      EXPECT_EQ(t.shape, (std::vector<int64_t>{3, 12}));
    }
    if (t.name == "exp_avg/lm_head.weight") {
      EXPECT_EQ(t.shape, (std::vector<int64_t>{20, 8}));
    }
  }
  EXPECT_TRUE(saw_proj_right && saw_proj_left);
  EXPECT_EQ(opt.state_bytes(), 4 * floats);
  OptimizerStateMemory mem = optimizer_state_memory(table, OptimizerName::fira, cfg);
  EXPECT_EQ(mem.bytes(), opt.state_bytes());
  EXPECT_EQ(mem.matrix_rows, 2);
  // q: P 3×8 + 2·(12×3) + 1; down: P 8×3 + 2·(3×12) + 1.
  EXPECT_EQ(mem.matrix_floats, (24 + 72 + 1) * 2);
  EXPECT_EQ(mem.matrix_floats_adamw, 2 * 96 * 2);
  EXPECT_EQ(optimizer_state_memory(table, OptimizerName::adamw, cfg).bytes(), 4 * 2 * table.count());
}

TEST(FiraOptimizer, UpdatesOnlyOwnedRows) {
  ParamTable table = small_table();
  FiraOptimizer opt(table, {1, 3}, small_config(), PlainAdamConfig{}, cpu_backend());
  Rng rng(4);
  std::vector<float> p = random_flat(rng, table.total()), before = p;
  std::vector<float> g = random_flat(rng, table.total());
  opt.step(p, g, 0.01f);
  for (int i = 0; i < int(table.rows().size()); ++i) {
    const ParamRow& r = table.row(i);
    bool changed = !std::equal(p.begin() + r.offset, p.begin() + r.offset + r.numel, before.begin() + r.offset);
    EXPECT_EQ(changed, i == 1 || i == 3) << r.name;
  }
}

// The 60M preset (d 512, 8 layers, FFN 1376, vocab 32000, untied) with r = 128.
TEST(FiraOptimizer, MemoryReportFor60M) {
  ParamTable t;
  t.add("model.embed_tokens.weight", {32000, 512}, ParamRole::embedding, -1);
  for (int l = 0; l < 8; ++l) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    for (const char* n : {"q", "k", "v", "o"})
      t.add(p + "self_attn." + n + "_proj.weight", {512, 512}, ParamRole::matrix, l);
    t.add(p + "mlp.gate_proj.weight", {1376, 512}, ParamRole::matrix, l);
    t.add(p + "mlp.up_proj.weight", {1376, 512}, ParamRole::matrix, l);
    t.add(p + "mlp.down_proj.weight", {512, 1376}, ParamRole::matrix, l);
    t.add(p + "input_layernorm.weight", {512}, ParamRole::norm, l);
    t.add(p + "post_attention_layernorm.weight", {512}, ParamRole::norm, l);
  }
  t.add("model.norm.weight", {512}, ParamRole::norm, -1);
  t.add("lm_head.weight", {32000, 512}, ParamRole::lm_head, -1);
  LowRankConfig cfg;  // rank 128
  OptimizerStateMemory fira = optimizer_state_memory(t, OptimizerName::fira, cfg);
  OptimizerStateMemory adamw = optimizer_state_memory(t, OptimizerName::adamw, cfg);
  // Per layer: 4 × (128·512 + 2·512·128 + 1) + 2 × (128·512 + 2·1376·128 + 1) + (512·128 + 2·128·1376 + 1).
  const int64_t per_layer = 4 * (65536 + 131072 + 1) + 3 * (65536 + 352256 + 1);
  EXPECT_EQ(fira.matrix_floats, 8 * per_layer);
  EXPECT_EQ(fira.matrix_floats_adamw, adamw.matrix_floats);
  EXPECT_EQ(fira.other_floats, adamw.other_floats);
  EXPECT_EQ(fira.clamped_rows, 0);
  std::string line = describe_optimizer_state_memory(fira, OptimizerName::fira, cfg);
  EXPECT_NE(line.find("fira"), std::string::npos) << line;
}

}  // namespace
}  // namespace cairn
