// manifest.json reading, checking and writing (see dataset_manifest.h).
#include "data/dataset_manifest.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "util/error.h"
#include "util/file_io.h"
#include "util/hash.h"

namespace cairn {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

json shards_json(const std::vector<ShardEntry>& shards) {
  json a = json::array();
  for (const auto& s : shards)
    a.push_back({{"file", s.file}, {"tokens", s.tokens}, {"documents", s.documents}, {"bytes", s.bytes},
                 {"xxh64", hash_hex(s.xxh64)}});
  return a;
}

// Typed access to manifest keys: a missing key or a wrong type is an Error naming the file and key.
class Reader {
 public:
  explicit Reader(std::string file) : file_(std::move(file)) {}
  [[noreturn]] void bad(const std::string& problem) const {
    throw Error(str("token dataset manifest '", file_, "' ", problem,
                    "; re-create the dataset with `cairn prepare` (or `cairn prepare --merge` for parts)"));
  }
  const json& at(const json& obj, const char* key, const std::string& where) const {
    if (!obj.is_object() || !obj.contains(key)) bad(str("lacks \"", key, "\"", where));
    return obj[key];
  }
  int64_t integer(const json& obj, const char* key, const std::string& where = "") const {
    const json& v = at(obj, key, where);
    if (!v.is_number_integer() || v.get<int64_t>() < 0) bad(str("has \"", key, "\"", where, " that is not an integer >= 0"));
    return v.get<int64_t>();
  }
  std::string string(const json& obj, const char* key, const std::string& where = "") const {
    const json& v = at(obj, key, where);
    if (!v.is_string()) bad(str("has \"", key, "\"", where, " that is not a string"));
    return v.get<std::string>();
  }
  uint64_t hash(const json& obj, const char* key, const std::string& where = "") const {
    const std::string h = string(obj, key, where);
    if (h.size() != 16 || h.find_first_not_of("0123456789abcdef") != std::string::npos)
      bad(str("has \"", key, "\"", where, " = \"", h, "\", not 16 hex digits"));
    return std::stoull(h, nullptr, 16);
  }
  // A relative path that stays inside the dataset directory.
  std::string inner_path(const json& obj, const char* key, const std::string& where) const {
    const std::string p = string(obj, key, where);
    const fs::path path(p);
    bool escapes = p.empty() || path.is_absolute();
    for (const auto& part : path)
      if (part == "..") escapes = true;
    if (escapes) bad(str("names file \"", p, "\"", where, " outside the dataset directory"));
    return p;
  }
  std::vector<ShardEntry> shards(const json& root, const char* split) const {
    const json& a = at(root, split, "");
    if (!a.is_array()) bad(str("has \"", split, "\" that is not a list of shards"));
    std::vector<ShardEntry> out;
    for (size_t i = 0; i < a.size(); ++i) {
      const std::string where = str(" in ", split, " shard ", i);
      ShardEntry s;
      s.file = inner_path(a[i], "file", where);
      s.tokens = integer(a[i], "tokens", where);
      s.documents = integer(a[i], "documents", where);
      s.bytes = integer(a[i], "bytes", where);
      s.xxh64 = hash(a[i], "xxh64", where);
      out.push_back(std::move(s));
    }
    return out;
  }

 private:
  std::string file_;
};

}  // namespace

int64_t split_tokens(const std::vector<ShardEntry>& shards) {
  int64_t n = 0;
  for (const auto& s : shards) n += s.tokens;
  return n;
}

int64_t split_documents(const std::vector<ShardEntry>& shards) {
  int64_t n = 0;
  for (const auto& s : shards) n += s.documents;
  return n;
}

void write_manifest(const std::string& dir, const DatasetManifest& m) {
  json tok = {{"kind", m.tokenizer}, {"vocab_size", m.vocab_size}, {"eos_id", m.eos_id}};
  if (!m.tokenizer_file.empty()) {
    tok["model_file"] = m.tokenizer_file;
    tok["model_bytes"] = m.tokenizer_bytes;
    tok["model_xxh64"] = hash_hex(m.tokenizer_xxh64);
  }
  const json j = {
      {"format", kDatasetFormat},
      {"format_version", kDatasetFormatVersion},
      {"tokenizer", tok},
      {"token_type", m.token_type},
      {"train_tokens", split_tokens(m.train)},
      {"val_tokens", split_tokens(m.val)},
      {"train", shards_json(m.train)},
      {"val", shards_json(m.val)},
      {"source",
       {{"part", m.part},
        {"parts", m.parts},
        {"inputs_xxh64", hash_hex(m.inputs_xxh64)},
        {"input_files", m.input_files},
        {"skipped_files", m.skipped_files},
        {"skipped_documents", m.skipped_documents},
        {"text_bytes", m.text_bytes}}},
  };
  write_file_atomic((fs::path(dir) / kManifestFile).string(), j.dump(1) + "\n");
}

DatasetManifest read_manifest(const std::string& dir) {
  const std::string file = (fs::path(dir) / kManifestFile).string();
  std::ifstream in(file);
  if (!in) throw Error(str("token dataset '", dir, "' has no readable ", kManifestFile, " (is it a dataset directory "
                           "made by `cairn prepare`?)"));
  std::stringstream ss;
  ss << in.rdbuf();
  const Reader r(file);
  json j;
  try {
    j = json::parse(ss.str());
  } catch (const json::exception& e) {
    r.bad(str("is not valid JSON (", e.what(), ")"));
  }
  if (!j.is_object()) r.bad("is not a JSON object");
  if (r.string(j, "format") != kDatasetFormat) r.bad(str("has format \"", j["format"].get<std::string>(), "\", not \"", kDatasetFormat, "\""));
  const int64_t version = r.integer(j, "format_version");
  if (version != kDatasetFormatVersion)
    r.bad(str("has format_version ", version, " but this cairn reads version ", kDatasetFormatVersion));
  DatasetManifest m;
  const json& tok = r.at(j, "tokenizer", "");
  m.tokenizer = r.string(tok, "kind", " in \"tokenizer\"");
  m.vocab_size = r.integer(tok, "vocab_size", " in \"tokenizer\"");
  m.eos_id = r.integer(tok, "eos_id", " in \"tokenizer\"");
  if (tok.contains("model_file")) {
    m.tokenizer_file = r.inner_path(tok, "model_file", " in \"tokenizer\"");
    m.tokenizer_bytes = r.integer(tok, "model_bytes", " in \"tokenizer\"");
    m.tokenizer_xxh64 = r.hash(tok, "model_xxh64", " in \"tokenizer\"");
  }
  m.token_type = r.string(j, "token_type");
  if (m.token_type != "uint16" && m.token_type != "uint32") r.bad(str("has token_type \"", m.token_type, "\""));
  if (m.vocab_size == 0 || (m.token_type == "uint16" && m.vocab_size > 65536))
    r.bad(str("has vocab_size ", m.vocab_size, " for ", m.token_type, " tokens"));
  if (m.eos_id >= m.vocab_size) r.bad(str("has eos_id ", m.eos_id, " outside its vocabulary of ", m.vocab_size));
  m.train = r.shards(j, "train");
  m.val = r.shards(j, "val");
  if (r.integer(j, "train_tokens") != split_tokens(m.train) || r.integer(j, "val_tokens") != split_tokens(m.val))
    r.bad("has train_tokens or val_tokens different from the sum over its shards");
  if (split_tokens(m.train) + split_tokens(m.val) == 0) r.bad("lists no tokens");
  const json& src = r.at(j, "source", "");
  m.part = r.integer(src, "part", " in \"source\"");
  m.parts = r.integer(src, "parts", " in \"source\"");
  m.inputs_xxh64 = r.hash(src, "inputs_xxh64", " in \"source\"");
  m.input_files = r.integer(src, "input_files", " in \"source\"");
  m.skipped_files = r.integer(src, "skipped_files", " in \"source\"");
  m.skipped_documents = r.integer(src, "skipped_documents", " in \"source\"");
  m.text_bytes = r.integer(src, "text_bytes", " in \"source\"");
  if (m.parts < 1 || m.part >= m.parts) r.bad(str("has part ", m.part, " of ", m.parts));
  return m;
}

bool is_dataset_directory(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(path, ec) && fs::exists(fs::path(path) / kManifestFile, ec);
}

}  // namespace cairn
