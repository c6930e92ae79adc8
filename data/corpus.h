// Reading a text corpus as a stream of chunks: input files (plain text or JSON Lines, each maybe
// gzip- or zstd-compressed) are listed in a fixed order, decompressed and cut into chunks of about
// kChunkBytes of text at line boundaries (a longer text document at a line where no token can
// span the cut, see corpus.cpp; Tokenizer::encode_continuation encodes its later pieces). Chunk
// boundaries depend only on the files, so any number of workers tokenizing chunks and a writer
// taking them back in order give identical output. Memory is bounded by the chunks in flight,
// never by the corpus.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace cairn {

inline constexpr size_t kChunkBytes = size_t(256) << 10;

enum class InputFormat { text, jsonl };

struct InputFile {
  std::string path;
  int64_t bytes = 0;  // on disk (compressed size for .gz/.zst)
  InputFormat format = InputFormat::text;
};

struct CorpusOptions {
  // Files, or directories walked recursively (symlinks, hidden entries and strfile indexes "X.dat"
  // beside a file "X" are skipped; files are sorted by path).
  std::vector<std::string> inputs;
  // Shell patterns (fnmatch) a file in a directory must match, on its name or on its path below
  // the directory ("*.jsonl.zst", "en/*.txt"); empty: every file. Files named directly always count.
  std::vector<std::string> globs;
  // "auto" (JSON Lines for names ending .jsonl/.json/.ndjson before any .gz/.zst, else text),
  // "text" or "jsonl".
  std::string format = "auto";
  std::string json_key = "text";  // the member of a JSON Lines record that holds the document
  std::string split_on;           // text: separator line; empty: one document per file
  // What to do with input that is not UTF-8 text (binary files, invalid UTF-8 in a document, a
  // JSON Lines record that is not valid JSON or lacks a string json_key): false: stop with an
  // error naming file and line; true: skip it and count it.
  bool skip_invalid = false;
  const std::atomic<bool>* stop = nullptr;  // set (by a signal handler) to end reading early
};

// Input files in read order. Throws cairn::Error when an input does not exist or none is found.
std::vector<InputFile> list_input_files(const CorpusOptions& opts);
// Part `part` (0-based) of `parts`: a contiguous run of `files` chosen by cumulative size, so the
// parts are balanced by bytes and their concatenation in part order is `files`.
std::vector<InputFile> input_partition(const std::vector<InputFile>& files, int part, int parts);
// A hash of the file list (paths and sizes): parts of one preparation must agree on it.
uint64_t input_list_hash(const std::vector<InputFile>& files);

// One piece of a document: documents longer than a chunk span several pieces.
struct TextPiece {
  size_t offset = 0, size = 0;  // in CorpusChunk::text
  bool begin = false, end = false;
  int64_t line = 0;  // 1-based line of the piece's first byte in its file
};

struct CorpusChunk {
  uint64_t seq = 0;  // 0, 1, 2, ... in input order
  size_t file = 0;   // index into the file list
  InputFormat format = InputFormat::text;
  int64_t first_line = 1;
  std::string text;               // text: document pieces; jsonl: whole records, one per line
  std::vector<TextPiece> pieces;  // text format only
  // Set on the last chunk when reading failed or a file was refused: raised in input order.
  std::string error;
  int64_t skipped_files = 0;      // binary files skipped before this chunk (skip_invalid)
};

// Reads every file in order and calls emit for each chunk (possibly an empty chunk that only
// carries skipped_files, or one carrying `error`, after which reading stops). Checks opts.stop
// between chunks and throws cairn::Error("interrupted") when it is set.
void read_corpus(const std::vector<InputFile>& files, const CorpusOptions& opts,
                 const std::function<void(CorpusChunk&&)>& emit);

// Counts of what a chunk's extraction skipped (skip_invalid).
struct SkipCounts {
  int64_t files = 0;      // binary files
  int64_t documents = 0;  // documents (or pieces of long ones) with invalid UTF-8, invalid records
  SkipCounts& operator+=(const SkipCounts& o) {
    files += o.files;
    documents += o.documents;
    return *this;
  }
};

// A document piece ready to tokenize (text points into the chunk or into `scratch`).
struct DocumentPiece {
  std::string_view text;
  bool begin = false, end = false;
};

// Calls fn for every non-blank, valid document piece of `chunk` in order, parsing JSON Lines
// records. Returns an empty string, or (when !opts.skip_invalid) the first problem as
// "FILE:LINE: ..." after which nothing more is passed to fn. `scratch` holds decoded JSON text.
std::string extract_documents(const CorpusChunk& chunk, const std::vector<InputFile>& files,
                              const CorpusOptions& opts, std::string& scratch, SkipCounts& skipped,
                              const std::function<void(const DocumentPiece&)>& fn);

}  // namespace cairn
