// Byte-level BPE merging, as the `tokenizers` BPE model does it on ByteLevel pre-tokenized input,
// but on raw bytes: the vocabulary's byte-level strings (GPT-2's bytes_to_unicode alphabet, "Ġ"
// for a space) are mapped back to bytes once at load, so encoding needs no character mapping.
// Merges apply lowest rank first, leftmost first among equal ranks (the `tokenizers` order).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace cairn {

// The character that stands for byte b in a byte-level vocabulary (GPT-2's bytes_to_unicode):
// printable Latin-1 bytes stand for themselves, the others for U+0100 onwards.
uint32_t byte_level_char(uint8_t b);

// Hash and equality that look up std::string keys by std::string_view without a copy.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using WordIdsCache = std::unordered_map<std::string, std::vector<uint32_t>, StringHash, std::equal_to<>>;

class ByteBpe {
 public:
  struct Merge {
    std::string left, right;  // byte-level strings
  };
  // vocab: byte-level string -> id; merges in rank order (a later duplicate pair takes the later
  // rank, as in `tokenizers`). `never_from_text`: ids (special tokens) that encoding must never
  // produce. Throws cairn::Error naming model.vocab / model.merges[i] on a missing byte symbol, a
  // merge of tokens not in the vocabulary, or a merge that would produce a never_from_text id.
  ByteBpe(const std::vector<std::pair<std::string, uint32_t>>& vocab, const std::vector<Merge>& merges,
          bool ignore_merges, const std::unordered_set<uint32_t>& never_from_text);

  // Appends the ids of one pre-tokenized piece (raw bytes). `cache` (one per thread) remembers
  // the ids of pieces seen before; it is cleared when it grows past a bound.
  void encode_piece(std::string_view piece, std::vector<uint32_t>& out, WordIdsCache& cache) const;
  uint32_t byte_id(uint8_t b) const { return byte_ids_[b]; }
  // The bytes a vocabulary id stands for; ids of entries outside the byte-level alphabet give
  // the entry's own UTF-8 (as the `tokenizers` ByteLevel decoder does). Empty for unknown ids.
  const std::string& bytes_of(uint32_t id) const;

 private:
  struct Symbol {
    uint32_t id;
    int32_t prev, next;
    uint32_t len;  // bytes; 0 once merged into its left neighbour
  };
  struct Candidate {
    uint32_t rank, pos, new_id;
    // std::priority_queue pops the largest: make that the lowest rank, then the leftmost.
    bool operator<(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  void merge(std::string_view piece, std::vector<uint32_t>& out) const;
  const std::pair<uint32_t, uint32_t>* find_merge(uint32_t left, uint32_t right) const;

  uint32_t byte_ids_[256];
  std::vector<std::string> bytes_;  // by id
  // (left id << 32 | right id) -> (rank, merged id)
  std::unordered_map<uint64_t, std::pair<uint32_t, uint32_t>> merges_;
  bool ignore_merges_;
  std::unordered_map<std::string, uint32_t, StringHash, std::equal_to<>> whole_;  // for ignore_merges
};

}  // namespace cairn
