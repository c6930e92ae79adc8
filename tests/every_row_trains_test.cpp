// Every parameter row of every linear-weight kind trains under every optimizer: after a few steps
// each row has moved and still has a nonzero gradient. (Not from the first step: SLTrain's A has
// none until B, 0 at start as in the paper, has moved once.) Weight decay is off, so a
// row can only move through its gradient (decay alone would shrink even a row no gradient reaches,
// as the low-rank baseline's factors were when B started at 0 and every projection was zero).
#include <gtest/gtest.h>

#include <cmath>
#include <ostream>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "tests/test_support.h"
#include "trainer/trainer.h"

namespace cairn {
namespace {

struct Variant {
  LinearKind kind;
  const char* optimizer;
};

void PrintTo(const Variant& v, std::ostream* os) { *os << linear_kind_name(v.kind) << " + " << v.optimizer; }

std::string variant_name(const ::testing::TestParamInfo<Variant>& info) {
  return str(linear_kind_name(info.param.kind), "_", info.param.optimizer);
}

class EveryRowTrains : public ScratchDirTest, public ::testing::WithParamInterface<Variant> {};

TEST_P(EveryRowTrains, EveryRowHasAGradientAndMoves) {
  const Variant v = GetParam();
  write_byte_dataset(path("data.h5"), 40, 4, random_letter_docs(5, 30, 30));
  TrainConfig c = tiny_train_config(path("data.h5"), path("run"));
  c.model.linear.kind = v.kind;
  if (v.kind != LinearKind::dense) c.model.linear.rank = 4;
  if (v.kind == LinearKind::sltrain) c.model.linear.density = 0.1f;
  c.optimizer.name = *choice_from_name<OptimizerName>(v.optimizer);
  c.optimizer.rank = 4;
  c.optimizer.update_gap = 2;
  c.optimizer.weight_decay = 0.0f;
  c.schedule.warmup = 0;
  c.schedule.lr = 1e-3f;
  auto comm = make_self_communicator();
  Trainer t(c, *comm);
  const ParamTable& table = t.model().params();
  const std::vector<float> before(t.model().param_span().begin(), t.model().param_span().end());

  for (int s = 0; s < 3; ++s) t.train_step();
  for (const ParamRow& r : table.rows()) {
    double sum_squares = 0;
    for (float g : row_span(std::span<const float>(t.model().grad_span()), r)) sum_squares += double(g) * g;
    EXPECT_GT(sum_squares, 0.0) << r.name << " has no gradient at the third step";
    int64_t moved = 0;
    const std::span<const float> now = row_span(std::span<const float>(t.model().param_span()), r);
    for (int64_t i = 0; i < r.numel; ++i) moved += now[size_t(i)] != before[size_t(r.offset + i)];
    EXPECT_GT(moved, 0) << r.name << " did not move in 3 steps";
  }
}

INSTANTIATE_TEST_SUITE_P(, EveryRowTrains,
                         ::testing::Values(Variant{LinearKind::dense, "adamw"}, Variant{LinearKind::dense, "fira"},
                                           Variant{LinearKind::dense, "galore"}, Variant{LinearKind::lowrank, "adamw"},
                                           Variant{LinearKind::lowrank, "fira"}, Variant{LinearKind::lowrank, "galore"},
                                           Variant{LinearKind::sltrain, "adamw"}, Variant{LinearKind::sltrain, "fira"},
                                           Variant{LinearKind::sltrain, "galore"}),
                         variant_name);

}  // namespace
}  // namespace cairn
