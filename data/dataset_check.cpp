// Start-of-training token check with its cache (see dataset_check.h).
#include "data/dataset_check.h"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "data/token_dataset.h"
#include "util/error.h"
#include "util/file_io.h"
#include "util/hash.h"

namespace cairn {

namespace fs = std::filesystem;

namespace {

fs::path cache_entry(const std::string& dir, const std::string& identity) {
  Hash64 h;
  h.update(identity.data(), identity.size());
  return fs::path(dir) / hash_hex(h.digest());
}

// The entry holds the identity itself, so a hash collision cannot pass a shard unchecked.
bool cached(const std::string& dir, const std::string& identity) {
  std::ifstream in(cache_entry(dir, identity));
  std::string line;
  return in && std::getline(in, line) && line == identity;
}

void remember(const std::string& dir, const std::string& identity) {
  fs::create_directories(dir);
  write_file_atomic(cache_entry(dir, identity).string(), identity + "\n");
}

}  // namespace

std::string token_check_cache_dir() {
  if (const char* d = std::getenv("CAIRN_CACHE_DIR"); d && *d) return (fs::path(d) / "token-checks").string();
  if (const char* d = std::getenv("XDG_CACHE_HOME"); d && *d) return (fs::path(d) / "cairn" / "token-checks").string();
  if (const char* d = std::getenv("HOME"); d && *d) return (fs::path(d) / ".cache" / "cairn" / "token-checks").string();
  return "";
}

std::string TokenCheckReport::describe() const {
  std::ostringstream os;
  os << "token check: " << shards << " shard(s), " << tokens << " tokens, every id below the vocabulary";
  if (cached_shards > 0) os << " (" << cached_shards << " shard(s) checked before, skipped)";
  os << " in " << seconds << " s";
  if (!cache_problem.empty()) os << "; WARNING: cannot cache the result: " << cache_problem;
  return os.str();
}

TokenCheckReport verify_datasets(const std::vector<const TokenDataset*>& datasets, int rank, int size,
                                 const std::function<void(std::vector<int64_t>&)>& all_reduce_max,
                                 const std::string& cache_dir, int64_t cache_min_tokens) {
  const auto start = std::chrono::steady_clock::now();
  struct Unit {
    const TokenDataset* ds;
    size_t shard;
    std::string identity;  // empty: not cached (small shard)
  };
  std::vector<Unit> units;
  TokenCheckReport report;
  for (const TokenDataset* ds : datasets)
    for (size_t i = 0; i < ds->num_shards(); ++i) {
      const int64_t tokens = ds->shard_tokens(i);
      report.tokens += tokens;
      units.push_back({ds, i, !cache_dir.empty() && tokens >= cache_min_tokens ? ds->shard_identity(i) : ""});
    }
  report.shards = int64_t(units.size());
  // A shard is checked when any rank lacks its cache entry (caches need not be shared).
  std::vector<int64_t> need(units.size());
  for (size_t u = 0; u < units.size(); ++u) need[u] = units[u].identity.empty() || !cached(cache_dir, units[u].identity);
  all_reduce_max(need);
  int64_t k = 0;
  for (size_t u = 0; u < units.size(); ++u) {
    if (!need[u]) {
      ++report.cached_shards;
      continue;
    }
    if (k++ % size == rank) units[u].ds->verify_shard(units[u].shard);
  }
  std::vector<int64_t> done{1};  // every rank got here: every shard passed
  all_reduce_max(done);
  for (size_t u = 0; u < units.size(); ++u) {
    if (!need[u] || units[u].identity.empty() || !report.cache_problem.empty()) continue;
    try {
      remember(cache_dir, units[u].identity);
    } catch (const std::exception& e) {
      report.cache_problem = e.what();
    }
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace cairn
