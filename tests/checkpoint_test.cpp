// Checkpoints: a run stopped and resumed equals the uninterrupted run bit for bit; optimizer state
// round trips; a crash at each stage of a write leaves the previous checkpoint loadable; damaged
// files and incompatible configs give errors naming the file or the key; SIGTERM to the real
// `cairn train` saves and exits 0, and `--resume auto` finishes with the same losses.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "comm/communicator.h"
#include "tests/test_support.h"
#include "launch/commands.h"
#include "trainer/checkpoint.h"
#include "trainer/run.h"
#include "trainer/trainer.h"
#include "util/error.h"
#include "util/file_lock.h"

namespace cairn {
namespace {

namespace fs = std::filesystem;

class CheckpointTest : public ScratchDirTest {
 protected:
  void SetUp() override {
    ScratchDirTest::SetUp();
    write_byte_dataset(path("data.h5"), 120, 10, [](int d) {
      std::vector<uint32_t> doc(size_t(40 + d % 17));
      for (size_t i = 0; i < doc.size(); ++i) doc[i] = uint32_t((d * 31 + i * 7) % 256);
      return doc;
    });
    comm_ = make_self_communicator();
  }
  void TearDown() override {
    checkpoint_fault_hook = nullptr;
    ScratchDirTest::TearDown();
  }

  TrainConfig config() const {
    TrainConfig c = tiny_train_config(path("data.h5"), path("run"));
    c.model.ffn_dim = 88;
    c.training.steps = 12;
    c.training.log_every = 1;
    return c;
  }
  std::string ckpt_root() const { return path("run/checkpoints"); }

  static std::vector<float> params_of(Trainer& t) {
    auto s = t.model().param_span();
    return {s.begin(), s.end()};
  }
  // A trainer trained `steps` steps and checkpointed.
  std::string trained_checkpoint(int steps, const TrainConfig& c) {
    Trainer t(c, *comm_);
    for (int i = 0; i < steps; ++i) t.train_step();
    return TrainingRun(t).save_checkpoint();
  }

  std::unique_ptr<Communicator> comm_;
};

TEST(Hash64, MatchesXxh64AndIgnoresSplits) {
  auto h = [](const std::string& s) {
    Hash64 x;
    x.update(s.data(), s.size());
    return hash_hex(x.digest());
  };
  EXPECT_EQ(h(""), "ef46db3751d8e999");  // reference values of the xxhash library
  EXPECT_EQ(h("a"), "d24ec4f1a98c6e5b");
  EXPECT_EQ(h("abc"), "44bc2cf5ad770999");
  std::string long_input;
  for (int r = 0; r < 3; ++r)
    for (int i = 0; i < 256; ++i) long_input += char(i);
  long_input += "xyz";
  EXPECT_EQ(h(long_input), "e921a1b45bd779f8");
  Hash64 pieces;
  for (size_t i = 0; i < long_input.size(); i += 13) pieces.update(long_input.data() + i, std::min<size_t>(13, long_input.size() - i));
  EXPECT_EQ(hash_hex(pieces.digest()), "e921a1b45bd779f8");
}

TEST_F(CheckpointTest, StoppedAndResumedRunEqualsUninterruptedBitForBit) {
  const TrainConfig c = config();
  std::vector<float> full_losses;
  Trainer full(c, *comm_);
  for (int i = 0; i < 12; ++i) full_losses.push_back(full.train_step().loss);

  std::string ckpt;
  {
    Trainer first(c, *comm_);
    for (int i = 0; i < 5; ++i) EXPECT_EQ(first.train_step().loss, full_losses[size_t(i)]);
    ckpt = TrainingRun(first).save_checkpoint();
  }
  EXPECT_EQ(fs::path(ckpt).filename(), "step_00000005");
  Trainer resumed(c, *comm_);
  TrainingRun(resumed).load_checkpoint(ckpt);
  EXPECT_EQ(resumed.state().step, 5);
  EXPECT_EQ(resumed.state().samples, 10);
  EXPECT_EQ(resumed.optimizer().steps(), 5);
  for (int i = 5; i < 12; ++i) EXPECT_EQ(resumed.train_step().loss, full_losses[size_t(i)]) << "step " << i + 1;
  EXPECT_EQ(params_of(resumed), params_of(full));
}

TEST_F(CheckpointTest, OptimizerStateRoundTrips) {
  const TrainConfig c = config();
  Trainer a(c, *comm_);
  for (int i = 0; i < 3; ++i) a.train_step();
  const std::string ckpt = TrainingRun(a).save_checkpoint();
  Trainer b(c, *comm_);
  TrainingRun(b).load_checkpoint(ckpt);
  auto sa = a.optimizer().state(), sb = b.optimizer().state();
  ASSERT_EQ(sa.size(), sb.size());
  ASSERT_FALSE(sa.empty());
  for (size_t i = 0; i < sa.size(); ++i) {
    EXPECT_EQ(sa[i].name, sb[i].name);
    EXPECT_TRUE(std::equal(sa[i].data.begin(), sa[i].data.end(), sb[i].data.begin())) << sa[i].name;
  }
  EXPECT_EQ(b.optimizer().steps(), 3);
  const ShardContents shard = checkpoint_read_shard(ckpt + "/optimizer_rank0.h5");
  EXPECT_EQ(shard.tensors.size(), sa.size());
  EXPECT_EQ(shard.steps, 3);
}

TEST_F(CheckpointTest, CrashDuringWriteLeavesPreviousCheckpointLoadable) {
  const TrainConfig c = config();
  Trainer t(c, *comm_);
  for (int i = 0; i < 3; ++i) t.train_step();
  TrainingRun(t).save_checkpoint();
  t.train_step();
  for (const char* stage : {"optimizer_rank0.h5", "model.h5", "trainer.json"}) {
    checkpoint_fault_hook = [&](const std::string& s) {
      if (s == stage) throw std::runtime_error("simulated crash");
    };
    EXPECT_THROW(TrainingRun(t).save_checkpoint(), std::runtime_error) << stage;
    checkpoint_fault_hook = nullptr;
    EXPECT_TRUE(fs::exists(ckpt_root() + "/step_00000004.tmp")) << stage;
    EXPECT_FALSE(fs::exists(ckpt_root() + "/step_00000004")) << stage;
    std::ostringstream warn;
    EXPECT_EQ(fs::path(checkpoint_find_latest(ckpt_root(), warn)).filename(), "step_00000003") << stage;
    EXPECT_EQ(warn.str(), "");
    Trainer r(c, *comm_);
    TrainingRun r_run(r);
    EXPECT_TRUE(r_run.resume("auto"));
    EXPECT_EQ(r.state().step, 3);
  }
  // Killed after the rename but before `latest` moved: the renamed checkpoint is complete.
  checkpoint_fault_hook = [](const std::string& s) {
    if (s == "renamed") throw std::runtime_error("simulated crash");
  };
  EXPECT_THROW(TrainingRun(t).save_checkpoint(), std::runtime_error);
  checkpoint_fault_hook = nullptr;
  std::ifstream latest(ckpt_root() + "/latest");
  std::string named;
  latest >> named;
  EXPECT_EQ(named, "step_00000003");
  Trainer r(c, *comm_);
  TrainingRun r_run(r);
  EXPECT_TRUE(r_run.resume("auto"));
  EXPECT_EQ(r.state().step, 4);
}

TEST_F(CheckpointTest, DamagedFilesGiveErrorsNamingTheFile) {
  const TrainConfig c = config();
  {
    Trainer t(c, *comm_);
    for (int i = 0; i < 2; ++i) t.train_step();
    TrainingRun(t).save_checkpoint();
    t.train_step();
    TrainingRun(t).save_checkpoint();
  }
  const std::string good = ckpt_root() + "/step_00000002", ckpt = ckpt_root() + "/step_00000003";
  const std::string copy = path("pristine");
  fs::copy(ckpt, copy);
  auto restore = [&] {
    fs::remove_all(ckpt);
    fs::copy(copy, ckpt);
  };
  Trainer t(c, *comm_);
  TrainingRun t_run(t);

  fs::resize_file(ckpt + "/model.h5", fs::file_size(ckpt + "/model.h5") - 100);
  std::string e = error_of([&] { TrainingRun(t).load_checkpoint(ckpt); });
  EXPECT_NE(e.find("model.h5' is truncated"), std::string::npos) << e;

  restore();
  {
    std::fstream f(ckpt + "/optimizer_rank0.h5", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(5000);
    char b;
    f.read(&b, 1);
    f.seekp(5000);
    b = char(b ^ 0x10);
    f.write(&b, 1);
  }
  e = error_of([&] { TrainingRun(t).load_checkpoint(ckpt); });
  EXPECT_NE(e.find("optimizer_rank0.h5' is corrupted: checksum mismatch"), std::string::npos) << e;
  // `auto` falls back to the previous checkpoint with a warning naming the damage.
  std::ostringstream warn;
  EXPECT_EQ(checkpoint_find_latest(ckpt_root(), warn), good);
  EXPECT_NE(warn.str().find("optimizer_rank0.h5' is corrupted"), std::string::npos) << warn.str();

  restore();
  fs::remove(ckpt + "/optimizer_rank0.h5");
  e = error_of([&] { TrainingRun(t).load_checkpoint(ckpt); });
  EXPECT_NE(e.find("missing its file optimizer_rank0.h5"), std::string::npos) << e;

  restore();
  {
    std::ofstream f(ckpt + "/trainer.json", std::ios::app);
    f << "}";
  }
  e = error_of([&] { TrainingRun(t).load_checkpoint(ckpt); });
  EXPECT_NE(e.find("trainer.json' is not valid JSON"), std::string::npos) << e;

  restore();
  {  // an edited counter breaks trainer.json's own checksum
    std::ifstream in(ckpt + "/trainer.json");
    nlohmann::json j = nlohmann::json::parse(in);
    j["step"] = 99;
    std::ofstream(ckpt + "/trainer.json") << j.dump(2);
  }
  e = error_of([&] { TrainingRun(t).load_checkpoint(ckpt); });
  EXPECT_NE(e.find("trainer.json' is corrupted"), std::string::npos) << e;

  e = error_of([&] { TrainingRun(t).load_checkpoint(ckpt_root() + "/step_00000004.tmp"); });
  EXPECT_NE(e.find("does not exist"), std::string::npos) << e;
  EXPECT_EQ(t.state().step, 0);  // nothing was loaded by any failed attempt

  fs::remove_all(good);  // every checkpoint damaged: `auto` refuses rather than starting over
  e = error_of([&] { t_run.resume("auto"); });
  EXPECT_NE(e.find("none of the 1 checkpoints"), std::string::npos) << e;
}

TEST_F(CheckpointTest, CheckpointWeightsAreVerifiedForEvalExportGrowAndInitFrom) {
  const std::string ckpt = trained_checkpoint(2, config());
  EXPECT_EQ(checkpoint_weights_path(ckpt), ckpt + "/model.h5");
  EXPECT_EQ(checkpoint_weights_path(ckpt_root()), ckpt + "/model.h5");  // the root: `latest` names the step
  {
    std::fstream f(ckpt + "/model.h5", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-64, std::ios::end);
    f.write("\xff\xff\xff\xff", 4);  // a NaN in the last tensor's data: HDF5 itself reads it fine
  }
  for (const std::string& arg : {ckpt, ckpt + "/model.h5", ckpt_root()}) {
    const std::string e = error_of([&] { checkpoint_weights_path(arg); });
    EXPECT_NE(e.find("model.h5' is corrupted: checksum mismatch"), std::string::npos) << arg << ": " << e;
  }
  TrainConfig c = config();
  c.init_from = ckpt;
  const std::string e = error_of([&] { Trainer t(c, *comm_); });
  EXPECT_NE(e.find("model.h5' is corrupted"), std::string::npos) << e;
}

TEST_F(CheckpointTest, IncompatibleConfigNamesTheKey) {
  const std::string ckpt = trained_checkpoint(2, config());
  TrainConfig other = config();
  other.model.dim = 64;
  other.output.run_dir = path("other");
  Trainer t(other, *comm_);
  const std::string e = error_of([&] { TrainingRun(t).load_checkpoint(ckpt); });
  EXPECT_NE(e.find("model.dim = 32 but this run has model.dim = 64"), std::string::npos) << e;
  EXPECT_EQ(t.state().step, 0);
}

// Grouped-query attention with llama3 rope and Fira: resumed equals uninterrupted bit for bit,
// and a checkpoint of another key/value head count is refused by name (model.n_kv_heads is a
// shape key).
TEST_F(CheckpointTest, GroupedQueryRunResumesBitForBitAndKvHeadsAreAShapeKey) {
  TrainConfig c = config();
  c.model.n_heads = 4;
  c.model.n_kv_heads = 2;
  c.model.rope_type = "llama3";
  c.model.rope_original_context = 8;
  c.optimizer.name = OptimizerName::fira;
  c.optimizer.rank = 4;
  c.optimizer.update_gap = 3;
  std::vector<float> full_losses;
  Trainer full(c, *comm_);
  for (int i = 0; i < 8; ++i) full_losses.push_back(full.train_step().loss);
  std::string ckpt;
  {
    Trainer first(c, *comm_);
    for (int i = 0; i < 4; ++i) first.train_step();
    ckpt = TrainingRun(first).save_checkpoint();
  }
  Trainer resumed(c, *comm_);
  TrainingRun(resumed).load_checkpoint(ckpt);
  for (int i = 4; i < 8; ++i) EXPECT_EQ(resumed.train_step().loss, full_losses[size_t(i)]) << "step " << i + 1;
  EXPECT_EQ(params_of(resumed), params_of(full));

  TrainConfig mha = c;
  mha.model.n_kv_heads = 4;
  mha.output.run_dir = path("mha");
  Trainer other(mha, *comm_);
  const std::string e = error_of([&] { TrainingRun(other).load_checkpoint(ckpt); });
  EXPECT_NE(e.find("model.n_kv_heads"), std::string::npos) << e;
}

TEST_F(CheckpointTest, KeepsNewestAndAutoStartsFreshWithoutAny) {
  TrainConfig c = config();
  c.checkpoint.keep = 2;
  {
    Trainer fresh(c, *comm_);
    TrainingRun fresh_run(fresh);
    EXPECT_FALSE(fresh_run.resume("auto"));
  }
  Trainer t(c, *comm_);
  for (int i = 0; i < 4; ++i) {
    t.train_step();
    TrainingRun(t).save_checkpoint();
  }
  const auto left = checkpoint_list(ckpt_root());
  ASSERT_EQ(left.size(), 2u);
  EXPECT_EQ(fs::path(left[0]).filename(), "step_00000004");
  EXPECT_EQ(fs::path(left[1]).filename(), "step_00000003");
  EXPECT_EQ(checkpoint_resolve(ckpt_root()), left[0]);  // through the `latest` pointer
}

// `cairn inspect runs/x` said "not a checkpoint: it has no trainer.json" although eval, generate and
// export take a run directory, and a weights file or dataset was "does not exist or is not a directory".
TEST_F(CheckpointTest, InspectTakesARunDirectoryAndSaysWhatAFileIs) {
  trained_checkpoint(2, config());
  const auto inspect = [](std::string target) {
    std::vector<std::string> args = {"cairn", "inspect", std::move(target)};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    return cmd_inspect(int(argv.size()), argv.data());
  };
  testing::internal::CaptureStdout();
  const std::string e = error_of([&] { EXPECT_EQ(inspect(path("run")), 0); });
  const std::string printed = testing::internal::GetCapturedStdout();
  EXPECT_EQ(e, "");
  EXPECT_NE(printed.find("step 2,"), std::string::npos) << printed;
  const std::string f = error_of([&] { inspect(path("data.h5")); });
  EXPECT_NE(f.find("is a file"), std::string::npos) << f;
}

TEST_F(CheckpointTest, TheLastStepIsCheckpointedSoALongerRunContinuesFromTheEnd) {
  // Continuing a finished run with more training.steps (docs/growth_continual.md) must start where
  // it ended, not at the last multiple of checkpoint.every.
  TrainConfig c = config();
  c.training.steps = 5;
  c.checkpoint.every = 2;
  {
    Trainer trainer(c, *comm_);
    TrainingRun(trainer).run();
  }
  ASSERT_FALSE(checkpoint_list(ckpt_root()).empty());
  EXPECT_EQ(fs::path(checkpoint_list(ckpt_root()).front()).filename(), "step_00000005");
  c.training.steps = 8;
  Trainer longer(c, *comm_);
  TrainingRun longer_run(longer);
  ASSERT_TRUE(longer_run.resume("auto"));
  EXPECT_EQ(longer.state().step, 5);
}

TEST_F(CheckpointTest, ResumingPastTrainingStepsIsAnError) {
  // A checkpoint at step 4 with training.steps = 3 "finished" with 4 steps and wrote COMPLETE.
  TrainConfig c = config();
  trained_checkpoint(4, c);
  c.training.steps = 3;
  Trainer t(c, *comm_);
  TrainingRun t_run(t);
  ASSERT_TRUE(t_run.resume("auto"));
  const std::string e = error_of([&] { t_run.run(); });
  EXPECT_NE(e.find("training.steps = 3"), std::string::npos) << e;
  EXPECT_FALSE(fs::exists(path("run/COMPLETE")));
}

TEST_F(CheckpointTest, ASaveNeverDeletesItselfOrNewerCheckpoints) {
  // A run resumed from an older checkpoint (or started over in the same directory) saves steps
  // below those already there: keeping the newest `keep` must not delete what it just wrote.
  TrainConfig c = config();
  c.checkpoint.keep = 2;
  {
    Trainer t(c, *comm_);
    for (int i = 0; i < 4; ++i) {
      t.train_step();
      TrainingRun(t).save_checkpoint();
    }
  }
  Trainer b(c, *comm_);
  b.train_step();
  const std::string mine = TrainingRun(b).save_checkpoint();
  EXPECT_TRUE(fs::exists(mine + "/trainer.json")) << mine;
  EXPECT_EQ(checkpoint_resolve(ckpt_root()), mine);
  EXPECT_EQ(checkpoint_list(ckpt_root()).size(), 3u);  // the other trajectory's 3 and 4 stay too
}

TEST_F(CheckpointTest, ResumingAnOlderCheckpointWarnsAboutNewerOnesBesideIt) {
  // Rolling back (--resume PATH of an older step) leaves the abandoned newer checkpoints where a
  // later --resume auto would pick them: the user must hear about it.
  TrainConfig c = config();
  {
    Trainer t(c, *comm_);
    for (int i = 0; i < 3; ++i) {
      t.train_step();
      TrainingRun(t).save_checkpoint();
    }
  }
  Trainer r(c, *comm_);
  testing::internal::CaptureStderr();
  TrainingRun(r).load_checkpoint(ckpt_root() + "/step_00000001");
  const std::string warned = testing::internal::GetCapturedStderr();
  EXPECT_NE(warned.find("WARNING"), std::string::npos) << warned;
  EXPECT_NE(warned.find("step_00000003"), std::string::npos) << warned;
  Trainer newest(c, *comm_);  // resuming the newest one is silent
  testing::internal::CaptureStderr();
  TrainingRun(newest).load_checkpoint(ckpt_root());
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
}

TEST_F(CheckpointTest, FreshRunRefusesADirectoryHoldingAnEarlierRunsCheckpoints) {
  TrainConfig c = config();
  c.training.steps = 3;
  {
    Trainer t(c, *comm_);
    t.train_step();
    TrainingRun(t).save_checkpoint();
  }
  Trainer fresh(c, *comm_);
  TrainingRun fresh_run(fresh);
  const std::string e = error_of([&] { fresh_run.run(); });
  EXPECT_NE(e.find("already holds"), std::string::npos) << e;
  EXPECT_NE(e.find("--resume auto"), std::string::npos) << e;
  EXPECT_EQ(checkpoint_list(ckpt_root()).size(), 1u);
  EXPECT_FALSE(fs::exists(path("run/COMPLETE")));
  Trainer resumed(c, *comm_);  // continuing the run is what the message suggests, and it works
  TrainingRun resumed_run(resumed);
  EXPECT_TRUE(resumed_run.resume("auto"));
  resumed_run.run();
  EXPECT_TRUE(fs::exists(path("run/COMPLETE")));
}

TEST_F(CheckpointTest, ASecondRunOnALockedCheckpointDirectoryFailsAtStartAndTouchesNothing) {
  TrainConfig c = config();
  c.training.steps = 4;
  c.checkpoint.every = 2;
  const std::string ckpt = trained_checkpoint(2, c);
  const auto written = fs::last_write_time(ckpt + "/trainer.json");
  const std::string lock_file = ckpt_root() + "/LOCK";
  {
    FileLock holder(lock_file);  // another run's rank 0 (a separate open file, so flock() conflicts)
    ASSERT_EQ(holder.status(), FileLock::Status::acquired);
    Trainer t(c, *comm_);
    TrainingRun t_run(t);
    const std::string e = error_of([&] {
      t_run.lock_checkpoint_dir();
      t_run.resume("auto");
      t_run.run();
    });
    EXPECT_NE(e.find("'" + ckpt_root() + "' is in use by another cairn run"), std::string::npos) << e;
    EXPECT_NE(e.find(str("pid ", ::getpid(), " on host ")), std::string::npos) << e;
    // The real command exits non-zero with the same message.
    const std::string cmd = str("'" CAIRN_BINARY_DIR "/cairn' train --config '" CAIRN_SOURCE_DIR "/configs/tiny-test.toml'",
                                " --set data.train=", path("data.h5"), " --set output.run_dir=", path("run"),
                                " --set training.steps=4 --set training.eval_every=0 --set training.threads=1",
                                " --set training.peak_flops=1e9 --set output.plot=false --set model.seq_len=16",
                                " --set training.micro_batch=2 --set checkpoint.every=2 --resume auto > ", path("out.txt"),
                                " 2>&1");
    EXPECT_NE(std::system(cmd.c_str()), 0);
    std::ifstream out(path("out.txt"));
    const std::string said((std::istreambuf_iterator<char>(out)), std::istreambuf_iterator<char>());
    EXPECT_NE(said.find("is in use by another cairn run"), std::string::npos) << said;
    const auto left = checkpoint_list(ckpt_root());
    ASSERT_EQ(left.size(), 1u);
    EXPECT_EQ(fs::path(left[0]).filename(), fs::path(ckpt).filename());
    EXPECT_EQ(fs::last_write_time(ckpt + "/trainer.json"), written);
    EXPECT_FALSE(fs::exists(path("run/COMPLETE")));
  }
  Trainer t(c, *comm_);  // the holder is gone: the run continues
  TrainingRun t_run(t);
  t_run.lock_checkpoint_dir();
  ASSERT_TRUE(t_run.resume("auto"));
  t_run.run();
  EXPECT_TRUE(fs::exists(path("run/COMPLETE")));
  FileLock after(lock_file);  // run() released it
  EXPECT_EQ(after.status(), FileLock::Status::acquired);
}

TEST(FileLock, AKilledHolderLeavesNoStaleLock) {
  const std::string file = (fs::temp_directory_path() / str("cairn_lock_", ::getpid())).string();
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    FileLock held(file);
    const char c = held.status() == FileLock::Status::acquired ? 'y' : 'n';
    if (::write(ready[1], &c, 1) != 1) ::_exit(1);
    for (;;) ::pause();
  }
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  ASSERT_EQ(c, 'y');
  {
    FileLock second(file);
    EXPECT_EQ(second.status(), FileLock::Status::held_elsewhere);
    EXPECT_EQ(second.detail().rfind(str("pid ", pid, " on host "), 0), 0u) << second.detail();
  }
  ::kill(pid, SIGKILL);  // like a crash or a Slurm requeue: no destructor runs
  ::waitpid(pid, nullptr, 0);
  FileLock third(file);
  EXPECT_EQ(third.status(), FileLock::Status::acquired);
  fs::remove(file);
}

// Losses by step from metrics.jsonl; a resumed run appends, so a later record of a step wins.
std::map<int64_t, double> losses_of(const std::string& metrics) {
  std::map<int64_t, double> out;
  std::ifstream in(metrics);
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j.contains("loss")) out[j["step"].get<int64_t>()] = j["loss"].get<double>();
  }
  return out;
}

TEST_F(CheckpointTest, ResumeBetweenLogLinesContinuesTheMetricsExactly) {
  // Stopped at step 6 with a record every 4 steps: the resumed run's record at step 8 must average
  // steps 5-8 like the uninterrupted run's, not only the steps after the resume.
  TrainConfig c = config();
  c.training.log_every = 4;
  c.output.run_dir = path("full");
  {
    Trainer trainer(c, *comm_);
    TrainingRun(trainer).run();
  }
  c.output.run_dir = path("stopped");
  c.checkpoint.every = 6;
  checkpoint_fault_hook = [](const std::string& stage) {
    if (stage == "latest") std::raise(SIGUSR1);  // a stop request while the step-6 checkpoint is written
  };
  {
    Trainer t(c, *comm_);
    TrainingRun t_run(t);
    t_run.run();
    ASSERT_TRUE(t_run.stopped());
    EXPECT_EQ(t.state().step, 6);
  }
  checkpoint_fault_hook = nullptr;
  Trainer r(c, *comm_);
  TrainingRun r_run(r);
  ASSERT_TRUE(r_run.resume("auto"));
  r_run.run();
  const auto full = losses_of(path("full/metrics.jsonl")), resumed = losses_of(path("stopped/metrics.jsonl"));
  ASSERT_EQ(full.size(), 3u);
  EXPECT_EQ(resumed, full);
}

TEST_F(CheckpointTest, AStopReportThatCannotBeWrittenIsAWarningAndTheStopStaysClean) {
  // <run_dir>/STOPPED cannot replace a non-empty directory: the checkpoint is written, so the run
  // still stops cleanly (stopped(), no exception) and says why the report is missing.
  TrainConfig c = config();
  c.checkpoint.every = 6;
  fs::create_directories(path("run/STOPPED/in-the-way"));
  checkpoint_fault_hook = [](const std::string& stage) {
    if (stage == "latest") std::raise(SIGUSR1);  // a stop request while the step-6 checkpoint is written
  };
  Trainer t(c, *comm_);
  TrainingRun t_run(t);
  testing::internal::CaptureStdout();
  EXPECT_NO_THROW(t_run.run());
  const std::string out = testing::internal::GetCapturedStdout();
  checkpoint_fault_hook = nullptr;
  EXPECT_TRUE(t_run.stopped());
  EXPECT_EQ(t.state().step, 6);
  EXPECT_NE(out.find("stopped by signal at step 6: checkpoint "), std::string::npos) << out;
  EXPECT_NE(out.find("warning: no stop report in the run directory: "), std::string::npos) << out;
  EXPECT_NE(out.find("STOPPED"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(path("run/STOPPED.tmp")));
  EXPECT_EQ(checkpoint_list(path("run/checkpoints")).size(), 1u);
}

TEST_F(CheckpointTest, AnIncompleteLastMetricsLineIsDroppedWhenTheRunContinues) {
  // A record cut short (full disk, crash mid-write) has no newline: the resumed run's first record
  // was glued to it, so both were lost and `cairn plot` (and the plot at the end of cairn train)
  // failed on the line.
  TrainConfig c = config();
  c.training.steps = 6;
  c.checkpoint.every = 3;
  {
    Trainer trainer(c, *comm_);
    TrainingRun(trainer).run();
  }
  std::ofstream(path("run/metrics.jsonl"), std::ios::app) << R"({"step":7,"tokens":22)";
  c.training.steps = 9;
  Trainer r(c, *comm_);
  TrainingRun r_run(r);
  ASSERT_TRUE(r_run.resume("auto"));
  r_run.run();
  const auto losses = losses_of(path("run/metrics.jsonl"));  // every line parses
  EXPECT_EQ(losses.size(), 9u);
  EXPECT_EQ(losses.count(7), 1u);
}

TEST_F(CheckpointTest, SigtermSavesExitsZeroAndResumeAutoFinishesTheSameRun) {
  const std::string cairn = CAIRN_BINARY_DIR "/cairn";
  auto args_for = [&](const std::string& run) {
    return std::vector<std::string>{cairn, "train", "--config", CAIRN_SOURCE_DIR "/configs/tiny-test.toml",
                                    "--set", "data.train=" + path("data.h5"), "--set", "output.run_dir=" + path(run),
                                    "--set", "training.steps=1500", "--set", "training.log_every=1",
                                    "--set", "training.eval_every=0", "--set", "training.threads=1",
                                    "--set", "training.peak_flops=1e9", "--set", "output.plot=false",
                                    "--set", "model.seq_len=16", "--set", "training.micro_batch=2"};
  };
  auto command = [](std::vector<std::string> args) {
    std::string cmd;
    for (auto& a : args) cmd += "'" + a + "' ";
    return cmd + "> /dev/null 2>&1";
  };
  ASSERT_EQ(std::system(command(args_for("full")).c_str()), 0);

  // The child blocks on a full stdout pipe (a line per step) until we read, so it is still running
  // when the signal arrives.
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::dup2(fds[1], 1);
    ::dup2(fds[1], 2);
    ::close(fds[0]);
    auto args = args_for("stopped");
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  std::FILE* out = ::fdopen(fds[0], "r");
  std::string all;
  char buf[4096];
  bool signalled = false;
  while (std::fgets(buf, sizeof buf, out)) {
    all += buf;
    if (!signalled && std::string(buf).rfind("step ", 0) == 0) {
      // Repeatedly, as under Slurm (every process of the job) plus a launcher forwarding its own:
      // a repeat must not end the rank before its checkpoint. Spaced, since pending copies of a
      // signal merge into one.
      for (int i = 0; i < 20; ++i) {
        ::kill(pid, SIGTERM);
        ::usleep(2000);
      }
      signalled = true;
    }
  }
  std::fclose(out);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(signalled) << all;
  ASSERT_TRUE(WIFEXITED(status)) << all;
  EXPECT_EQ(WEXITSTATUS(status), 0) << all.substr(all.size() > 2000 ? all.size() - 2000 : 0);
  const auto line = all.find("stopped by signal at step");
  ASSERT_NE(line, std::string::npos) << all;
  // The same line in <run_dir>/STOPPED, for a job script whose launcher lost the ranks' output.
  std::ifstream report(path("stopped/STOPPED"));
  std::string reported;
  std::getline(report, reported);
  EXPECT_EQ(reported, all.substr(line, all.find('\n', line) - line));
  EXPECT_FALSE(fs::exists(path("stopped/COMPLETE")));
  const auto saved = checkpoint_list(path("stopped/checkpoints"));
  ASSERT_EQ(saved.size(), 1u);
  EXPECT_LT(checkpoint_read_info(saved[0]).state.step, 1500);

  auto resume = args_for("stopped");
  resume.push_back("--resume");
  resume.push_back("auto");
  ASSERT_EQ(std::system(command(resume).c_str()), 0);
  EXPECT_TRUE(fs::exists(path("stopped/COMPLETE")));
  EXPECT_FALSE(fs::exists(path("stopped/STOPPED")));  // the resumed run finished: no stale report
  const auto full = losses_of(path("full/metrics.jsonl")), stopped = losses_of(path("stopped/metrics.jsonl"));
  ASSERT_EQ(full.size(), 1500u);
  EXPECT_EQ(stopped, full);
  // Continued, not restarted: the stop came right after a logged step, so every step is logged once.
  std::ifstream metrics(path("stopped/metrics.jsonl"));
  int64_t records = 0;
  for (std::string line; std::getline(metrics, line);) ++records;
  EXPECT_EQ(records, 1500);
}

}  // namespace
}  // namespace cairn
