// Encoding speed of a Hugging Face tokenizer.json (data/hf_tokenizer.h) on one core, and its ids
// for a comparison with the `tokenizers` package (bench/hf_tokenizer_bench.py runs both).
// Usage: hf_tokenizer_bench TOKENIZER.json TEXT [--split-on LINE] [--reps N] [--ids OUT]
// Documents are the whole TEXT or its pieces between lines equal to LINE (as `cairn prepare`
// splits them); each is encoded with one call. Prints bytes, tokens and the best of N runs' MB/s.
// --ids writes, per document, its token count and ids as little-endian uint32.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "data/hf_tokenizer.h"
#include "data/prepare.h"
#include "util/error.h"

int main(int argc, char** argv) {
  using namespace cairn;
  try {
    if (argc < 3) {
      std::cerr << "usage: hf_tokenizer_bench TOKENIZER.json TEXT [--split-on LINE] [--reps N] [--ids OUT]\n";
      return 2;
    }
    std::string split_on, ids_out;
    int reps = 3;
    for (int i = 3; i + 1 < argc; i += 2) {
      if (!std::strcmp(argv[i], "--split-on")) split_on = argv[i + 1];
      else if (!std::strcmp(argv[i], "--reps")) reps = std::max(1, std::atoi(argv[i + 1]));
      else if (!std::strcmp(argv[i], "--ids")) ids_out = argv[i + 1];
      else throw Error(str("unknown option ", argv[i]));
    }
    const auto tok = load_hf_tokenizer(argv[1]);
    std::ifstream in(argv[2], std::ios::binary);
    if (!in) throw Error(str("cannot read ", argv[2]));
    std::ostringstream buf;
    buf << in.rdbuf();
    const std::vector<std::string> docs = split_documents(buf.str(), split_on);
    int64_t bytes = 0;
    for (const auto& d : docs) bytes += int64_t(d.size());

    double best = 1e30;
    std::vector<std::vector<uint32_t>> ids(docs.size());
    for (int r = 0; r < reps; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      for (size_t d = 0; d < docs.size(); ++d) ids[d] = tok->encode(docs[d]);
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    int64_t tokens = 0;
    for (const auto& v : ids) tokens += int64_t(v.size());
    std::printf("cairn hf_bpe: %zu documents, %lld bytes -> %lld tokens, best of %d: %.3f s, %.2f MB/s\n", docs.size(),
                (long long)bytes, (long long)tokens, reps, best, double(bytes) / best / 1e6);
    if (!ids_out.empty()) {
      std::ofstream out(ids_out, std::ios::binary);
      for (const auto& v : ids) {
        const auto n = uint32_t(v.size());
        out.write(reinterpret_cast<const char*>(&n), 4);
        out.write(reinterpret_cast<const char*>(v.data()), std::streamsize(v.size() * 4));
      }
      if (!out) throw Error(str("cannot write ", ids_out));
    }
  } catch (const Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
