// Byte-level BPE merging (see byte_bpe.h). The merge loop follows `tokenizers`' Word::merge_all:
// a heap of candidate pairs ordered by (rank, position), stale candidates skipped when popped, so
// a piece of n bytes costs O(n log n) — long pieces (a line of CJK text is one \p{L}+ run) stay
// cheap, and repeated pieces come from the per-thread cache.
#include "data/byte_bpe.h"

#include <algorithm>
#include <cstring>
#include <optional>

#include "util/error.h"

namespace cairn {

namespace {

bool stands_for_itself(uint32_t b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174; }

// Inverse of byte_level_char for code points below U+0144 (the alphabet's range); -1 elsewhere.
struct ByteOfChar {
  int16_t byte[0x144];
  ByteOfChar() {
    std::fill(std::begin(byte), std::end(byte), int16_t(-1));
    for (int b = 0; b < 256; ++b) byte[byte_level_char(uint8_t(b))] = int16_t(b);
  }
};

uint64_t pair_key(uint32_t left, uint32_t right) { return (uint64_t(left) << 32) | right; }

}  // namespace

std::optional<std::string> byte_level_bytes(const std::string& token) {
  static const ByteOfChar table;
  std::string out;
  for (size_t i = 0; i < token.size();) {
    const auto c = uint8_t(token[i]);
    uint32_t cp;
    if (c < 0x80) {
      cp = c;
      i += 1;
    } else if ((c >> 5) == 0x6 && i + 1 < token.size()) {
      cp = (uint32_t(c & 0x1f) << 6) | (uint8_t(token[i + 1]) & 0x3f);
      i += 2;
    } else {
      return std::nullopt;  // three or more bytes: above U+07FF, outside the alphabet
    }
    if (cp >= 0x144 || table.byte[cp] < 0) return std::nullopt;
    out.push_back(char(table.byte[cp]));
  }
  return out;
}

uint32_t byte_level_char(uint8_t b) {
  if (stands_for_itself(b)) return b;
  uint32_t n = 0;  // b is the n-th byte that does not stand for itself
  for (uint32_t x = 0; x < b; ++x) n += !stands_for_itself(x);
  return 256 + n;
}

ByteBpe::ByteBpe(const std::vector<std::pair<std::string, uint32_t>>& vocab, const std::vector<Merge>& merges,
                 bool ignore_merges, const std::unordered_set<uint32_t>& never_from_text)
    : ignore_merges_(ignore_merges) {
  std::unordered_map<std::string, uint32_t, StringHash, std::equal_to<>> id_of;
  std::fill(std::begin(byte_ids_), std::end(byte_ids_), UINT32_MAX);
  for (const auto& [token, id] : vocab) {
    id_of.emplace(token, id);
    const std::optional<std::string> bytes = byte_level_bytes(token);
    if (!bytes) continue;
    if (bytes->size() == 1) byte_ids_[uint8_t((*bytes)[0])] = id;
    if (ignore_merges && !never_from_text.count(id)) whole_.emplace(*bytes, id);
  }
  for (int b = 0; b < 256; ++b)
    if (byte_ids_[b] == UINT32_MAX || never_from_text.count(byte_ids_[b]))
      throw Error(str("model.vocab has no token for byte 0x", std::hex, b, std::dec,
                      ": cairn needs all 256 byte symbols of a byte-level BPE (train it with "
                      "initial_alphabet=ByteLevel.alphabet()), or text with that byte could not be encoded"));
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const Merge& m = merges[rank];
    const auto left = id_of.find(m.left), right = id_of.find(m.right), merged = id_of.find(m.left + m.right);
    for (const auto& [it, what] : {std::pair{left, &m.left}, std::pair{right, &m.right}})
      if (it == id_of.end()) throw Error(str("model.merges[", rank, "]: token '", *what, "' is not in model.vocab"));
    if (merged == id_of.end())
      throw Error(str("model.merges[", rank, "]: the merged token '", m.left + m.right, "' is not in model.vocab"));
    if (never_from_text.count(merged->second))
      throw Error(str("model.merges[", rank, "] produces the special token '", merged->first,
                      "', which cairn never produces from text"));
  }
  size_t capacity = 16;
  while (capacity < 2 * merges.size()) capacity *= 2;
  merges_.resize(capacity);
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const uint64_t key = pair_key(id_of.at(merges[rank].left), id_of.at(merges[rank].right));
    MergeSlot& slot = merges_[merge_slot(key)];
    slot.key = key;
    slot.value = {uint32_t(rank), id_of.at(merges[rank].left + merges[rank].right)};
  }
}

size_t ByteBpe::merge_slot(uint64_t key) const {
  const size_t mask = merges_.size() - 1;
  const uint64_t h = key * 0x9e3779b97f4a7c15ull;
  size_t i = size_t(h ^ (h >> 32)) & mask;
  while (merges_[i].key != key && merges_[i].key != kNoPair) i = (i + 1) & mask;
  return i;
}

const std::pair<uint32_t, uint32_t>* ByteBpe::find_merge(uint32_t left, uint32_t right) const {
  const MergeSlot& slot = merges_[merge_slot(pair_key(left, right))];
  return slot.key == pair_key(left, right) ? &slot.value : nullptr;
}

size_t PieceCache::slot_of(std::string_view piece) {
  // 8 bytes at a time, multiply and fold (the pieces are short).
  uint64_t h = piece.size() * 0x9e3779b97f4a7c15ull;
  for (size_t i = 0; i < piece.size(); i += 8) {
    uint64_t word = 0;
    std::memcpy(&word, piece.data() + i, std::min<size_t>(8, piece.size() - i));
    h = (h ^ word) * 0xff51afd7ed558ccdull;
    h ^= h >> 32;
  }
  return size_t(h & (kSlots - 1));
}

std::span<const uint32_t> PieceCache::find(std::string_view piece) const {
  if (piece.size() > kMaxBytes) return {};
  const Slot& s = slots_[slot_of(piece)];
  if (s.bytes != piece.size() || s.n_ids == 0 || std::memcmp(s.key, piece.data(), piece.size()) != 0) return {};
  return {s.ids, s.n_ids};
}

void PieceCache::insert(std::string_view piece, std::span<const uint32_t> ids) {
  if (piece.size() > kMaxBytes || ids.empty() || ids.size() > kMaxIds) return;
  Slot& s = slots_[slot_of(piece)];
  s.bytes = uint8_t(piece.size());
  s.n_ids = uint8_t(ids.size());
  std::memcpy(s.key, piece.data(), piece.size());
  std::copy(ids.begin(), ids.end(), s.ids);
}

void ByteBpe::encode_piece(std::string_view piece, std::vector<uint32_t>& out, PieceCache& cache) const {
  if (piece.empty()) return;
  if (piece.size() == 1) {
    out.push_back(byte_ids_[uint8_t(piece[0])]);
    return;
  }
  if (const auto hit = cache.find(piece); !hit.empty()) {
    out.insert(out.end(), hit.begin(), hit.end());
    return;
  }
  const size_t first = out.size();
  merge(piece, out);
  // ignore_merges: a piece in the vocabulary is that one token. Merging gives one token only
  // when it is that token, so the lookup is needed only when merging gave several.
  if (ignore_merges_ && out.size() - first > 1)
    if (const auto whole = whole_.find(piece); whole != whole_.end()) {
      out.resize(first);
      out.push_back(whole->second);
    }
  cache.insert(piece, std::span<const uint32_t>(out).subspan(first));
}

void ByteBpe::merge(std::string_view piece, std::vector<uint32_t>& out) const {
  thread_local std::vector<Symbol> symbols;
  thread_local std::vector<Candidate> heap;  // a max-heap under Candidate::operator<
  const auto n = int32_t(piece.size());
  symbols.resize(size_t(n));
  for (int32_t i = 0; i < n; ++i) symbols[size_t(i)] = {byte_ids_[uint8_t(piece[size_t(i)])], i - 1, i + 1 < n ? i + 1 : -1, 1};
  heap.clear();
  auto consider = [&](int32_t pos) {
    const Symbol& s = symbols[size_t(pos)];
    if (s.next < 0) return;
    if (const auto* m = find_merge(s.id, symbols[size_t(s.next)].id)) {
      heap.push_back({m->first, uint32_t(pos), m->second});
      std::push_heap(heap.begin(), heap.end());
    }
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end());
    const Candidate top = heap.back();
    heap.pop_back();
    Symbol& s = symbols[top.pos];
    if (s.len == 0 || s.next < 0) continue;
    Symbol& right = symbols[size_t(s.next)];
    const auto* m = find_merge(s.id, right.id);
    if (!m || m->second != top.new_id) continue;  // stale: a neighbour changed since it was pushed
    s.id = top.new_id;
    s.len += right.len;
    right.len = 0;
    s.next = right.next;
    if (s.next >= 0) symbols[size_t(s.next)].prev = int32_t(top.pos);
    if (s.prev >= 0) consider(s.prev);
    consider(int32_t(top.pos));
  }
  for (int32_t i = 0; i >= 0; i = symbols[size_t(i)].next) out.push_back(symbols[size_t(i)].id);
}

}  // namespace cairn
