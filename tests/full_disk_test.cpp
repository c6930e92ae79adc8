// Failed writes of outputs (util/file_io.h, the trainer's outputs): a write to /dev/full, and a
// training run on a real full file system (a small tmpfs; skipped where mounting is not permitted),
// must end with an error naming the file and "No space left on device", after a checkpoint
// attempt, with the previous complete checkpoint intact, every metrics line whole, and a run that
// continues with --resume auto once there is room.
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "comm/communicator.h"
#include "data/prepare.h"
#include "model/safetensors.h"
#include "model/weights_io.h"
#include "tests/test_support.h"
#include "trainer/checkpoint.h"
#include "trainer/run.h"
#include "trainer/trainer.h"
#include "util/error.h"
#include "util/file_io.h"

namespace cairn {
namespace {

namespace fs = std::filesystem;

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

class FullDiskTest : public ScratchDirTest {
 protected:
  void SetUp() override {
    ScratchDirTest::SetUp();
    write_byte_dataset(path("data.h5"), 120, 10, random_letter_docs(5, 40, 20));
    comm_ = make_self_communicator();
  }
  void TearDown() override {
    checkpoint_fault_hook = nullptr;
    if (mounted_) ::umount2(path("disk").c_str(), MNT_DETACH);
    ScratchDirTest::TearDown();
  }

  // A tmpfs of `kb` KiB at path("disk"); false (the test skips) where mounting is not permitted.
  bool mount_small_disk(int kb) {
    fs::create_directories(path("disk"));
    if (::mount("tmpfs", path("disk").c_str(), "tmpfs", 0, str("size=", kb, "k").c_str()) != 0) return false;
    mounted_ = true;
    return true;
  }
  void resize_disk(int kb) {
    ASSERT_EQ(::mount("tmpfs", path("disk").c_str(), "tmpfs", MS_REMOUNT, str("size=", kb, "k").c_str()), 0)
        << std::strerror(errno);
  }
  // Fills the file system holding `dir` to the last byte.
  static void fill(const std::string& dir) {
    std::FILE* f = std::fopen((dir + "/ballast").c_str(), "wb");
    ASSERT_NE(f, nullptr);
    std::vector<char> block(4096, 'x');
    while (std::fwrite(block.data(), 1, block.size(), f) == block.size()) {
    }
    std::fclose(f);
    while ((f = std::fopen((dir + "/ballast").c_str(), "ab")) && std::fputc('x', f) != EOF && std::fflush(f) == 0)
      std::fclose(f);
    if (f) std::fclose(f);
  }

  TrainConfig config(const std::string& run_dir) const {
    TrainConfig c = tiny_train_config(path("data.h5"), run_dir);
    c.training.steps = 12;
    c.training.log_every = 1;
    c.checkpoint.every = 4;
    c.checkpoint.keep = 1;
    return c;
  }

  std::unique_ptr<Communicator> comm_;
  bool mounted_ = false;
};

// Every line of a metrics file parses; returns how many there are.
int64_t whole_lines(const std::string& metrics) {
  std::ifstream in(metrics);
  int64_t n = 0;
  for (std::string line; std::getline(in, line); ++n)
    EXPECT_FALSE(nlohmann::json::parse(line, nullptr, false).is_discarded()) << "not a whole record: " << line;
  return n;
}

TEST(OutputFile, AFailedWriteNamesTheFileAndTheReason) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  const std::string append = error_of([] { OutputFile("/dev/full", OutputFile::Mode::append).write("record\n"); });
  EXPECT_TRUE(has(append, "cannot write '/dev/full': No space left on device")) << append;
  const std::string missing = error_of([] { write_file_atomic("/nonexistent-dir/COMPLETE", "{}\n"); });
  EXPECT_TRUE(has(missing, "/nonexistent-dir/COMPLETE.tmp")) << missing;
  EXPECT_TRUE(has(missing, "No such file or directory")) << missing;
}

TEST_F(FullDiskTest, AFailedMetricsWriteStopsTheRunAfterACheckpoint) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  TrainConfig c = config(path("run"));
  c.training.log_every = 3;
  fs::create_directories(path("run"));
  fs::create_symlink("/dev/full", path("run/metrics.jsonl"));
  Trainer t(c, *comm_);
  TrainingRun t_run(t);
  const std::string e = error_of([&] { t_run.run(); });
  EXPECT_TRUE(has(e, "cannot write '" + path("run/metrics.jsonl") + "': No space left on device")) << e;
  EXPECT_TRUE(has(e, "training stopped at step 3")) << e;
  EXPECT_EQ(t.state().step, 3);  // no step after the failed write
  // The checkpoint attempt: the step of the failure, complete and loadable.
  std::ostringstream warn;
  EXPECT_EQ(fs::path(checkpoint_find_latest(path("run/checkpoints"), warn)).filename(), "step_00000003");
  EXPECT_EQ(warn.str(), "");
  EXPECT_FALSE(fs::exists(path("run/COMPLETE")));
}

TEST_F(FullDiskTest, AFullDiskKeepsThePreviousCheckpointAndTheRunContinuesWithRoom) {
  if (!mount_small_disk(1024)) GTEST_SKIP() << "mounting a tmpfs is not permitted here (needs root)";
  const TrainConfig c = config(path("disk/run"));
  // Full from the first checkpoint on: what fails next is whichever write comes first.
  checkpoint_fault_hook = [&](const std::string& stage) {
    if (stage == "latest") fill(path("disk"));
  };
  Trainer t(c, *comm_);
  TrainingRun t_run(t);
  const std::string e = error_of([&] { t_run.run(); });
  checkpoint_fault_hook = nullptr;
  EXPECT_TRUE(has(e, "No space left on device")) << e;
  EXPECT_TRUE(has(e, path("disk/run/"))) << e;  // names the file
  // A tmpfs file fills its last page before a write fails: the metrics may go on for a few steps,
  // until their page is full or the checkpoint of step 8 fails.
  EXPECT_GT(t.state().step, 4);
  EXPECT_LE(t.state().step, 8);
  std::ostringstream warn;
  EXPECT_EQ(fs::path(checkpoint_find_latest(path("disk/run/checkpoints"), warn)).filename(), "step_00000004");
  EXPECT_EQ(warn.str(), "");
  for (const auto& entry : fs::directory_iterator(path("disk/run/checkpoints")))
    EXPECT_NE(entry.path().extension(), ".tmp") << "unfinished checkpoint left behind: " << entry.path();
  EXPECT_GE(whole_lines(path("disk/run/metrics.jsonl")), 4);
  EXPECT_FALSE(fs::exists(path("disk/run/COMPLETE")));

  // Room again: --resume auto finishes the run from step 4, with the losses of an uninterrupted one.
  fs::remove(path("disk/ballast"));
  resize_disk(4096);
  Trainer r(c, *comm_);
  TrainingRun r_run(r);
  ASSERT_TRUE(r_run.resume("auto"));
  r_run.run();
  EXPECT_TRUE(fs::exists(path("disk/run/COMPLETE")));
  TrainConfig u = c;
  u.output.run_dir = path("uninterrupted");
  {
    Trainer trainer(u, *comm_);
    TrainingRun(trainer).run();
  }
  auto losses = [](const std::string& metrics) {
    std::map<int64_t, double> out;  // the last record of each step
    std::ifstream in(metrics);
    for (std::string line; std::getline(in, line);) {
      const auto j = nlohmann::json::parse(line);
      out[j["step"].get<int64_t>()] = j["loss"].get<double>();
    }
    return out;
  };
  EXPECT_EQ(losses(path("disk/run/metrics.jsonl")), losses(path("uninterrupted/metrics.jsonl")));
}

TEST_F(FullDiskTest, AFailedTensorBoardWriteStopsTheRunAfterACheckpoint) {
  if (!mount_small_disk(64)) GTEST_SKIP() << "mounting a tmpfs is not permitted here (needs root)";
  fs::create_directories(path("run"));
  fs::create_directory_symlink(path("disk"), path("run/tb"));  // only the event files are on the small disk
  TrainConfig c = config(path("run"));
  c.training.steps = 60;  // the event file's last page takes at most ~30 more records
  checkpoint_fault_hook = [&](const std::string& stage) {
    if (stage == "latest") fill(path("disk"));
  };
  Trainer t(c, *comm_);
  TrainingRun t_run(t);
  const std::string e = error_of([&] { t_run.run(); });
  checkpoint_fault_hook = nullptr;
  EXPECT_TRUE(has(e, "cannot write '" + path("run/tb") + "/events.out.tfevents.")) << e;
  EXPECT_TRUE(has(e, "No space left on device")) << e;
  const int64_t step = t.state().step;
  EXPECT_GT(step, 4);
  EXPECT_LT(step, 60);
  // Checkpoints are on another disk: the attempt at the failed step succeeds.
  EXPECT_TRUE(has(e, str("checkpoint ", path("run/checkpoints/") + checkpoint_name(step), " holds step ", step))) << e;
  EXPECT_TRUE(fs::exists(path("run/checkpoints/") + checkpoint_name(step)));
}

TEST_F(FullDiskTest, DatasetsWeightsAndExportsOnAFullDiskNameTheFileAndLeaveNoPart) {
  if (!mount_small_disk(256)) GTEST_SKIP() << "mounting a tmpfs is not permitted here (needs root)";
  fill(path("disk"));
  auto no_space = [](const std::string& e, const std::string& file) {
    EXPECT_TRUE(has(e, file)) << e;
    EXPECT_TRUE(has(e, "No space left on device")) << e;
  };
  // cairn prepare's dataset: written as .tmp, removed on failure.
  no_space(error_of([&] { write_byte_dataset(path("disk/d.h5"), 50, 5, random_letter_docs(1, 200, 10)); }),
           path("disk/d.h5.tmp"));
  EXPECT_FALSE(fs::exists(path("disk/d.h5")));
  EXPECT_FALSE(fs::exists(path("disk/d.h5.tmp")));
  // model.h5 (final weights, cairn grow): the same.
  ModelConfig m = tiny_train_config("", "").model;
  m.vocab_size = 257;
  LlamaModel model(m, cpu_backend(), 1);
  no_space(error_of([&] { save_model_weights(model, path("disk/model.h5"), ""); }), path("disk/model.h5.tmp"));
  EXPECT_FALSE(fs::exists(path("disk/model.h5.tmp")));
  // The export's model.safetensors (inside the export's .tmp directory, which the export removes).
  no_space(error_of([&] {
             write_safetensors(path("disk/model.safetensors"), {{"w", {64, 64}}}, TensorDtype::f32, {},
                               [](size_t, std::span<float> v) { std::fill(v.begin(), v.end(), 1.0f); });
           }),
           path("disk/model.safetensors"));
}

TEST_F(FullDiskTest, PrepareOnAFullDiskLeavesNeitherTheDatasetNorItsTmp) {
  if (!mount_small_disk(256)) GTEST_SKIP() << "mounting a tmpfs is not permitted here (needs root)";
  // A corpus whose tokens (2 bytes each) need four times the disk: the first shard fills it.
  std::string text;
  while (text.size() < (size_t(512) << 10)) text += "the quick brown fox jumps over the lazy dog\n%\n";
  std::ofstream(path("corpus.txt")) << text;
  PrepareOptions o;
  o.corpus.inputs = {path("corpus.txt")};
  o.corpus.split_on = "%";
  o.output = path("disk/d");
  const std::string e = error_of([&] { prepare_dataset(o); });
  EXPECT_TRUE(has(e, path("disk/d.tmp/train-00000.h5"))) << e;
  EXPECT_TRUE(has(e, "No space left on device")) << e;
  EXPECT_FALSE(fs::exists(path("disk/d")));
  EXPECT_FALSE(fs::exists(path("disk/d.tmp")));
}

}  // namespace
}  // namespace cairn
