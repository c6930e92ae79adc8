// Byte-level BPE merging, as the `tokenizers` BPE model does it on ByteLevel pre-tokenized input,
// but on raw bytes: the vocabulary's byte-level strings (GPT-2's bytes_to_unicode alphabet, "Ġ"
// for a space) are mapped back to bytes once at load, so encoding needs no character mapping.
// Merges apply lowest rank first, leftmost first among equal ranks (the `tokenizers` order).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
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
// The bytes a byte-level string stands for, or nullopt when one of its characters is outside the
// alphabet (such a vocabulary entry never comes out of merging bytes).
std::optional<std::string> byte_level_bytes(const std::string& token);

// Hash and equality that look up std::string keys by std::string_view without a copy.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// The ids of recently encoded pieces, for one thread: a direct-mapped table of fixed size whose
// slots hold short pieces and their ids inline, so a hit costs one hash and one memory access, and
// nothing is allocated or freed while encoding. A new piece replaces the one in its slot.
class PieceCache {
 public:
  // 32-byte slots: 99% of the pieces of English and German text have at most 14 bytes.
  static constexpr size_t kMaxBytes = 14, kMaxIds = 4;
  PieceCache() : slots_(kSlots) {}
  // The cached ids of `piece`, or an empty span.
  std::span<const uint32_t> find(std::string_view piece) const;
  // Remembers ids for piece (ignored unless piece.size() <= kMaxBytes and ids.size() <= kMaxIds).
  void insert(std::string_view piece, std::span<const uint32_t> ids);

 private:
  static constexpr size_t kSlots = 1 << 16;
  struct Slot {
    uint32_t ids[kMaxIds];
    uint8_t bytes = 0, n_ids = 0;  // n_ids 0: empty
    char key[kMaxBytes];
  };
  static size_t slot_of(std::string_view piece);
  std::vector<Slot> slots_;
};

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
  // the ids of pieces seen before.
  void encode_piece(std::string_view piece, std::vector<uint32_t>& out, PieceCache& cache) const;
  uint32_t byte_id(uint8_t b) const { return byte_ids_[b]; }

 private:
  struct Symbol {
    uint32_t id;
    int32_t prev, next;
    uint32_t len;  // bytes; 0 once merged into its left neighbour
  };
  struct Candidate {
    uint32_t rank, pos, new_id;
    // std::pop_heap takes the largest: make that the lowest rank, then the leftmost.
    bool operator<(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  void merge(std::string_view piece, std::vector<uint32_t>& out) const;
  const std::pair<uint32_t, uint32_t>* find_merge(uint32_t left, uint32_t right) const;
  // The index of key's slot, or of the empty slot where it would go.
  size_t merge_slot(uint64_t key) const;

  uint32_t byte_ids_[256];
  // Open addressing with linear probing, (left id << 32 | right id) -> (rank, merged id): one
  // memory access per lookup, where std::unordered_map's nodes cost two or more.
  struct MergeSlot {
    uint64_t key = kNoPair;
    std::pair<uint32_t, uint32_t> value;
  };
  static constexpr uint64_t kNoPair = ~uint64_t(0);
  std::vector<MergeSlot> merges_;
  bool ignore_merges_;
  std::unordered_map<std::string, uint32_t, StringHash, std::equal_to<>> whole_;  // for ignore_merges
};

}  // namespace cairn
