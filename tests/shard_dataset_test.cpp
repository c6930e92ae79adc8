// Sharded token dataset directories: training over shards equals training over the same tokens
// in one file (losses bitwise), resume across shards is exact, a damaged manifest or shard gives
// an error naming the file and the problem, and the start-of-training token check finds a bad id
// (naming shard and offset) and remembers checked shards in its cache.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "comm/communicator.h"
#include "data/dataset_check.h"
#include "data/mixture.h"
#include "data/prepare.h"
#include "data/token_dataset.h"
#include "data/tokenizer.h"
#include "tests/test_support.h"
#include "trainer/run.h"
#include "trainer/trainer.h"
#include "util/error.h"

namespace cairn {
namespace {

namespace fs = std::filesystem;

class ShardDatasetTest : public ScratchDirTest {
 protected:
  void SetUp() override {
    ScratchDirTest::SetUp();
    std::string text;
    Rng rng(11);
    for (int d = 0; d < 400; ++d) {
      for (uint64_t k = 0, n = 20 + rng.below(60); k < n; ++k) text += char('a' + rng.below(26));
      text += "\n%\n";
    }
    write_bytes(path("corpus.txt"), text);
    prepare_text("corpus.txt", "shards", 0.1, 1500);  // about 13 training shards: many windows cross a boundary
    comm_ = make_self_communicator();
  }

  // Prepares text file `in` (documents separated by "%" lines) into directory `out`.
  void prepare_text(const std::string& in, const std::string& out, double val_fraction, int64_t shard_tokens) {
    PrepareOptions o;
    o.corpus.inputs = {path(in)};
    o.corpus.split_on = "%";
    o.output = path(out);
    o.val_fraction = val_fraction;
    o.shard_tokens = shard_tokens;
    prepare_dataset(o);
  }

  // The same documents and split as `dir`, written as one .h5 file.
  std::string as_one_file(const std::string& dir, const std::string& file) {
    const TokenDataset ds = TokenDataset::open(dir);
    const std::vector<int64_t> off = ds.doc_offsets();
    auto tok = make_byte_tokenizer();
    TokenDatasetWriter w(file, *tok);
    for (size_t d = 0; d + 1 < off.size(); ++d) {
      if (off[d] == ds.val_start()) w.begin_validation();
      std::vector<int32_t> ids(size_t(off[d + 1] - off[d] - 1));  // without its EOS
      ds.read(off[d], int64_t(ids.size()), ids.data());
      w.add_document(std::vector<uint32_t>(ids.begin(), ids.end()));
    }
    w.finalize();
    return file;
  }

  TrainConfig config(const std::string& data, const std::string& run) const {
    TrainConfig c = tiny_train_config(data, path(run));
    c.training.steps = 8;
    c.training.log_every = 1;
    return c;
  }

  std::unique_ptr<Communicator> comm_;
};

TEST_F(ShardDatasetTest, TrainingOverShardsEqualsTrainingOverOneFile) {
  const TokenDataset shards = TokenDataset::open(path("shards"));
  ASSERT_GT(shards.num_shards(), 10u);
  const std::string file = as_one_file(path("shards"), path("one.h5"));
  const TokenDataset one = TokenDataset::open(file);
  ASSERT_EQ(one.num_tokens(), shards.num_tokens());
  ASSERT_EQ(one.val_start(), shards.val_start());
  // Every window of 17 tokens, also those crossing shard boundaries.
  std::vector<int32_t> a(17), b(17);
  for (int64_t s = 0; s + 17 <= one.num_tokens(); s += 7) {
    one.read(s, 17, a.data());
    shards.read(s, 17, b.data());
    ASSERT_EQ(a, b) << "window at " << s;
  }
  Trainer ts(config(path("shards"), "run_shards"), *comm_), tf(config(file, "run_file"), *comm_);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(ts.train_step().loss, tf.train_step().loss) << "step " << i + 1;
  EXPECT_EQ(ts.validate(), tf.validate());
}

TEST_F(ShardDatasetTest, ResumeAcrossShardsEqualsTheUninterruptedRun) {
  TrainConfig c = config(path("shards"), "run");
  c.training.micro_batch = 4;  // 8 steps x 4 windows of 17 tokens read from many shards
  std::vector<float> full;
  {
    Trainer t(c, *comm_);
    for (int i = 0; i < 8; ++i) full.push_back(t.train_step().loss);
  }
  c.output.run_dir = path("run2");
  std::string ckpt;
  {
    Trainer first(c, *comm_);
    for (int i = 0; i < 3; ++i) EXPECT_EQ(first.train_step().loss, full[size_t(i)]);
    ckpt = TrainingRun(first).save_checkpoint();
  }
  Trainer resumed(c, *comm_);
  TrainingRun(resumed).load_checkpoint(ckpt);
  for (int i = 3; i < 8; ++i) EXPECT_EQ(resumed.train_step().loss, full[size_t(i)]) << "step " << i + 1;
}

TEST_F(ShardDatasetTest, DamagedManifestOrShardNamesTheFileAndProblem) {
  auto damaged = [&](const std::string& name, auto&& damage) {
    fs::copy(path("shards"), path(name), fs::copy_options::recursive);
    damage(path(name));
    return error_of([&] { TokenDataset::open(path(name)).verify_tokens(); });
  };
  std::string e = damaged("missing", [](const std::string& d) { fs::remove(d + "/train-00003.h5"); });
  EXPECT_NE(e.find("'train-00003.h5' listed in manifest.json is missing"), std::string::npos) << e;
  e = damaged("truncated", [](const std::string& d) { fs::resize_file(d + "/train-00002.h5", 1000); });
  EXPECT_NE(e.find("'train-00002.h5' listed in manifest.json has 1000 bytes, not the recorded"), std::string::npos) << e;
  e = damaged("badjson", [](const std::string& d) { write_bytes(d + "/manifest.json", "{\"format\": "); });
  EXPECT_NE(e.find("badjson/manifest.json' is not valid JSON"), std::string::npos) << e;
  e = damaged("version", [](const std::string& d) {
    std::string m = read_bytes(d + "/manifest.json");
    m.replace(m.find("\"format_version\": 1"), 19, "\"format_version\": 7");
    write_bytes(d + "/manifest.json", m);
  });
  EXPECT_NE(e.find("has format_version 7 but this cairn reads version 1"), std::string::npos) << e;
  e = damaged("escape", [](const std::string& d) {
    std::string m = read_bytes(d + "/manifest.json");
    m.replace(m.find("\"train-00001.h5\""), 16, "\"../x/train.h5\"");
    write_bytes(d + "/manifest.json", m);
  });
  EXPECT_NE(e.find("outside the dataset directory"), std::string::npos) << e;
  e = error_of([&] { TokenDataset::open(path("nowhere")); });
  EXPECT_NE(e.find("nowhere"), std::string::npos) << e;

  // A shard replaced by one of the same size but other ids: its hash no longer matches. The
  // replacement is shard 0 of a preparation of other text with the same document lengths.
  const TokenDataset ds = TokenDataset::open(path("shards"));
  const std::vector<int64_t> off = ds.doc_offsets();
  std::string other;
  for (size_t d = 0; off[d + 1] <= ds.shard_tokens(0); ++d) other += std::string(size_t(off[d + 1] - off[d] - 2), 'q') + "\n%\n";
  write_bytes(path("other.txt"), other);
  prepare_text("other.txt", "other", 0, int64_t(1) << 40);
  e = damaged("replaced", [&](const std::string& d) { fs::copy_file(path("other/train-00000.h5"), d + "/train-00000.h5", fs::copy_options::overwrite_existing); });
  EXPECT_NE(e.find("replaced/train-00000.h5' is corrupted: the xxh64 of its ids is"), std::string::npos) << e;
}

TEST_F(ShardDatasetTest, BadIdIsFoundBeforeTrainingNamingShardAndOffset) {
  // A shard holding id 299 while the manifest says vocabulary 257: written for a vocabulary of
  // 300, then labelled 257.
  fs::copy(path("shards"), path("bad"), fs::copy_options::recursive);
  const TokenDataset good = TokenDataset::open(path("shards"));
  const int64_t n = good.shard_tokens(4);
  int64_t begin = 0;
  for (size_t i = 0; i < 4; ++i) begin += good.shard_tokens(i);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  good.read(begin, n, ids.data());
  ids[size_t(n / 2)] = 299;
  {
    fs::create_directories(path("w"));
    TokenFileWriter w(path("w/s.h5"), 300);
    w.begin_document();
    w.append(std::vector<uint32_t>(ids.begin(), ids.end()));
    w.finish([](const H5File& f) {
      write_attr_string(f, "format", kShardFormat);
      write_attr_int(f, "format_version", kShardFormatVersion);
      write_attr_int(f, "vocab_size", 257);
    });
  }
  fs::copy_file(path("w/s.h5"), path("bad/train-00004.h5"), fs::copy_options::overwrite_existing);
  std::string m = read_bytes(path("bad/manifest.json"));  // the new size, so that only the ids are wrong
  const std::string key = "\"file\": \"train-00004.h5\"";
  const size_t at = m.rfind("\"bytes\": ", m.find(key));
  m.replace(at, m.find(',', at) - at, "\"bytes\": " + std::to_string(fs::file_size(path("bad/train-00004.h5"))));
  write_bytes(path("bad/manifest.json"), m);

  const std::string e = error_of([&] { Trainer t(config(path("bad"), "run"), *comm_); });
  EXPECT_NE(e.find("bad/train-00004.h5' holds id 299 at token " + std::to_string(n / 2) + " of the shard"), std::string::npos) << e;
  EXPECT_NE(e.find("outside the vocabulary of 257"), std::string::npos) << e;
}

TEST_F(ShardDatasetTest, TokenCheckCacheSkipsCheckedShardsUntilTheyChange) {
  const TokenDataset ds = TokenDataset::open(path("shards"));
  const std::vector<const TokenDataset*> sets = {&ds};
  auto identity_reduce = [](std::vector<int64_t>&) {};
  const std::string cache = path("cache");
  TokenCheckReport r = verify_datasets(sets, 0, 1, identity_reduce, cache, 0);
  EXPECT_EQ(r.shards, int64_t(ds.num_shards()));
  EXPECT_EQ(r.cached_shards, 0);
  EXPECT_EQ(r.tokens, ds.num_tokens());
  EXPECT_EQ(verify_datasets(sets, 0, 1, identity_reduce, cache, 0).cached_shards, r.shards);
  // A rewritten shard (new modification time) is checked again.
  const std::string s = ds.shard_path(2);
  fs::last_write_time(s, fs::last_write_time(s) + std::chrono::seconds(5));
  EXPECT_EQ(verify_datasets(sets, 0, 1, identity_reduce, cache, 0).cached_shards, r.shards - 1);
  // Small shards are not cached by default; two "ranks" split the work between them.
  EXPECT_EQ(verify_datasets(sets, 0, 1, identity_reduce, cache).cached_shards, 0);
  EXPECT_EQ(verify_datasets(sets, 1, 2, identity_reduce, path("cache2"), 0).cached_shards, 0);
  EXPECT_TRUE(fs::is_empty(cache) == false);
}

// The commands a user runs, each given dataset directories: training on a mixture with an extra
// validation per dataset, eval, generate and export taking the tokenizer from a directory.
TEST_F(ShardDatasetTest, EveryCommandTakesADatasetDirectory) {
  auto cairn = [&](const std::string& args) {
    const std::string cmd = std::string(CAIRN_BINARY_DIR) + "/cairn " + args + " > " + path("log.txt") + " 2>&1";
    const int status = std::system(cmd.c_str());
    return std::make_pair(WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_bytes(path("log.txt")));
  };
  std::ofstream(path("more.txt")) << "some more text for a second dataset\n%\nand a second document of it\n";
  auto [rc, out] = cairn("prepare --input " + path("more.txt") + " --split-on % --val-fraction 0 --out " + path("more"));
  ASSERT_EQ(rc, 0) << out;
  const std::string run = path("run");
  std::tie(rc, out) = cairn("train --set 'data.mixture=[\"" + path("shards") + ":0.7\", \"" + path("more") + ":0.3\"]'"
                            " --set training.eval_every=2"
                            " --set model.dim=32 --set model.n_layers=1 --set model.n_heads=2 --set model.ffn_dim=32"
                            " --set model.seq_len=16 --set model.vocab_size=0 --set training.micro_batch=2"
                            " --set training.steps=2 --set training.threads=1 --set training.peak_flops=1e9"
                            " --set output.plot=false --set output.run_dir=" + run);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("token check: 1"), std::string::npos) << out;  // e.g. "token check: 17 shard(s)"
  EXPECT_NE(read_bytes(run + "/metrics.jsonl").find("\"val_loss\""), std::string::npos) << read_bytes(run + "/metrics.jsonl");
  EXPECT_EQ(dataset_name(path("shards") + "/"), "shards");
  std::tie(rc, out) = cairn("eval " + run + " --data " + path("shards") + " --data " + path("one.h5"));
  EXPECT_NE(rc, 0);  // one.h5 does not exist yet: the error names it
  EXPECT_NE(out.find("one.h5"), std::string::npos) << out;
  as_one_file(path("shards"), path("one.h5"));
  std::tie(rc, out) = cairn("eval " + run + " --data " + path("shards") + " --data " + path("one.h5"));
  ASSERT_EQ(rc, 0) << out;
  // The same tokens in both layouts: the same loss.
  const auto loss_of = [&](const std::string& data) {
    const size_t at = out.find(data + ":");
    return at == std::string::npos ? std::string("?") : out.substr(at + data.size(), out.find('\n', at) - at - data.size());
  };
  EXPECT_EQ(loss_of(path("shards")), loss_of(path("one.h5"))) << out;
  std::tie(rc, out) = cairn("generate " + run + " --tokenizer-from " + path("shards") + " --prompt ab --max-tokens 4");
  EXPECT_EQ(rc, 0) << out;
  std::tie(rc, out) = cairn("export " + run + " --format hf --out " + path("hf") + " --tokenizer-from " + path("more"));
  EXPECT_EQ(rc, 0) << out;
  EXPECT_TRUE(fs::exists(path("hf/config.json")));
}

}  // namespace
}  // namespace cairn
