// Streaming `cairn prepare`: JSON Lines and compressed inputs give the same tokens as plain text;
// bad input (invalid JSON, binary files, invalid UTF-8, damaged compression) is refused naming file
// and line, or skipped and counted; the output is byte-identical for any number of workers;
// --out is never overwritten without --force and no .tmp is left behind; --part/--merge equals a
// one-shot preparation; a real `cairn prepare` stays within a memory bound on a corpus several
// times larger, and an interrupted one leaves nothing.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "data/prepare.h"
#include "data/text_scan.h"
#include "data/token_dataset.h"
#include "data/tokenizer.h"
#include "tests/test_support.h"
#include "util/error.h"

namespace cairn {
namespace {

namespace fs = std::filesystem;

std::string gzip(const std::string& text, const std::string& p) {
  gzFile f = gzopen(p.c_str(), "wb1");
  gzwrite(f, text.data(), unsigned(text.size()));
  gzclose(f);
  return p;
}

std::string zstd(const std::string& text, const std::string& p) {
  std::string out(ZSTD_compressBound(text.size()), '\0');
  out.resize(ZSTD_compress(out.data(), out.size(), text.data(), text.size(), 1));
  write_bytes(p, out);
  return p;
}

// Documents of random lowercase words, some with non-ASCII letters, quotes and tabs.
std::vector<std::string> random_documents(int n, uint64_t seed) {
  Rng rng(seed);
  const char* extra[] = {"é", "ß", "日本", "\"", "\\", "\t", "😀"};
  std::vector<std::string> docs;
  for (int d = 0; d < n; ++d) {
    std::string doc;
    const uint64_t words = 3 + rng.below(40);
    for (uint64_t w = 0; w < words; ++w) {
      for (uint64_t k = 0, len = 1 + rng.below(8); k < len; ++k) doc += char('a' + rng.below(26));
      if (rng.below(10) == 0) doc += extra[rng.below(7)];
      doc += rng.below(12) == 0 ? "\n" : " ";
    }
    docs.push_back(doc + "\n");
  }
  return docs;
}

std::string as_text(const std::vector<std::string>& docs) {
  std::string t;
  for (const auto& d : docs) t += d + "%\n";
  return t;
}

std::string as_jsonl(const std::vector<std::string>& docs) {
  std::string t;
  for (size_t i = 0; i < docs.size(); ++i)
    t += nlohmann::json{{"id", i}, {"meta", {{"source", "test"}, {"tags", {1, 2.5, nullptr}}}}, {"text", docs[i]}}.dump() + "\n";
  return t;
}

std::vector<int32_t> all_tokens(const TokenDataset& ds) {
  std::vector<int32_t> t(size_t(ds.num_tokens()));
  ds.read(0, ds.num_tokens(), t.data());
  return t;
}

class PrepareTest : public ScratchDirTest {
 protected:
  PrepareOptions options(const std::vector<std::string>& inputs, const std::string& out) const {
    PrepareOptions o;
    o.corpus.inputs = inputs;
    o.output = path(out);
    o.val_fraction = 0.1;
    return o;
  }
  // The message prepare throws, after checking that it left neither the output nor a .tmp.
  std::string refused(const PrepareOptions& o) const {
    const std::string e = error_of([&] { prepare_dataset(o); });
    EXPECT_FALSE(fs::exists(o.output)) << o.output;
    EXPECT_FALSE(fs::exists(o.output + ".tmp")) << o.output;
    return e;
  }
};

TEST(TextScan, JsonMemberAgreesWithNlohmann) {
  const std::vector<std::string> lines = {
      R"({"text": "plain"})",
      R"( {"a": [1, {"text": "nested is not top-level"}], "text" : "esc \" \\ \/ \b\f\n\r\t \u00e9 \u65e5 \ud83d\ude00"} )",
      R"({"text": "first", "text": "last wins"})",
      R"({"n": -1.5e+3, "t": true, "f": false, "z": null, "e": {}, "l": [], "text": "raw é 日本 😀"})",
  };
  for (const auto& line : lines) {
    std::string got;
    EXPECT_EQ(json_string_member(line, "text", got), "") << line;
    EXPECT_EQ(got, nlohmann::json::parse(line)["text"].get<std::string>()) << line;
  }
  const std::vector<std::pair<std::string, std::string>> bad = {
      {R"({"text": "unterminated)", "unterminated string"},
      {R"({"text": "x",})", "expected a member name"},
      {R"({"text": "x"} trailing)", "text after the record"},
      {R"(["text"])", "is not a JSON object (it starts with '[')"},
      {R"({"text": "\ud800"})", "lone high surrogate"},
      {R"({"text": "\q"})", "invalid escape"},
      {"{\"text\": \"tab\tinside\"}", "control character"},
      {"{\"text\": \"\xff\"}", "invalid UTF-8"},
      {R"({"text": 01})", "expected ',' or '}' in an object at column 11"},
      {R"({"body": "x"})", "has no \"text\" member"},
      {R"({"text": 3})", "has \"text\" as a number, not a string"},
      {R"({"text": null})", "as null"},
  };
  for (const auto& [line, want] : bad) {
    std::string got;
    const std::string e = json_string_member(line, "text", got);
    EXPECT_NE(e.find(want), std::string::npos) << line << " -> " << e;
    EXPECT_FALSE(nlohmann::json::accept(line) && e.find("not valid JSON") != std::string::npos) << line;
  }
}

TEST(TextScan, Utf8Validation) {
  EXPECT_EQ(utf8_invalid_offset("plain ascii é 日本 😀"), std::string_view::npos);
  EXPECT_EQ(utf8_invalid_offset("ab\xc0\xaf"), 2u);            // overlong '/'
  EXPECT_EQ(utf8_invalid_offset("\xed\xa0\x80"), 0u);          // a UTF-16 surrogate
  EXPECT_EQ(utf8_invalid_offset("x\xf4\x90\x80\x80"), 1u);     // above U+10FFFF
  EXPECT_EQ(utf8_invalid_offset(std::string(40, 'a') + "\x80"), 40u);  // past the 32-byte ASCII skip
  EXPECT_EQ(utf8_invalid_offset("ok \xe6\x97"), 3u);           // cut off ...
  EXPECT_EQ(utf8_invalid_offset("ok \xe6\x97", true), std::string_view::npos);  // ... allowed at a block end
  EXPECT_TRUE(looks_binary(std::string("ELF\0\1", 5)));
  EXPECT_FALSE(looks_binary("text \xe6\x97"));
}

TEST_F(PrepareTest, JsonlCompressedAndPlainTextGiveTheSameTokens) {
  const auto docs = random_documents(300, 1);
  write_bytes(path("docs.txt"), as_text(docs));
  const std::string jsonl = as_jsonl(docs);
  write_bytes(path("docs.jsonl"), jsonl);
  gzip(jsonl, path("docs.jsonl.gz"));
  zstd(jsonl, path("docs.jsonl.zst"));
  gzip(as_text(docs), path("docs.txt.gz"));
  // Two zstd frames and two gzip members in one file each: readers must continue past the first.
  write_bytes(path("two.jsonl.zst"), read_bytes(zstd(jsonl.substr(0, 5000), path("a.zst"))) +
                                         read_bytes(zstd(jsonl.substr(5000), path("b.zst"))));
  write_bytes(path("two.jsonl.gz"), read_bytes(gzip(jsonl.substr(0, 7000), path("a.gz"))) +
                                        read_bytes(gzip(jsonl.substr(7000), path("b.gz"))));

  PrepareOptions o = options({path("docs.txt")}, "text");
  o.corpus.split_on = "%";
  const PrepareSummary ref = prepare_dataset(o);
  EXPECT_EQ(ref.documents, 300);
  const std::vector<int32_t> want = all_tokens(TokenDataset::open(o.output));
  for (const char* in : {"docs.jsonl", "docs.jsonl.gz", "docs.jsonl.zst", "two.jsonl.zst", "two.jsonl.gz"}) {
    PrepareOptions j = options({path(in)}, std::string(in) + ".out");
    const PrepareSummary s = prepare_dataset(j);
    EXPECT_EQ(s.documents, 300) << in;
    EXPECT_EQ(s.val_documents, ref.val_documents) << in;
    EXPECT_EQ(all_tokens(TokenDataset::open(j.output)), want) << in;
  }
  o.corpus.inputs = {path("docs.txt.gz")};
  o.output = path("textgz");
  prepare_dataset(o);
  EXPECT_EQ(all_tokens(TokenDataset::open(o.output)), want);
  // Another member name.
  write_bytes(path("body.jsonl"), R"({"body": "hello"})" "\n");
  PrepareOptions b = options({path("body.jsonl")}, "body");
  b.corpus.json_key = "body";
  b.val_fraction = 0;
  EXPECT_EQ(prepare_dataset(b).tokens, 6);
}

// A document longer than a chunk is tokenized in pieces cut after a newline before a line that
// starts with a non-space character: the pieces' ids must equal one encode of the whole document
// for every tokenizer (SentencePiece without its dummy-prefix space on continuing pieces; no
// pre-token of the GPT-2 and LLaMA-3 regexes across a run of blank or indented lines).
TEST_F(PrepareTest, LongDocumentsTokenizeAsOneEncode) {
  Rng rng(7);
  const char* starts[] = {"", "", "    ", "\t", "  ", "\n", "\n\n", " \n"};
  auto long_document = [&] {
    std::string doc;
    while (doc.size() < 3 * kChunkBytes) {
      doc += starts[rng.below(8)];
      for (uint64_t w = 0, n = 1 + rng.below(12); w < n; ++w)
        doc += std::string(1 + rng.below(7), char('a' + rng.below(26))) + (rng.below(9) ? " " : "  é! ");
      doc += "\n";
    }
    return doc;
  };
  const std::vector<std::string> docs = {long_document(), "a short one\n", long_document()};
  write_bytes(path("long.txt"), as_text(docs));
  SentencePieceOptions sp;
  sp.vocab_size = 400;
  write_bytes(path("sp.model"), train_sentencepiece(docs, sp)->serialized());
  const std::string golden = std::string(CAIRN_SOURCE_DIR) + "/tests/golden/hf_";
  for (const std::string& tokenizer : {std::string("byte"), "sentencepiece:" + path("sp.model"),
                                      "hf:" + golden + "llama3_style.json", "hf:" + golden + "gpt2_style.json"}) {
    PrepareOptions o = options({path("long.txt")}, "out");
    o.corpus.split_on = "%";
    o.tokenizer = tokenizer;
    o.val_fraction = 0;
    o.force = true;
    prepare_dataset(o);
    const TokenDataset ds = TokenDataset::open(o.output);
    const auto tok = tokenizer_from_dataset(ds);
    std::vector<int32_t> want;
    for (const auto& d : docs) {
      for (uint32_t id : tok->encode(d)) want.push_back(int32_t(id));
      want.push_back(int32_t(tok->eos_id()));
    }
    const std::vector<int32_t> got = all_tokens(ds);
    EXPECT_TRUE(got == want) << tokenizer << ": " << got.size() << " tokens, one encode gives " << want.size();
  }
}

TEST_F(PrepareTest, BadInputIsRefusedNamingFileAndLineOrSkippedAndCounted) {
  const std::string good = R"({"text": "fine"})" "\n";
  write_bytes(path("bad.jsonl"), good + "\n" + good + R"({"text": "broken)" + "\n" + R"({"other": 1})" "\n" + good);
  PrepareOptions o = options({path("bad.jsonl")}, "out");
  std::string e = refused(o);
  EXPECT_NE(e.find("bad.jsonl:4: the JSON Lines record is not valid JSON (unterminated string"), std::string::npos) << e;
  EXPECT_NE(e.find("--skip-invalid"), std::string::npos) << e;
  o.corpus.skip_invalid = true;
  PrepareSummary s = prepare_dataset(o);
  EXPECT_EQ(s.documents, 3);
  EXPECT_EQ(s.skipped_documents, 2);  // the broken record and the one without "text"
  fs::remove_all(o.output);
  o.corpus.skip_invalid = false;
  write_bytes(path("bad.jsonl"), good + R"({"other": 1})" "\n");
  e = refused(o);
  EXPECT_NE(e.find("bad.jsonl:2: the JSON Lines record has no \"text\" member"), std::string::npos) << e;

  // A binary file among text files.
  write_bytes(path("a.txt"), "some text\n");
  write_bytes(path("prog.bin"), std::string("\x7f" "ELF\x02\x01\x01\0\0\0", 10) + std::string(100, '\xff'));
  PrepareOptions t = options({path("a.txt"), path("prog.bin")}, "bin");
  e = refused(t);
  EXPECT_NE(e.find("prog.bin' is not UTF-8 text"), std::string::npos) << e;
  t.corpus.skip_invalid = true;
  s = prepare_dataset(t);
  EXPECT_EQ(s.skipped_files, 1);
  EXPECT_EQ(s.documents, 1);

  // Invalid UTF-8 past the sniffed head: the error names the line.
  std::string latin = std::string(70000, 'a') + "\n" + "ok\nna\xefve\n";
  write_bytes(path("latin.txt"), latin);
  e = refused(options({path("latin.txt")}, "latin"));
  EXPECT_NE(e.find("latin.txt:3: invalid UTF-8 (byte 0xef)"), std::string::npos) << e;
  // A NUL byte there is refused the same way (it used to become token 0), and skipped alike.
  std::string nul = latin;
  nul[nul.find('\xef')] = '\0';
  write_bytes(path("nul.txt"), nul);
  e = refused(options({path("nul.txt")}, "nul"));
  EXPECT_NE(e.find("nul.txt:3: a NUL byte"), std::string::npos) << e;
  PrepareOptions skip_latin = options({path("a.txt"), path("latin.txt")}, "latin"),
                 skip_nul = options({path("a.txt"), path("nul.txt")}, "nul");
  skip_latin.corpus.skip_invalid = skip_nul.corpus.skip_invalid = true;
  const PrepareSummary sl = prepare_dataset(skip_latin), sn = prepare_dataset(skip_nul);
  EXPECT_EQ(sn.skipped_documents, 1);
  EXPECT_EQ(sn.skipped_documents, sl.skipped_documents);
  EXPECT_EQ(sn.documents, sl.documents);
  EXPECT_EQ(sn.tokens, sl.tokens);

  // Damaged compressed files.
  const std::string text = as_jsonl(random_documents(200, 2));
  const std::string gz = read_bytes(gzip(text, path("full.jsonl.gz")));
  write_bytes(path("cut.jsonl.gz"), gz.substr(0, gz.size() / 2));
  e = refused(options({path("cut.jsonl.gz")}, "cutgz"));
  EXPECT_NE(e.find("gzip file '" + path("cut.jsonl.gz") + "' is damaged or truncated"), std::string::npos) << e;
  const std::string zs = read_bytes(zstd(text, path("full.jsonl.zst")));
  write_bytes(path("cut.jsonl.zst"), zs.substr(0, zs.size() / 2));
  e = refused(options({path("cut.jsonl.zst")}, "cutzst"));
  EXPECT_NE(e.find("cut.jsonl.zst' is truncated"), std::string::npos) << e;
}

TEST_F(PrepareTest, OutputIsByteIdenticalForAnyNumberOfWorkers) {
  fs::create_directories(path("in/sub"));
  const auto docs = random_documents(3000, 3);
  write_bytes(path("in/a.jsonl"), as_jsonl(std::vector<std::string>(docs.begin(), docs.begin() + 1500)));
  zstd(as_jsonl(std::vector<std::string>(docs.begin() + 1500, docs.end())), path("in/sub/b.jsonl.zst"));
  std::string big;  // one document of 3 MB: several chunks
  while (big.size() < (size_t(3) << 20)) big += docs[big.size() % docs.size()];
  write_bytes(path("in/sub/c.txt"), big);
  std::vector<std::string> listings;
  for (int workers : {1, 2, 5}) {
    // A second later: files carrying a write time (HDF5's object timestamps) would differ.
    if (workers == 5) std::this_thread::sleep_for(std::chrono::milliseconds(1100));
    PrepareOptions o = options({path("in")}, "w" + std::to_string(workers));
    o.workers = workers;
    o.shard_tokens = 20000;
    prepare_dataset(o);
    std::string listing;
    for (const auto& e : fs::directory_iterator(o.output))
      listing += e.path().filename().string() + ":" + std::to_string(fs::file_size(e.path())) + ";";
    listings.push_back(listing);
    if (workers == 1) continue;
    for (const auto& e : fs::directory_iterator(o.output))
      EXPECT_EQ(read_bytes(e.path().string()), read_bytes(path("w1/" + e.path().filename().string())))
          << e.path() << " differs with " << workers << " workers";
  }
  EXPECT_EQ(listings[0], listings[1]);
  EXPECT_EQ(listings[0], listings[2]);
  TokenDataset ds = TokenDataset::open(path("w1"));
  EXPECT_GT(ds.num_shards(), 10u);
  ds.verify_tokens();
}

TEST_F(PrepareTest, ExistingOutputIsRefusedUnlessForceAndNoTmpIsLeft) {
  write_bytes(path("t.txt"), "hello\n");
  PrepareOptions o = options({path("t.txt")}, "out");
  o.val_fraction = 0;
  prepare_dataset(o);
  const std::string before = read_bytes(path("out/train-00000.h5"));
  write_bytes(path("t.txt"), "hello again\n");
  const std::string e = error_of([&] { prepare_dataset(o); });
  EXPECT_NE(e.find("already exists"), std::string::npos) << e;
  EXPECT_NE(e.find("--force"), std::string::npos) << e;
  EXPECT_EQ(read_bytes(path("out/train-00000.h5")), before);
  o.force = true;
  EXPECT_EQ(prepare_dataset(o).tokens, 13);  // "hello again\n" and EOS
  EXPECT_EQ(TokenDataset::open(o.output).num_tokens(), 13);
  EXPECT_FALSE(fs::exists(path("out.tmp")));
  EXPECT_FALSE(fs::exists(path("out.old")));
  // --force replaces datasets only, and is refused before any work.
  fs::create_directories(path("mydir"));
  write_bytes(path("mydir/notes.txt"), "mine");
  o.output = path("mydir");
  EXPECT_NE(error_of([&] { prepare_dataset(o); }).find("is not a cairn token dataset"), std::string::npos);
  EXPECT_EQ(read_bytes(path("mydir/notes.txt")), "mine");
  // A stale .tmp of a killed run is removed; a foreign one is refused.
  o.output = path("fresh");
  o.force = false;
  fs::create_directories(path("fresh.tmp"));
  write_bytes(path("fresh.tmp/train-00000.h5.tmp"), "partial");
  prepare_dataset(o);
  EXPECT_FALSE(fs::exists(path("fresh.tmp")));
  o.output = path("other");
  fs::create_directories(path("other.tmp"));
  write_bytes(path("other.tmp/thesis.tex"), "mine");
  EXPECT_NE(error_of([&] { prepare_dataset(o); }).find("was not left by cairn prepare"), std::string::npos);
  // A failure half way (an error in the second file) leaves nothing.
  write_bytes(path("z.jsonl"), "{broken\n");
  PrepareOptions f = options({path("t.txt"), path("z.jsonl")}, "failed");
  refused(f);
}

TEST_F(PrepareTest, PartsMergedEqualOneShotPreparation) {
  fs::create_directories(path("in"));
  const auto docs = random_documents(1000, 4);
  for (int f = 0; f < 7; ++f)
    write_bytes(path("in/f" + std::to_string(f) + ".jsonl"),
                as_jsonl(std::vector<std::string>(docs.begin() + f * 140, docs.begin() + std::min(1000, f * 140 + 140 + f * 5))));
  PrepareOptions o = options({path("in")}, "one");
  o.shard_tokens = 30000;
  const PrepareSummary one = prepare_dataset(o);
  fs::create_directories(path("merged"));
  std::vector<std::string> parts;
  for (int p = 0; p < 3; ++p) {
    PrepareOptions po = o;
    po.part = p;
    po.parts = 3;
    po.output = path("merged/part-" + std::to_string(p));
    EXPECT_GT(prepare_dataset(po).files, 1);
    parts.push_back(po.output);
  }
  std::vector<std::string> shuffled = {parts[2], parts[0], parts[1]};  // part order comes from the manifests
  const PrepareSummary merged = merge_dataset_parts(shuffled, path("merged"), false);
  EXPECT_EQ(merged.tokens, one.tokens);
  EXPECT_EQ(merged.documents, one.documents);
  EXPECT_EQ(merged.val_documents, one.val_documents);
  EXPECT_EQ(merged.files, 7);
  const TokenDataset a = TokenDataset::open(path("one")), b = TokenDataset::open(path("merged"));
  EXPECT_EQ(a.val_start(), b.val_start());
  EXPECT_EQ(all_tokens(a), all_tokens(b));
  EXPECT_EQ(a.doc_offsets(), b.doc_offsets());
  b.verify_tokens();

  EXPECT_NE(error_of([&] { merge_dataset_parts(parts, path("merged"), false); }).find("already exists"), std::string::npos);
  std::string e = error_of([&] { merge_dataset_parts({parts[0], parts[2]}, path("merged"), true); });
  EXPECT_NE(e.find("part 1 of 3 is missing"), std::string::npos) << e;
  e = error_of([&] { merge_dataset_parts({parts[0], parts[1], parts[1], parts[2]}, path("merged"), true); });
  EXPECT_NE(e.find("part 1 of 3 is given twice ('part-1' and 'part-1')"), std::string::npos) << e;
  fs::copy(parts[2], path("merged/copy-of-2"), fs::copy_options::recursive);  // the same part in two directories
  e = error_of([&] { merge_dataset_parts({path("merged/copy-of-2"), parts[0], parts[1], parts[2]}, path("merged"), true); });
  EXPECT_NE(e.find("part 2 of 3 is given twice"), std::string::npos) << e;
  EXPECT_NE(e.find("'copy-of-2'"), std::string::npos) << e;
  EXPECT_NE(e.find("'part-2'"), std::string::npos) << e;
  fs::remove_all(path("merged/copy-of-2"));
  e = error_of([&] { merge_dataset_parts({path("one")}, path("."), true); });
  EXPECT_NE(e.find("merge the parts of one"), std::string::npos) << e;
  // A part prepared from another input list.
  write_bytes(path("in/f9.jsonl"), as_jsonl({"late arrival\n"}));
  PrepareOptions late = o;
  late.part = 1;
  late.parts = 3;
  late.output = path("merged/late");
  prepare_dataset(late);
  e = error_of([&] { merge_dataset_parts({parts[0], path("merged/late"), parts[2]}, path("merged"), true); });
  EXPECT_NE(e.find("another input list"), std::string::npos) << e;
  o.part = 1;  // the first file's middle lies at about 6% of the bytes: part 1 of 100 gets no file
  o.parts = 100;
  o.output = path("toomany");
  EXPECT_NE(refused(o).find("has no input files"), std::string::npos);
}

// The real executable, as a user runs it: peak RSS (the children's maxrss) stays under a bound on
// a corpus several times larger, and SIGINT mid-way removes the partial output.
class PrepareProcessTest : public PrepareTest {
 protected:
  // A zstd JSON Lines corpus of about `mb` MB of text (written compressed: small on disk).
  std::string make_corpus(const std::string& name, size_t mb) {
    const std::string block = as_jsonl(random_documents(3000, 5));  // ~1 MB
    ZSTD_CCtx* cctx = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, 1);
    std::ofstream out(path(name), std::ios::binary);
    std::string buf(ZSTD_CStreamOutSize(), '\0');
    size_t written = 0;
    while (written < (mb << 20)) {
      const bool last = written + block.size() >= (mb << 20);
      ZSTD_inBuffer in{block.data(), block.size(), 0};
      for (bool done = false; !done;) {
        ZSTD_outBuffer o{buf.data(), buf.size(), 0};
        const size_t left = ZSTD_compressStream2(cctx, &o, &in, last ? ZSTD_e_end : ZSTD_e_continue);
        out.write(buf.data(), std::streamsize(o.pos));
        done = last ? left == 0 : in.pos == in.size;
      }
      written += block.size();
    }
    ZSTD_freeCCtx(cctx);
    return path(name);
  }
  pid_t start(const std::vector<std::string>& args) {
    const pid_t pid = fork();
    if (pid == 0) {
      std::vector<char*> argv;
      static const std::string exe = CAIRN_BINARY_DIR "/cairn";
      argv.push_back(const_cast<char*>(exe.c_str()));
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      if (!freopen("/dev/null", "w", stdout)) _exit(126);
      execv(exe.c_str(), argv.data());
      _exit(127);
    }
    return pid;
  }
};

TEST_F(PrepareProcessTest, PeakMemoryStaysBoundedOnALargerCorpus) {
  const size_t corpus_mb = 320, limit_mb = 96;
  const std::string corpus = make_corpus("big.jsonl.zst", corpus_mb);
  const pid_t pid = start({"prepare", "--input", corpus, "--out", path("out"), "--workers", "2", "--shard-tokens", "50000000"});
  int status = 0;
  rusage usage{};
  ASSERT_EQ(wait4(pid, &status, 0, &usage), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  const double peak_mb = double(usage.ru_maxrss) / 1024;  // kilobytes on Linux
  std::cout << "peak RSS " << peak_mb << " MB for " << corpus_mb << " MB of JSON Lines\n";
  EXPECT_LT(peak_mb, double(limit_mb));
  EXPECT_GT(TokenDataset::open(path("out")).num_tokens(), int64_t(corpus_mb / 2) << 20);
}

TEST_F(PrepareProcessTest, InterruptRemovesThePartialOutput) {
  const std::string corpus = make_corpus("big.jsonl.zst", 200);
  const pid_t pid = start({"prepare", "--input", corpus, "--out", path("out"), "--workers", "1"});
  // Wait until the output is being written, then interrupt.
  for (int i = 0; i < 200 && !fs::exists(path("out.tmp/train-00000.h5.tmp")); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_TRUE(fs::exists(path("out.tmp")));
  kill(pid, SIGINT);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0) << status;
  EXPECT_FALSE(fs::exists(path("out")));
  EXPECT_FALSE(fs::exists(path("out.tmp")));
}

}  // namespace
}  // namespace cairn
