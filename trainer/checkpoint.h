// Sharded checkpoints (format: docs/formats.md, "Checkpoints"). A checkpoint is a directory
// step_XXXXXXXX/ with model.h5 (the weights format), optimizer_rank<R>.h5 (one per rank: the state
// tensors that rank owns) and trainer.json (counters, config, world size, a 64-bit hash of every
// other file). It is written under step_XXXXXXXX.tmp/ and renamed once complete, so a directory
// without .tmp is either complete or damaged (detected by the hashes), never half-written.
// checkpoint.cpp: the layout, finding, verifying and reading checkpoints; checkpoint_save.cpp: the
// write protocol.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "model/llama.h"
#include "trainer/optim/optimizer.h"
#include "trainer/trainer_state.h"
#include "util/hash.h"

namespace cairn {

inline constexpr const char* kCheckpointFormat = "cairn-checkpoint";
inline constexpr int64_t kCheckpointVersion = 1;
inline constexpr const char* kCheckpointInfoFile = "trainer.json";
inline constexpr const char* kOptimizerShardFormat = "cairn-optimizer-shard";

struct CheckpointFile {
  std::string name;  // relative to the checkpoint directory
  int64_t bytes = 0;
  uint64_t hash = 0;
};

// trainer.json: everything but the weights and the optimizer state.
struct CheckpointInfo {
  int64_t format_version = kCheckpointVersion;
  TrainerState state;
  LogInterval interval;         // absent in older files: empty
  int64_t world_size = 1;
  std::string optimizer;        // Optimizer::name()
  int64_t optimizer_steps = 0;  // Optimizer::steps()
  std::string config_toml;      // the resolved config (config_to_toml)
  std::vector<CheckpointFile> files;  // every other file of the directory
};

// "step_00000120".
std::string checkpoint_name(int64_t step);
// "optimizer_rank3.h5": the optimizer shard file of a rank.
std::string checkpoint_shard_name(int64_t rank);
// The step of a checkpoint directory's name (step_XXXXXXXX), or -1 for any other name.
int64_t checkpoint_step(const std::string& name);
// Directory named by a checkpoint path: the directory itself, or, for a checkpoint root holding a
// `latest` pointer, the checkpoint it names.
std::string checkpoint_resolve(const std::string& path);

// Reads trainer.json and checks its format and version (throws Error naming the file).
CheckpointInfo checkpoint_read_info(const std::string& dir);
// Checks that every file listed in trainer.json is present, has its recorded size and hash, and
// that one optimizer shard per rank of world_size is listed. Throws Error naming the file and the
// problem (missing, truncated, checksum mismatch).
void checkpoint_verify(const std::string& dir, const CheckpointInfo& info);

// The weights file for a path given to eval, generate, export, grow or model.init_from: what
// resolve_weights_path(arg) gives, where arg may also be a checkpoint root (its `latest` names the
// step). When that file is a checkpoint's model.h5, its trainer.json and the size and hash recorded
// there are checked first, so damaged weights are an Error naming the file, as with --resume.
std::string checkpoint_weights_path(const std::string& arg);

// Complete checkpoint directories under root (step_XXXXXXXX, .tmp ignored), newest first.
std::vector<std::string> checkpoint_list(const std::string& root);
// The newest checkpoint under root that verifies; "" when root holds none. A damaged newer one is
// reported on `warn` and skipped; throws Error when checkpoints exist but none verifies.
std::string checkpoint_find_latest(const std::string& root, std::ostream& warn);

// Collective: every rank writes its optimizer shard, rank 0 the weights and trainer.json, then rank 0
// renames the directory into place, moves root/latest and deletes all but the newest `keep`
// checkpoints up to this step (keep <= 0 keeps all; newer ones are left alone). info.files is
// filled in here. Returns the final directory. A failure on any rank (a full disk) throws Error on
// every rank, naming the file and the reason; the unfinished step_N.tmp/ is removed and the earlier
// checkpoints are untouched.
std::string checkpoint_save(const std::string& root, CheckpointInfo info, const LlamaModel& model,
                            Optimizer& optimizer, Communicator& comm, int64_t keep);

// The state tensors of `optimizer` (the rows this rank owns now) read from whichever shard files of
// the checkpoint hold them, into host memory, checking names and shapes. Throws Error naming the
// missing or mismatched tensor and the file.
std::vector<std::vector<float>> checkpoint_read_optimizer(const std::string& dir, const CheckpointInfo& info,
                                                         Optimizer& optimizer);
// Copies what checkpoint_read_optimizer returned into the optimizer's state (cannot fail).
void checkpoint_commit_optimizer(Optimizer& optimizer, const std::vector<std::vector<float>>& host,
                                 int64_t optimizer_steps, const Backend& be);

// Tensor names, shapes and the steps stored in one optimizer shard file (for `cairn inspect`).
struct ShardContents {
  std::string optimizer;
  int64_t steps = 0, rank = 0, elements = 0;
  std::vector<std::pair<std::string, std::vector<int64_t>>> tensors;
};
ShardContents checkpoint_read_shard(const std::string& path);
// Parameter names and shapes in a weights file (model.h5), in name order.
std::vector<std::pair<std::string, std::vector<int64_t>>> checkpoint_read_params(const std::string& path);

// Test hook: called with a stage name ("model.h5", "optimizer_rank0.h5", "trainer.json", "renamed",
// "latest") after that part of a save is done; a hook that throws simulates a crash there.
extern std::function<void(const std::string& stage)> checkpoint_fault_hook;

}  // namespace cairn
