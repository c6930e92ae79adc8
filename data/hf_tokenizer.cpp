// Hugging Face tokenizer.json byte-level BPE (see hf_tokenizer.h). Encoding, per run of valid
// UTF-8: non-special added tokens matched in the raw text (normalized=false ones) -> normalizer ->
// added tokens matched in the normalized text -> Split regexes and the ByteLevel regex -> BPE of
// each piece's bytes, the order `tokenizers` follows.
#include "data/hf_tokenizer.h"

#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "data/byte_bpe.h"
#include "data/regex_split.h"
#include "util/error.h"
#include "util/utf8.h"

namespace cairn {

namespace {

using json = nlohmann::json;

// The regex of `tokenizers`' ByteLevel pre-tokenizer (use_regex=true), GPT-2's.
constexpr const char* kGpt2Regex = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
// Tried in this order when neither the spec nor a tokenizer_config.json names the EOS token.
constexpr const char* kDefaultEosTokens[] = {"<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>"};

struct AddedToken {
  std::string content;
  uint32_t id;
};

// How the EOS token is chosen: by id (from a dataset), or by content (`source` says from where).
struct EosChoice {
  std::optional<uint32_t> id;
  std::string token, source;
};

// Leftmost-longest matching of a set of strings (the `tokenizers` added-vocabulary rule).
class TokenMatcher {
 public:
  bool empty() const { return tokens_.empty(); }
  void add(AddedToken t) { tokens_.push_back(std::move(t)); }
  // Calls text_fn(segment) for the text between matches and token_fn(id) for each match, in order.
  template <class TextFn, class TokenFn>
  void split(std::string_view text, TextFn&& text_fn, TokenFn&& token_fn) const {
    std::vector<size_t> next(tokens_.size(), 0);  // next occurrence of each token at or after pos
    for (size_t k = 0; k < tokens_.size(); ++k) next[k] = text.find(tokens_[k].content);
    size_t pos = 0;
    while (true) {
      size_t best = std::string_view::npos, best_len = 0;
      const AddedToken* found = nullptr;
      for (size_t k = 0; k < tokens_.size(); ++k) {
        if (next[k] != std::string_view::npos && next[k] < pos) next[k] = text.find(tokens_[k].content, pos);
        const size_t len = tokens_[k].content.size();
        if (next[k] < best || (next[k] == best && best != std::string_view::npos && len > best_len)) {
          best = next[k];
          best_len = len;
          found = &tokens_[k];
        }
      }
      if (!found) break;
      if (best > pos) text_fn(text.substr(pos, best - pos));
      token_fn(found->id);
      pos = best + best_len;
    }
    if (pos < text.size()) text_fn(text.substr(pos));
  }

 private:
  std::vector<AddedToken> tokens_;
};

std::string nfc(std::string_view text) {
  UErrorCode err = U_ZERO_ERROR;
  const icu::Normalizer2* normalizer = icu::Normalizer2::getNFCInstance(err);
  std::string out;
  icu::StringByteSink<std::string> sink(&out, int32_t(text.size()));
  if (U_SUCCESS(err))
    normalizer->normalizeUTF8(0, icu::StringPiece(text.data(), int32_t(text.size())), sink, nullptr, err);
  if (U_FAILURE(err)) throw Error(str("NFC normalization failed: ", u_errorName(err)));
  return out;
}

// Code points below U+0300 are NFC-stable and never compose with what precedes them, and their
// UTF-8 lead bytes are below 0xCC: text without such a byte is its own NFC.
bool may_change_under_nfc(std::string_view text) {
  return std::any_of(text.begin(), text.end(), [](char c) { return uint8_t(c) >= 0xcc; });
}

// Typed access to the JSON with the path of each value in error messages.
class Reader {
 public:
  explicit Reader(std::string origin) : origin_(std::move(origin)) {}
  [[noreturn]] void fail(const std::string& path, const std::string& what) const {
    throw Error(str("tokenizer.json ", origin_, ": ", path, " ", what));
  }
  const json& get(const json& obj, const std::string& key, const std::string& path) const {
    if (!obj.is_object()) fail(path, "is not a JSON object");
    const auto it = obj.find(key);
    if (it == obj.end()) fail(path + "." + key, "is missing");
    return *it;
  }
  // obj[key] or `fallback` when the key is absent or null (a copy: fallbacks are temporaries).
  json optional(const json& obj, const std::string& key, const json& fallback) const {
    const auto it = obj.find(key);
    return it == obj.end() || it->is_null() ? fallback : *it;
  }
  std::string string(const json& v, const std::string& path) const {
    if (!v.is_string()) fail(path, str("must be a string, not ", v.dump()));
    return v.get<std::string>();
  }
  bool boolean(const json& v, const std::string& path) const {
    if (!v.is_boolean()) fail(path, str("must be true or false, not ", v.dump()));
    return v.get<bool>();
  }
  uint32_t id(const json& v, const std::string& path) const {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= int64_t(INT32_MAX))
      fail(path, str("must be a token id (an integer >= 0), not ", v.dump()));
    return uint32_t(v.get<int64_t>());
  }
  std::string type(const json& obj, const std::string& path) const {
    return string(get(obj, "type", path), path + ".type");
  }

 private:
  std::string origin_;
};

// A pre-tokenization step: a Split regex, or ByteLevel's own regex (`tokenizers` Isolated
// behavior both).
struct PreTokenizerSteps {
  std::vector<std::unique_ptr<RegexSplitter>> regexes;
  bool byte_level = false;
};

void read_pre_tokenizer(const Reader& r, const json& p, const std::string& path, PreTokenizerSteps& steps) {
  if (p.is_null()) r.fail(path, "is null: cairn reads byte-level BPE tokenizers (a ByteLevel pre_tokenizer)");
  const std::string type = r.type(p, path);
  if (steps.byte_level) r.fail(path, str("(", type, ") comes after ByteLevel: cairn needs ByteLevel last"));
  if (type == "Sequence") {
    const json& list = r.get(p, "pretokenizers", path);
    if (!list.is_array()) r.fail(path + ".pretokenizers", "must be an array");
    for (size_t i = 0; i < list.size(); ++i) read_pre_tokenizer(r, list[i], str(path, ".pretokenizers[", i, "]"), steps);
  } else if (type == "ByteLevel") {
    if (r.boolean(r.optional(p, "add_prefix_space", false), path + ".add_prefix_space"))
      r.fail(path + ".add_prefix_space", "is true, which cairn does not support (decoding would not give the text back)");
    if (r.boolean(r.optional(p, "use_regex", true), path + ".use_regex"))
      steps.regexes.push_back(std::make_unique<RegexSplitter>(kGpt2Regex, false, path));
    steps.byte_level = true;
  } else if (type == "Split") {
    const json& pattern = r.get(p, "pattern", path);
    const bool literal = pattern.is_object() && pattern.contains("String");
    if (!pattern.is_object() || (!literal && !pattern.contains("Regex")))
      r.fail(path + ".pattern", "must be {\"Regex\": ...} or {\"String\": ...}");
    const std::string key = literal ? "String" : "Regex";
    const std::string text = r.string(pattern.at(key), str(path, ".pattern.", key));
    const std::string behavior = r.string(r.get(p, "behavior", path), path + ".behavior");
    if (behavior != "Isolated")
      r.fail(path + ".behavior", str("\"", behavior, "\" is not supported: cairn supports \"Isolated\""));
    if (r.boolean(r.optional(p, "invert", false), path + ".invert")) r.fail(path + ".invert", "true is not supported");
    steps.regexes.push_back(std::make_unique<RegexSplitter>(text, literal, str(path, ".pattern.", key)));
  } else {
    r.fail(path + ".type", str("\"", type, "\" is not supported: cairn supports ByteLevel, Split and Sequence"));
  }
}

// True for NFC, false for none.
bool read_normalizer(const Reader& r, const json& n, const std::string& path) {
  if (n.is_null()) return false;
  const std::string type = r.type(n, path);
  if (type == "NFC") return true;
  if (type == "Sequence") {
    const json& list = r.get(n, "normalizers", path);
    if (!list.is_array()) r.fail(path + ".normalizers", "must be an array");
    bool any = false;
    for (size_t i = 0; i < list.size(); ++i) any |= read_normalizer(r, list[i], str(path, ".normalizers[", i, "]"));
    return any;
  }
  r.fail(path + ".type", str("\"", type, "\" is not supported: cairn supports no normalizer or NFC"));
}

// Distinguishes tokenizer objects for the per-thread state.
std::atomic<uint64_t> g_next_serial{1};

class HfBpeTokenizer final : public Tokenizer {
 public:
  HfBpeTokenizer(std::string text, const std::string& origin, const EosChoice& eos)
      : json_(std::move(text)), serial_(g_next_serial++) {
    const Reader r(origin);
    json doc;
    try {
      doc = json::parse(json_);
    } catch (const json::exception& e) {
      throw Error(str("tokenizer.json ", origin, " is not valid JSON: ", e.what()));
    }
    if (!doc.is_object()) r.fail("the top level", "is not a JSON object");
    const json& model = r.get(doc, "model", "");
    const std::string model_type = r.type(model, "model");
    if (model_type != "BPE")
      r.fail("model.type", str("\"", model_type, "\" is not supported: cairn reads byte-level BPE tokenizers"));
    nfc_ = read_normalizer(r, r.optional(doc, "normalizer", nullptr), "normalizer");
    read_pre_tokenizer(r, r.get(doc, "pre_tokenizer", ""), "pre_tokenizer", steps_);
    const json& decoder = r.get(doc, "decoder", "");
    if (decoder.is_null() || r.type(decoder, "decoder") != "ByteLevel")
      r.fail("decoder", str(decoder.dump(), " is not supported: cairn needs the ByteLevel decoder"));
    check_model_options(r, model);

    std::vector<std::pair<std::string, uint32_t>> vocab;
    const json& vocab_json = r.get(model, "vocab", "model");
    if (!vocab_json.is_object()) r.fail("model.vocab", "must be an object of token: id");
    for (const auto& [token, id] : vocab_json.items()) vocab.emplace_back(token, r.id(id, "model.vocab[\"" + token + "\"]"));

    std::unordered_set<uint32_t> special;
    std::vector<AddedToken> added;
    read_added_tokens(r, r.optional(doc, "added_tokens", json::array()), vocab_json, special, added);
    build_id_table(r, vocab, added, special);
    bpe_ = std::make_unique<ByteBpe>(vocab, read_merges(r, r.get(model, "merges", "model")),
                                     r.boolean(r.optional(model, "ignore_merges", false), "model.ignore_merges"),
                                     special);
    // An entry outside the byte-level alphabet decodes to its own UTF-8, as `tokenizers` does.
    for (const auto& [token, id] : vocab) decode_[id] = byte_level_bytes(token).value_or(token);
    for (const AddedToken& t : added) decode_[t.id] = t.content;
    eos_ = choose_eos(origin, eos, added, special);
  }

  std::vector<uint32_t> encode(std::string_view text) const override {
    ThreadState& st = thread_state();
    std::vector<uint32_t> ids;
    ids.reserve(text.size() / 3 + 1);
    for (size_t pos = 0; pos < text.size();) {
      const size_t bad = invalid_utf8_at(text, pos);
      const size_t end = bad == std::string_view::npos ? text.size() : bad;
      if (end > pos) encode_valid(text.substr(pos, end - pos), ids, st);
      if (end == text.size()) break;
      ids.push_back(bpe_->byte_id(uint8_t(text[end])));
      pos = end + 1;
    }
    return ids;
  }

  std::string decode(std::span<const uint32_t> ids) const override {
    std::string out;
    for (uint32_t id : ids) {
      if (int64_t(id) >= vocab_size())
        throw Error(str("hf_bpe tokenizer: token id ", id, " is outside the vocabulary of ", vocab_size()));
      if (!special_[id]) out += decode_[id];
    }
    return out;
  }
  int64_t vocab_size() const override { return int64_t(decode_.size()); }
  uint32_t eos_id() const override { return eos_; }
  std::string kind() const override { return kHfTokenizerKind; }
  std::string serialized() const override { return json_; }

 private:
  // Matching state of this thread for this tokenizer, rebuilt when the thread last served another.
  struct ThreadState {
    uint64_t owner = 0;
    std::vector<std::unique_ptr<RegexSplitter::Scratch, void (*)(RegexSplitter::Scratch*)>> scratch;
    PieceCache cache;
  };
  ThreadState& thread_state() const {
    thread_local ThreadState st;
    if (st.owner != serial_) {
      st.scratch.clear();
      for (const auto& re : steps_.regexes) st.scratch.push_back(re->make_scratch());
      st.cache = PieceCache();
      st.owner = serial_;
    }
    return st;
  }

  void encode_valid(std::string_view text, std::vector<uint32_t>& ids, ThreadState& st) const {
    auto push = [&](uint32_t id) { ids.push_back(id); };
    auto pre_tokenize = [&](std::string_view s) { split_step(0, s, ids, st); };
    auto normalized = [&](std::string_view s) {
      if (!nfc_ || !may_change_under_nfc(s)) return normalized_tokens_.split(s, pre_tokenize, push);
      const std::string n = nfc(s);
      normalized_tokens_.split(n, pre_tokenize, push);
    };
    raw_tokens_.split(text, normalized, push);
  }

  void split_step(size_t step, std::string_view s, std::vector<uint32_t>& ids, ThreadState& st) const {
    if (step == steps_.regexes.size()) return bpe_->encode_piece(s, ids, st.cache);
    steps_.regexes[step]->split(s, *st.scratch[step], [&](std::string_view p) { split_step(step + 1, p, ids, st); });
  }

  static void check_model_options(const Reader& r, const json& model) {
    const json dropout = r.optional(model, "dropout", nullptr);
    if (!dropout.is_null() && !(dropout.is_number() && dropout.get<double>() == 0.0))
      r.fail("model.dropout", str(dropout.dump(), " is not supported: encoding must be deterministic"));
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      const json v = r.optional(model, key, "");
      if (!v.is_string() || !v.get<std::string>().empty())
        r.fail(str("model.", key), str(v.dump(), " is not supported in a byte-level BPE"));
    }
  }

  static std::vector<ByteBpe::Merge> read_merges(const Reader& r, const json& merges) {
    if (!merges.is_array()) r.fail("model.merges", "must be an array");
    std::vector<ByteBpe::Merge> out;
    out.reserve(merges.size());
    for (size_t i = 0; i < merges.size(); ++i) {
      const json& m = merges[i];
      const std::string path = str("model.merges[", i, "]");
      if (m.is_string()) {
        const std::string s = m.get<std::string>();
        const size_t space = s.find(' ');
        if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos)
          r.fail(path, str("\"", s, "\" must be two tokens separated by one space"));
        out.push_back({s.substr(0, space), s.substr(space + 1)});
      } else if (m.is_array() && m.size() == 2) {
        out.push_back({r.string(m[0], path + "[0]"), r.string(m[1], path + "[1]")});
      } else {
        r.fail(path, str("must be \"a b\" or [\"a\", \"b\"], not ", m.dump()));
      }
    }
    return out;
  }

  void read_added_tokens(const Reader& r, const json& list, const json& vocab, std::unordered_set<uint32_t>& special,
                         std::vector<AddedToken>& added) {
    if (!list.is_array()) r.fail("added_tokens", "must be an array");
    for (size_t i = 0; i < list.size(); ++i) {
      const std::string path = str("added_tokens[", i, "]");
      const json& t = list[i];
      AddedToken tok{r.string(r.get(t, "content", path), path + ".content"), r.id(r.get(t, "id", path), path + ".id")};
      if (tok.content.empty()) r.fail(path + ".content", "is empty");
      const auto in_vocab = vocab.find(tok.content);
      if (in_vocab != vocab.end() && *in_vocab != tok.id)
        r.fail(path, str("'", tok.content, "' has id ", tok.id, " but model.vocab gives it ", in_vocab->dump()));
      if (r.boolean(r.optional(t, "special", false), path + ".special")) {
        special.insert(tok.id);
      } else {
        for (const char* key : {"single_word", "lstrip", "rstrip"})
          if (r.boolean(r.optional(t, key, false), str(path, ".", key)))
            r.fail(str(path, ".", key), "is true, which cairn does not support for a non-special added token");
        (r.boolean(r.optional(t, "normalized", true), path + ".normalized") && nfc_ ? normalized_tokens_ : raw_tokens_)
            .add(tok);
      }
      added.push_back(std::move(tok));
    }
  }

  // Every id in [0, vocab size) must name exactly one token.
  void build_id_table(const Reader& r, const std::vector<std::pair<std::string, uint32_t>>& vocab,
                      const std::vector<AddedToken>& added, const std::unordered_set<uint32_t>& special) {
    uint32_t size = 0;
    for (const auto& v : vocab) size = std::max(size, v.second + 1);
    for (const auto& t : added) size = std::max(size, t.id + 1);
    std::vector<const std::string*> owner(size, nullptr);
    auto claim = [&](const std::string& token, uint32_t id, bool added_token) {
      if (owner[id] && !(added_token && *owner[id] == token))
        r.fail(str("id ", id), str("names two tokens, '", *owner[id], "' and '", token, "'"));
      owner[id] = &token;
    };
    for (const auto& v : vocab) claim(v.first, v.second, false);
    for (const auto& t : added) claim(t.content, t.id, true);
    const auto gap = std::find(owner.begin(), owner.end(), nullptr);
    if (gap != owner.end())
      r.fail(str("id ", gap - owner.begin()), str("has no token, but ids go up to ", size - 1,
                                                  ": cairn needs the ids to be 0..vocab size - 1"));
    decode_.assign(size, std::string());
    special_.assign(size, false);
    for (uint32_t id : special) special_[id] = true;
  }

  uint32_t choose_eos(const std::string& origin, const EosChoice& eos, const std::vector<AddedToken>& added,
                      const std::unordered_set<uint32_t>& special) {
    std::string specials;
    for (const AddedToken& t : added)
      if (special.count(t.id)) specials += str(specials.empty() ? "" : ", ", t.content);
    if (specials.empty()) specials = "none";
    if (eos.id) {
      if (*eos.id >= decode_.size() || !special_[*eos.id])
        throw Error(str("tokenizer.json ", origin, ": the EOS id ", *eos.id, " (",
                        eos.source.empty() ? "recorded with the dataset" : eos.source,
                        ") is not a special token of it (special tokens: ", specials, ")"));
      return *eos.id;
    }
    auto special_id = [&](const std::string& content) -> std::optional<uint32_t> {
      for (const AddedToken& t : added)
        if (t.content == content && special.count(t.id)) return t.id;
      return std::nullopt;
    };
    if (!eos.token.empty()) {
      if (const auto id = special_id(eos.token)) return *id;
      throw Error(str("tokenizer.json ", origin, ": the EOS token '", eos.token, "' (", eos.source,
                      ") is not one of its special added tokens (", specials,
                      "): name one with --tokenizer hf:PATH#eos=TOKEN"));
    }
    for (const char* name : kDefaultEosTokens)
      if (const auto id = special_id(name)) return *id;
    throw Error(str("tokenizer.json ", origin, " has none of the usual EOS tokens (<|endoftext|>, <|end_of_text|>, "
                    "</s>, <eos>) among its special tokens (", specials,
                    "): name the one that ends a document with --tokenizer hf:PATH#eos=TOKEN"));
  }

  std::string json_;
  uint64_t serial_;
  bool nfc_ = false;
  PreTokenizerSteps steps_;
  TokenMatcher raw_tokens_, normalized_tokens_;  // non-special added tokens, matched before / after NFC
  std::unique_ptr<ByteBpe> bpe_;
  std::vector<std::string> decode_;  // bytes of each id
  std::vector<bool> special_;
  uint32_t eos_ = 0;
};

std::string read_text_file(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(str("cannot read ", what, " '", path, "'"));
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad()) throw Error(str("error while reading ", what, " '", path, "'"));
  return buf.str();
}

// The eos_token of a tokenizer_config.json next to the tokenizer.json, or "" when there is none.
std::string eos_from_tokenizer_config(const std::filesystem::path& config) {
  std::error_code ec;
  if (!std::filesystem::exists(config, ec)) return "";
  json cfg;
  try {
    cfg = json::parse(read_text_file(config.string(), "tokenizer config"));
  } catch (const json::exception& e) {
    throw Error(str("'", config.string(), "' is not valid JSON: ", e.what()));
  }
  const auto it = cfg.find("eos_token");
  if (it == cfg.end() || it->is_null()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) return (*it)["content"];
  throw Error(str("'", config.string(), "': eos_token ", it->dump(), " is neither a string nor {\"content\": ...}"));
}

// The model's end-of-sequence id from a generation_config.json (eos_token_id, an id or a list whose
// first entry is the end of text), or nullopt when there is none.
std::optional<uint32_t> eos_from_generation_config(const std::filesystem::path& config) {
  std::error_code ec;
  if (!std::filesystem::exists(config, ec)) return std::nullopt;
  json cfg;
  try {
    cfg = json::parse(read_text_file(config.string(), "generation config"));
  } catch (const json::exception& e) {
    throw Error(str("'", config.string(), "' is not valid JSON: ", e.what()));
  }
  const auto it = cfg.find("eos_token_id");
  if (it == cfg.end() || it->is_null()) return std::nullopt;
  const json& id = it->is_array() && !it->empty() ? (*it)[0] : *it;
  if (!id.is_number_unsigned())
    throw Error(str("'", config.string(), "': eos_token_id ", it->dump(), " is neither an id nor a list of ids"));
  return id.get<uint32_t>();
}

}  // namespace

std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& spec) {
  const size_t mark = spec.rfind("#eos=");
  std::string path = spec.substr(0, mark);
  EosChoice eos;
  // A model directory: its tokenizer.json, and the EOS the model generates (generation_config.json).
  if (std::filesystem::is_directory(path)) {
    const std::filesystem::path dir(path);
    path = (dir / "tokenizer.json").string();
    if (mark == std::string::npos) {
      if (const auto id = eos_from_generation_config(dir / "generation_config.json")) {
        eos.id = *id;
        eos.source = str("eos_token_id of ", (dir / "generation_config.json").string());
      }
    }
  }
  if (mark != std::string::npos) {
    eos.token = spec.substr(mark + 5);
    eos.source = "given with #eos=";
    if (eos.token.empty()) throw Error(str("'", spec, "': #eos= names no token"));
  } else if (!eos.id) {
    const auto config = std::filesystem::path(path).parent_path() / "tokenizer_config.json";
    eos.token = eos_from_tokenizer_config(config);
    eos.source = str("eos_token of ", config.string());
  }
  return std::make_unique<HfBpeTokenizer>(read_text_file(path, "tokenizer.json"), str("'", path, "'"), eos);
}

std::unique_ptr<Tokenizer> load_hf_tokenizer_serialized(const std::string& json, uint32_t eos_id,
                                                        const std::string& origin) {
  EosChoice eos;
  eos.id = eos_id;
  return std::make_unique<HfBpeTokenizer>(json, origin, eos);
}

}  // namespace cairn
