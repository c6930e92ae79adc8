// End-to-end training behaviour: a tiny model overfits a tiny corpus, and every error a user can
// cause through `cairn train` / `cairn prepare` ends with a message naming the problem and a
// non-zero exit (run through the real binary).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>

#include "tests/test_support.h"
#include "trainer/run.h"
#include "trainer/trainer.h"

namespace cairn {
namespace {

namespace fs = std::filesystem;

class TrainTest : public ScratchDirTest {
 protected:
  // A byte-level dataset of `docs` copies of `text` (the last 2 held out).
  std::string write_dataset(const std::string& name, const std::string& text, int docs) {
    return write_byte_dataset(path(name), docs, 2, text);
  }

  TrainConfig tiny(const std::string& data) const {
    TrainConfig c = tiny_train_config(data, path("run"));
    c.training.micro_batch = 4;
    return c;
  }

  // Runs the cairn binary; returns its exit code and fills `output` with stdout+stderr.
  int cairn(const std::string& args, std::string& output, const std::string& env = "") {
    return run_cairn(args, path("out.txt"), output, env);
  }
  std::string train_args(const std::string& data, const std::string& extra) {
    return "train --set data.train=" + data + " --set model.dim=32 --set model.n_layers=1 --set model.n_heads=2"
           " --set model.ffn_dim=32 --set model.seq_len=16 --set model.vocab_size=0 --set training.micro_batch=2"
           " --set training.steps=3 --set training.threads=1 --set training.peak_flops=1e9 --set output.plot=false"
           " --set output.run_dir=" + path("cli_run") + " " + extra;
  }
};

// The CUDA libraries are opened with the CUDA module on first use, never linked into cairn: CPU
// runs neither map them nor need them installed.
TEST_F(TrainTest, CairnDoesNotLinkTheCudaLibraries) {
  ASSERT_EQ(std::system(("readelf -d " + std::string(CAIRN_BINARY_DIR) + "/cairn > " + path("elf.txt")).c_str()), 0);
  std::ifstream in(path("elf.txt"));
  const std::string elf(std::istreambuf_iterator<char>(in), {});
  ASSERT_NE(elf.find("(NEEDED)"), std::string::npos) << elf;
  for (const char* lib : {"libcudart", "libcublas", "libcudnn", "libnccl"})
    EXPECT_EQ(elf.find(lib), std::string::npos) << "cairn links " << lib << ":\n" << elf;
}

TEST_F(TrainTest, DeviceCudaWithoutTheModuleSaysWhy) {
  const std::string data = write_dataset("tiny.h5", "the quick brown fox jumps over the lazy dog. ", 20);
  std::string out;
  const std::string missing = path("nowhere/libcairn_cuda.so");
  EXPECT_NE(cairn(train_args(data, "--set device=cuda"), out, "CAIRN_CUDA_MODULE=" + missing), 0);
  if (CAIRN_HAVE_CUDA) {
    EXPECT_NE(out.find("cannot open the CUDA module"), std::string::npos) << out;
    EXPECT_NE(out.find(missing + ": no such file"), std::string::npos) << out;
  } else {
    EXPECT_NE(out.find("without CUDA"), std::string::npos) << out;
  }
}

TEST_F(TrainTest, TinyModelOverfitsATinyCorpus) {
  const std::string data = write_dataset("tiny.h5", "the quick brown fox jumps over the lazy dog. ", 40);
  TrainConfig c = tiny(data);
  c.training.steps = 150;
  c.schedule.lr = 1e-2f;
  c.schedule.warmup = 10;
  auto comm = make_self_communicator();
  Trainer t(c, *comm);
  float first = 0, last = 0;
  for (int s = 0; s < 150; ++s) {
    const float loss = t.train_step().loss;
    if (s == 0) first = loss;
    last = loss;
  }
  EXPECT_NEAR(first, std::log(257.0), 0.3);
  EXPECT_LT(last, 0.3) << "a 2-layer model should memorize one repeated sentence";
}

TEST_F(TrainTest, SameSeedGivesBitwiseIdenticalLosses) {
  const std::string data = write_dataset("d.h5", "some text to learn from, again and again. ", 40);
  auto run = [&] {
    auto comm = make_self_communicator();
    Trainer t(tiny(data), *comm);
    std::vector<float> losses;
    for (int s = 0; s < 5; ++s) losses.push_back(t.train_step().loss);
    return losses;
  };
  EXPECT_EQ(run(), run());
}

TEST_F(TrainTest, MissingDatasetIsAClearError) {
  std::string out;
  EXPECT_EQ(cairn(train_args(path("nope.h5"), ""), out), 1);
  EXPECT_NE(out.find("nope.h5"), std::string::npos) << out;
}

TEST_F(TrainTest, CorruptDatasetIsAClearError) {
  std::ofstream(path("garbage.h5")) << "this is not HDF5";
  std::string out;
  EXPECT_EQ(cairn(train_args(path("garbage.h5"), ""), out), 1);
  EXPECT_NE(out.find("garbage.h5"), std::string::npos) << out;
}

TEST_F(TrainTest, VocabularyLargerThanTheModelsIsAClearError) {
  const std::string data = write_dataset("v.h5", "abcdefghijklmnopqrstuvwxyz0123456789", 20);
  std::string out;
  EXPECT_EQ(cairn(train_args(data, "--set model.vocab_size=100"), out), 1);
  EXPECT_NE(out.find("vocab"), std::string::npos) << out;
}

TEST_F(TrainTest, SequenceLongerThanTheDataIsAClearError) {
  const std::string data = write_dataset("short.h5", "tiny", 4);
  std::string out;
  EXPECT_EQ(cairn(train_args(data, "--set model.seq_len=64"), out), 1);
  EXPECT_NE(out.find("needs at least"), std::string::npos) << out;
}

TEST_F(TrainTest, NonFiniteLossStopsNamingTheStepUnlessSkippedAndNotForever) {
  const std::string data = write_dataset("n.h5", "diverge diverge diverge diverge diverge. ", 40);
  std::string out;
  const std::string blowup = "--set schedule.lr=1e30 --set schedule.warmup=0 --set optimizer.grad_clip=0 --set training.steps=6";
  EXPECT_EQ(cairn(train_args(data, blowup), out), 1);
  EXPECT_NE(out.find("non-finite"), std::string::npos) << out;
  EXPECT_NE(out.find("at step"), std::string::npos) << out;
  EXPECT_EQ(cairn(train_args(data, blowup + " --set training.skip_nonfinite=true"), out), 0) << out;
  // Skipping keeps the diverged weights: a streak of 10 ends the run rather than "completing" it.
  EXPECT_EQ(cairn(train_args(data, blowup + " --set training.skip_nonfinite=true --set training.steps=20"), out), 1);
  EXPECT_NE(out.find("10 steps in a row (to step 11)"), std::string::npos) << out;
}

TEST_F(TrainTest, BadConfigKeyAndBadCommandAreClearErrors) {
  const std::string data = write_dataset("c.h5", "config errors are named. ", 20);
  std::string out;
  EXPECT_EQ(cairn(train_args(data, "--set training.stepz=3"), out), 1);
  EXPECT_NE(out.find("training.stepz"), std::string::npos) << out;
  EXPECT_EQ(cairn("train --config " + path("missing.toml"), out), 1);
  EXPECT_NE(out.find("missing.toml"), std::string::npos) << out;
  EXPECT_EQ(cairn("trian", out), 2);
  EXPECT_NE(out.find("unknown command"), std::string::npos) << out;
}

TEST_F(TrainTest, PrepareRejectsAnEmptyCorpus) {
  fs::create_directories(path("empty_corpus"));
  std::ofstream(path("empty_corpus/blank.txt")) << "  \n\n";
  std::string out;
  EXPECT_EQ(cairn("prepare --input " + path("empty_corpus") + " --out " + path("e"), out), 1);
  EXPECT_FALSE(fs::exists(path("e")));
  EXPECT_EQ(cairn("prepare --input " + path("no_such_dir") + " --out " + path("e"), out), 1);
  EXPECT_NE(out.find("no_such_dir"), std::string::npos) << out;
}

TEST_F(TrainTest, PrepareRejectsANegativeSeedAndAnIgnoredVocabSize) {
  fs::create_directories(path("corpus"));
  std::ofstream(path("corpus/a.txt")) << "some text to tokenize\n";
  std::ofstream(path("corpus/b.txt")) << "and some more of it\n";
  const std::string base = "prepare --input " + path("corpus") + " --out " + path("p");
  std::string out;
  EXPECT_EQ(cairn(base + " --seed -1", out), 1);
  EXPECT_NE(out.find("--seed"), std::string::npos) << out;
  EXPECT_EQ(cairn(base + " --seed 1.5", out), 1);
  EXPECT_NE(out.find("--seed"), std::string::npos) << out;
  EXPECT_EQ(cairn(base + " --vocab-size 512", out), 1);  // byte tokenizer: its vocabulary is 256
  EXPECT_NE(out.find("--vocab-size"), std::string::npos) << out;
  EXPECT_NE(out.find("byte"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(path("p")));
  EXPECT_EQ(cairn(base + " --seed 3", out), 0) << out;
}

TEST_F(TrainTest, WithoutAValidationSplitValidationIsSkippedAndSaidOnce) {
  // `prepare --val-fraction 0` gives no validation split; eval_every > 0 must not fail or print NaN.
  const std::string data = write_byte_dataset(path("noval.h5"), 30, 0, "no held-out text here. ");
  TrainConfig c = tiny(data);
  c.training.steps = 4;
  c.training.eval_every = 2;
  c.training.log_every = 1;
  auto comm = make_self_communicator();
  Trainer t(c, *comm);
  TrainingRun t_run(t);
  testing::internal::CaptureStdout();
  t_run.run();
  const std::string out = testing::internal::GetCapturedStdout();
  const std::string note = "has no validation split longer than model.seq_len = 16 tokens: validation is skipped";
  const auto at = out.find(note);
  ASSERT_NE(at, std::string::npos) << out;
  EXPECT_EQ(out.find(note, at + 1), std::string::npos) << out;
  EXPECT_NE(out.find("'" + data + "' (0 validation tokens)"), std::string::npos) << out;
  std::ifstream metrics(path("run/metrics.jsonl"));
  int records = 0;
  for (std::string line; std::getline(metrics, line); ++records)
    EXPECT_EQ(line.find("val_loss"), std::string::npos) << line;
  EXPECT_EQ(records, 4);
  EXPECT_TRUE(fs::exists(path("run/COMPLETE")));
}

// val_loss is the loss of training.eval_windows windows whatever the micro-batch (the last one
// partial or not): runs with other batch sizes can be compared by it. Equal to rounding only: the
// BLAS rounds a GEMM of another height differently (bit for bit across rank counts: trainer_mpi).
TEST_F(TrainTest, ValidationLossDependsOnTheWindowsNotTheMicroBatch) {
  const std::string data = write_byte_dataset(path("v.h5"), 40, 8, "held-out windows are the same windows. ");
  auto val = [&](int64_t micro_batch, int64_t windows) {
    TrainConfig c = tiny(data);
    c.training.micro_batch = micro_batch;
    c.training.eval_windows = windows;
    auto comm = make_self_communicator();
    Trainer t(c, *comm);  // the same training.seed: the same initial weights at any micro-batch
    return t.validate();
  };
  const double v = val(2, 7);
  ASSERT_TRUE(std::isfinite(v));
  for (int64_t b : {1, 3, 7, 16}) EXPECT_NEAR(val(b, 7), v, 1e-6 * v) << "micro_batch " << b;
  EXPECT_GT(std::abs(val(2, 6) - v), 1e-5 * v);               // the windows decide it
  EXPECT_NEAR(val(4, 100000), val(3, 100000), 1e-6 * v);      // more than the split holds: all of them
}

TEST_F(TrainTest, AWarmupAsLongAsTheRunIsSaidAtStart) {
  const std::string data = write_byte_dataset(path("w.h5"), 30, 3, "warm up slowly, then train. ");
  auto start_warnings = [&](int64_t steps, double warmup) {
    TrainConfig c = tiny(data);
    c.training.steps = steps;
    c.schedule.warmup = warmup;
    c.output.run_dir = path(str("run_w", steps, "_", warmup));
    auto comm = make_self_communicator();
    Trainer t(c, *comm);
    TrainingRun t_run(t);
    testing::internal::CaptureStderr();
    t_run.run();
    return testing::internal::GetCapturedStderr();
  };
  const std::string said = "is not shorter than the stage (6 steps): the LR never reaches schedule.lr";
  EXPECT_NE(start_warnings(6, 10).find(said), std::string::npos);
  EXPECT_NE(start_warnings(6, 6).find(said), std::string::npos);
  EXPECT_EQ(start_warnings(6, 5).find("LR warmup"), std::string::npos);
}

TEST_F(TrainTest, AFinishedRunResumedAutoIsDoneAtItsStepsAndContinuesWithMore) {
  // A resubmitted job (slurm/cairn.sbatch always passes --resume auto) of a finished run.
  const std::string data = write_dataset("f.h5", "finished runs may continue. ", 30);
  const std::string run = path("cli_run");
  auto complete_step = [&] {
    std::ifstream in(run + "/COMPLETE");
    return nlohmann::json::parse(in)["step"].get<int64_t>();
  };
  auto file_text = [](const std::string& f) {
    std::ifstream in(f);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };
  std::string out;
  ASSERT_EQ(cairn(train_args(data, "--set checkpoint.every=2 --resume auto"), out), 0) << out;
  ASSERT_EQ(complete_step(), 3);
  const auto weights_written = fs::last_write_time(run + "/model.h5");
  const std::string metrics = file_text(run + "/metrics.jsonl");
  EXPECT_EQ(cairn(train_args(data, "--set checkpoint.every=2 --resume auto"), out), 0) << out;
  EXPECT_NE(out.find("is already complete (3 steps"), std::string::npos) << out;
  EXPECT_EQ(fs::last_write_time(run + "/model.h5"), weights_written);  // nothing retrained or rewritten
  EXPECT_EQ(file_text(run + "/metrics.jsonl"), metrics);
  EXPECT_EQ(cairn(train_args(data, "--set checkpoint.every=2 --set training.steps=5 --resume auto"), out), 0) << out;
  EXPECT_NE(out.find("step 3,"), std::string::npos) << out;  // "resumed from ...: step 3, ..."
  EXPECT_EQ(complete_step(), 5);
  // Without a checkpoint, --resume auto would silently train the finished run again from step 0.
  const std::string other = " --set checkpoint.every=0 --set output.run_dir=" + path("no_ckpt");
  ASSERT_EQ(cairn(train_args(data, other), out), 0) << out;
  EXPECT_EQ(cairn(train_args(data, other + " --set training.steps=5 --resume auto"), out), 1);
  EXPECT_NE(out.find("holds no checkpoint to continue from"), std::string::npos) << out;
}

TEST_F(TrainTest, ARunWritesMetricsPlotAndWeights) {
  const std::string data = write_dataset("r.h5", "a short real run writes its outputs. ", 40);
  std::string out;
  ASSERT_EQ(cairn(train_args(data, "--set output.plot=true --set training.log_every=1"), out), 0) << out;
  EXPECT_TRUE(fs::exists(path("cli_run/metrics.jsonl")));
  EXPECT_TRUE(fs::exists(path("cli_run/loss.png")));
  EXPECT_TRUE(fs::exists(path("cli_run/model.h5")));
  EXPECT_NE(out.find("final weights"), std::string::npos) << out;
}

}  // namespace
}  // namespace cairn
