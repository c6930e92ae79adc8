// The memory plan (see memory_plan.h): the items, the available memory, the check and its report.
#include "trainer/memory_plan.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "model/growth.h"
#include "model/linear_sltrain.h"
#include "model/llama.h"
#include "comm/grad_sync.h"
#include "trainer/optim/fira.h"
#include "trainer/optim/make_optimizer.h"
#include "util/error.h"

namespace cairn {

int64_t MemoryPlan::bytes(MemoryPlace place) const {
  int64_t n = 0;
  for (const auto& i : items)
    if (i.place == place) n += i.bytes;
  return n;
}

int64_t MemoryPlan::host_bytes() const {
  return device ? bytes(MemoryPlace::host) : bytes(MemoryPlace::backend) + bytes(MemoryPlace::host);
}

namespace {

std::string gb(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GB", double(bytes) / 1e9);
  return buf;
}

std::string mb(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MB", double(bytes) / 1e6);
  return buf;
}

// Floats sgesdd ('S') or gesvdj needs for an m×n matrix: the copy, S, U, Vᵀ, and LAPACK's documented
// minimal work 3k² + max(max(m, n), 4k² + 4k) with k = min(m, n), plus 8k ints of iwork.
int64_t svd_scratch_floats(int64_t m, int64_t n) {
  const int64_t k = std::min(m, n);
  return m * n + k + k * (m + n) + 3 * k * k + std::max(std::max(m, n), 4 * k * k + 4 * k) + 8 * k;
}

constexpr const char* kHostCopies = "host copies: parameters, and the optimizer state while resuming";

// One model configuration's items: what the model allocates, what the optimizer allocates, and
// host memory outside the backend.
struct Parts {
  std::vector<MemoryItem> model, optimizer, host;
};

Parts plan_parts(const TrainConfig& cfg, const ModelConfig& mc, const Backend& be, int world, int rank, int64_t B) {
  const bool device = be.device_memory().has_value();
  const ParamTable table = LlamaModel::parameter_table(mc);
  const int64_t params = table.total() * 4;
  Parts p;
  p.model.push_back({"parameters", params});
  p.model.push_back({"gradients", params});
  if (const int64_t copy = be.parameter_copy_bytes(table.total()); copy > 0)
    p.model.push_back({str("parameter copy of the ", be.name(), " backend"), copy});
  if (const int64_t staging = be.matmul_staging_bytes(LlamaModel::matmul_operand_floats(mc, B)); staging > 0)
    p.model.push_back({str("matmul operand staging of the ", be.name(), " backend"), staging});

  const std::vector<ActivationBuffer> acts = LlamaModel::activation_sizes(mc, be, B);
  auto role_bytes = [&](std::initializer_list<ActivationRole> roles) {
    std::vector<ActivationBuffer> part;
    for (const auto& a : acts)
      if (std::find(roles.begin(), roles.end(), a.role) != roles.end()) part.push_back(a);
    return LlamaModel::activation_arena_bytes(part);
  };
  p.model.push_back({"activations saved for backward", role_bytes({ActivationRole::saved})});
  p.model.push_back({"logits and losses", role_bytes({ActivationRole::logits})});
  p.model.push_back({"backward scratch and projection workspace", role_bytes({ActivationRole::scratch})});
  p.model.push_back({"tokens and RoPE tables", role_bytes({ActivationRole::tokens, ActivationRole::constant})});

  int64_t support = 0;  // SLTrain's support indices, in the BufferTable (host)
  if (mc.linear.kind == LinearKind::sltrain) {
    const int64_t C = mc.dim, F = mc.ffn_dim;
    const auto nnz = [&](int64_t out, int64_t in) { return sltrain_nnz(mc.linear.density, out, in); };
    support = 4 * mc.n_layers * (4 * nnz(C, C) + 2 * nnz(F, C) + nnz(C, F));
    if (!sltrain_host_backend(be)) p.model.push_back({"SLTrain support copies in the backend", support});
  }

  std::vector<int> rows;
  if (cfg.training.zero1) {
    const std::vector<int> bounds = partition_rows(table, world);
    for (int r = bounds[size_t(rank)]; r < bounds[size_t(rank) + 1]; ++r) rows.push_back(r);
  } else {
    for (int r = 0; r < int(table.rows().size()); ++r) rows.push_back(r);
  }
  const OptimizerStateMemory opt =
      optimizer_state_memory(table, rows, cfg.optimizer.name, lowrank_config(cfg.optimizer));
  p.optimizer.push_back({str("optimizer state (", choice_name(cfg.optimizer.name), world > 1 && cfg.training.zero1 ? ", this rank's ZeRO-1 share" : "", ")"),
                         opt.bytes()});
  if (opt.workspace.floats() > 0) {  // Fira or GaLore on dense matrices
    p.optimizer.push_back({"low-rank optimizer step workspace", 4 * opt.workspace.floats()});
    p.optimizer.push_back({"SVD scratch at projection refreshes", 4 * svd_scratch_floats(opt.largest_matrix_m, opt.largest_matrix_n),
                           device ? MemoryPlace::backend : MemoryPlace::host, true});
  }

  // Checkpoints and initialization copy the parameters through the host; a resume also holds this
  // rank's optimizer state there while it verifies the weights. A Hugging Face import
  // (model.init_from = "hf:DIR") streams tensor by tensor: one tensor's fp32 values and stored
  // bytes, at most 1.5 times the largest row (twice the embedding to compare a tied checkpoint's
  // redundant lm_head.weight), which this item's whole parameter copy covers.
  p.host.push_back({kHostCopies, params + opt.bytes(), MemoryPlace::host});
  if (support > 0) p.host.push_back({"SLTrain support indices", support, MemoryPlace::host});
  return p;
}

int64_t backend_sum(const std::vector<MemoryItem>& items) {
  int64_t n = 0;
  for (const auto& i : items)
    if (i.place == MemoryPlace::backend) n += i.bytes;
  return n;
}

}  // namespace

MemoryPlan plan_memory(const TrainConfig& cfg, const Backend& be, int world, int rank, int64_t micro_batch) {
  CAIRN_ASSERT(cfg.model.vocab_size > 0, "plan_memory needs the resolved vocabulary");
  CAIRN_ASSERT(world > 0 && rank >= 0 && rank < world && micro_batch > 0);
  MemoryPlan plan;
  plan.micro_batch = micro_batch;
  plan.device = be.device_memory().has_value();
  const Parts small = plan_parts(cfg, cfg.model, be, world, rank, micro_batch);
  plan.items = small.model;
  plan.items.insert(plan.items.end(), small.optimizer.begin(), small.optimizer.end());
  // The backend's own attention scratch (the CUDA backend's bf16 copies and cuDNN workspace): one
  // buffer of the backend, whichever model runs, so counted once, also across a growth (which keeps
  // the heads and T). It shares that buffer with the SVD scratch, counted apart: an over-estimate.
  const ModelConfig& m = cfg.model;
  if (const int64_t ws = be.attention_workspace_bytes(micro_batch, m.seq_len, m.n_heads, m.head_size()); ws > 0)
    plan.items.push_back({str("attention workspace of the ", be.name(), " backend"), ws});
  if (cfg.growth.at_tokens <= 0) {
    plan.items.insert(plan.items.end(), small.host.begin(), small.host.end());
    return plan;
  }
  // deepen() builds the grown model while the small one and its optimizer still exist, then
  // frees them and builds the grown model's optimizer.
  const ModelConfig grown_cfg = grown_config(cfg.model, cfg.growth.factor);
  const Parts grown = plan_parts(cfg, grown_cfg, be, world, rank, micro_batch);
  const int64_t small_all = backend_sum(small.model) + backend_sum(small.optimizer);
  const int64_t grown_model = backend_sum(grown.model), grown_all = grown_model + backend_sum(grown.optimizer);
  plan.items.push_back({str("G_stack growth to ", grown_cfg.n_layers, " layers: the grown model beside the small one"),
                        std::max(grown_model, grown_all - small_all)});
  // The growth copies both models' parameters through the host.
  std::vector<MemoryItem> host = grown.host;
  for (auto& item : host)
    if (item.what == kHostCopies) item.bytes = std::max(item.bytes, small.model[0].bytes + grown.model[0].bytes);
  plan.items.insert(plan.items.end(), host.begin(), host.end());
  return plan;
}

namespace {

// The first number after `key` in a file of "key value" lines (meminfo, memory.stat); -1 if absent.
int64_t read_keyed(const std::string& path, const std::string& key) {
  std::ifstream in(path);
  std::string k;
  int64_t v = 0;
  while (in >> k) {
    if (k == key && in >> v) return v;
    in.ignore(1 << 20, '\n');
  }
  return -1;
}

// A file holding one number; -1 if absent or not a number ("max").
int64_t read_number(const std::string& path) {
  std::ifstream in(path);
  int64_t v = -1;
  if (!(in >> v)) return -1;
  return v;
}

// The tightest of the cgroup limits over this process's cgroup and its ancestors, less usage (the
// inactive file pages the kernel reclaims first count as free); -1 when no limit applies.
int64_t cgroup_available(std::string& source) {
  namespace fs = std::filesystem;
  std::ifstream in("/proc/self/cgroup");
  std::string line, v2_path, v1_path;
  while (std::getline(in, line)) {
    const size_t a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    if (line.compare(0, a, "0") == 0 && controllers.empty()) v2_path = path;
    std::stringstream list(controllers);
    for (std::string c; std::getline(list, c, ',');)
      if (c == "memory") v1_path = path;
  }
  int64_t best = -1;
  auto consider = [&](int64_t limit, int64_t usage, int64_t inactive, const std::string& where) {
    const int64_t avail = std::max<int64_t>(0, limit - usage + std::max<int64_t>(inactive, 0));
    if (best < 0 || avail < best) {
      best = avail;
      source = str("cgroup ", where, " limit ", gb(limit), " less usage ", gb(usage - std::max<int64_t>(inactive, 0)));
    }
  };
  if (!v1_path.empty()) {  // cgroup v1: memory.stat's hierarchical limit already covers ancestors
    for (const std::string& dir : {"/sys/fs/cgroup/memory" + v1_path, std::string("/sys/fs/cgroup/memory")}) {
      const int64_t usage = read_number(dir + "/memory.usage_in_bytes");
      if (usage < 0) continue;
      int64_t limit = read_keyed(dir + "/memory.stat", "hierarchical_memory_limit");
      if (limit < 0) limit = read_number(dir + "/memory.limit_in_bytes");
      if (limit > 0 && limit < (int64_t(1) << 60))  // v1 writes "unlimited" as a huge number
        consider(limit, usage, read_keyed(dir + "/memory.stat", "total_inactive_file"), dir);
      break;
    }
  } else if (!v2_path.empty()) {
    for (fs::path dir = fs::path("/sys/fs/cgroup") / fs::path(v2_path).relative_path();; dir = dir.parent_path()) {
      const int64_t limit = read_number((dir / "memory.max").string()), usage = read_number((dir / "memory.current").string());
      if (limit > 0 && usage >= 0)
        consider(limit, usage, read_keyed((dir / "memory.stat").string(), "inactive_file"), dir.string());
      if (dir == "/sys/fs/cgroup" || !dir.has_parent_path() || dir == dir.parent_path()) break;
    }
  }
  return best;
}

// CAIRN_MEMORY_LIMIT_BYTES, or -1 when unset. Throws Error for a value that is not a byte count.
int64_t memory_limit_override() {
  const char* env = std::getenv("CAIRN_MEMORY_LIMIT_BYTES");
  if (!env || !*env) return -1;
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(env, &end, 10);
  if (errno != 0 || *end != '\0' || v <= 0)
    throw Error(str("CAIRN_MEMORY_LIMIT_BYTES = '", env, "' is not a positive number of bytes: unset it or give e.g. 16000000000"));
  return int64_t(v);
}

}  // namespace

AvailableMemory available_host_memory() {
  if (const int64_t v = memory_limit_override(); v > 0) return {v, "CAIRN_MEMORY_LIMIT_BYTES"};
  const int64_t kb = read_keyed("/proc/meminfo", "MemAvailable:");
  AvailableMemory a;
  a.bytes = kb >= 0 ? kb * 1024 : -1;
  a.source = kb >= 0 ? str("MemAvailable ", gb(a.bytes)) : "";
  std::string cgroup_source;
  const int64_t cg = cgroup_available(cgroup_source);
  if (cg >= 0 && (a.bytes < 0 || cg < a.bytes)) {
    a.source = a.bytes >= 0 ? str(cgroup_source, ", below ", a.source) : cgroup_source;
    a.bytes = cg;
  }
  return a;
}

namespace {

// The largest micro-batch in [1, below) whose plan fits `available` for `sharing` ranks; 0 if none.
int64_t largest_fitting_micro_batch(const TrainConfig& cfg, const Backend& be, int world, int rank, bool device,
                                    int sharing, int64_t available, int64_t below) {
  const auto need = [&](int64_t b) {
    const MemoryPlan p = plan_memory(cfg, be, world, rank, b);
    return (device ? p.bytes(MemoryPlace::backend) : p.host_bytes()) * sharing;
  };
  int64_t lo = 0, hi = below;  // need(lo) fits (or lo = 0), need(hi) does not
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    (need(mid) <= available ? lo : hi) = mid;
  }
  return lo;
}

std::string refusal_message(const MemoryCheck& c, const TrainConfig& cfg, int64_t fits) {
  std::vector<MemoryItem> items = c.plan.items;
  std::sort(items.begin(), items.end(), [](const MemoryItem& a, const MemoryItem& b) { return a.bytes > b.bytes; });
  std::string biggest;
  for (size_t i = 0; i < std::min<size_t>(3, items.size()); ++i)
    biggest += str(i ? ", " : "", items[i].what, " ", gb(items[i].bytes));
  std::string msg = str("memory plan: training.micro_batch = ", cfg.training.micro_batch, " needs ", gb(c.needed), " of ",
                        c.memory, " (", c.ranks_sharing, c.ranks_sharing == 1 ? " rank" : " ranks sharing it",
                        "; largest items per rank: ", biggest, ") but ", gb(c.available.bytes), " is available (",
                        c.available.source, ")");
  if (fits == 0)
    return msg + ": even training.micro_batch = 1 does not fit. Use a smaller model, more ranks (ZeRO-1 shards the "
                 "optimizer state), a factored model.linear (\"sltrain\", \"lowrank\") or optimizer.name = \"fira\"";
  const int64_t per_step = cfg.training.micro_batch * cfg.training.grad_accum;
  int64_t b = fits;  // the largest micro-batch that fits and divides the rank's sequences per step
  while (per_step % b != 0) --b;
  msg += str(": the largest training.micro_batch that fits is ", fits, "; training.micro_batch = ", b,
             " with training.grad_accum = ", per_step / b, " keeps the global batch (", per_step,
             " sequences per rank per step)");
  return msg + ". `cairn train --dry-run` prints the whole plan";
}

}  // namespace

MemoryCheck check_memory(const TrainConfig& cfg, const Backend& be, Communicator& comm) {
  MemoryCheck c;
  const int world = comm.size(), rank = comm.rank();
  c.plan = plan_memory(cfg, be, world, rank, cfg.training.micro_batch);
  const auto hosts = comm.all_gather_strings(comm.host());
  const int on_host = int(std::count(hosts.begin(), hosts.end(), hosts[size_t(rank)]));
  const std::optional<Backend::DeviceMemory> dev = be.device_memory();
  if (dev) {
    // Ranks bind to GPU (local rank % GPUs): this many share this rank's GPU at most.
    const int gpus = std::max(1, cuda_device_count());
    c.ranks_sharing = (on_host + gpus - 1) / gpus;
    c.memory = "GPU memory";
    const int64_t limit = memory_limit_override();
    c.available = limit > 0 ? AvailableMemory{limit, "CAIRN_MEMORY_LIMIT_BYTES"}
                            : AvailableMemory{dev->free_bytes, str("free on the GPU, of ", gb(dev->total_bytes))};
    c.needed = c.plan.bytes(MemoryPlace::backend) * c.ranks_sharing;
  } else {
    c.ranks_sharing = on_host;
    c.memory = "host memory";
    c.available = available_host_memory();
    c.needed = c.plan.host_bytes() * c.ranks_sharing;
  }
  // The host's memory for a device run's host items is not checked: they are small and transient.
  const bool fits = c.available.bytes < 0 || c.needed <= c.available.bytes;
  if (!fits) {
    const int64_t b = largest_fitting_micro_batch(cfg, be, world, rank, dev.has_value(), c.ranks_sharing,
                                                  c.available.bytes, cfg.training.micro_batch);
    c.refusal = refusal_message(c, cfg, b);
  }
  int64_t refusing = fits ? -1 : rank;
  comm.all_reduce(&refusing, 1, ReduceOp::max);
  if (fits && refusing >= 0)
    c.refusal = str("memory plan: rank ", refusing, "'s plan does not fit its ", c.memory, " (its message says by how much)");
  return c;
}

std::string memory_summary(const MemoryCheck& c) {
  std::string s = "memory per rank:";
  for (size_t i = 0; i < c.plan.items.size(); ++i) {
    const MemoryItem& it = c.plan.items[i];
    s += str(i ? ", " : " ", it.what, " ", mb(it.bytes), it.estimate ? " (estimated)" : "");
  }
  s += str("; ", gb(c.needed), " of ", c.memory, " for ", c.ranks_sharing, c.ranks_sharing == 1 ? " rank" : " ranks",
           ", ", c.available.bytes >= 0 ? gb(c.available.bytes) : "unknown", " available");
  return s;
}

std::string describe_memory_check(const MemoryCheck& c) {
  std::string s = str("memory plan per rank (training.micro_batch = ", c.plan.micro_batch, "):\n");
  for (const auto& it : c.plan.items) {
    const char* where = it.place == MemoryPlace::host ? "host" : c.plan.device ? "device" : "host";
    char line[256];
    std::snprintf(line, sizeof line, "  %12s  %-6s %s%s\n", mb(it.bytes).c_str(), where, it.what.c_str(),
                  it.estimate ? " (estimated)" : "");
    s += line;
  }
  if (c.plan.device)
    s += str("  total ", gb(c.plan.bytes(MemoryPlace::backend)), " of GPU memory and ", gb(c.plan.bytes(MemoryPlace::host)),
             " of host memory per rank\n");
  else
    s += str("  total ", gb(c.plan.host_bytes()), " of host memory per rank\n");
  s += str(c.memory, ": ", gb(c.needed), " for ", c.ranks_sharing, c.ranks_sharing == 1 ? " rank" : " ranks", ", ",
           c.available.bytes >= 0 ? str(gb(c.available.bytes), " available (", c.available.source, ")") : "available memory unknown",
           "\n");
  s += c.refusal.empty() ? "fits\n" : "does not fit: " + c.refusal + "\n";
  return s;
}

}  // namespace cairn
