// Token dataset writers and the reader of both layouts (see token_dataset.h and docs/formats.md).
#include "data/token_dataset.h"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "data/hf_tokenizer.h"
#include "data/tokenizer.h"
#include "util/error.h"
#include "util/file_io.h"

namespace cairn {

namespace fs = std::filesystem;

namespace {

constexpr size_t kFlushTokens = 1 << 20;
constexpr int64_t kOffsetChunk = 8192;  // document offsets per HDF5 chunk (64 KiB)
// Each open shard keeps HDF5's chunk cache (up to 32 MB): a few open shards bound the reader's
// memory whatever the number of shards; reopening one costs well under a millisecond.
constexpr size_t kMaxOpenShards = 8;

// Index of the first id in ids[0, n) that is >= vocab, or n.
template <typename T>
int64_t first_out_of_vocab(const T* ids, int64_t n, int64_t vocab) {
  T max = 0;
  for (int64_t i = 0; i < n; ++i) max = std::max(max, ids[i]);  // vectorizes; the search below rarely runs
  if (int64_t(max) < vocab) return n;
  for (int64_t i = 0; i < n; ++i)
    if (int64_t(ids[i]) >= vocab) return i;
  return n;
}

int64_t file_bytes(const std::string& path) {
  std::error_code ec;
  const auto n = fs::file_size(path, ec);
  return ec ? -1 : int64_t(n);
}

std::string read_whole_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(str("cannot read '", path, "'"));
  std::ostringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

}  // namespace

// ---- TokenFileWriter ----------------------------------------------------------------------------

TokenFileWriter::TokenFileWriter(std::string path, int64_t vocab_size)
    : path_(std::move(path)), tmp_path_(path_ + ".tmp"), vocab_size_(vocab_size), narrow_(vocab_size <= 65536) {
  try {
    file_.emplace(H5File::create(tmp_path_));
    // uint16 halves the file and the read bandwidth whenever every id fits.
    if (narrow_)
      tokens_.emplace(H5Dataset1D::create_extendable<uint16_t>(*file_, "tokens", kTokenChunk));
    else
      tokens_.emplace(H5Dataset1D::create_extendable<uint32_t>(*file_, "tokens", kTokenChunk));
    offsets_.emplace(H5Dataset1D::create_extendable<int64_t>(*file_, "doc_offsets", kOffsetChunk));
  } catch (const Error&) {  // no destructor runs: leave no partial file (a full disk gets its space back)
    tokens_.reset();
    offsets_.reset();
    file_.reset();
    std::error_code ec;
    fs::remove(tmp_path_, ec);
    throw;
  }
  buffer_.reserve(kFlushTokens + 1);
}

TokenFileWriter::~TokenFileWriter() {
  if (!file_) return;
  tokens_.reset();
  offsets_.reset();
  file_.reset();
  std::error_code ec;
  fs::remove(tmp_path_, ec);
}

void TokenFileWriter::begin_document() {
  CAIRN_ASSERT(file_, "begin_document after finish");
  offset_buffer_.push_back(total_);
  ++documents_;
  if (offset_buffer_.size() >= kFlushTokens) flush();
}

void TokenFileWriter::append(std::span<const uint32_t> ids) {
  CAIRN_ASSERT(file_, "append after finish");
  const int64_t bad = first_out_of_vocab(ids.data(), int64_t(ids.size()), vocab_size_);
  if (bad < int64_t(ids.size()))
    throw Error(str("token id ", ids[size_t(bad)], " at position ", total_ + bad, " of '", path_,
                    "' is outside the tokenizer's vocabulary of ", vocab_size_));
  buffer_.insert(buffer_.end(), ids.begin(), ids.end());
  total_ += int64_t(ids.size());
  if (buffer_.size() >= kFlushTokens) flush();
}

void TokenFileWriter::flush() {
  if (narrow_) {
    narrow_buffer_.assign(buffer_.begin(), buffer_.end());
    hash_.update(narrow_buffer_.data(), narrow_buffer_.size() * sizeof(uint16_t));
    tokens_->append(narrow_buffer_.data(), int64_t(narrow_buffer_.size()));
  } else {
    hash_.update(buffer_.data(), buffer_.size() * sizeof(uint32_t));
    tokens_->append(buffer_.data(), int64_t(buffer_.size()));
  }
  buffer_.clear();
  offsets_->append(offset_buffer_.data(), int64_t(offset_buffer_.size()));
  offset_buffer_.clear();
}

uint64_t TokenFileWriter::finish(const std::function<void(const H5File&)>& attributes) {
  CAIRN_ASSERT(file_, "finish called twice");
  flush();
  offsets_->append(&total_, 1);
  attributes(*file_);
  tokens_->close();
  offsets_->close();
  tokens_.reset();
  offsets_.reset();
  file_->close();
  file_.reset();
  rename_file(tmp_path_, path_);
  return hash_.digest();
}

// ---- TokenDatasetWriter -------------------------------------------------------------------------

TokenDatasetWriter::TokenDatasetWriter(std::string path, const Tokenizer& tokenizer)
    : path_(path),
      eos_id_(tokenizer.eos_id()),
      kind_(tokenizer.kind()),
      model_(tokenizer.serialized()),
      vocab_size_(tokenizer.vocab_size()),
      file_(std::move(path), tokenizer.vocab_size()) {}

void TokenDatasetWriter::add_document(std::span<const uint32_t> ids) {
  file_.begin_document();
  file_.append(ids);
  file_.append(std::span<const uint32_t>(&eos_id_, 1));
}

void TokenDatasetWriter::begin_validation() {
  CAIRN_ASSERT(!val_start_, "begin_validation called twice");
  val_start_ = file_.num_tokens();
}

void TokenDatasetWriter::finalize() {
  if (file_.num_tokens() == 0) throw Error(str("token dataset '", path_, "' would be empty: no documents were added"));
  const int64_t val_start = val_start_.value_or(file_.num_tokens());
  file_.finish([&](const H5File& f) {
    if (!model_.empty())
      write_dataset(f, "tokenizer_model", reinterpret_cast<const uint8_t*>(model_.data()), {int64_t(model_.size())});
    write_attr_string(f, "format", kTokenFormat);
    write_attr_int(f, "format_version", kTokenFormatVersion);
    write_attr_int(f, "vocab_size", vocab_size_);
    write_attr_int(f, "eos_id", eos_id_);
    write_attr_string(f, "tokenizer", kind_);
    write_attr_int(f, "val_start", val_start);
  });
}

// ---- ShardedDatasetWriter -----------------------------------------------------------------------

struct ShardedDatasetWriter::Split {
  std::string name;  // "train" or "val"
  std::unique_ptr<TokenFileWriter> writer;
  std::vector<ShardEntry> shards;
};

std::string tokenizer_model_file_name(const std::string& kind) {
  if (kind == "sentencepiece") return "tokenizer.model";
  if (kind == kHfTokenizerKind) return "tokenizer.json";
  return str("tokenizer-", kind, ".bin");
}

ShardedDatasetWriter::ShardedDatasetWriter(std::string dir, const Tokenizer& tokenizer, int64_t shard_tokens)
    : train_(new Split{"train", nullptr, {}}),
      val_(new Split{"val", nullptr, {}}),
      dir_(std::move(dir)),
      shard_tokens_(shard_tokens),
      vocab_size_(tokenizer.vocab_size()),
      eos_id_(tokenizer.eos_id()),
      kind_(tokenizer.kind()),
      model_(tokenizer.serialized()) {
  CAIRN_ASSERT(shard_tokens_ > 0, "shard_tokens ", shard_tokens_);
}

ShardedDatasetWriter::~ShardedDatasetWriter() = default;

void ShardedDatasetWriter::begin_document(bool validation) {
  CAIRN_ASSERT(!in_document_, "begin_document inside a document");
  current_ = validation ? val_.get() : train_.get();
  if (!current_->writer) {
    char name[32];
    std::snprintf(name, sizeof name, "%s-%05zu.h5", current_->name.c_str(), current_->shards.size());
    current_->writer = std::make_unique<TokenFileWriter>((fs::path(dir_) / name).string(), vocab_size_);
    current_->shards.push_back({name, 0, 0, 0, 0});
  }
  current_->writer->begin_document();
  in_document_ = true;
}

void ShardedDatasetWriter::append(std::span<const uint32_t> ids) {
  CAIRN_ASSERT(in_document_, "append outside a document");
  current_->writer->append(ids);
}

void ShardedDatasetWriter::end_document() {
  CAIRN_ASSERT(in_document_, "end_document outside a document");
  current_->writer->append(std::span<const uint32_t>(&eos_id_, 1));
  in_document_ = false;
  if (current_->writer->num_tokens() >= shard_tokens_) close_shard(*current_);
}

void ShardedDatasetWriter::close_shard(Split& s) {
  ShardEntry& e = s.shards.back();
  e.tokens = s.writer->num_tokens();
  e.documents = s.writer->num_documents();
  e.xxh64 = s.writer->finish([&](const H5File& f) {
    write_attr_string(f, "format", kShardFormat);
    write_attr_int(f, "format_version", kShardFormatVersion);
    write_attr_int(f, "vocab_size", vocab_size_);
    write_attr_int(f, "eos_id", eos_id_);
    write_attr_string(f, "split", s.name);
  });
  e.bytes = file_bytes((fs::path(dir_) / e.file).string());
  s.writer.reset();
}

DatasetManifest ShardedDatasetWriter::finish() {
  CAIRN_ASSERT(!in_document_, "finish inside a document");
  for (Split* s : {train_.get(), val_.get()})
    if (s->writer) close_shard(*s);
  DatasetManifest m;
  m.tokenizer = kind_;
  m.vocab_size = vocab_size_;
  m.eos_id = eos_id_;
  m.token_type = vocab_size_ <= 65536 ? "uint16" : "uint32";
  if (!model_.empty()) {
    m.tokenizer_file = tokenizer_model_file_name(kind_);
    write_file_atomic((fs::path(dir_) / m.tokenizer_file).string(), model_);
    m.tokenizer_bytes = int64_t(model_.size());
    Hash64 h;
    h.update(model_.data(), model_.size());
    m.tokenizer_xxh64 = h.digest();
  }
  m.train = train_->shards;
  m.val = val_->shards;
  return m;
}

// ---- TokenDataset -------------------------------------------------------------------------------

struct TokenDataset::Shard {
  std::string path;
  int64_t begin = 0, tokens = 0, bytes = 0;
  std::optional<uint64_t> xxh64;  // recorded in the manifest (directories only)
};

struct TokenDataset::OpenShard {
  OpenShard(size_t i, H5File f, H5Dataset1D t) : index(i), file(std::move(f)), tokens(std::move(t)) {}
  size_t index;
  H5File file;
  H5Dataset1D tokens;
};

TokenDataset::TokenDataset() = default;
TokenDataset::TokenDataset(TokenDataset&&) noexcept = default;
TokenDataset& TokenDataset::operator=(TokenDataset&&) noexcept = default;
TokenDataset::~TokenDataset() = default;

TokenDataset TokenDataset::open(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) return open_directory(path);
  return open_file(path);
}

TokenDataset TokenDataset::open_file(const std::string& path) {
  auto bad = [&](const std::string& problem) {
    return Error(str("token dataset '", path, "' ", problem, "; re-create it with `cairn prepare`"));
  };
  std::optional<H5File> file;
  try {
    file.emplace(H5File::open(path));
  } catch (const Error& e) {
    throw Error(str("cannot open token dataset: ", e.what()));
  }
  const H5File& f = *file;
  if (!has_attr(f, "format") || read_attr_string(f, "format") != kTokenFormat)
    throw bad(str("is not a cairn token dataset (its `format` attribute is not \"", kTokenFormat, "\")"));
  int64_t version = has_attr(f, "format_version") ? read_attr_int(f, "format_version") : -1;
  if (version != kTokenFormatVersion)
    throw bad(str("has format version ", version, " but this cairn reads version ", kTokenFormatVersion));
  for (const char* a : {"vocab_size", "eos_id", "tokenizer", "val_start"})
    if (!has_attr(f, a)) throw bad(str("lacks the `", a, "` attribute"));
  for (const char* d : {"tokens", "doc_offsets"})
    if (!f.has(d)) throw bad(str("has no /", d, " dataset"));

  TokenDataset ds;
  ds.path_ = path;
  H5Dataset1D tokens = H5Dataset1D::open(f, "tokens");
  size_t width = tokens.element_size();
  if (!tokens.is_unsigned_integer() || (width != 2 && width != 4))
    throw bad("stores /tokens in a type other than uint16 or uint32");
  ds.vocab_size_ = read_attr_int(f, "vocab_size");
  int64_t eos = read_attr_int(f, "eos_id");
  ds.val_start_ = read_attr_int(f, "val_start");
  ds.kind_ = read_attr_string(f, "tokenizer");
  int64_t n = tokens.size();
  if (n == 0) throw bad("is empty (it has no tokens)");
  if (ds.vocab_size_ <= 0 || (width == 2 && ds.vocab_size_ > 65536))
    throw bad(str("has an invalid vocab_size ", ds.vocab_size_, " for ", width * 8, "-bit tokens"));
  if (eos < 0 || eos >= ds.vocab_size_) throw bad(str("has eos_id ", eos, " outside its vocabulary of ", ds.vocab_size_));
  ds.eos_id_ = uint32_t(eos);
  if (ds.val_start_ < 0 || ds.val_start_ > n) throw bad(str("has val_start ", ds.val_start_, " outside [0, ", n, "]"));
  if (ds.kind_ != "byte" && !f.has("tokenizer_model"))
    throw bad(str("uses a ", ds.kind_, " tokenizer but has no /tokenizer_model"));
  H5Dataset1D offsets = H5Dataset1D::open(f, "doc_offsets");
  int64_t last = -1;
  if (offsets.size() > 0) offsets.read(offsets.size() - 1, 1, &last);
  if (last != n) throw bad(str("has /doc_offsets ending at ", last, " but ", n, " tokens"));
  ds.num_tokens_ = n;
  ds.shards_.push_back({path, 0, n, file_bytes(path), std::nullopt});
  ds.open_.push_back(std::make_unique<OpenShard>(0, std::move(*file), std::move(tokens)));
  return ds;
}

TokenDataset TokenDataset::open_directory(const std::string& path) {
  const DatasetManifest m = read_manifest(path);
  TokenDataset ds;
  ds.path_ = path;
  ds.directory_ = true;
  ds.vocab_size_ = m.vocab_size;
  ds.eos_id_ = uint32_t(m.eos_id);
  ds.kind_ = m.tokenizer;
  const size_t width = m.token_type == "uint16" ? 2 : 4;
  auto bad = [&](const std::string& file, const std::string& problem) {
    return Error(str("token dataset '", path, "': '", file, "' listed in ", kManifestFile, " ", problem,
                     "; re-create the dataset with `cairn prepare`"));
  };
  if (!m.tokenizer_file.empty()) {
    ds.model_file_ = (fs::path(path) / m.tokenizer_file).string();
    ds.model_bytes_ = m.tokenizer_bytes;
    ds.model_xxh64_ = m.tokenizer_xxh64;
    const int64_t bytes = file_bytes(ds.model_file_);
    if (bytes < 0) throw bad(m.tokenizer_file, "is missing");
    if (bytes != m.tokenizer_bytes) throw bad(m.tokenizer_file, str("has ", bytes, " bytes, not the recorded ", m.tokenizer_bytes));
  } else if (m.tokenizer != "byte") {
    throw Error(str("token dataset '", path, "': ", kManifestFile, " names tokenizer '", m.tokenizer,
                    "' but no model file; re-create the dataset with `cairn prepare`"));
  }
  for (const auto* split : {&m.train, &m.val}) {
    if (split == &m.val) ds.val_start_ = ds.num_tokens_;
    for (const ShardEntry& e : *split) {
      const std::string file = (fs::path(path) / e.file).string();
      const int64_t bytes = file_bytes(file);
      if (bytes < 0) throw bad(e.file, "is missing");
      if (bytes != e.bytes)
        throw bad(e.file, str("has ", bytes, " bytes, not the recorded ", e.bytes, " (truncated or replaced)"));
      std::optional<H5File> f;
      try {
        f.emplace(H5File::open(file));
      } catch (const Error& err) {
        throw bad(e.file, str("cannot be opened: ", err.what()));
      }
      if (!has_attr(*f, "format") || read_attr_string(*f, "format") != kShardFormat)
        throw bad(e.file, str("is not a token shard (its `format` attribute is not \"", kShardFormat, "\")"));
      const int64_t version = has_attr(*f, "format_version") ? read_attr_int(*f, "format_version") : -1;
      if (version != kShardFormatVersion)
        throw bad(e.file, str("has shard format version ", version, " but this cairn reads ", kShardFormatVersion));
      if (!f->has("tokens") || !has_attr(*f, "vocab_size") || read_attr_int(*f, "vocab_size") != m.vocab_size)
        throw bad(e.file, str("lacks /tokens or has a vocab_size other than the manifest's ", m.vocab_size));
      H5Dataset1D tokens = H5Dataset1D::open(*f, "tokens");
      if (tokens.size() != e.tokens) throw bad(e.file, str("holds ", tokens.size(), " tokens, not the recorded ", e.tokens));
      if (!tokens.is_unsigned_integer() || tokens.element_size() != width)
        throw bad(e.file, str("stores /tokens in a type other than the manifest's ", m.token_type));
      ds.shards_.push_back({file, ds.num_tokens_, e.tokens, e.bytes, e.xxh64});
      ds.num_tokens_ += e.tokens;
    }
  }
  if (m.val.empty()) ds.val_start_ = ds.num_tokens_;
  return ds;
}

const TokenDataset::OpenShard& TokenDataset::shard_data(size_t i) const {
  for (size_t k = 0; k < open_.size(); ++k)
    if (open_[k]->index == i) {
      if (k + 1 != open_.size()) std::rotate(open_.begin() + std::ptrdiff_t(k), open_.begin() + std::ptrdiff_t(k) + 1, open_.end());
      return *open_.back();
    }
  H5File f = H5File::open(shards_[i].path);
  H5Dataset1D t = H5Dataset1D::open(f, "tokens");
  if (open_.size() >= kMaxOpenShards) open_.erase(open_.begin());
  open_.push_back(std::make_unique<OpenShard>(i, std::move(f), std::move(t)));
  return *open_.back();
}

std::string TokenDataset::tokenizer_model() const {
  if (!model_file_.empty()) {
    std::string model = read_whole_file(model_file_);
    Hash64 h;
    h.update(model.data(), model.size());
    if (int64_t(model.size()) != model_bytes_ || h.digest() != model_xxh64_)
      throw Error(str("token dataset '", path_, "': tokenizer model '", model_file_, "' does not match the size and xxh64 "
                      "recorded in ", kManifestFile, " (it was modified or damaged); re-create the dataset"));
    return model;
  }
  if (directory_) return {};  // the byte tokenizer: no model file
  const H5File& f = shard_data(0).file;
  if (!f.has("tokenizer_model")) return {};
  H5Array<uint8_t> a = read_dataset<uint8_t>(f, "tokenizer_model");
  return std::string(a.data.begin(), a.data.end());
}

std::vector<int64_t> TokenDataset::doc_offsets() const {
  std::vector<int64_t> out;
  for (size_t i = 0; i < shards_.size(); ++i) {
    const std::vector<int64_t> o = read_dataset<int64_t>(shard_data(i).file, "doc_offsets").data;
    for (size_t k = 0; k + 1 < o.size(); ++k) out.push_back(shards_[i].begin + o[k]);
  }
  out.push_back(num_tokens_);
  return out;
}

void TokenDataset::read(int64_t start, int64_t count, int32_t* out) const {
  if (start < 0 || count < 0 || start > num_tokens() - count)
    throw Error(str("token dataset '", path_, "': read of tokens [", start, ", ", start + count,
                    ") is out of range (it has ", num_tokens(), ")"));
  auto it = std::upper_bound(shards_.begin(), shards_.end(), start,
                             [](int64_t s, const Shard& sh) { return s < sh.begin; });
  size_t k = size_t(it - shards_.begin()) - 1;
  while (count > 0) {
    const Shard& s = shards_[k];
    const int64_t offset = start - s.begin, take = std::min(count, s.tokens - offset);
    shard_data(k).tokens.read(offset, take, out);
    out += take, start += take, count -= take;
    ++k;
  }
}

size_t TokenDataset::num_shards() const { return shards_.size(); }

const std::string& TokenDataset::shard_path(size_t i) const { return shards_[i].path; }

int64_t TokenDataset::shard_tokens(size_t i) const { return shards_[i].tokens; }

std::string TokenDataset::shard_identity(size_t i) const {
  const Shard& s = shards_[i];
  struct stat st {};
  if (::stat(s.path.c_str(), &st) != 0) throw Error(str("token dataset '", path_, "': cannot stat '", s.path, "'"));
  std::error_code ec;
  const std::string abs = fs::weakly_canonical(s.path, ec).string();
  return str(ec ? s.path : abs, "|", st.st_size, "|", st.st_mtim.tv_sec, ".", st.st_mtim.tv_nsec, "|", st.st_dev, ":",
             st.st_ino, "|", s.xxh64 ? hash_hex(*s.xxh64) : "-", "|vocab ", vocab_size_);
}

void TokenDataset::verify_shard(size_t i) const {
  const Shard& s = shards_[i];
  const H5Dataset1D& tokens = shard_data(i).tokens;
  const bool narrow = tokens.element_size() == 2;
  std::vector<uint16_t> b16(narrow ? kFlushTokens : 0);
  std::vector<uint32_t> b32(narrow ? 0 : kFlushTokens);
  Hash64 hash;
  for (int64_t start = 0; start < s.tokens; start += int64_t(kFlushTokens)) {
    const int64_t n = std::min<int64_t>(int64_t(kFlushTokens), s.tokens - start);
    int64_t bad;
    uint32_t id = 0;
    if (narrow) {
      tokens.read(start, n, b16.data());
      hash.update(b16.data(), size_t(n) * 2);
      bad = first_out_of_vocab(b16.data(), n, vocab_size_);
      if (bad < n) id = b16[size_t(bad)];
    } else {
      tokens.read(start, n, b32.data());
      hash.update(b32.data(), size_t(n) * 4);
      bad = first_out_of_vocab(b32.data(), n, vocab_size_);
      if (bad < n) id = b32[size_t(bad)];
    }
    if (bad < n) {
      const std::string where = shards_.size() > 1 ? str("shard '", s.path, "' holds id ", id, " at token ", start + bad, " of the shard (token ", s.begin + start + bad, " of the dataset)")
                                                   : str("token ", start + bad, " has id ", id);
      throw Error(str("token dataset '", path_, "': ", where, ", outside the vocabulary of ", vocab_size_,
                      "; re-create it with `cairn prepare`"));
    }
  }
  if (s.xxh64 && hash.digest() != *s.xxh64)
    throw Error(str("token dataset '", path_, "': shard '", s.path, "' is corrupted: the xxh64 of its ids is ",
                    hash_hex(hash.digest()), " but ", kManifestFile, " records ", hash_hex(*s.xxh64),
                    "; re-create the dataset with `cairn prepare`"));
}

void TokenDataset::verify_tokens() const {
  for (size_t i = 0; i < shards_.size(); ++i) verify_shard(i);
}

}  // namespace cairn
