// Hugging Face tokenizer.json byte-level BPE: id-for-id agreement with the `tokenizers` package on
// a multilingual text (golden files from tools/reference/hf_tokenizer_golden.py), both merge forms,
// the EOS choice, special tokens never produced from text, lossless round trips (invalid UTF-8
// included), ignore_merges, every refused configuration naming its JSON path, thread safety, and
// the tokenizer carried through a prepared dataset.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "data/byte_bpe.h"
#include "data/hf_tokenizer.h"
#include "data/prepare.h"
#include "data/token_dataset.h"
#include "tests/test_support.h"
#include "util/rng.h"

namespace cairn {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

const std::string kGolden = std::string(CAIRN_SOURCE_DIR) + "/tests/golden/";

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

std::string golden_tokenizer(const std::string& name) { return kGolden + "hf_" + name + ".json"; }

bool has(const std::string& msg, const std::string& what) { return msg.find(what) != std::string::npos; }

std::string utf8(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += char(cp);
  } else if (cp < 0x800) {
    s += char(0xc0 | (cp >> 6));
    s += char(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    s += char(0xe0 | (cp >> 12));
    s += char(0x80 | ((cp >> 6) & 0x3f));
    s += char(0x80 | (cp & 0x3f));
  } else {
    s += char(0xf0 | (cp >> 18));
    s += char(0x80 | ((cp >> 12) & 0x3f));
    s += char(0x80 | ((cp >> 6) & 0x3f));
    s += char(0x80 | (cp & 0x3f));
  }
  return s;
}

std::string byte_level(const std::string& bytes) {
  std::string s;
  for (char c : bytes) s += utf8(byte_level_char(uint8_t(c)));
  return s;
}

// A minimal GPT-2-style tokenizer.json: the 256 byte symbols (ids 0..255), `extra` tokens (raw
// text) from 256 on, `merges` of raw-text pairs, <|endoftext|> as the special token after them.
json tiny_tokenizer(const std::vector<std::string>& extra, const std::vector<std::pair<std::string, std::string>>& merges) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_level(std::string(1, char(b)))] = b;
  uint32_t id = 256;
  for (const auto& t : extra) vocab[byte_level(t)] = id++;
  json m = json::array();
  for (const auto& [a, b] : merges) m.push_back(json::array({byte_level(a), byte_level(b)}));
  json j;
  j["version"] = "1.0";
  j["added_tokens"] = json::array({{{"id", id}, {"content", "<|endoftext|>"}, {"special", true}}});
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
  j["post_processor"] = nullptr;
  j["decoder"] = {{"type", "ByteLevel"}};
  j["model"] = {{"type", "BPE"}, {"vocab", vocab}, {"merges", m}, {"ignore_merges", false}};
  return j;
}

// The error of loading `j` with EOS the first added token (id 0 when that id is not a number).
std::string load_error(const json& j) {
  const json& id = j["added_tokens"][0]["id"];
  return error_of([&] { load_hf_tokenizer_serialized(j.dump(), id.is_number() ? id.get<uint32_t>() : 0, "test"); });
}

// The test text's lines (the text is their join with newlines), each also encoded on its own.
std::vector<std::string> golden_lines() {
  return json::parse(read_all(kGolden + "hf_tokenizer_expected.json")).at("lines").get<std::vector<std::string>>();
}

class HfGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(HfGolden, IdsEqualTokenizersPackage) {
  const auto tok = load_hf_tokenizer(golden_tokenizer(GetParam()));
  const std::string text = read_all(kGolden + "hf_tokenizer_text.txt");
  const json expected = json::parse(read_all(kGolden + "hf_tokenizer_expected.json")).at("ids").at(GetParam());
  EXPECT_EQ(tok->kind(), "hf_bpe");
  const std::vector<uint32_t> ids = tok->encode(text);
  EXPECT_EQ(ids, expected.at("ids").get<std::vector<uint32_t>>());
  const auto lines = golden_lines();
  ASSERT_EQ(lines.size(), expected.at("line_ids").size());
  for (size_t i = 0; i < lines.size(); ++i)
    EXPECT_EQ(tok->encode(lines[i]), expected.at("line_ids")[i].get<std::vector<uint32_t>>()) << "line " << i << ": " << lines[i];
  EXPECT_EQ(tok->decode(ids), expected.at("decoded").get<std::string>());
  EXPECT_EQ(tok->serialized(), read_all(golden_tokenizer(GetParam())));
}

// The "a b" string form of merges (older tokenizer.json files) gives the same ids as [a, b] pairs.
TEST_P(HfGolden, MergesAsStringsGiveTheSameIds) {
  const auto tok = load_hf_tokenizer(golden_tokenizer(GetParam()));
  json j = json::parse(read_all(golden_tokenizer(GetParam())));
  ASSERT_TRUE(j["model"]["merges"][0].is_array());
  for (auto& m : j["model"]["merges"]) m = m[0].get<std::string>() + " " + m[1].get<std::string>();
  const auto again = load_hf_tokenizer_serialized(j.dump(), tok->eos_id(), "test");
  const std::string text = read_all(kGolden + "hf_tokenizer_text.txt");
  EXPECT_EQ(again->encode(text), tok->encode(text));
}

INSTANTIATE_TEST_SUITE_P(Styles, HfGolden, ::testing::Values("gpt2_style", "llama3_style"));

class HfTokenizerTest : public ScratchDirTest {};

TEST_F(HfTokenizerTest, EosChoice) {
  EXPECT_EQ(load_hf_tokenizer(golden_tokenizer("gpt2_style"))->eos_id(), 0u);    // <|endoftext|>
  EXPECT_EQ(load_hf_tokenizer(golden_tokenizer("llama3_style"))->eos_id(), 1u);  // <|end_of_text|>
  EXPECT_EQ(load_hf_tokenizer(golden_tokenizer("llama3_style") + "#eos=<|eot_id|>")->eos_id(), 2u);
  std::string msg = error_of([] { load_hf_tokenizer(golden_tokenizer("gpt2_style") + "#eos=<tool>"); });
  EXPECT_TRUE(has(msg, "'<tool>'") && has(msg, "not one of its special added tokens") && has(msg, "<|endoftext|>")) << msg;
  msg = error_of([] { load_hf_tokenizer(golden_tokenizer("gpt2_style") + "#eos=hello"); });
  EXPECT_TRUE(has(msg, "#eos=")) << msg;
  // A tokenizer_config.json beside the file names the EOS token.
  fs::copy_file(golden_tokenizer("llama3_style"), path("tokenizer.json"));
  std::ofstream(path("tokenizer_config.json")) << R"({"eos_token": {"content": "<|eot_id|>"}})";
  EXPECT_EQ(load_hf_tokenizer(path("tokenizer.json"))->eos_id(), 2u);
  EXPECT_EQ(load_hf_tokenizer(path("tokenizer.json") + "#eos=<|end_of_text|>")->eos_id(), 1u);  // the spec wins
  std::ofstream(path("tokenizer_config.json")) << R"({"eos_token": "<|reserved_special_token_2|>"})";
  EXPECT_EQ(load_hf_tokenizer(path("tokenizer.json"))->eos_id(), 5u);
  // No usual EOS token and none named.
  json j = tiny_tokenizer({}, {});
  j["added_tokens"][0]["content"] = "<|sep|>";
  fs::create_directories(path("sep"));
  std::ofstream(path("sep/tokenizer.json")) << j.dump();
  msg = error_of([&] { load_hf_tokenizer(path("sep/tokenizer.json")); });
  EXPECT_TRUE(has(msg, "none of the usual EOS tokens") && has(msg, "<|sep|>") && has(msg, "#eos=")) << msg;
  EXPECT_EQ(load_hf_tokenizer(path("sep/tokenizer.json") + "#eos=<|sep|>")->eos_id(), 256u);
  // A dataset's recorded EOS id must be a special token.
  msg = error_of([] { load_hf_tokenizer_serialized(read_all(golden_tokenizer("gpt2_style")), 5, "test"); });
  EXPECT_TRUE(has(msg, "EOS id 5")) << msg;
}

TEST_F(HfTokenizerTest, SpecialTokensAreNeverProducedFromText) {
  for (const char* name : {"gpt2_style", "llama3_style"}) {
    const auto tok = load_hf_tokenizer(golden_tokenizer(name));
    const json j = json::parse(tok->serialized());
    for (const auto& t : j["added_tokens"]) {
      if (!t["special"].get<bool>()) continue;
      const std::string text = "a" + t["content"].get<std::string>() + " " + t["content"].get<std::string>();
      const auto ids = tok->encode(text);
      EXPECT_EQ(std::count(ids.begin(), ids.end(), t["id"].get<uint32_t>()), 0) << name << ": " << text;
      EXPECT_EQ(tok->decode(ids), text);
      // Decoding the special id itself gives nothing (EOS ends documents silently).
      const std::vector<uint32_t> special = {t["id"].get<uint32_t>()};
      EXPECT_EQ(tok->decode(special), "");
    }
  }
}

TEST_F(HfTokenizerTest, AnyBytesRoundTrip) {
  const auto tok = load_hf_tokenizer(golden_tokenizer("gpt2_style"));
  Rng rng(11);
  for (int trial = 0; trial < 300; ++trial) {
    std::string text;
    const uint64_t len = rng.below(64);
    for (uint64_t i = 0; i < len; ++i) {
      const uint64_t kind = rng.below(4);
      if (kind == 0) text += char(rng.below(256));  // often invalid UTF-8
      else if (kind == 1) text += " \t\n"[rng.below(3)];
      else if (kind == 2) text += utf8(uint32_t(0x20 + rng.below(0x2fff)));
      else text += utf8(uint32_t(0x1f300 + rng.below(0x300)));
    }
    const auto ids = tok->encode(text);
    for (uint32_t id : ids) EXPECT_LT(int64_t(id), tok->vocab_size());
    EXPECT_EQ(tok->decode(ids), text) << "trial " << trial;
  }
  // An invalid byte becomes its byte token; the valid text around it encodes as usual.
  const auto abc = tok->encode("abc");
  std::vector<uint32_t> want = abc;
  want.push_back(tok->encode("\xff").at(0));
  want.insert(want.end(), abc.begin(), abc.end());
  EXPECT_EQ(tok->encode("abc\xff" "abc"), want);
  std::vector<uint32_t> bad = {uint32_t(tok->vocab_size())};
  EXPECT_TRUE(has(error_of([&] { tok->decode(bad); }), "outside the vocabulary"));
}

// NFC tokenizers give the NFC form back; text already in NFC round trips exactly.
TEST_F(HfTokenizerTest, NfcNormalizes) {
  const auto tok = load_hf_tokenizer(golden_tokenizer("llama3_style"));
  EXPECT_EQ(tok->decode(tok->encode("cafe\u0301 A\u030a")), "caf\u00e9 \u00c5");
  EXPECT_EQ(tok->encode("cafe\u0301"), tok->encode("caf\u00e9"));
  const std::string nfc_text = "Gr\u00f6\u00dfe \u00c5ngstr\u00f6m \u6771\u4eac";
  EXPECT_EQ(tok->decode(tok->encode(nfc_text)), nfc_text);
}

TEST_F(HfTokenizerTest, IgnoreMergesTakesWholeVocabularyWords) {
  json j = tiny_tokenizer({"ab", "bc", "abc"}, {{"b", "c"}, {"a", "b"}});
  const auto merged = load_hf_tokenizer_serialized(j.dump(), 259, "test");
  EXPECT_EQ(merged->encode("abc"), (std::vector<uint32_t>{'a', 257}));  // "b c" first, then no "a bc"
  EXPECT_EQ(merged->encode("ab"), (std::vector<uint32_t>{256}));
  j["model"]["ignore_merges"] = true;
  const auto whole = load_hf_tokenizer_serialized(j.dump(), 259, "test");
  EXPECT_EQ(whole->encode("abc"), (std::vector<uint32_t>{258}));
  EXPECT_EQ(whole->encode("abcab"), (std::vector<uint32_t>{'a', 257, 256}));  // not in the vocabulary: merges
  EXPECT_EQ(whole->decode(whole->encode("x abc")), "x abc");
}

// A vocabulary entry outside the byte-level alphabet never comes from text and decodes to itself.
TEST_F(HfTokenizerTest, EntryOutsideTheAlphabetDecodesToItsText) {
  json j = tiny_tokenizer({"ab"}, {});
  j["model"]["vocab"]["\u20ac x"] = 258;
  const auto tok = load_hf_tokenizer_serialized(j.dump(), 257, "test");
  const std::vector<uint32_t> id = {258};
  EXPECT_EQ(tok->decode(id), "\u20ac x");
  const auto ids = tok->encode("\u20ac x");
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 258u), 0);
  EXPECT_EQ(tok->decode(ids), "\u20ac x");
}

// A Split on a plain string isolates it (as a string, not a regex); without the Split the merge
// across it applies.
TEST_F(HfTokenizerTest, SplitOnAStringIsolatesIt) {
  json j = tiny_tokenizer({"a,", "+a"}, {{"a", ","}, {"+", "a"}});
  j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"use_regex", false}};
  EXPECT_EQ(load_hf_tokenizer_serialized(j.dump(), 258, "test")->encode("a,a,"), (std::vector<uint32_t>{256, 256}));
  j["pre_tokenizer"] = {{"type", "Sequence"},
                        {"pretokenizers", {{{"type", "Split"}, {"pattern", {{"String", "x+"}}}, {"behavior", "Isolated"}},
                                           {{"type", "ByteLevel"}, {"use_regex", false}}}}};
  // Pieces "a", "x+", "a"; the regex x+ would give "a", "x", "+a" and merge "+a".
  EXPECT_EQ(load_hf_tokenizer_serialized(j.dump(), 258, "test")->encode("ax+a"),
            (std::vector<uint32_t>{'a', 'x', '+', 'a'}));
}

// Merges apply lowest rank first and leftmost first among equal ranks ("aaa" -> "aa" "a").
TEST_F(HfTokenizerTest, MergeOrder) {
  const auto tok = load_hf_tokenizer_serialized(
      tiny_tokenizer({"aa", "aaaa"}, {{"a", "a"}, {"aa", "aa"}}).dump(), 258, "test");
  EXPECT_EQ(tok->encode("aaa"), (std::vector<uint32_t>{256, 'a'}));
  EXPECT_EQ(tok->encode("aaaaa"), (std::vector<uint32_t>{257, 'a'}));
  EXPECT_EQ(tok->encode("aaaaaa"), (std::vector<uint32_t>{257, 256}));
}

TEST_F(HfTokenizerTest, RefusedConfigurationsNameTheirJsonPath) {
  const json ok = tiny_tokenizer({"ab"}, {{"a", "b"}});
  EXPECT_EQ(load_error(ok), "");
  auto with = [&](const std::function<void(json&)>& edit) {
    json j = ok;
    edit(j);
    return load_error(j);
  };
  struct Case {
    std::function<void(json&)> edit;
    std::vector<std::string> expect;
  };
  const std::vector<Case> cases = {
      {[](json& j) { j["model"]["type"] = "Unigram"; }, {"model.type", "Unigram", "not supported"}},
      {[](json& j) { j["model"]["type"] = "WordPiece"; }, {"model.type", "WordPiece"}},
      {[](json& j) { j.erase("model"); }, {"model", "missing"}},
      {[](json& j) { j["normalizer"] = {{"type", "NFKC"}}; }, {"normalizer.type", "NFKC"}},
      {[](json& j) { j["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "Lowercase"}}}}}; },
       {"normalizer.normalizers[0].type", "Lowercase"}},
      {[](json& j) { j["pre_tokenizer"] = {{"type", "Metaspace"}}; }, {"pre_tokenizer.type", "Metaspace"}},
      {[](json& j) { j["pre_tokenizer"] = nullptr; }, {"pre_tokenizer", "ByteLevel"}},
      {[](json& j) { j["pre_tokenizer"]["add_prefix_space"] = true; }, {"pre_tokenizer.add_prefix_space"}},
      {[](json& j) {
         j["pre_tokenizer"] = {{"type", "Sequence"},
                               {"pretokenizers", {{{"type", "Split"}, {"pattern", {{"Regex", "\\d"}}}, {"behavior", "Removed"}},
                                                  {{"type", "ByteLevel"}}}}};
       },
       {"pre_tokenizer.pretokenizers[0].behavior", "Removed"}},
      {[](json& j) {
         j["pre_tokenizer"] = {{"type", "Sequence"},
                               {"pretokenizers", {{{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}},
                                                  {{"type", "ByteLevel"}}}}};
       },
       {"pre_tokenizer.pretokenizers[0].pattern.Regex", "does not compile"}},
      {[](json& j) {
         j["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", {{{"type", "ByteLevel"}}, {{"type", "Digits"}}}}};
       },
       {"pre_tokenizer.pretokenizers[1]", "after ByteLevel"}},
      {[](json& j) { j["decoder"] = {{"type", "Metaspace"}}; }, {"decoder", "ByteLevel decoder"}},
      {[](json& j) { j["model"]["dropout"] = 0.1; }, {"model.dropout", "deterministic"}},
      {[](json& j) { j["model"]["continuing_subword_prefix"] = "##"; }, {"model.continuing_subword_prefix"}},
      {[](json& j) {
         j["model"]["vocab"].erase(byte_level("\n"));
         j["model"]["vocab"]["nl"] = 10;
       },
       {"model.vocab", "byte 0xa", "initial_alphabet"}},
      {[](json& j) { j["model"]["merges"].push_back(json::array({"a", "zz"})); }, {"model.merges[1]", "'zz'"}},
      {[](json& j) { j["model"]["merges"].push_back(json::array({"b", "a"})); }, {"model.merges[1]", "'ba'"}},
      {[](json& j) { j["model"]["merges"].push_back("a b c"); }, {"model.merges[1]", "one space"}},
      {[](json& j) { j["model"]["merges"].push_back(3); }, {"model.merges[1]", "must be"}},
      {[](json& j) { j["model"]["vocab"]["ab"] = -1; }, {"model.vocab[\"ab\"]", "token id"}},
      {[](json& j) { j["model"]["vocab"]["zz"] = 300; }, {"id 258", "no token"}},
      {[](json& j) { j["model"]["vocab"]["zz"] = 5; }, {"id 5", "names two tokens"}},
      {[](json& j) {
         j["added_tokens"].push_back({{"id", 258}, {"content", "<x>"}, {"special", false}, {"lstrip", true}});
       },
       {"added_tokens[1].lstrip"}},
      {[](json& j) { j["added_tokens"][0]["id"] = "x"; }, {"added_tokens[0].id"}},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string msg = with(cases[i].edit);
    EXPECT_FALSE(msg.empty()) << "case " << i << " was accepted";
    for (const auto& e : cases[i].expect) EXPECT_TRUE(has(msg, e)) << "case " << i << ": " << msg;
  }
}

TEST_F(HfTokenizerTest, UnreadableAndMalformedFiles) {
  std::string msg = error_of([&] { load_hf_tokenizer(path("missing/tokenizer.json")); });
  EXPECT_TRUE(has(msg, "cannot read tokenizer.json")) << msg;
  const std::string text = read_all(golden_tokenizer("gpt2_style"));
  std::ofstream(path("cut.json")) << text.substr(0, text.size() / 2);
  msg = error_of([&] { load_hf_tokenizer(path("cut.json")); });
  EXPECT_TRUE(has(msg, "is not valid JSON") && has(msg, "cut.json")) << msg;
  std::ofstream(path("array.json")) << "[1, 2]";
  EXPECT_TRUE(has(error_of([&] { load_hf_tokenizer(path("array.json")); }), "not a JSON object"));
  fs::copy_file(golden_tokenizer("gpt2_style"), path("tokenizer.json"));
  std::ofstream(path("tokenizer_config.json")) << "{";
  msg = error_of([&] { load_hf_tokenizer(path("tokenizer.json")); });
  EXPECT_TRUE(has(msg, "tokenizer_config.json") && has(msg, "not valid JSON")) << msg;
}

// Concurrent encoding (prepare's worker threads) gives the ids of serial encoding.
TEST_F(HfTokenizerTest, ThreadsEncodeLikeOne) {
  const auto tok = load_hf_tokenizer(golden_tokenizer("llama3_style"));
  const auto lines = golden_lines();
  std::vector<std::vector<uint32_t>> want;
  for (const auto& l : lines) want.push_back(tok->encode(l));
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 300; ++rep)
        for (size_t i = 0; i < lines.size(); ++i) mismatches[size_t(t)] += tok->encode(lines[(i + size_t(t)) % lines.size()]) != want[(i + size_t(t)) % lines.size()];
    });
  for (auto& th : threads) th.join();
  for (int m : mismatches) EXPECT_EQ(m, 0);
}

// Megabyte-long pieces (a whitespace run, a letter run, a repeated group) encode without a PCRE2
// stack failure.
TEST_F(HfTokenizerTest, LongPieces) {
  for (const char* name : {"gpt2_style", "llama3_style"}) {
    const auto tok = load_hf_tokenizer(golden_tokenizer(name));
    const std::string text = "a" + std::string(1 << 20, ' ') + "b " + std::string(1 << 20, 'x') + "\n" +
                             std::string(1 << 19, '\n');
    EXPECT_EQ(tok->decode(tok->encode(text)), text) << name;
  }
  // A repeated group keeps a backtracking frame per repetition on PCRE2's JIT stack.
  json j = tiny_tokenizer({}, {});
  j["pre_tokenizer"] = {{"type", "Sequence"},
                        {"pretokenizers", {{{"type", "Split"}, {"pattern", {{"Regex", "(?:\\p{L}|')+"}}}, {"behavior", "Isolated"}},
                                           {{"type", "ByteLevel"}, {"use_regex", false}}}}};
  const auto tok = load_hf_tokenizer_serialized(j.dump(), 256, "test");
  const std::string letters(1 << 20, 'x');
  EXPECT_EQ(tok->encode(letters).size(), letters.size());
}

TEST_F(HfTokenizerTest, PreparedDatasetCarriesTheTokenizer) {
  const std::vector<std::string> docs = {"Hello world, it's a test.\n", "Größe 東京 😀 12345\n", "  spaces\tand tabs\n"};
  fs::create_directories(path("in"));
  std::string all;
  for (size_t i = 0; i < docs.size(); ++i) all += docs[i] + (i + 1 < docs.size() ? "%\n" : "");
  std::ofstream(path("in/corpus")) << all;
  PrepareOptions o;
  o.inputs = {path("in")};
  o.output = path("d.h5");
  o.tokenizer = "hf:" + golden_tokenizer("llama3_style") + "#eos=<|eot_id|>";
  o.split_on = "%";
  o.val_fraction = 0;
  const PrepareSummary s = prepare_dataset(o);
  EXPECT_EQ(s.tokenizer, "hf_bpe");
  EXPECT_EQ(s.vocab_size, 1502);
  EXPECT_TRUE(s.model_path.empty());  // nothing trained: no model file beside the dataset

  const TokenDataset ds = TokenDataset::open(path("d.h5"));
  EXPECT_EQ(ds.tokenizer_kind(), "hf_bpe");
  EXPECT_EQ(ds.eos_id(), 2u);
  EXPECT_EQ(ds.tokenizer_model(), read_all(golden_tokenizer("llama3_style")));
  const auto tok = tokenizer_from_dataset(ds);
  const auto direct = load_hf_tokenizer(golden_tokenizer("llama3_style"));
  EXPECT_EQ(tok->eos_id(), 2u);
  const auto offsets = ds.doc_offsets();
  ASSERT_EQ(offsets.size(), docs.size() + 1);
  std::vector<std::string> decoded;
  for (size_t d = 0; d + 1 < offsets.size(); ++d) {
    std::vector<int32_t> buf(size_t(offsets[d + 1] - offsets[d]));
    ds.read(offsets[d], int64_t(buf.size()), buf.data());
    EXPECT_EQ(uint32_t(buf.back()), 2u);  // each document ends with the chosen EOS
    const std::vector<uint32_t> ids(buf.begin(), buf.end() - 1);
    decoded.push_back(tok->decode(ids));
    EXPECT_EQ(direct->encode(decoded.back()), ids);
  }
  std::sort(decoded.begin(), decoded.end());
  std::vector<std::string> want = docs;
  std::sort(want.begin(), want.end());
  EXPECT_EQ(decoded, want);
}

}  // namespace
}  // namespace cairn
