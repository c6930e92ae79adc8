// Token dataset writer and reader (see token_dataset.h and docs/formats.md).
#include "data/token_dataset.h"

#include <algorithm>
#include <filesystem>

#include "data/tokenizer.h"
#include "util/error.h"

namespace cairn {

namespace {
constexpr size_t kFlushTokens = 1 << 20;
}

TokenDatasetWriter::TokenDatasetWriter(std::string path, const Tokenizer& tokenizer)
    : path_(std::move(path)),
      tmp_path_(path_ + ".tmp"),
      vocab_size_(tokenizer.vocab_size()),
      eos_id_(tokenizer.eos_id()),
      kind_(tokenizer.kind()),
      model_(tokenizer.serialized()) {
  try {
    file_.emplace(H5File::create(tmp_path_));
    // uint16 halves the file and the read bandwidth whenever every id fits.
    if (vocab_size_ <= 65536)
      tokens_.emplace(H5Dataset1D::create_extendable<uint16_t>(*file_, "tokens", kTokenChunk));
    else
      tokens_.emplace(H5Dataset1D::create_extendable<uint32_t>(*file_, "tokens", kTokenChunk));
  } catch (const Error&) {  // no destructor runs: leave no partial file (a full disk gets its space back)
    tokens_.reset();
    file_.reset();
    std::error_code ec;
    std::filesystem::remove(tmp_path_, ec);
    throw;
  }
  buffer_.reserve(kFlushTokens + 1);
}

TokenDatasetWriter::~TokenDatasetWriter() {
  if (!file_) return;
  tokens_.reset();
  file_.reset();
  std::error_code ec;
  std::filesystem::remove(tmp_path_, ec);
}

void TokenDatasetWriter::add_document(std::span<const uint32_t> ids) {
  CAIRN_ASSERT(file_, "add_document after finalize");
  for (size_t i = 0; i < ids.size(); ++i)
    if (int64_t(ids[i]) >= vocab_size_)
      throw Error(str("token id ", ids[i], " at position ", i, " of document ", offsets_.size(),
                      " is outside the tokenizer's vocabulary of ", vocab_size_));
  offsets_.push_back(total_);
  buffer_.insert(buffer_.end(), ids.begin(), ids.end());
  buffer_.push_back(eos_id_);
  total_ += int64_t(ids.size()) + 1;
  if (buffer_.size() >= kFlushTokens) flush();
}

void TokenDatasetWriter::begin_validation() {
  CAIRN_ASSERT(!val_start_, "begin_validation called twice");
  val_start_ = total_;
}

void TokenDatasetWriter::flush() {
  tokens_->append(buffer_.data(), int64_t(buffer_.size()));
  buffer_.clear();
}

void TokenDatasetWriter::finalize() {
  CAIRN_ASSERT(file_, "finalize called twice");
  if (total_ == 0) throw Error(str("token dataset '", path_, "' would be empty: no documents were added"));
  flush();
  std::vector<int64_t> offsets = offsets_;
  offsets.push_back(total_);
  write_dataset(*file_, "doc_offsets", offsets.data(), {int64_t(offsets.size())});
  if (!model_.empty())
    write_dataset(*file_, "tokenizer_model", reinterpret_cast<const uint8_t*>(model_.data()),
                  {int64_t(model_.size())});
  write_attr_string(*file_, "format", kTokenFormat);
  write_attr_int(*file_, "format_version", kTokenFormatVersion);
  write_attr_int(*file_, "vocab_size", vocab_size_);
  write_attr_int(*file_, "eos_id", eos_id_);
  write_attr_string(*file_, "tokenizer", kind_);
  write_attr_int(*file_, "val_start", val_start_.value_or(total_));
  tokens_.reset();
  file_->close();
  file_.reset();
  std::error_code ec;
  std::filesystem::rename(tmp_path_, path_, ec);
  if (ec) throw Error(str("cannot rename '", tmp_path_, "' to '", path_, "': ", ec.message()));
}

TokenDataset TokenDataset::open(const std::string& path) {
  auto bad = [&](const std::string& problem) {
    return Error(str("token dataset '", path, "' ", problem, "; re-create it with `cairn prepare`"));
  };
  std::optional<H5File> file;
  try {
    file.emplace(H5File::open(path));
  } catch (const Error& e) {
    throw Error(str("cannot open token dataset: ", e.what()));
  }
  if (!has_attr(*file, "format") || read_attr_string(*file, "format") != kTokenFormat)
    throw bad(str("is not a cairn token dataset (its `format` attribute is not \"", kTokenFormat, "\")"));
  int64_t version = has_attr(*file, "format_version") ? read_attr_int(*file, "format_version") : -1;
  if (version != kTokenFormatVersion)
    throw bad(str("has format version ", version, " but this cairn reads version ", kTokenFormatVersion));
  for (const char* a : {"vocab_size", "eos_id", "tokenizer", "val_start"})
    if (!has_attr(*file, a)) throw bad(str("lacks the `", a, "` attribute"));
  for (const char* d : {"tokens", "doc_offsets"})
    if (!file->has(d)) throw bad(str("has no /", d, " dataset"));

  H5Dataset1D tokens = H5Dataset1D::open(*file, "tokens");
  TokenDataset ds(std::move(*file), std::move(tokens), path);
  H5Node& f = ds.file_;
  size_t width = ds.tokens_.element_size();
  if (!ds.tokens_.is_unsigned_integer() || (width != 2 && width != 4))
    throw bad("stores /tokens in a type other than uint16 or uint32");
  ds.vocab_size_ = read_attr_int(f, "vocab_size");
  int64_t eos = read_attr_int(f, "eos_id");
  ds.val_start_ = read_attr_int(f, "val_start");
  ds.kind_ = read_attr_string(f, "tokenizer");
  int64_t n = ds.num_tokens();
  if (n == 0) throw bad("is empty (it has no tokens)");
  if (ds.vocab_size_ <= 0 || (width == 2 && ds.vocab_size_ > 65536))
    throw bad(str("has an invalid vocab_size ", ds.vocab_size_, " for ", width * 8, "-bit tokens"));
  if (eos < 0 || eos >= ds.vocab_size_) throw bad(str("has eos_id ", eos, " outside its vocabulary of ", ds.vocab_size_));
  ds.eos_id_ = uint32_t(eos);
  if (ds.val_start_ < 0 || ds.val_start_ > n)
    throw bad(str("has val_start ", ds.val_start_, " outside [0, ", n, "]"));
  if (ds.kind_ != "byte" && !f.has("tokenizer_model"))
    throw bad(str("uses a ", ds.kind_, " tokenizer but has no /tokenizer_model"));
  H5Dataset1D offsets = H5Dataset1D::open(f, "doc_offsets");
  int64_t last = -1;
  if (offsets.size() > 0) offsets.read(offsets.size() - 1, 1, &last);
  if (last != n) throw bad(str("has /doc_offsets ending at ", last, " but ", n, " tokens"));
  return ds;
}

std::string TokenDataset::tokenizer_model() const {
  if (!file_.has("tokenizer_model")) return {};
  H5Array<uint8_t> a = read_dataset<uint8_t>(file_, "tokenizer_model");
  return std::string(a.data.begin(), a.data.end());
}

std::vector<int64_t> TokenDataset::doc_offsets() const { return read_dataset<int64_t>(file_, "doc_offsets").data; }

void TokenDataset::read(int64_t start, int64_t count, int32_t* out) const {
  if (start < 0 || count < 0 || start > num_tokens() - count)
    throw Error(str("token dataset '", path_, "': read of tokens [", start, ", ", start + count,
                    ") is out of range (it has ", num_tokens(), ")"));
  tokens_.read(start, count, out);
}

void TokenDataset::verify_tokens() const {
  std::vector<int32_t> buf(size_t(16 * kTokenChunk));
  for (int64_t start = 0; start < num_tokens(); start += int64_t(buf.size())) {
    int64_t count = std::min<int64_t>(int64_t(buf.size()), num_tokens() - start);
    read(start, count, buf.data());
    for (int64_t i = 0; i < count; ++i)
      if (buf[size_t(i)] < 0 || buf[size_t(i)] >= vocab_size_)
        throw Error(str("token dataset '", path_, "': token ", start + i, " has id ", buf[size_t(i)],
                        ", outside the vocabulary of ", vocab_size_, "; re-create it with `cairn prepare`"));
  }
}

}  // namespace cairn
