// Corpus to sharded token dataset (see prepare.h). The output is built in "<out>.tmp/" and renamed
// when complete; a refused, failed or interrupted run removes it.
#include "data/prepare.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "data/hf_tokenizer.h"
#include "data/pipeline.h"
#include "data/token_dataset.h"
#include "data/tokenizer.h"
#include "util/error.h"
#include "util/file_io.h"
#include "util/hash.h"
#include "util/rng.h"

namespace cairn {

namespace fs = std::filesystem;

namespace {

constexpr uint64_t kValidationStream = 0x76616c;  // "val"

// A chunk's documents as token ids: pieces[i] covers `count` ids of `ids`.
struct TokenizedChunk {
  struct Piece {
    size_t count = 0;
    bool begin = false, end = false;
    uint64_t hash = 0;  // of the piece's text: decides the split of a document it begins
  };
  std::vector<uint32_t> ids;
  std::vector<Piece> pieces;
  SkipCounts skipped;
  int64_t text_bytes = 0;
};

// Lines of document text for the SentencePiece sample.
struct TextLines {
  std::vector<std::string> lines;
};

std::string model_path_of(const std::string& tokenizer) {
  const std::string prefix = "sentencepiece:";
  return tokenizer.rfind(prefix, 0) == 0 ? tokenizer.substr(prefix.size()) : "";
}

std::unique_ptr<Tokenizer> make_tokenizer(const PrepareOptions& opts, const std::vector<InputFile>& files,
                                          bool& trained) {
  trained = false;
  if (opts.tokenizer == "byte") return make_byte_tokenizer();
  if (opts.tokenizer == "sentencepiece") {
    SentencePieceOptions sp;
    sp.vocab_size = opts.vocab_size;
    sp.model_type = opts.sp_model_type;
    sp.num_threads = opts.workers;
    sp.seed = uint32_t(opts.seed);
    sp.max_sentences = opts.sp_sentences;
    // One streaming pass over the corpus; SentencePiece keeps a uniform sample of its lines.
    OrderedPipeline<TextLines> pipeline(files, opts.corpus, opts.workers, [&](CorpusChunk& c, TextLines& out) {
      std::string scratch;
      SkipCounts skipped;
      const std::string error = extract_documents(c, files, opts.corpus, scratch, skipped, [&](const DocumentPiece& p) {
        for (size_t pos = 0; pos < p.text.size();) {
          size_t nl = p.text.find('\n', pos);
          if (nl == std::string_view::npos) nl = p.text.size();
          if (nl > pos) out.lines.emplace_back(p.text.substr(pos, nl - pos));
          pos = nl + 1;
        }
      });
      if (!error.empty()) throw Error(error);
    });
    TextLines batch;
    size_t next = 0;
    trained = true;
    return train_sentencepiece(
        [&](std::string& line) {
          while (next == batch.lines.size()) {
            batch.lines.clear();
            next = 0;
            if (!pipeline.next(batch)) return false;
          }
          line = std::move(batch.lines[next++]);
          return true;
        },
        sp);
  }
  const std::string model = model_path_of(opts.tokenizer);
  if (!model.empty()) return load_sentencepiece(model);
  if (opts.tokenizer.rfind("hf:", 0) == 0) return load_hf_tokenizer(opts.tokenizer.substr(3));
  throw Error(str("unknown tokenizer '", opts.tokenizer,
                  "': use \"byte\", \"sentencepiece\", \"sentencepiece:<model path>\" or \"hf:<tokenizer.json or model directory>\""));
}

bool is_cairn_h5(const std::string& path) {
  try {
    return has_attr(H5File::open(path), "format");
  } catch (const Error&) {
    return false;
  }
}

// Names prepare writes into a dataset directory (a stale "<out>.tmp" holding only these is ours).
bool is_prepare_output_name(const std::string& name) {
  return name.rfind("train-", 0) == 0 || name.rfind("val-", 0) == 0 || name.rfind("tokenizer", 0) == 0 ||
         name.rfind(kManifestFile, 0) == 0;
}

// Checks --out before any work: a new path, or (with --force) an existing dataset to replace.
// Removes a stale "<out>.tmp/" left by a killed run.
void check_output(const std::string& out, bool force) {
  if (out.empty()) throw Error("prepare needs an output directory (--out DIR)");
  const fs::path p(out);
  if (p.extension() == ".h5")
    throw Error(str("--out '", out, "': cairn prepare writes a dataset directory (HDF5 shards and ", kManifestFile,
                    "), not one .h5 file: name it without .h5, e.g. --out ", p.parent_path() / p.stem()));
  std::error_code ec;
  if (fs::exists(p, ec)) {
    if (!force) throw Error(str("'", out, "' already exists: remove it, choose another --out, or pass --force to replace it"));
    if (!is_dataset_directory(out) && !(fs::is_regular_file(p) && is_cairn_h5(out)))
      throw Error(str("'", out, "' exists and is not a cairn token dataset: --force replaces only datasets; "
                      "choose another --out"));
  }
  const fs::path tmp = out + ".tmp";
  if (fs::exists(tmp, ec)) {
    bool ours = fs::is_directory(tmp, ec);
    if (ours)
      for (const auto& e : fs::directory_iterator(tmp, ec)) ours = ours && is_prepare_output_name(e.path().filename().string());
    if (!ours) throw Error(str("'", tmp.string(), "' exists and was not left by cairn prepare: move it away"));
    fs::remove_all(tmp);
  }
}

// "<out>.tmp/", removed unless commit() moved it to `out`.
class OutputDirectory {
 public:
  explicit OutputDirectory(std::string out) : out_(std::move(out)), tmp_(out_ + ".tmp") {
    const fs::path parent = fs::path(out_).parent_path();
    if (!parent.empty()) fs::create_directories(parent);
    fs::create_directory(tmp_);
  }
  ~OutputDirectory() {
    std::error_code ec;
    if (!committed_) fs::remove_all(tmp_, ec);
  }
  const std::string& tmp() const { return tmp_; }
  // Replaces `out` (an existing dataset only with --force, checked before) with the new one.
  void commit() {
    std::error_code ec;
    const std::string old = out_ + ".old";
    const bool replace = fs::exists(out_, ec);
    if (replace) fs::rename(out_, old);
    fs::rename(tmp_, out_);
    committed_ = true;
    if (replace) fs::remove_all(old, ec);
  }

 private:
  std::string out_, tmp_;
  bool committed_ = false;
};

bool is_validation(uint64_t text_hash, const PrepareOptions& opts) {
  if (opts.val_fraction <= 0) return false;
  const uint64_t u = Rng(opts.seed ^ kValidationStream, text_hash).next_u64();
  return double(u >> 11) * 0x1.0p-53 < opts.val_fraction;
}

void check_options(const PrepareOptions& opts) {
  if (!(opts.val_fraction >= 0 && opts.val_fraction < 1))
    throw Error(str("val_fraction must be in [0, 1), got ", opts.val_fraction));
  if (opts.workers < 1) throw Error(str("--workers must be at least 1, got ", opts.workers));
  if (opts.shard_tokens < 1) throw Error(str("--shard-tokens must be at least 1, got ", opts.shard_tokens));
  if (opts.parts < 1 || opts.part < 0 || opts.part >= opts.parts)
    throw Error(str("--part ", opts.part, "/", opts.parts, ": give I/N with 0 <= I < N"));
  if (opts.parts > 1 && opts.tokenizer == "sentencepiece")
    throw Error("--part needs a tokenizer every part shares: train a SentencePiece model first (a `cairn prepare "
                "--tokenizer sentencepiece` on a sample writes DIR/tokenizer.model) and pass "
                "--tokenizer sentencepiece:DIR/tokenizer.model");
}

}  // namespace

std::vector<std::string> default_corpus_inputs() {
  std::vector<std::string> files;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(kDefaultCorpus, ec))
    if (e.is_regular_file() && !e.is_symlink() && e.path().filename().string().front() != '.') files.push_back(e.path().string());
  if (ec || files.empty())
    throw Error(str("the default corpus ", kDefaultCorpus, " is missing: install Debian's `fortunes` package "
                    "(tools/setup.sh does) or give --input"));
  std::sort(files.begin(), files.end());
  // strfile's indexes "X.dat" are binary: the listing below drops them when X exists.
  files.erase(std::remove_if(files.begin(), files.end(),
                             [](const std::string& f) {
                               const fs::path p(f);
                               return p.extension() == ".dat" && fs::exists(p.parent_path() / p.stem());
                             }),
              files.end());
  return files;
}

PrepareSummary prepare_dataset(const PrepareOptions& opts) {
  check_options(opts);
  check_output(opts.output, opts.force);
  const std::vector<InputFile> all_files = list_input_files(opts.corpus);
  const std::vector<InputFile> files = input_partition(all_files, opts.part, opts.parts);
  if (files.empty())
    throw Error(str("part ", opts.part, " of ", opts.parts, " has no input files (there are ", all_files.size(),
                    "): use at most ", all_files.size(), " parts"));
  OutputDirectory out(opts.output);

  bool trained = false;
  const std::unique_ptr<Tokenizer> tok = make_tokenizer(opts, files, trained);
  const Tokenizer& t = *tok;
  OrderedPipeline<TokenizedChunk> pipeline(files, opts.corpus, opts.workers, [&](CorpusChunk& c, TokenizedChunk& r) {
    std::string scratch;
    const std::string error = extract_documents(c, files, opts.corpus, scratch, r.skipped, [&](const DocumentPiece& p) {
      TokenizedChunk::Piece piece{0, p.begin, p.end, 0};
      if (p.begin) {
        Hash64 h;
        h.update(p.text.data(), p.text.size());
        piece.hash = h.digest();
      }
      const std::vector<uint32_t> ids = p.begin ? t.encode(p.text) : t.encode_continuation(p.text);
      r.ids.insert(r.ids.end(), ids.begin(), ids.end());
      piece.count = ids.size();
      r.pieces.push_back(piece);
      r.text_bytes += int64_t(p.text.size());
    });
    if (!error.empty()) throw Error(error);
  });

  PrepareSummary sum;
  ShardedDatasetWriter writer(out.tmp(), t, opts.shard_tokens);
  TokenizedChunk chunk;
  while (pipeline.next(chunk)) {
    size_t at = 0;
    for (const auto& p : chunk.pieces) {
      // A piece that begins a document, or continues one whose beginning was skipped as invalid.
      if (p.begin || !writer.in_document()) {
        if (writer.in_document()) writer.end_document();  // its end piece was skipped
        const bool val = is_validation(p.hash, opts);
        writer.begin_document(val);
        ++(val ? sum.val_documents : sum.train_documents);
      }
      writer.append(std::span<const uint32_t>(chunk.ids.data() + at, p.count));
      at += p.count;
      if (p.end) writer.end_document();
    }
    sum.skipped_files += chunk.skipped.files;
    sum.skipped_documents += chunk.skipped.documents;
    sum.text_bytes += chunk.text_bytes;
  }
  if (writer.in_document()) writer.end_document();
  if (sum.train_documents + sum.val_documents == 0)
    throw Error(str("the corpus is empty: the ", files.size(), " input file(s) hold no text",
                    sum.skipped_files + sum.skipped_documents > 0 ? " that was not skipped as invalid" : ""));

  DatasetManifest m = writer.finish();
  m.part = opts.part;
  m.parts = opts.parts;
  m.inputs_xxh64 = input_list_hash(all_files);
  m.input_files = int64_t(files.size());
  m.skipped_files = sum.skipped_files;
  m.skipped_documents = sum.skipped_documents;
  m.text_bytes = sum.text_bytes;
  write_manifest(out.tmp(), m);
  out.commit();

  sum.files = int64_t(files.size());
  sum.documents = sum.train_documents + sum.val_documents;
  sum.train_tokens = split_tokens(m.train);
  sum.val_tokens = split_tokens(m.val);
  sum.tokens = sum.train_tokens + sum.val_tokens;
  sum.shards = int64_t(m.train.size() + m.val.size());
  sum.vocab_size = t.vocab_size();
  sum.tokenizer = t.kind();
  if (trained) sum.model_path = (fs::path(opts.output) / m.tokenizer_file).string();
  return sum;
}

PrepareSummary merge_dataset_parts(const std::vector<std::string>& part_dirs, const std::string& out, bool force) {
  if (part_dirs.empty()) throw Error("--merge needs the part directories, e.g. --merge OUT/part-*");
  if (!fs::is_directory(out)) throw Error(str("--out '", out, "' must be the directory holding the parts"));
  const fs::path manifest_path = fs::path(out) / kManifestFile;
  if (fs::exists(manifest_path) && !force)
    throw Error(str("'", manifest_path.string(), "' already exists: pass --force to replace it"));
  const fs::path root = fs::canonical(out);
  std::vector<std::pair<DatasetManifest, std::string>> parts;  // manifest, directory relative to out
  for (const auto& dir : part_dirs) {
    const fs::path rel = fs::canonical(dir).lexically_relative(root);
    if (rel.empty() || *rel.begin() == ".." || rel == ".")
      throw Error(str("part '", dir, "' is not inside --out '", out, "': prepare the parts into subdirectories of it"));
    parts.emplace_back(read_manifest(dir), rel.generic_string());
  }
  std::sort(parts.begin(), parts.end(), [](const auto& a, const auto& b) { return a.first.part < b.first.part; });
  const DatasetManifest& first = parts.front().first;
  for (size_t i = 0; i < parts.size(); ++i) {
    const DatasetManifest& p = parts[i].first;
    const std::string name = str("part '", parts[i].second, "'");
    if (p.parts != first.parts || p.parts == 1)
      throw Error(str(name, " is part ", p.part, " of ", p.parts, " but part '", parts[0].second, "' is of ", first.parts,
                      ": merge the parts of one `--part I/N` preparation"));
    if (i > 0 && parts[i - 1].first.part == p.part)  // sorted by part: a repeat follows its first
      throw Error(str("part ", p.part, " of ", first.parts, " is given twice ('", parts[i - 1].second, "' and '",
                      parts[i].second, "'): every part 0..", first.parts - 1, " must be merged exactly once"));
    if (p.part != int64_t(i))
      throw Error(str("part ", i, " of ", first.parts, " is missing: every part 0..", first.parts - 1,
                      " must be merged exactly once"));
    if (p.inputs_xxh64 != first.inputs_xxh64)
      throw Error(str(name, " was prepared from another input list than part '", parts[0].second,
                      "' (the files or their sizes differ): prepare every part from the same inputs"));
    if (p.tokenizer != first.tokenizer || p.vocab_size != first.vocab_size || p.eos_id != first.eos_id ||
        p.tokenizer_xxh64 != first.tokenizer_xxh64 || p.token_type != first.token_type)
      throw Error(str(name, " used another tokenizer than part '", parts[0].second, "'"));
  }
  if (int64_t(parts.size()) != first.parts)
    throw Error(str("part ", parts.size(), " of ", first.parts, " is missing: every part 0..", first.parts - 1,
                    " must be merged exactly once"));

  DatasetManifest m = first;
  m.train.clear();
  m.val.clear();
  m.part = 0;
  m.parts = 1;
  m.input_files = m.skipped_files = m.skipped_documents = m.text_bytes = 0;
  for (const auto& [p, rel] : parts) {
    for (auto e : p.train) m.train.push_back({rel + "/" + e.file, e.tokens, e.documents, e.bytes, e.xxh64});
    for (auto e : p.val) m.val.push_back({rel + "/" + e.file, e.tokens, e.documents, e.bytes, e.xxh64});
    m.input_files += p.input_files;
    m.skipped_files += p.skipped_files;
    m.skipped_documents += p.skipped_documents;
    m.text_bytes += p.text_bytes;
  }
  if (!first.tokenizer_file.empty()) {
    m.tokenizer_file = tokenizer_model_file_name(first.tokenizer);
    fs::copy_file(fs::path(out) / parts[0].second / first.tokenizer_file, fs::path(out) / m.tokenizer_file,
                  fs::copy_options::overwrite_existing);
  }
  write_manifest(out, m);
  const TokenDataset ds = TokenDataset::open(out);  // every shard present, of the recorded size

  PrepareSummary sum;
  sum.files = m.input_files;
  sum.skipped_files = m.skipped_files;
  sum.skipped_documents = m.skipped_documents;
  sum.text_bytes = m.text_bytes;
  sum.train_documents = split_documents(m.train);
  sum.val_documents = split_documents(m.val);
  sum.documents = sum.train_documents + sum.val_documents;
  sum.train_tokens = split_tokens(m.train);
  sum.val_tokens = split_tokens(m.val);
  sum.tokens = ds.num_tokens();
  sum.shards = int64_t(m.train.size() + m.val.size());
  sum.vocab_size = m.vocab_size;
  sum.tokenizer = m.tokenizer;
  return sum;
}

}  // namespace cairn
