// The memory plan: what one rank will hold (parameters, gradients, optimizer state, activations,
// logits, the backend's own copies, host staging), computed BEFORE anything is allocated from the
// same size tables the model and the optimizers allocate from (LlamaModel::activation_sizes,
// optimizer_state_memory), and checked against the memory this host (or GPU) has free, so that a
// run that cannot fit is refused at start with the largest micro_batch that fits instead of being
// killed by the kernel minutes later.
//
// Available memory: host — the smaller of MemAvailable (/proc/meminfo) and the cgroup's limit less
// its usage (v2 memory.max − memory.current + inactive file pages; v1 memory.limit_in_bytes − …);
// device — the free memory the backend reports (Backend::device_memory). The environment variable
// CAIRN_MEMORY_LIMIT_BYTES replaces both measurements (tests; a machine whose numbers mislead).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "backend/backend.h"
#include "trainer/train_config.h"

namespace cairn {

// Where a plan item lives: the backend's memory (device memory on a GPU, host memory for the CPU
// backend) or host memory outside the backend.
enum class MemoryPlace { backend, host };

struct MemoryItem {
  std::string what;      // "parameters", "activations saved for backward", ...
  int64_t bytes = 0;
  MemoryPlace place = MemoryPlace::backend;
  bool estimate = false;  // not an exact count (library scratch)
};

struct MemoryPlan {
  std::vector<MemoryItem> items;
  int64_t micro_batch = 0;
  bool device = false;  // the backend's memory is device memory
  int64_t bytes(MemoryPlace place) const;
  // What must fit in host memory: everything for the CPU backend, the host items otherwise.
  int64_t host_bytes() const;
};

// The plan of rank `rank` of `world` (its ZeRO-1 share of the optimizer state when
// training.zero1) for cfg — whose model.vocab_size is resolved, not 0 — at `micro_batch`
// sequences per micro-step on `be`. With growth.at_tokens, the peak while the grown model is built
// beside the small one, and the grown model's own needs, are included.
MemoryPlan plan_memory(const TrainConfig& cfg, const Backend& be, int world, int rank, int64_t micro_batch);

struct AvailableMemory {
  int64_t bytes = 0;
  std::string source;  // how it was found, e.g. "MemAvailable 22.9 GB; cgroup limit 16.0 GB less usage 1.2 GB"
};
// Host memory available to new allocations of this process.
AvailableMemory available_host_memory();

// A plan checked against the memory available to the ranks that share it.
struct MemoryCheck {
  MemoryPlan plan;          // this rank's
  int ranks_sharing = 1;    // ranks on this host (host memory) or on this rank's GPU (device memory)
  int64_t needed = 0;       // bytes the ranks sharing need together, of the limiting memory
  AvailableMemory available;
  std::string memory;       // "host memory" or "GPU memory"
  std::string refusal;      // "" when it fits; else the whole message, with the largest micro_batch that fits
};

// Collective: plans this rank, checks it against the host's (or GPU's) available memory, and tells
// every rank when any rank's plan does not fit (a rank whose own plan fits says which rank's did
// not). Allocates nothing in the backend.
MemoryCheck check_memory(const TrainConfig& cfg, const Backend& be, Communicator& comm);

// One line for the start-up report: "memory per rank: parameters 232.3 MB, ... = 3.1 GB of 22.9 GB available".
std::string memory_summary(const MemoryCheck& check);
// The whole plan, one item a line, and the verdict (`cairn train --dry-run`).
std::string describe_memory_check(const MemoryCheck& check);

}  // namespace cairn
