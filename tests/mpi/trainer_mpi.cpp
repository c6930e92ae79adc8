// Data-parallel training under mpirun (see trainer.cmake): N ranks with micro-batch b match one
// rank with micro-batch N·b, ZeRO-1 matches replicated optimizer state bit for bit, and the
// cross-rank parameter check names a deliberately perturbed parameter, validation gives one rank's
// value, and a checkpoint write that fails on one rank fails on every rank (none hangs). With
// --device=cuda the same
// tests run on one GPU per rank with NCCL (exit 77, skipped, without a GPU for every local rank).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <memory>
#include <sstream>

#include <cstdio>

#include "comm/communicator.h"
#include "backend/backend.h"
#include "tests/test_support.h"
#include "trainer/checkpoint.h"
#include "trainer/run.h"
#include "trainer/trainer.h"
#include "util/error.h"

namespace cairn {
namespace {

Communicator* world = nullptr;
Device device = Device::cpu;
std::string dataset_path;
std::string run_dir;  // only checkpoints are written there: these tests never call TrainingRun::run()

TrainConfig tiny_config() {
  TrainConfig c = tiny_train_config(dataset_path, run_dir);
  c.device = device;
  c.schedule.lr = 3e-3f;
  c.schedule.warmup = 2;
  c.training.grad_accum = 2;
  c.training.steps = 6;
  c.training.check_every = 0;
  c.training.bucket_mb = 0.01;  // several buckets even for this tiny model
  return c;
}

struct RunResult {
  std::vector<float> losses;
  std::vector<float> params;
};

RunResult train(const TrainConfig& cfg, Communicator& comm) {
  Trainer t(cfg, comm);
  RunResult r;
  while (t.state().step < cfg.training.steps) r.losses.push_back(t.train_step().loss);
  r.params.resize(static_cast<size_t>(t.model().params().total()));
  t.model().backend().copy_to_host(r.params.data(), t.model().param_data(), int64_t(r.params.size()) * 4);
  return r;
}

TEST(TrainerMpi, RanksMatchOneRankWithTheWholeBatch) {
  const TrainConfig cfg = tiny_config();
  const RunResult dp = train(cfg, *world);
  TrainConfig single = cfg;
  single.training.micro_batch = cfg.training.micro_batch * world->size();
  auto self = make_self_communicator();
  const RunResult ref = train(single, *self);
  ASSERT_EQ(dp.losses.size(), ref.losses.size());
  for (size_t s = 0; s < ref.losses.size(); ++s) EXPECT_NEAR(dp.losses[s], ref.losses[s], 1e-5 * ref.losses[s]) << "step " << s;
  ASSERT_EQ(dp.params.size(), ref.params.size());
  double max_diff = 0;
  for (size_t i = 0; i < ref.params.size(); ++i) max_diff = std::max(max_diff, double(std::abs(dp.params[i] - ref.params[i])));
  EXPECT_LT(max_diff, 1e-4) << "largest parameter difference after " << cfg.training.steps << " steps";
}

TEST(TrainerMpi, ZeroOneMatchesReplicatedOptimizerBitForBit) {
  TrainConfig sharded = tiny_config(), replicated = tiny_config();
  sharded.training.zero1 = true;
  replicated.training.zero1 = false;
  const RunResult a = train(sharded, *world), b = train(replicated, *world);
  EXPECT_EQ(a.losses, b.losses);
  EXPECT_EQ(a.params, b.params);
}

// Grouped-query attention (4 query heads sharing 2 key/value heads, llama3 rope) with Fira: ZeRO-1
// shards rows of three attention shapes and the low-rank state of each, and still equals the
// replicated optimizer bit for bit.
TEST(TrainerMpi, ZeroOneMatchesReplicatedForGroupedQueryAttentionWithFira) {
  TrainConfig sharded = tiny_config();
  sharded.model.n_heads = 4;
  sharded.model.n_kv_heads = 2;
  sharded.model.rope_type = "llama3";
  sharded.model.rope_original_context = 8;
  sharded.optimizer.name = OptimizerName::fira;
  sharded.optimizer.rank = 4;
  sharded.optimizer.update_gap = 2;
  TrainConfig replicated = sharded;
  sharded.training.zero1 = true;
  replicated.training.zero1 = false;
  const RunResult a = train(sharded, *world), b = train(replicated, *world);
  EXPECT_EQ(a.losses, b.losses);
  EXPECT_EQ(a.params, b.params);
}

TEST(TrainerMpi, ZeroOneShardsOptimizerState) {
  TrainConfig cfg = tiny_config();
  Trainer sharded(cfg, *world);
  cfg.training.zero1 = false;
  Trainer replicated(cfg, *world);
  double mine = double(sharded.optimizer().state_bytes()), total = mine;
  world->all_reduce(&total, 1, ReduceOp::sum);
  EXPECT_EQ(total, double(replicated.optimizer().state_bytes()));
  // Balanced by size: no rank holds more than twice its share.
  EXPECT_LT(mine, 2.0 * total / world->size());
}

// val_loss is comparable across rank counts and batch sizes: after training on N ranks, each rank
// alone with the same weights validates to the same value, bit for bit at the same micro-batch on
// the CPU (a GPU's GEMMs may differ in rounding), and to rounding at another micro-batch.
TEST(TrainerMpi, ValidationMatchesOneRank) {
  for (int64_t windows : {7, 1000}) {  // some windows, the last micro-batch partial; all of them
    TrainConfig cfg = tiny_config();
    cfg.training.eval_windows = windows;
    Trainer dp(cfg, *world);
    for (int s = 0; s < 2; ++s) dp.train_step();
    const double shared = dp.validate();
    ASSERT_TRUE(std::isfinite(shared));
    std::vector<float> params(static_cast<size_t>(dp.model().params().total()));
    dp.model().backend().copy_to_host(params.data(), dp.model().param_data(), int64_t(params.size()) * 4);
    for (int64_t micro_batch : {cfg.training.micro_batch, int64_t(3)}) {
      cfg.training.micro_batch = micro_batch;
      auto self = make_self_communicator();
      Trainer alone(cfg, *self);
      LlamaModel& m = alone.model();
      ASSERT_EQ(m.params().total(), int64_t(params.size()));
      m.backend().copy_to_device(m.param_data(), params.data(), int64_t(params.size()) * 4);
      m.backend().parameters_changed(m.param_data(), int64_t(params.size()));
      const double v = alone.validate();
      if (device == Device::cpu && micro_batch == tiny_config().training.micro_batch)
        EXPECT_EQ(v, shared) << "eval_windows " << windows;
      else
        EXPECT_NEAR(v, shared, 1e-6 * shared) << "eval_windows " << windows << ", micro_batch " << micro_batch;
    }
  }
}

TEST(TrainerMpi, ConsistencyCheckNamesThePerturbedParameter) {
  Trainer t(tiny_config(), *world);
  t.train_step();
  EXPECT_NO_THROW(t.check_consistency());
  const ParamRow& row = t.model().params().at("model.layers.1.mlp.up_proj.weight");
  if (world->rank() == world->size() - 1) {
    float* p = t.model().param_data() + row.offset + 3;  // backend memory: through the host
    float x = 0;
    t.model().backend().copy_to_host(&x, p, 4);
    x += 1e-3f;
    t.model().backend().copy_to_device(p, &x, 4);
  }
  try {
    t.check_consistency();
    ADD_FAILURE() << "divergence not detected";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers.1.mlp.up_proj.weight"), std::string::npos) << e.what();
  }
}

TEST(TrainerMpi, ACheckpointWriteFailingOnOneRankFailsOnEveryRank) {
  TrainConfig c = tiny_config();
  c.checkpoint.dir = run_dir + "/failing_checkpoints";
  Trainer t(c, *world);
  t.train_step();
  const std::string previous = TrainingRun(t).save_checkpoint();
  t.train_step();
  // The last rank's shard fails (as on a full disk of its node); the others wrote theirs.
  const std::string failing = str("optimizer_rank", world->size() - 1, ".h5");
  checkpoint_fault_hook = [&](const std::string& stage) {
    if (stage == failing) throw Error("cannot write '" + failing + "': No space left on device");
  };
  const std::string e = error_of([&] { TrainingRun(t).save_checkpoint(); });
  checkpoint_fault_hook = nullptr;
  EXPECT_EQ(e, "cannot write '" + failing + "': No space left on device");  // on every rank
  if (world->rank() == 0) {
    std::ostringstream warn;
    EXPECT_EQ(checkpoint_find_latest(c.checkpoint.dir, warn), previous);
    EXPECT_FALSE(std::filesystem::exists(c.checkpoint.dir + "/" + checkpoint_name(2) + ".tmp"));
  }
  world->barrier();
}

// Fewer bytes on the wire keep the loss curve: bf16 gradient communication (fp32 sums, see
// WirePrecision) within 0.1% of fp32 at every step (2.5e-5 measured over 12 steps at 2 ranks), and the hierarchical all-reduce (consecutive
// ranks grouped 2 per host when the rank count is even) within 1e-5, as fp32 sums in another order.
TEST(TrainerMpi, Bf16AndHierarchicalGradientsKeepTheLossCurve) {
  if (device == Device::cuda) GTEST_SKIP() << "the bf16 wire and the hierarchical all-reduce are the MPI communicator's";
  TrainConfig cfg = tiny_config();
  cfg.training.steps = 12;
  TrainConfig bf16 = cfg;
  bf16.training.grad_wire = WirePrecision::bf16;
  auto hier = make_mpi_communicator(nullptr, nullptr, {.timeout_seconds = 60.0, .hierarchical = true,
                                                       .ranks_per_host = world->size() % 2 == 0 ? 2 : 1});
  const RunResult ref = train(cfg, *world), b = train(bf16, *world), h = train(cfg, *hier), hb = train(bf16, *hier);
  double worst_bf16 = 0;
  for (size_t s = 0; s < ref.losses.size(); ++s) {
    EXPECT_NEAR(b.losses[s], ref.losses[s], 1e-3 * ref.losses[s]) << "bf16 wire, step " << s;
    EXPECT_NEAR(h.losses[s], ref.losses[s], 1e-5 * ref.losses[s]) << "hierarchical, step " << s;
    EXPECT_NEAR(hb.losses[s], ref.losses[s], 1e-3 * ref.losses[s]) << "hierarchical bf16 wire, step " << s;
    worst_bf16 = std::max({worst_bf16, std::abs(double(b.losses[s]) / ref.losses[s] - 1),
                           std::abs(double(hb.losses[s]) / ref.losses[s] - 1)});
  }
  EXPECT_NE(b.params, ref.params);  // the bf16 wire did round something
  if (world->rank() == 0) std::printf("largest relative loss difference with a bf16 wire: %.2e\n", worst_bf16);
}

}  // namespace

}  // namespace cairn

int main(int argc, char** argv) {
  auto comm = cairn::make_mpi_communicator(&argc, &argv, {.timeout_seconds = 60.0});
  cairn::world = comm.get();
  testing::InitGoogleTest(&argc, argv);
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]) == "--device=cuda") cairn::device = cairn::Device::cuda;
  if (cairn::device == cairn::Device::cuda) {
    // One GPU per rank on this host, or every rank skips.
    int64_t missing = cairn::cuda_device_count() < comm->local_size() ? 1 : 0;
    comm->all_reduce(&missing, 1, cairn::ReduceOp::max);
    if (missing) {
      if (comm->rank() == 0) std::printf("SKIP: needs a CUDA device per rank\n");
      return 77;
    }
  }
  const auto dir = std::filesystem::temp_directory_path() / ("cairn_trainer_mpi_" + std::to_string(comm->size()));
  cairn::dataset_path = (dir / "tokens.h5").string();
  cairn::run_dir = (dir / "run").string();
  if (comm->rank() == 0) {
    std::filesystem::create_directories(dir);
    cairn::write_byte_dataset(cairn::dataset_path, 60, 6, cairn::random_letter_docs(5, 40, 40));
  }
  comm->barrier();
  if (comm->rank() != 0) GTEST_FLAG_SET(brief, true);
  int64_t failed = RUN_ALL_TESTS() != 0;
  comm->all_reduce(&failed, 1, cairn::ReduceOp::max);
  if (comm->rank() == 0) std::filesystem::remove_all(dir);
  return failed ? 1 : 0;
}
