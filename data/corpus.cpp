// Corpus listing, decompression and chunking (see corpus.h). Compression is recognized by the
// file's magic number, not its name, so a misnamed file is still read correctly.
#include "data/corpus.h"

#include <fnmatch.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "data/text_scan.h"
#include "util/error.h"
#include "util/hash.h"

namespace cairn {

namespace fs = std::filesystem;

namespace {

constexpr size_t kReadBlock = size_t(1) << 20;
constexpr size_t kSniffBytes = size_t(64) << 10;
// A text line longer than this is read in segments cut at character boundaries; a JSON Lines
// record is never cut, so memory holds the longest record.
constexpr size_t kMaxTextLine = kChunkBytes;
// A text document continues into the next chunk after a newline, before a line that starts with
// a character other than whitespace: no token of the tokenizers (byte, SentencePiece, and the GPT-2
// and LLaMA-3 pre-tokenizer regexes) spans such a point, so its pieces encode to the whole
// document's ids. Without such a line for this long (or inside one longer line), it is cut anyway.
constexpr size_t kMaxChunkBytes = 4 * kChunkBytes;

bool starts_with_non_space(std::string_view line) {
  return !line.empty() && !std::strchr(" \t\r\n\v\f", line.front());
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

InputFormat detect_format(const std::string& path, const std::string& format) {
  if (format == "text") return InputFormat::text;
  if (format == "jsonl") return InputFormat::jsonl;
  std::string name = fs::path(path).filename().string();
  for (const char* z : {".gz", ".zst", ".zstd"})
    if (ends_with(name, z)) name.resize(name.size() - std::strlen(z));
  for (const char* j : {".jsonl", ".json", ".ndjson"})
    if (ends_with(name, j)) return InputFormat::jsonl;
  return InputFormat::text;
}

// strfile writes "X.dat" (and links "X.u8" -> X) beside each fortune file X: not text.
bool is_fortune_index(const fs::path& p) {
  return p.extension() == ".dat" && fs::exists(p.parent_path() / p.stem());
}

bool matches(const std::vector<std::string>& globs, const fs::path& rel) {
  if (globs.empty()) return true;
  const std::string name = rel.filename().string(), path = rel.generic_string();
  for (const auto& g : globs)
    if (fnmatch(g.c_str(), g.find('/') == std::string::npos ? name.c_str() : path.c_str(), 0) == 0) return true;
  return false;
}

// Decompressed bytes of one file: plain, gzip (also concatenated members) or zstd (also several
// frames), told apart by the first bytes.
class ByteStream {
 public:
  explicit ByteStream(const std::string& path) : path_(path) {
    file_ = std::fopen(path.c_str(), "rb");
    if (!file_) throw Error(str("cannot read input file '", path, "': ", std::strerror(errno)));
    unsigned char magic[4] = {0, 0, 0, 0};
    const size_t n = std::fread(magic, 1, 4, file_);
    std::rewind(file_);
    if (n >= 2 && magic[0] == 0x1f && magic[1] == 0x8b) {
      std::fclose(file_);
      file_ = nullptr;
      gz_ = gzopen(path.c_str(), "rb");
      if (!gz_) throw Error(str("cannot open gzip file '", path, "'"));
      gzbuffer(gz_, unsigned(kReadBlock));
    } else if (n == 4 && magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f && magic[3] == 0xfd) {
      zstd_ = ZSTD_createDStream();
      if (!zstd_) throw Error("cannot create a zstd decompression stream");
      ZSTD_initDStream(zstd_);
      in_buf_.resize(ZSTD_DStreamInSize());
    }
  }
  ~ByteStream() {
    if (file_) std::fclose(file_);
    if (gz_) gzclose(gz_);
    if (zstd_) ZSTD_freeDStream(zstd_);
  }
  ByteStream(const ByteStream&) = delete;
  ByteStream& operator=(const ByteStream&) = delete;

  // Up to cap bytes into out; 0 at the end. Throws Error naming the file on a read error or
  // damaged/truncated compressed data.
  size_t read(char* out, size_t cap) {
    if (gz_) {
      const int n = gzread(gz_, out, unsigned(std::min<size_t>(cap, 1u << 30)));
      int code = Z_OK;
      const char* msg = gzerror(gz_, &code);
      if (n < 0 || (code != Z_OK && code != Z_STREAM_END))
        throw Error(str("gzip file '", path_, "' is damaged or truncated: ", msg));
      return size_t(n);
    }
    if (zstd_) return read_zstd(out, cap);
    const size_t n = std::fread(out, 1, cap, file_);
    if (n == 0 && std::ferror(file_)) throw Error(str("read error on input file '", path_, "'"));
    return n;
  }

 private:
  size_t read_zstd(char* out, size_t cap) {
    ZSTD_outBuffer o{out, cap, 0};
    while (o.pos == 0) {
      if (in_.pos == in_.size) {
        const size_t n = std::fread(in_buf_.data(), 1, in_buf_.size(), file_);
        if (n == 0) {
          if (std::ferror(file_)) throw Error(str("read error on input file '", path_, "'"));
          if (last_ != 0) throw Error(str("zstd file '", path_, "' is truncated (its last frame is incomplete)"));
          return 0;
        }
        in_ = {in_buf_.data(), n, 0};
      }
      last_ = ZSTD_decompressStream(zstd_, &o, &in_);
      if (ZSTD_isError(last_))
        throw Error(str("zstd file '", path_, "' is damaged: ", ZSTD_getErrorName(last_)));
    }
    return o.pos;
  }

  std::string path_;
  std::FILE* file_ = nullptr;
  gzFile gz_ = nullptr;
  ZSTD_DStream* zstd_ = nullptr;
  std::vector<char> in_buf_;
  ZSTD_inBuffer in_{nullptr, 0, 0};
  size_t last_ = 0;  // ZSTD_decompressStream's last hint: 0 when a frame just ended
};

// Lines of a ByteStream, each with its '\n' (the last may lack it). A line longer than max_line
// comes back in pieces cut at UTF-8 character boundaries (`partial` set on all but the last).
class LineReader {
 public:
  explicit LineReader(ByteStream& in) : in_(in) {}

  // The first bytes of the stream (up to `n`), without consuming them.
  std::string_view head(size_t n) {
    while (buf_.size() - pos_ < n && fill()) {
    }
    return std::string_view(buf_).substr(pos_, n);
  }

  bool next(std::string_view& line, bool& partial, size_t max_line) {
    size_t scanned = 0;  // bytes after pos_ known to hold no newline
    for (;;) {
      const void* nl = std::memchr(buf_.data() + pos_ + scanned, '\n', buf_.size() - pos_ - scanned);
      if (nl) {
        const size_t end = size_t(static_cast<const char*>(nl) - buf_.data()) + 1;
        if (end - pos_ <= max_line) return take(end, false, line, partial);
      }
      if (buf_.size() - pos_ > max_line) {
        size_t cut = pos_ + max_line;
        for (int k = 0; k < 3 && (static_cast<unsigned char>(buf_[cut]) & 0xC0) == 0x80; ++k) --cut;
        return take(cut, true, line, partial);
      }
      scanned = buf_.size() - pos_;
      if (!fill()) {
        if (pos_ == buf_.size()) return false;
        return take(buf_.size(), false, line, partial);
      }
    }
  }

 private:
  bool take(size_t end, bool part, std::string_view& line, bool& partial) {
    line = std::string_view(buf_).substr(pos_, end - pos_);
    partial = part;
    pos_ = end;
    return true;
  }
  // Appends one block, first dropping consumed bytes (a returned line stays valid only until the
  // next call).
  bool fill() {
    if (pos_ > 0) {
      buf_.erase(0, pos_);
      pos_ = 0;
    }
    const size_t old = buf_.size();
    buf_.resize(old + kReadBlock);
    const size_t n = in_.read(buf_.data() + old, kReadBlock);
    buf_.resize(old + n);
    return n > 0;
  }

  ByteStream& in_;
  std::string buf_;
  size_t pos_ = 0;
};

std::string_view strip_newline(std::string_view line) {
  if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

}  // namespace

std::vector<InputFile> list_input_files(const CorpusOptions& opts) {
  if (opts.format != "auto" && opts.format != "text" && opts.format != "jsonl")
    throw Error(str("unknown input format '", opts.format, "': use \"auto\", \"text\" or \"jsonl\""));
  std::vector<InputFile> files;
  for (const std::string& in : opts.inputs) {
    std::error_code ec;
    if (fs::is_directory(in, ec)) {
      std::vector<std::string> found;
      fs::recursive_directory_iterator it(in, ec), end;
      for (; !ec && it != end; it.increment(ec)) {
        const fs::directory_entry& e = *it;
        const fs::path& p = e.path();
        if (p.filename().string().front() == '.') {
          if (e.is_directory()) it.disable_recursion_pending();
          continue;
        }
        if (e.is_symlink() || !e.is_regular_file() || is_fortune_index(p)) continue;
        if (matches(opts.globs, fs::relative(p, in))) found.push_back(p.string());
      }
      if (ec) throw Error(str("cannot list input directory '", in, "': ", ec.message()));
      std::sort(found.begin(), found.end());
      for (auto& f : found) files.push_back({std::move(f), 0, InputFormat::text});
    } else if (fs::exists(in, ec)) {
      files.push_back({in, 0, InputFormat::text});
    } else {
      throw Error(str("input '", in, "' does not exist"));
    }
  }
  if (files.empty())
    throw Error(opts.globs.empty() ? "no input files: give text or JSON Lines files or directories that contain them"
                                   : "no input files match --glob in the input directories");
  for (auto& f : files) {
    std::error_code ec;
    f.bytes = int64_t(fs::file_size(f.path, ec));
    if (ec) throw Error(str("cannot read the size of input file '", f.path, "': ", ec.message()));
    f.format = detect_format(f.path, opts.format);
  }
  return files;
}

std::vector<InputFile> input_partition(const std::vector<InputFile>& files, int part, int parts) {
  CAIRN_ASSERT(parts >= 1 && part >= 0 && part < parts, "part ", part, " of ", parts);
  int64_t total = 0;
  for (const auto& f : files) total += f.bytes;
  // File k belongs to the part whose share of the bytes holds the middle of the file.
  std::vector<InputFile> out;
  int64_t before = 0;
  for (const auto& f : files) {
    __extension__ using i128 = __int128;
    const i128 mid2 = i128(before) * 2 + f.bytes;  // twice the file's middle
    const int owner = total > 0 ? int(mid2 * parts / (i128(total) * 2)) : 0;
    if (std::min(owner, parts - 1) == part) out.push_back(f);
    before += f.bytes;
  }
  return out;
}

uint64_t input_list_hash(const std::vector<InputFile>& files) {
  Hash64 h;
  for (const auto& f : files) {
    h.update(f.path.data(), f.path.size() + 1);  // with the terminating NUL as separator
    h.update(&f.bytes, sizeof f.bytes);
  }
  return h.digest();
}

void read_corpus(const std::vector<InputFile>& files, const CorpusOptions& opts,
                 const std::function<void(CorpusChunk&&)>& emit) {
  uint64_t seq = 0;
  int64_t skipped_files = 0;
  CorpusChunk chunk;
  auto fresh = [&](size_t file, InputFormat format, int64_t line) {
    chunk = CorpusChunk();
    chunk.seq = seq;
    chunk.file = file;
    chunk.format = format;
    chunk.first_line = line;
  };
  auto send = [&] {
    if (opts.stop && opts.stop->load()) throw Error("interrupted");
    chunk.skipped_files = skipped_files;
    skipped_files = 0;
    emit(std::move(chunk));
    ++seq;
  };
  auto send_error = [&](size_t file, std::string message) {
    fresh(file, InputFormat::text, 1);
    chunk.error = std::move(message);
    send();
  };

  for (size_t i = 0; i < files.size(); ++i) {
    const InputFile& file = files[i];
    fresh(i, file.format, 1);
    try {
      ByteStream stream(file.path);
      LineReader lines(stream);
      if (looks_binary(lines.head(kSniffBytes))) {
        if (!opts.skip_invalid) {
          send_error(i, str("input file '", file.path, "' is not UTF-8 text (its first ", kSniffBytes / 1024,
                            " KiB hold a NUL byte or invalid UTF-8): remove it, narrow --glob, or pass --skip-invalid "
                            "to skip such files"));
          return;
        }
        ++skipped_files;
        continue;
      }
      const bool jsonl = file.format == InputFormat::jsonl;
      int64_t line_no = 1;
      // Text: the open piece of the current document (if any) in chunk.text.
      bool piece_open = false, doc_continues = false;
      TextPiece piece;
      auto close_piece = [&](bool end) {
        if (piece_open || (end && doc_continues)) {
          if (!piece_open) piece = {chunk.text.size(), 0, false, false, line_no};
          piece.size = chunk.text.size() - piece.offset;
          piece.end = end;
          chunk.pieces.push_back(piece);
        }
        piece_open = false;
        doc_continues = !end;
      };
      std::string_view line;
      bool partial = false, line_start = true;  // line_start: `line` begins a line
      while (lines.next(line, partial, jsonl ? std::string::npos : kMaxTextLine)) {
        if (jsonl) {
          if (chunk.text.empty()) chunk.first_line = line_no;
          chunk.text.append(line);
          if (chunk.text.back() != '\n') chunk.text.push_back('\n');
        } else if (!opts.split_on.empty() && line_start && !partial && strip_newline(line) == opts.split_on) {
          close_piece(true);
        } else {
          const size_t size = chunk.text.size();
          if (piece_open && ((size >= kChunkBytes && line_start && starts_with_non_space(line)) || size >= kMaxChunkBytes)) {
            close_piece(false);
            send();
            fresh(i, file.format, line_no);
          }
          if (!piece_open) {
            piece = {chunk.text.size(), 0, !doc_continues, false, line_no};
            piece_open = true;
          }
          chunk.text.append(line);
        }
        line_start = !partial;
        if (!partial) ++line_no;
        if (chunk.text.size() >= kChunkBytes && !piece_open) {
          send();
          fresh(i, file.format, line_no);
        }
      }
      if (!jsonl) close_piece(true);
      if (!chunk.text.empty() || !chunk.pieces.empty()) send();
    } catch (const Error& e) {
      if (opts.stop && opts.stop->load()) throw;
      send_error(i, e.what());
      return;
    }
  }
  if (skipped_files > 0) {
    fresh(files.size() - 1, InputFormat::text, 1);
    send();
  }
}

std::string extract_documents(const CorpusChunk& chunk, const std::vector<InputFile>& files,
                              const CorpusOptions& opts, std::string& scratch, SkipCounts& skipped,
                              const std::function<void(const DocumentPiece&)>& fn) {
  skipped.files += chunk.skipped_files;
  const std::string& path = files[chunk.file].path;
  if (chunk.format == InputFormat::jsonl) {
    int64_t line_no = chunk.first_line;
    size_t pos = 0;
    while (pos < chunk.text.size()) {
      const size_t nl = chunk.text.find('\n', pos);
      std::string_view line(chunk.text.data() + pos, nl - pos);
      pos = nl + 1;
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (!is_blank(line)) {
        const std::string problem = json_string_member(line, opts.json_key, scratch);
        if (!problem.empty()) {
          if (!opts.skip_invalid)
            return str(path, ":", line_no, ": the JSON Lines record ", problem,
                       ": fix the file, choose the member with --json-key, or pass --skip-invalid to skip such records");
          ++skipped.documents;
        } else if (!is_blank(scratch)) {
          fn({scratch, true, true});
        }
      }
      ++line_no;
    }
  } else {
    for (const TextPiece& p : chunk.pieces) {
      const std::string_view text(chunk.text.data() + p.offset, p.size);
      if (p.begin && p.end && is_blank(text)) continue;
      // A NUL byte is valid UTF-8 but never text: refused (or skipped) as the file sniff and invalid
      // UTF-8 are, wherever in the file it is.
      const size_t bad = std::min(utf8_invalid_offset(text), text.find('\0'));
      if (bad != std::string_view::npos) {
        if (!opts.skip_invalid) {
          const int64_t line = p.line + std::count(text.begin(), text.begin() + std::ptrdiff_t(bad), '\n');
          if (text[bad] == '\0')
            return str(path, ":", line, ": a NUL byte, which text does not hold: remove it, or pass --skip-invalid to "
                       "skip such documents");
          return str(path, ":", line, ": invalid UTF-8 (byte 0x", std::hex, int(static_cast<unsigned char>(text[bad])),
                     std::dec, "): convert the file to UTF-8, or pass --skip-invalid to skip such documents");
        }
        ++skipped.documents;
        if (p.end && !p.begin) fn({std::string_view(), false, true});  // still ends its document
        continue;
      }
      fn({text, p.begin, p.end});
    }
  }
  return chunk.error;
}

}  // namespace cairn
