// Text to token dataset (see prepare.h). The whole corpus is held in memory as text and token ids:
// fine for the corpora cairn prepares on one machine (the fortunes corpus is 6 MB).
#include "data/prepare.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "data/hf_tokenizer.h"
#include "data/token_dataset.h"
#include "data/tokenizer.h"
#include "util/error.h"
#include "util/file_io.h"
#include "util/rng.h"

namespace cairn {

namespace fs = std::filesystem;

namespace {

constexpr uint64_t kShuffleStream = 0x70726570;  // "prep"

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(str("cannot read input file '", path, "'"));
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad()) throw Error(str("error while reading input file '", path, "'"));
  return buf.str();
}

bool is_blank(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isspace(c); });
}

// strfile writes "X.dat" (and links "X.u8" -> X) beside each fortune file X: not text.
bool is_fortune_index(const fs::path& p) {
  return p.extension() == ".dat" && fs::exists(p.parent_path() / p.stem());
}

std::unique_ptr<Tokenizer> make_tokenizer(const PrepareOptions& opts, const std::vector<std::string>& docs,
                                          bool& trained) {
  trained = false;
  if (opts.tokenizer == "byte") return make_byte_tokenizer();
  if (opts.tokenizer == "sentencepiece") {
    SentencePieceOptions sp;
    sp.vocab_size = opts.vocab_size;
    sp.model_type = opts.sp_model_type;
    sp.num_threads = opts.num_threads;
    sp.seed = uint32_t(opts.seed);
    trained = true;
    return train_sentencepiece(docs, sp);
  }
  const std::string prefix = "sentencepiece:";
  if (opts.tokenizer.rfind(prefix, 0) == 0) return load_sentencepiece(opts.tokenizer.substr(prefix.size()));
  if (opts.tokenizer.rfind("hf:", 0) == 0) return load_hf_tokenizer(opts.tokenizer.substr(3));
  throw Error(str("unknown tokenizer '", opts.tokenizer,
                  "': use \"byte\", \"sentencepiece\", \"sentencepiece:<model path>\" or \"hf:<tokenizer.json>\""));
}

}  // namespace

std::vector<std::string> list_input_files(const std::vector<std::string>& inputs) {
  std::vector<std::string> files;
  for (const std::string& in : inputs) {
    std::error_code ec;
    if (fs::is_directory(in, ec)) {
      std::vector<std::string> found;
      for (const fs::directory_entry& e : fs::directory_iterator(in, ec)) {
        const fs::path& p = e.path();
        if (e.is_symlink() || !e.is_regular_file() || p.filename().string().front() == '.' || is_fortune_index(p))
          continue;
        found.push_back(p.string());
      }
      if (ec) throw Error(str("cannot list input directory '", in, "': ", ec.message()));
      std::sort(found.begin(), found.end());
      files.insert(files.end(), found.begin(), found.end());
    } else if (fs::exists(in, ec)) {
      files.push_back(in);
    } else {
      throw Error(str("input '", in, "' does not exist"));
    }
  }
  if (files.empty()) throw Error("no input files: give text files or directories that contain them");
  return files;
}

std::vector<std::string> split_documents(const std::string& text, const std::string& split_on) {
  std::vector<std::string> docs;
  if (split_on.empty()) {
    if (!is_blank(text)) docs.push_back(text);
    return docs;
  }
  std::string cur;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    size_t end = nl == std::string::npos ? text.size() : nl + 1;
    std::string_view line(text.data() + pos, (nl == std::string::npos ? text.size() : nl) - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line == split_on) {
      if (!is_blank(cur)) docs.push_back(std::move(cur));
      cur.clear();
    } else {
      cur.append(text, pos, end - pos);
    }
    pos = end;
  }
  if (!is_blank(cur)) docs.push_back(std::move(cur));
  return docs;
}

PrepareSummary prepare_dataset(const PrepareOptions& opts) {
  if (opts.output.empty()) throw Error("prepare needs an output path");
  if (!(opts.val_fraction >= 0 && opts.val_fraction < 1))
    throw Error(str("val_fraction must be in [0, 1), got ", opts.val_fraction));
  PrepareSummary sum;
  std::vector<std::string> files = list_input_files(opts.inputs);
  sum.files = int64_t(files.size());
  std::vector<std::string> docs;
  for (const std::string& f : files) {
    std::vector<std::string> d = split_documents(read_file(f), opts.split_on);
    for (std::string& s : d) {
      sum.text_bytes += int64_t(s.size());
      docs.push_back(std::move(s));
    }
  }
  if (docs.empty()) throw Error(str("the corpus is empty: the ", files.size(), " input file(s) hold no text"));

  Rng rng(opts.seed, kShuffleStream);
  for (size_t i = docs.size() - 1; i > 0; --i) std::swap(docs[i], docs[rng.below(i + 1)]);

  bool trained = false;
  std::unique_ptr<Tokenizer> tok = make_tokenizer(opts, docs, trained);
  std::vector<std::vector<uint32_t>> ids(docs.size());
#pragma omp parallel for schedule(dynamic, 64) num_threads(opts.num_threads)
  for (size_t i = 0; i < docs.size(); ++i) ids[i] = tok->encode(docs[i]);

  // Each document adds its ids and one EOS. Validation takes whole documents from the end.
  int64_t total = 0;
  for (const auto& v : ids) total += int64_t(v.size()) + 1;
  size_t n_val = 0;
  if (opts.val_fraction > 0) {
    if (docs.size() < 2)
      throw Error("a validation split needs at least 2 documents: set val_fraction = 0, or split the input into "
                  "documents with split_on");
    int64_t val = 0;
    while (n_val < docs.size() - 1 && (n_val == 0 || double(val) < opts.val_fraction * double(total)))
      val += int64_t(ids[docs.size() - 1 - n_val++].size()) + 1;
  }
  size_t n_train = docs.size() - n_val;

  TokenDatasetWriter writer(opts.output, *tok);
  for (size_t i = 0; i < docs.size(); ++i) {
    if (i == n_train) writer.begin_validation();
    writer.add_document(ids[i]);
  }
  writer.finalize();

  if (trained) {
    sum.model_path = opts.output + ".model";
    write_file_atomic(sum.model_path, tok->serialized());
  }
  sum.documents = int64_t(docs.size());
  sum.train_documents = int64_t(n_train);
  sum.val_documents = int64_t(n_val);
  sum.tokens = total;
  sum.val_tokens = 0;
  for (size_t i = n_train; i < docs.size(); ++i) sum.val_tokens += int64_t(ids[i].size()) + 1;
  sum.train_tokens = total - sum.val_tokens;
  sum.vocab_size = tok->vocab_size();
  sum.tokenizer = tok->kind();
  return sum;
}

}  // namespace cairn
