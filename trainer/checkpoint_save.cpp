// The checkpoint write protocol (see checkpoint.h and docs/formats.md): every rank writes its shard
// under step_N.tmp/, rank 0 the weights and a trainer.json hashing every file, then renames the
// directory into place; a failure on any rank fails the save on every rank, as does a directory
// that not every rank sees (a node-local run directory).
#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "comm/collective_error.h"
#include "model/weights_io.h"
#include "trainer/checkpoint.h"
#include "util/error.h"
#include "util/file_io.h"
#include "util/h5.h"

namespace cairn {

namespace fs = std::filesystem;

std::function<void(const std::string&)> checkpoint_fault_hook;

namespace {

void fault(const std::string& stage) {
  if (checkpoint_fault_hook) checkpoint_fault_hook(stage);
}

CheckpointFile describe_file(const fs::path& dir, const std::string& name) {
  const std::string p = (dir / name).string();
  fsync_path(p, false);
  return {name, int64_t(fs::file_size(p)), hash_file(p)};
}

std::string file_entry(const CheckpointFile& f) { return str(f.name, "\t", f.bytes, "\t", hash_hex(f.hash)); }

CheckpointFile parse_entry(const std::string& line) {
  std::istringstream is(line);
  CheckpointFile f;
  std::string hex;
  std::getline(is, f.name, '\t');
  is >> f.bytes >> hex;
  f.hash = std::stoull(hex, nullptr, 16);
  return f;
}

nlohmann::json info_json(const CheckpointInfo& info) {
  nlohmann::json files = nlohmann::json::array();
  for (const auto& f : info.files) files.push_back({{"name", f.name}, {"bytes", f.bytes}, {"xxh64", hash_hex(f.hash)}});
  return {{"format", kCheckpointFormat}, {"format_version", info.format_version},
          {"step", info.state.step},     {"samples", info.state.samples},
          {"tokens", info.state.tokens}, {"skipped_steps", info.state.skipped_steps},
          {"interval_loss", info.interval.loss}, {"interval_steps", info.interval.steps},
          {"world_size", info.world_size}, {"optimizer", info.optimizer},
          {"optimizer_steps", info.optimizer_steps}, {"config", info.config_toml},
          {"files", files}};
}

// Checkpoints assume one file system that every rank sees: rank 0 creates the directory, every rank
// writes its shard into it, rank 0 lists them all. A node-local run directory breaks that, and its
// checkpoint could never be resumed; these two checks make it fail at the first checkpoint instead.
// A rank other than 0 must see the directory rank 0 just created.
void require_shared_directory(const fs::path& dir, Communicator& comm) {
  if (comm.rank() == 0 || fs::is_directory(dir)) return;
  throw Error(str("rank ", comm.rank(), " on host ", comm.host(), " does not see the checkpoint directory '",
                  dir.string(), "' that rank 0 created: checkpoint.dir (by default output.run_dir/checkpoints) must be ",
                  "on a file system that every node shares, not a node-local disk; no checkpoint was written"));
}

// Rank 0 must see the shard rank r wrote, as rank r described it.
void require_visible(const fs::path& dir, const CheckpointFile& f, int r, const std::vector<std::string>& hosts) {
  std::error_code ec;
  const auto bytes = fs::file_size(dir / f.name, ec);
  if (!ec && int64_t(bytes) == f.bytes) return;
  throw Error(str("rank 0 on host ", hosts[0], " does not see ", f.name, " as rank ", r, " on host ", hosts[size_t(r)],
                  " wrote it into '", dir.string(), "' (", ec ? "missing" : str(bytes, " bytes, not ", f.bytes),
                  "): checkpoint.dir (by default output.run_dir/checkpoints) must be on a file system that every "
                  "node shares, not a node-local disk; no checkpoint was written"));
}

}  // namespace

// ---- saving ---------------------------------------------------------------------------------

std::string checkpoint_save(const std::string& root, CheckpointInfo info, const LlamaModel& model,
                            Optimizer& optimizer, Communicator& comm, int64_t keep) {
  const std::string name = checkpoint_name(info.state.step);
  const fs::path final_dir = fs::path(root) / name, tmp_dir = fs::path(root) / (name + ".tmp");
  // A failure on any rank (a full disk) ends the save on every rank with that rank's Error, at the
  // next point where they meet; the unfinished .tmp directory is removed (a full disk gets its space
  // back) and the earlier checkpoints are untouched.
  const auto fail_together = [&](const std::string& error) {
    if (!error.empty() && comm.rank() == 0) {
      std::error_code ec;
      fs::remove_all(tmp_dir, ec);
    }
    throw_if_any_failed(comm, error);
  };
  std::string error;
  if (comm.rank() == 0)  // a clean temporary directory (a crashed write may have left one)
    error = capture_error([&] {
      fs::create_directories(root);
      fs::remove_all(tmp_dir);
      fs::create_directory(tmp_dir);
    });
  fail_together(error);

  std::string mine;  // this rank's files, one entry per line
  error = capture_error([&] {
    require_shared_directory(tmp_dir, comm);
    const std::string shard = checkpoint_shard_name(comm.rank());
    H5File f = H5File::create((tmp_dir / shard).string());
    write_attr_string(f, "format", kOptimizerShardFormat);
    write_attr_int(f, "format_version", kCheckpointVersion);
    write_attr_string(f, "optimizer", optimizer.name());
    write_attr_int(f, "steps", optimizer.steps());
    write_attr_int(f, "rank", comm.rank());
    write_attr_int(f, "world_size", comm.size());
    {  // the group must be closed before the file, or H5Fclose only defers the real close
      H5Group state = H5Group::create(f, "state");
      std::vector<float> host;
      for (const auto& t : optimizer.state()) {
        host.resize(t.data.size());
        model.backend().copy_to_host(host.data(), t.data.data(), int64_t(host.size()) * 4);
        write_dataset(state, t.name, host.data(), t.shape);
      }
    }
    f.close();
    mine += file_entry(describe_file(tmp_dir, shard)) + "\n";
    fault(shard);
    if (comm.rank() == 0) {
      save_model_weights(model, (tmp_dir / "model.h5").string(), info.config_toml);
      mine += file_entry(describe_file(tmp_dir, "model.h5")) + "\n";
      fault("model.h5");
    }
  });
  // Also the barrier: every shard is on disk. An entry list starts with 'F', an error with 'E'.
  const auto all = comm.all_gather_strings(error.empty() ? "F" + mine : "E" + error);
  for (const auto& s : all)
    if (s[0] == 'E') {
      error = s.substr(1);
      break;
    }
  fail_together(error);
  const auto hosts = comm.all_gather_strings(comm.host());
  if (comm.rank() == 0)
    error = capture_error([&] {
      info.files.clear();
      for (size_t r = 0; r < all.size(); ++r) {
        std::istringstream is(all[r].substr(1));
        for (std::string line; std::getline(is, line);) {
          if (line.empty()) continue;
          info.files.push_back(parse_entry(line));
          if (r > 0) require_visible(tmp_dir, info.files.back(), int(r), hosts);
        }
      }
      std::sort(info.files.begin(), info.files.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
      nlohmann::json j = info_json(info);
      Hash64 h;
      const std::string body = j.dump();
      h.update(body.data(), body.size());
      j["checksum"] = hash_hex(h.digest());
      write_file_atomic((tmp_dir / kCheckpointInfoFile).string(), j.dump(2) + "\n");
      fault(kCheckpointInfoFile);
      fsync_path(tmp_dir.string(), true);
      // A directory of this step exists only after resuming from an older checkpoint past a damaged
      // one; the previous checkpoints stay untouched meanwhile.
      fs::remove_all(final_dir);
      rename_file(tmp_dir.string(), final_dir.string());
      fsync_path(root, true);
      fault("renamed");
      write_file_atomic((fs::path(root) / "latest").string(), name + "\n");
      fsync_path(root, true);
      fault("latest");
      // Only now may older checkpoints go; unfinished .tmp directories are leftovers of crashes.
      // Newer steps than this one belong to another trajectory (this run resumed from an older
      // checkpoint): they are not counted, so `keep` never deletes what was just written.
      int64_t kept = 0;
      for (const auto& dir : checkpoint_list(root)) {
        if (keep <= 0 || checkpoint_step(fs::path(dir).filename().string()) > info.state.step) continue;
        if (++kept > keep) fs::remove_all(dir);
      }
      for (const auto& e : fs::directory_iterator(root))
        if (e.is_directory() && e.path().extension() == ".tmp") fs::remove_all(e.path());
    });
  fail_together(error);
  return final_dir.string();
}

}  // namespace cairn
