// Helpers shared by the test programs: a per-test scratch directory fixture, the message of a
// cairn::Error a call throws, running the cairn binary, small byte-level token datasets, and a
// tiny training config.
// Header-only, because every tests/*_test.cpp is its own program (and tests/mpi/ has more).
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "data/token_dataset.h"
#include "data/tokenizer.h"
#include "model/llama.h"
#include "trainer/train_config.h"
#include "util/error.h"
#include "util/rng.h"

namespace cairn {

// A fresh directory per test, temp/cairn_<suite>_<pid>_<test>, removed after the test.
// Fixtures that override SetUp/TearDown call these first/last.
class ScratchDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = std::string("cairn_") + info->test_suite_name() + "_" + std::to_string(::getpid()) + "_" + info->name();
    std::replace(name.begin(), name.end(), '/', '_');  // parameterized names hold slashes
    dir_ = std::filesystem::temp_directory_path() / name;
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  // The path of `name` inside this test's directory.
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  std::filesystem::path dir_;
};

// Runs f and returns the cairn::Error message it throws ("" if it throws nothing).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// A whole file's bytes ("" when it cannot be read), and writing bytes to a file.
inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
}

#ifdef CAIRN_BINARY_DIR  // defined for tests/*_test.cpp, not for the mpirun programs
// Runs the built `cairn` with `args` (after `env`, e.g. "VAR=value"), its stdout and stderr going to
// the file `log`; fills `output` with them and returns the exit code (-1 when it did not exit).
inline int run_cairn(const std::string& args, const std::string& log, std::string& output, const std::string& env = "") {
  const std::string cmd = env + " " + std::string(CAIRN_BINARY_DIR) + "/cairn " + args + " > " + log + " 2>&1";
  const int status = std::system(cmd.c_str());
  std::ifstream in(log);
  output.assign(std::istreambuf_iterator<char>(in), {});
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
#endif

// The token ids of document d (0-based); called once per document, in order.
using DocumentFn = std::function<std::vector<uint32_t>(int d)>;

// Writes a byte-tokenizer dataset of `docs` documents made by `doc`, the last `val_docs` of them
// the validation split; returns `path`.
inline std::string write_byte_dataset(const std::string& path, int docs, int val_docs, const DocumentFn& doc) {
  auto tok = make_byte_tokenizer();
  TokenDatasetWriter w(path, *tok);
  for (int d = 0; d < docs; ++d) {
    if (d == docs - val_docs) w.begin_validation();
    w.add_document(doc(d));
  }
  w.finalize();
  return path;
}

// As above, every document the bytes of `text`.
inline std::string write_byte_dataset(const std::string& path, int docs, int val_docs, const std::string& text) {
  const auto ids = make_byte_tokenizer()->encode(text);
  return write_byte_dataset(path, docs, val_docs, [&](int) { return ids; });
}

// Pseudo-text documents: min_len + Rng(seed).below(len_spread) lowercase letters each, drawn in
// document order (the returned function carries the generator).
inline DocumentFn random_letter_docs(uint64_t seed, uint64_t min_len, uint64_t len_spread) {
  return [rng = Rng(seed), min_len, len_spread](int) mutable {
    std::vector<uint32_t> doc(size_t(min_len + rng.below(len_spread)));
    for (auto& x : doc) x = uint32_t('a' + rng.below(26));
    return doc;
  };
}

// A model small enough to train in milliseconds (dim 32, 2 layers, sequences of 16, byte
// vocabulary, one thread, fixed peak FLOPs, no evaluation, no plot) on `data`, writing to run_dir.
inline TrainConfig tiny_train_config(const std::string& data, const std::string& run_dir) {
  TrainConfig c;
  c.model.vocab_size = 0;
  c.model.dim = 32;
  c.model.n_layers = 2;
  c.model.n_heads = 2;
  c.model.ffn_dim = 64;
  c.model.seq_len = 16;
  c.data.train = data;
  c.training.micro_batch = 2;
  c.training.eval_every = 0;
  c.training.threads = 1;
  c.training.peak_flops = 1e9;
  c.output.run_dir = run_dir;
  c.output.plot = false;
  return c;
}

// n token ids uniform in [0, vocab) from a seed.
inline std::vector<int32_t> random_tokens(int64_t n, int64_t vocab, uint64_t seed) {
  Rng rng(seed);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto& x : t) x = int32_t(rng.below(uint64_t(vocab)));
  return t;
}

// Central finite differences of the mean loss against the analytic gradient for a handful of
// entries of every parameter row of a model built from cfg (weights enlarged from the 0.02 init
// so every path carries signal).
inline void check_model_gradients(const ModelConfig& cfg, int64_t logit_rows = 0) {
  const int64_t B = 2, N = B * cfg.seq_len;
  LlamaModel model(cfg, cpu_backend(), B, logit_rows);
  model.init_weights(7);
  Rng rng(3);
  for (auto& p : model.param_span()) p = p == 1.0f ? 1.0f + 0.2f * rng.normal() : 0.3f * rng.normal();
  const auto in = random_tokens(N, cfg.vocab_size, 1), tg = random_tokens(N, cfg.vocab_size, 2);
  model.zero_grads();
  model.forward_backward(in.data(), tg.data(), B, 1.0f);
  const std::vector<float> grad(model.grad_span().begin(), model.grad_span().end());
  const float h = 1e-2f;
  for (const auto& row : model.params().rows()) {
    if (row.numel == 0) continue;
    for (int64_t k = 0; k < 6; ++k) {
      const int64_t i = row.offset + (k * 7919) % row.numel;
      float& p = model.param_data()[i];
      const float saved = p;
      p = saved + h;
      const double lp = model.forward_loss(in.data(), tg.data(), B);
      p = saved - h;
      const double lm = model.forward_loss(in.data(), tg.data(), B);
      p = saved;
      const double fd = (lp - lm) / (2.0 * h);
      EXPECT_NEAR(grad[size_t(i)], fd, 3e-4 + 3e-2 * std::abs(fd)) << row.name << " [" << i - row.offset << "]";
    }
  }
}

}  // namespace cairn
