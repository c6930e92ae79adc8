// `cairn inspect CKPT`: what a checkpoint holds (counters, config, parameter rows, optimizer
// shards, files) and whether every file matches its recorded checksum; exits non-zero when not.
#include <filesystem>
#include <iomanip>
#include <iostream>

#include "launch/cli.h"
#include "launch/commands.h"
#include "trainer/checkpoint.h"
#include "util/error.h"

namespace cairn {

static const CommandSpec kInspectSpec{
    "inspect", "CKPT",
    "Prints what a checkpoint holds and verifies the checksum of every file. CKPT is a step\n"
    "directory (runs/x/checkpoints/step_00000120), a checkpoint directory with a `latest` pointer, or\n"
    "a run directory (its checkpoints/).",
    {},
    ""};

static std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

int cmd_inspect(int argc, char** argv) {
  namespace fs = std::filesystem;
  const Args args = parse_command(kInspectSpec, argc, argv, {Positionals::one, "checkpoint directory"});
  if (args.help()) return 0;
  // Like eval, generate and export, take a run directory for its checkpoints/ (the default
  // checkpoint.dir); say what a file is instead of calling it missing.
  fs::path target = args.positional()[0];
  if (fs::is_regular_file(target))
    throw Error(str("'", target.string(), "' is a file: inspect reads a checkpoint (a step_N directory, a checkpoints ",
                    "directory or a run directory holding checkpoints/)"));
  if (!fs::exists(target / "trainer.json") && !fs::exists(target / "latest") && fs::is_directory(target / "checkpoints"))
    target /= "checkpoints";
  const std::string dir = checkpoint_resolve(target.string());
  const CheckpointInfo info = checkpoint_read_info(dir);
  std::cout << "checkpoint " << dir << " (" << kCheckpointFormat << " v" << info.format_version << ")\n"
            << "step " << info.state.step << ", samples " << info.state.samples << ", tokens " << info.state.tokens
            << ", skipped steps " << info.state.skipped_steps << ", world size " << info.world_size << "\n"
            << "optimizer " << info.optimizer << " (" << info.optimizer_steps << " steps)\n\nfiles:\n";
  for (const auto& f : info.files)
    std::cout << "  " << std::left << std::setw(24) << f.name << std::right << std::setw(14) << f.bytes
              << " bytes  xxh64 " << hash_hex(f.hash) << "\n";
  std::cout << std::flush;
  try {
    checkpoint_verify(dir, info);
  } catch (const Error& e) {
    std::cout << "CHECKSUMS FAILED: " << e.what() << std::endl;
    return 1;
  }
  std::cout << "checksums verified\n\n";

  const auto params = checkpoint_read_params((fs::path(dir) / "model.h5").string());
  int64_t total = 0;
  for (const auto& [name, shape] : params) {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    total += n;
  }
  std::cout << "parameters: " << params.size() << " rows, " << total << " scalars\n";
  for (const auto& [name, shape] : params) std::cout << "  " << std::left << std::setw(52) << name << shape_text(shape) << "\n";
  std::cout << "\noptimizer state by shard:\n";
  for (int64_t r = 0; r < info.world_size; ++r) {
    const std::string name = str("optimizer_rank", r, ".h5");
    const ShardContents c = checkpoint_read_shard((fs::path(dir) / name).string());
    std::cout << "  " << name << ": " << c.optimizer << ", " << c.tensors.size() << " tensors, " << c.elements
              << " floats (" << double(c.elements) * 4 / 1e6 << " MB), steps " << c.steps << "\n";
  }
  std::cout << "\nconfig:" << info.config_toml;
  std::cout << std::flush;
  return 0;
}

}  // namespace cairn
