// XXH64 (seed 0): the 64-bit content hash of checkpoints and token dataset shards. Streaming, so
// a file or a token stream is hashed in pieces without holding it whole.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace cairn {

// XXH64 (seed 0), streaming; the digest does not depend on how the input is split into updates.
class Hash64 {
 public:
  void update(const void* data, size_t n);
  uint64_t digest() const;

 private:
  void stripe(const unsigned char* p);
  uint64_t v_[4] = {0x9E3779B185EBCA87ULL + 0xC2B2AE3D27D4EB4FULL, 0xC2B2AE3D27D4EB4FULL, 0,
                    0 - 0x9E3779B185EBCA87ULL};
  unsigned char buf_[32];
  size_t buffered_ = 0;
  uint64_t total_ = 0;
};
// Hash64 of a whole file, read sequentially; throws Error naming the file if it cannot be read.
uint64_t hash_file(const std::string& path);
std::string hash_hex(uint64_t h);

}  // namespace cairn
