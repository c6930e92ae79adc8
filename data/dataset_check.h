// The start-of-training check of token datasets: every shard's ids are below the vocabulary and
// hash to what the manifest records (TokenDataset::verify_shard), so a bad id is found before
// training instead of hours in, when its window is sampled. The shards are spread over the ranks.
// A passed check of a large shard is remembered in a cache directory, keyed by the shard's
// identity (absolute path, size, modification time, inode, recorded hash, vocabulary), so a
// resumed run does not read 100 GB again; any change to the file changes the key.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace cairn {

class TokenDataset;

// Shards of fewer tokens are checked every time (a few milliseconds), not cached.
inline constexpr int64_t kTokenCheckCacheMinTokens = int64_t(1) << 24;

// $CAIRN_CACHE_DIR/token-checks, else $XDG_CACHE_HOME/cairn/token-checks, else
// $HOME/.cache/cairn/token-checks.
std::string token_check_cache_dir();

struct TokenCheckReport {
  int64_t shards = 0, tokens = 0;  // over all datasets
  int64_t cached_shards = 0;       // skipped: checked before
  double seconds = 0;
  std::string cache_problem;       // why the cache could not be written (checks still ran), or ""
  std::string describe() const;
};

// Collective over `size` ranks (rank `rank`): `all_reduce_max` reduces an int64 vector elementwise
// by max over the ranks (identity for one rank). Throws cairn::Error naming the dataset, the shard
// and the offset of the first bad id, or the shard whose hash differs (on the rank that checked it).
TokenCheckReport verify_datasets(const std::vector<const TokenDataset*>& datasets, int rank, int size,
                                 const std::function<void(std::vector<int64_t>&)>& all_reduce_max,
                                 const std::string& cache_dir = token_check_cache_dir(),
                                 int64_t cache_min_tokens = kTokenCheckCacheMinTokens);

}  // namespace cairn
