// Token datasets, window sampling and prepare: writer -> reader round trips, hyperslab windows,
// the sampler's epoch permutations and rank disjointness, and every error path a user can hit.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>

#include "data/prepare.h"
#include "data/sampler.h"
#include "data/token_dataset.h"
#include "data/tokenizer.h"
#include "tests/test_support.h"
#include "util/error.h"
#include "util/h5.h"

namespace cairn {
namespace {

namespace fs = std::filesystem;

class DataTest : public ScratchDirTest {
 protected:
  void write_text(const std::string& name, const std::string& text) const { std::ofstream(path(name)) << text; }

  // Writes documents of lengths 1..n_docs (ids i*13 % 250) with validation from doc `val_doc`.
  std::vector<uint32_t> write_dataset_file(const std::string& p, int n_docs, int val_doc) {
    std::vector<uint32_t> all;
    write_byte_dataset(p, n_docs, n_docs - val_doc, [&](int d) {
      std::vector<uint32_t> doc(size_t(d + 1));
      for (auto& x : doc) x = uint32_t(all.size() * 13 % 250), all.push_back(x);
      all.push_back(256);
      return doc;
    });
    return all;
  }
};

TEST_F(DataTest, WriterReaderRoundTrip) {
  std::string p = path("ds.h5");
  std::vector<uint32_t> all = write_dataset_file(p, 50, 45);
  EXPECT_FALSE(fs::exists(p + ".tmp"));
  TokenDataset ds = TokenDataset::open(p);
  EXPECT_EQ(ds.num_tokens(), int64_t(all.size()));
  EXPECT_EQ(ds.vocab_size(), 257);
  EXPECT_EQ(ds.eos_id(), 256u);
  EXPECT_EQ(ds.tokenizer_kind(), "byte");
  EXPECT_EQ(ds.train_tokens(), 45 * 46 / 2 + 45);  // docs 0..44: lengths 1..45 plus EOS each
  EXPECT_EQ(ds.train_tokens() + ds.val_tokens(), ds.num_tokens());
  std::vector<int64_t> offsets = ds.doc_offsets();
  ASSERT_EQ(offsets.size(), 51u);
  EXPECT_EQ(offsets[1], 2);
  EXPECT_EQ(offsets.back(), ds.num_tokens());
  std::vector<int32_t> got(all.size());
  ds.read(0, ds.num_tokens(), got.data());
  EXPECT_TRUE(std::equal(got.begin(), got.end(), all.begin()));
  ds.verify_tokens();
  EXPECT_EQ(tokenizer_from_dataset(ds)->kind(), "byte");
  EXPECT_THROW(ds.read(ds.num_tokens() - 3, 4, got.data()), Error);
  EXPECT_THROW(ds.read(-1, 1, got.data()), Error);
}

TEST_F(DataTest, WindowsByHyperslabEqualWrittenTokens) {
  std::string p = path("ds.h5");
  std::vector<uint32_t> all = write_dataset_file(p, 120, 110);
  TokenDataset ds = TokenDataset::open(p);
  const int64_t T = 16;
  WindowSplit train = train_windows(ds, T);
  EXPECT_EQ(train.count, (ds.train_tokens() - 1) / T);
  WindowSplit val = val_windows(ds, T);
  EXPECT_EQ(val.start(0), ds.val_start());
  std::vector<int32_t> w(T + 1);
  for (const WindowSplit& s : {train, val}) {
    for (int64_t i = 0; i < s.count; ++i) {
      ds.read(s.start(i), T + 1, w.data());
      for (int64_t k = 0; k <= T; ++k) ASSERT_EQ(uint32_t(w[size_t(k)]), all[size_t(s.start(i) + k)]);
    }
    EXPECT_LE(s.start(s.count - 1) + T + 1, s.first_token + (s.first_token == 0 ? ds.train_tokens() : ds.val_tokens()));
  }
}

TEST_F(DataTest, SentencePieceDatasetCarriesItsTokenizer) {
  std::vector<std::string> docs;
  for (int i = 0; i < 80; ++i) docs.push_back("line number " + std::to_string(i) + " of a tiny corpus\n");
  SentencePieceOptions o;
  o.vocab_size = 320;
  auto tok = train_sentencepiece(docs, o);
  std::string p = path("sp.h5");
  {
    TokenDatasetWriter w(p, *tok);
    for (const auto& d : docs) w.add_document(tok->encode(d));
    w.finalize();
  }
  TokenDataset ds = TokenDataset::open(p);
  auto back = tokenizer_from_dataset(ds);
  EXPECT_EQ(back->kind(), "sentencepiece");
  EXPECT_EQ(back->encode(docs[3]), tok->encode(docs[3]));
  std::vector<int64_t> off = ds.doc_offsets();
  std::vector<int32_t> ids(size_t(off[4] - off[3] - 1));
  ds.read(off[3], int64_t(ids.size()), ids.data());
  EXPECT_EQ(back->decode(std::vector<uint32_t>(ids.begin(), ids.end())), docs[3]);
}

TEST_F(DataTest, SamplerIsDeterministicAndEachEpochIsAPermutation) {
  const int64_t W = 97;
  WindowSampler a(W, 42), b(W, 42), c(W, 43);
  std::vector<int64_t> ea, ec;
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    std::set<int64_t> seen;
    for (int64_t p = 0; p < W; ++p) {
      int64_t g = epoch * W + p;
      int64_t w = a.window_for(g);
      EXPECT_EQ(w, b.window_for(g));
      ASSERT_GE(w, 0);
      ASSERT_LT(w, W);
      seen.insert(w);
      if (epoch == 0) ea.push_back(w), ec.push_back(c.window_for(g));
    }
    EXPECT_EQ(int64_t(seen.size()), W) << "epoch " << epoch;
  }
  EXPECT_NE(ea, ec) << "different seeds should give different orders";
  std::vector<int64_t> e1;
  for (int64_t p = 0; p < W; ++p) e1.push_back(a.window_for(W + p));
  EXPECT_NE(ea, e1) << "epochs should be reshuffled";
  WindowSampler fresh(W, 42);  // random access (resume mid-epoch) agrees with sequential use
  EXPECT_EQ(fresh.window_for(2 * W + 5), a.window_for(2 * W + 5));
}

TEST_F(DataTest, RanksTakingDisjointSlicesCoverTheDataOnce) {
  const int64_t W = 60, ranks = 4, batch = 3;  // one step consumes ranks*batch global samples
  std::vector<int> count(W, 0);
  std::vector<WindowSampler> samplers;
  for (int r = 0; r < ranks; ++r) samplers.emplace_back(W, 9);
  for (int64_t step = 0; step < W / (ranks * batch); ++step)
    for (int64_t r = 0; r < ranks; ++r)
      for (int64_t b = 0; b < batch; ++b) ++count[size_t(samplers[size_t(r)].window_for((step * ranks + r) * batch + b))];
  for (int64_t w = 0; w < W; ++w) EXPECT_EQ(count[size_t(w)], 1) << "window " << w;
}

TEST_F(DataTest, SequenceLongerThanData) {
  std::string p = path("small.h5");
  write_dataset_file(p, 3, 2);  // 2 + 3 = 5 training tokens
  TokenDataset ds = TokenDataset::open(p);
  std::string msg = error_of([&] { train_windows(ds, 256); });
  EXPECT_NE(msg.find("sequence length 256 needs at least 257 tokens, the training split has 5"), std::string::npos)
      << msg;
  EXPECT_NO_THROW(train_windows(ds, 4));
  EXPECT_EQ(train_windows(ds, 4).count, 1);
}

TEST_F(DataTest, OpenErrors) {
  std::string missing = error_of([&] { TokenDataset::open(path("missing.h5")); });
  EXPECT_NE(missing.find("missing.h5"), std::string::npos) << missing;
  EXPECT_NE(missing.find("does not exist"), std::string::npos) << missing;

  write_text("garbage.h5", std::string(4096, 'x'));
  std::string garbage = error_of([&] { TokenDataset::open(path("garbage.h5")); });
  EXPECT_NE(garbage.find("not an HDF5 file"), std::string::npos) << garbage;

  std::string good = path("good.h5");
  write_dataset_file(good, 200, 190);
  {
    std::string bytes;
    {
      std::ifstream in(good, std::ios::binary);
      bytes.assign(std::istreambuf_iterator<char>(in), {});
    }
    std::ofstream(path("truncated.h5"), std::ios::binary).write(bytes.data(), std::streamsize(bytes.size() / 2));
  }
  std::string truncated = error_of([&] { TokenDataset::open(path("truncated.h5")); });
  EXPECT_NE(truncated.find("truncated.h5"), std::string::npos) << truncated;

  auto mutate = [&](const std::string& name, auto&& edit) {
    fs::copy_file(good, path(name));
    {
      H5File f = H5File::open_rw(path(name));
      edit(f);
    }
    return error_of([&] { TokenDataset::open(path(name)); });
  };
  std::string version = mutate("v2.h5", [](H5File& f) { write_attr_int(f, "format_version", 2); });
  EXPECT_NE(version.find("format version 2"), std::string::npos) << version;
  std::string format = mutate("fmt.h5", [](H5File& f) { write_attr_string(f, "format", "other"); });
  EXPECT_NE(format.find("not a cairn token dataset"), std::string::npos) << format;
  std::string val = mutate("val.h5", [](H5File& f) { write_attr_int(f, "val_start", 1 << 30); });
  EXPECT_NE(val.find("val_start"), std::string::npos) << val;
  std::string no_tokens = mutate("notok.h5", [](H5File& f) { H5Ldelete(f.id(), "tokens", H5P_DEFAULT); });
  EXPECT_NE(no_tokens.find("no /tokens"), std::string::npos) << no_tokens;

  // A token id beyond the vocabulary is found by verify_tokens.
  fs::copy_file(good, path("badid.h5"));
  {
    H5File f = H5File::open_rw(path("badid.h5"));
    write_attr_int(f, "vocab_size", 200);
    write_attr_int(f, "eos_id", 199);
  }
  TokenDataset bad = TokenDataset::open(path("badid.h5"));
  std::string ids = error_of([&] { bad.verify_tokens(); });
  EXPECT_NE(ids.find("outside the vocabulary of 200"), std::string::npos) << ids;
}

TEST_F(DataTest, WriterErrorsAndCrashLeavesNoFile) {
  auto tok = make_byte_tokenizer();
  std::vector<uint32_t> bad = {1, 2, 300};
  {
    TokenDatasetWriter w(path("x.h5"), *tok);
    EXPECT_THROW(w.add_document(bad), Error);
    EXPECT_TRUE(fs::exists(path("x.h5.tmp")));
  }  // abandoned: like a crash before finalize
  EXPECT_FALSE(fs::exists(path("x.h5")));
  EXPECT_FALSE(fs::exists(path("x.h5.tmp")));
  TokenDatasetWriter empty(path("e.h5"), *tok);
  EXPECT_THROW(empty.finalize(), Error);
}

TEST_F(DataTest, PrepareSplitsDocumentsOnSeparatorLines) {
  write_text("docs.txt", "a\nb\n%\n\n%\nc\n%\n%\r\nd");
  PrepareOptions o;
  o.corpus.inputs = {path("docs.txt")};
  o.corpus.split_on = "%";
  o.output = path("docs");
  o.val_fraction = 0;
  PrepareSummary s = prepare_dataset(o);
  EXPECT_EQ(s.documents, 3);  // the blank document and the empty one between "%" lines are dropped
  TokenDataset ds = TokenDataset::open(o.output);
  std::vector<int32_t> got(size_t(ds.num_tokens()));
  ds.read(0, ds.num_tokens(), got.data());
  const std::vector<int32_t> want = {'a', '\n', 'b', '\n', 256, 'c', '\n', 256, 'd', 256};
  EXPECT_EQ(got, want);

  write_text("whole.txt", "whole\nfile\n");
  write_text("blank.txt", " \n\t\n");
  o.corpus.inputs = {path("whole.txt"), path("blank.txt")};
  o.corpus.split_on.clear();
  o.output = path("whole");
  EXPECT_EQ(prepare_dataset(o).documents, 1);
}

TEST_F(DataTest, PrepareByteAndSentencePiece) {
  fs::create_directories(path("corpus"));
  std::string text;
  for (int i = 0; i < 100; ++i) text += "fortune number " + std::to_string(i) + " says hello\n%\n";
  write_text("corpus/fort", text);
  write_text("corpus/fort.dat", std::string(64, '\0'));  // strfile index: skipped
  write_text("corpus/.hidden", "skip me");
  fs::create_symlink(path("corpus/fort"), path("corpus/fort.u8"));

  PrepareOptions o;
  o.corpus.inputs = {path("corpus")};
  o.output = path("out");
  o.corpus.split_on = "%";
  o.val_fraction = 0.1;
  PrepareSummary s = prepare_dataset(o);
  EXPECT_EQ(s.files, 1);
  EXPECT_EQ(s.documents, 100);
  EXPECT_EQ(s.tokens, int64_t(text.size()) - 100 * 2 + 100);  // minus "%\n", plus EOS
  EXPECT_GT(s.val_documents, 2);  // about 10 of 100, chosen by a hash of the text
  EXPECT_LT(s.val_documents, 25);
  EXPECT_EQ(s.train_tokens + s.val_tokens, s.tokens);
  EXPECT_TRUE(s.model_path.empty());
  TokenDataset ds = TokenDataset::open(o.output);
  EXPECT_EQ(ds.num_tokens(), s.tokens);
  EXPECT_EQ(ds.train_tokens(), s.train_tokens);
  ds.verify_tokens();
  // Same seed, same choice of validation documents; another seed chooses others.
  std::vector<int32_t> first(size_t(s.val_tokens)), again(first.size());
  ds.read(ds.val_start(), s.val_tokens, first.data());
  o.output = path("again");
  prepare_dataset(o);
  TokenDataset a = TokenDataset::open(o.output);
  a.read(a.val_start(), s.val_tokens, again.data());
  EXPECT_EQ(first, again);
  o.output = path("other");
  o.seed = 1;
  const PrepareSummary other = prepare_dataset(o);
  TokenDataset b = TokenDataset::open(o.output);
  std::vector<int32_t> other_val(size_t(other.val_tokens));
  b.read(b.val_start(), other.val_tokens, other_val.data());
  EXPECT_NE(first, other_val);

  o.output = path("sp");
  o.tokenizer = "sentencepiece";
  o.vocab_size = 320;
  PrepareSummary sp = prepare_dataset(o);
  EXPECT_EQ(sp.tokenizer, "sentencepiece");
  EXPECT_EQ(sp.model_path, o.output + "/tokenizer.model");
  EXPECT_LT(sp.tokens, s.tokens);
  TokenDataset sds = TokenDataset::open(o.output);
  sds.verify_tokens();
  EXPECT_EQ(tokenizer_from_dataset(sds)->kind(), "sentencepiece");
  o.output = path("sp_loaded");
  o.tokenizer = "sentencepiece:" + sp.model_path;
  EXPECT_EQ(prepare_dataset(o).tokens, sp.tokens);
}

TEST_F(DataTest, PrepareErrors) {
  PrepareOptions o;
  o.output = path("out");
  fs::create_directories(path("emptydir"));
  o.corpus.inputs = {path("emptydir")};
  EXPECT_NE(error_of([&] { prepare_dataset(o); }).find("no input files"), std::string::npos);
  o.corpus.inputs = {path("nope.txt")};
  EXPECT_NE(error_of([&] { prepare_dataset(o); }).find("nope.txt"), std::string::npos);
  write_text("blank.txt", "\n  \n%\n");
  o.corpus.inputs = {path("blank.txt")};
  o.corpus.split_on = "%";
  EXPECT_NE(error_of([&] { prepare_dataset(o); }).find("corpus is empty"), std::string::npos);
  write_text("one.txt", "just one document\n");
  o.corpus.inputs = {path("one.txt")};
  o.tokenizer = "wordpiece";
  EXPECT_NE(error_of([&] { prepare_dataset(o); }).find("unknown tokenizer"), std::string::npos);
  o.tokenizer = "byte";
  o.output = path("x.h5");
  EXPECT_NE(error_of([&] { prepare_dataset(o); }).find("not one .h5 file"), std::string::npos);
  EXPECT_FALSE(fs::exists(path("out")));
  EXPECT_FALSE(fs::exists(path("out.tmp")));
}

}  // namespace
}  // namespace cairn
