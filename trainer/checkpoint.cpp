// Checkpoint format, write protocol and verification (see checkpoint.h and docs/formats.md).
#include "trainer/checkpoint.h"

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "comm/collective_error.h"
#include "model/weights_io.h"
#include "util/error.h"
#include "util/file_io.h"
#include "util/h5.h"

namespace cairn {

namespace fs = std::filesystem;

std::function<void(const std::string&)> checkpoint_fault_hook;

// ---- helpers --------------------------------------------------------------------------------
namespace {

constexpr const char* kShardFormat = "cairn-optimizer-shard";
constexpr const char* kInfoFile = "trainer.json";

std::string shard_name(int64_t rank) { return str("optimizer_rank", rank, ".h5"); }

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
          {"step", info.step},           {"samples", info.samples},
          {"tokens", info.tokens},       {"skipped_steps", info.skipped_steps},
          {"interval_loss", info.interval_loss}, {"interval_steps", info.interval_steps},
          {"world_size", info.world_size}, {"optimizer", info.optimizer},
          {"optimizer_steps", info.optimizer_steps}, {"config", info.config_toml},
          {"files", files}};
}

// Every dataset path below `group` of an open file, in name order.
std::vector<std::string> list_datasets(const H5Node& file, const std::string& group) {
  struct Visit {
    std::vector<std::string> links;
  } visit;
  H5Group g = H5Group::open(file, group);
  auto cb = [](hid_t, const char* name, const H5L_info_t*, void* data) -> herr_t {
    static_cast<Visit*>(data)->links.emplace_back(name);
    return 0;
  };
  if (H5Lvisit(g.id(), H5_INDEX_NAME, H5_ITER_INC, cb, &visit) < 0)
    throw Error(str("cannot list '", group, "' in '", file.name(), "'"));
  std::vector<std::string> out;
  for (const auto& l : visit.links) {
    H5Handle obj(H5Oopen(g.id(), l.c_str(), H5P_DEFAULT), H5Oclose);
    if (obj.valid() && H5Iget_type(obj.id()) == H5I_DATASET) out.push_back(l);
  }
  return out;
}

H5File open_shard(const std::string& path) {
  H5File f = H5File::open(path);
  if (!has_attr(f, "format") || read_attr_string(f, "format") != kShardFormat)
    throw Error(str("'", path, "' is not a cairn optimizer shard (missing format attribute)"));
  if (read_attr_int(f, "format_version") != kCheckpointVersion)
    throw Error(str("'", path, "' has optimizer shard version ", read_attr_int(f, "format_version"),
                    "; this cairn reads version ", kCheckpointVersion));
  return f;
}

}  // namespace

// ---- naming and discovery -------------------------------------------------------------------

std::string checkpoint_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step_%08lld", static_cast<long long>(step));
  return buf;
}

int64_t checkpoint_step(const std::string& name) {
  if (name.size() < 13 || name.rfind("step_", 0) != 0) return -1;
  for (size_t i = 5; i < name.size(); ++i)
    if (name[i] < '0' || name[i] > '9') return -1;
  return std::stoll(name.substr(5));
}

std::string checkpoint_resolve(const std::string& path) {
  const fs::path p(path);
  if (!fs::is_directory(p)) throw Error(str("checkpoint '", path, "' does not exist or is not a directory"));
  if (fs::exists(p / kInfoFile)) return p.string();
  if (fs::exists(p / "latest")) {
    std::ifstream in(p / "latest");
    std::string name;
    std::getline(in, name);
    if (!name.empty() && fs::exists(p / name / kInfoFile)) return (p / name).string();
    throw Error(str("'", (p / "latest").string(), "' names '", name, "', which is not a complete checkpoint"));
  }
  throw Error(str("'", path, "' is not a checkpoint: it has no ", kInfoFile,
                  " (a directory named step_XXXXXXXX.tmp is an unfinished write and cannot be loaded)"));
}

std::vector<std::string> checkpoint_list(const std::string& root) {
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    const int64_t s = checkpoint_step(e.path().filename().string());
    if (s >= 0 && e.is_directory()) found.emplace_back(s, e.path().string());
  }
  std::sort(found.rbegin(), found.rend());
  std::vector<std::string> out;
  for (auto& f : found) out.push_back(f.second);
  return out;
}

std::string checkpoint_find_latest(const std::string& root, std::ostream& warn) {
  const auto all = checkpoint_list(root);
  std::string first_error;
  for (const auto& dir : all) {
    try {
      checkpoint_verify(dir, checkpoint_read_info(dir));
      return dir;
    } catch (const Error& e) {
      warn << "WARNING: checkpoint '" << dir << "' is damaged and is skipped: " << e.what()
           << "\nWARNING: falling back to the previous checkpoint" << std::endl;
      if (first_error.empty()) first_error = e.what();
    }
  }
  if (!all.empty())
    throw Error(str("none of the ", all.size(), " checkpoints under '", root, "' is loadable (newest: ", first_error,
                    "); move them away to start fresh, or fix the named file"));
  return "";
}

// ---- trainer.json and verification ----------------------------------------------------------

CheckpointInfo checkpoint_read_info(const std::string& dir) {
  const std::string path = (fs::path(dir) / kInfoFile).string();
  std::ifstream in(path);
  if (!in) throw Error(str("checkpoint '", dir, "' is missing ", kInfoFile));
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::exception&) {
    throw Error(str("'", path, "' is not valid JSON: the file is truncated or corrupted"));
  }
  if (!j.is_object() || j.value("format", "") != kCheckpointFormat)
    throw Error(str("'", path, "' is not a cairn checkpoint file (format is not \"", kCheckpointFormat, "\")"));
  // trainer.json hashes itself: the hash of its dump without the "checksum" member.
  const std::string sum = j.value("checksum", "");
  j.erase("checksum");
  const std::string body = j.dump();
  Hash64 h;
  h.update(body.data(), body.size());
  if (sum != hash_hex(h.digest()))
    throw Error(str("'", path, "' is corrupted: its checksum ", hash_hex(h.digest()), " does not match the recorded ", sum));
  CheckpointInfo info;
  try {
    info.format_version = j.at("format_version").get<int64_t>();
    if (info.format_version != kCheckpointVersion)
      throw Error(str("'", path, "' has checkpoint format version ", info.format_version, "; this cairn reads version ",
                      kCheckpointVersion));
    info.step = j.at("step");
    info.samples = j.at("samples");
    info.tokens = j.at("tokens");
    info.skipped_steps = j.at("skipped_steps");
    info.interval_loss = j.value("interval_loss", 0.0);
    info.interval_steps = j.value("interval_steps", int64_t(0));
    info.world_size = j.at("world_size");
    info.optimizer = j.at("optimizer");
    info.optimizer_steps = j.at("optimizer_steps");
    info.config_toml = j.at("config");
    for (const auto& f : j.at("files"))
      info.files.push_back({f.at("name"), f.at("bytes"), std::stoull(f.at("xxh64").get<std::string>(), nullptr, 16)});
  } catch (const nlohmann::json::exception& e) {
    throw Error(str("'", path, "' lacks a field or has a wrong type: ", e.what()));
  }
  return info;
}

static void verify_file(const std::string& dir, const CheckpointFile& f) {
  const std::string p = (fs::path(dir) / f.name).string();
  if (!fs::exists(p)) throw Error(str("checkpoint '", dir, "' is missing its file ", f.name));
  const int64_t bytes = int64_t(fs::file_size(p));
  if (bytes != f.bytes)
    throw Error(str("'", p, "' is ", bytes < f.bytes ? "truncated" : "longer than written", ": ", bytes,
                    " bytes, but ", kInfoFile, " records ", f.bytes));
  const uint64_t h = hash_file(p);
  if (h != f.hash)
    throw Error(str("'", p, "' is corrupted: checksum mismatch (xxh64 ", hash_hex(h), ", ", kInfoFile, " records ",
                    hash_hex(f.hash), ")"));
}

static const CheckpointFile* listed_file(const CheckpointInfo& info, const std::string& name) {
  for (const auto& f : info.files)
    if (f.name == name) return &f;
  return nullptr;
}

void checkpoint_verify(const std::string& dir, const CheckpointInfo& info) {
  for (int64_t r = 0; r < info.world_size; ++r)
    if (!listed_file(info, shard_name(r)))
      throw Error(str("'", dir, "/", kInfoFile, "' does not list ", shard_name(r), " of its ", info.world_size, " ranks"));
  if (!listed_file(info, "model.h5")) throw Error(str("'", dir, "/", kInfoFile, "' does not list model.h5"));
  for (const auto& f : info.files) verify_file(dir, f);
}

std::string checkpoint_weights_path(const std::string& arg) {
  const fs::path p(arg);
  const bool root = fs::is_directory(p) && !fs::exists(p / "model.h5") && fs::exists(p / "latest");
  const std::string weights = resolve_weights_path(root ? checkpoint_resolve(arg) : arg);
  fs::path dir = fs::path(weights).parent_path();
  if (dir.empty()) dir = ".";
  if (fs::path(weights).filename() != "model.h5" || !fs::exists(dir / kInfoFile)) return weights;
  // Only the weights are hashed: the optimizer shards, twice their size, are not read.
  const CheckpointInfo info = checkpoint_read_info(dir.string());
  const CheckpointFile* f = listed_file(info, "model.h5");
  if (!f) throw Error(str("'", (dir / kInfoFile).string(), "' does not list model.h5"));
  verify_file(dir.string(), *f);
  return weights;
}

// ---- saving ---------------------------------------------------------------------------------

namespace {

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

std::string checkpoint_save(const std::string& root, CheckpointInfo info, const LlamaModel& model,
                            Optimizer& optimizer, Communicator& comm, int64_t keep) {
  const std::string name = checkpoint_name(info.step);
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
    const std::string shard = shard_name(comm.rank());
    H5File f = H5File::create((tmp_dir / shard).string());
    write_attr_string(f, "format", kShardFormat);
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
      write_file_atomic((tmp_dir / kInfoFile).string(), j.dump(2) + "\n");
      fault(kInfoFile);
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
        if (keep <= 0 || checkpoint_step(fs::path(dir).filename().string()) > info.step) continue;
        if (++kept > keep) fs::remove_all(dir);
      }
      for (const auto& e : fs::directory_iterator(root))
        if (e.is_directory() && e.path().extension() == ".tmp") fs::remove_all(e.path());
    });
  fail_together(error);
  return final_dir.string();
}

// ---- loading --------------------------------------------------------------------------------

std::vector<std::vector<float>> checkpoint_read_optimizer(const std::string& dir, const CheckpointInfo& info,
                                                         Optimizer& optimizer) {
  if (info.optimizer != optimizer.name())
    throw Error(str("checkpoint '", dir, "' holds ", info.optimizer, " state but optimizer.name = \"", optimizer.name(),
                    "\": resume with the same optimizer"));
  std::vector<H5File> shards;
  for (int64_t r = 0; r < info.world_size; ++r) shards.push_back(open_shard((fs::path(dir) / shard_name(r)).string()));
  std::vector<std::vector<float>> out;
  for (const auto& t : optimizer.state()) {
    const std::string p = "state/" + t.name;
    const H5File* from = nullptr;
    for (const auto& s : shards)
      if (s.has(p)) {
        from = &s;
        break;
      }
    if (!from)
      throw Error(str("optimizer state '", t.name, "' is in none of the ", shards.size(), " shards of '", dir,
                      "': the checkpoint was saved for a different model or optimizer"));
    if (from->dataset_shape(p) != t.shape)
      throw Error(str("optimizer state '", t.name, "' in '", from->name(), "' has a different shape than the configured model"));
    out.push_back(read_dataset<float>(*from, p).data);
  }
  return out;
}

void checkpoint_commit_optimizer(Optimizer& optimizer, const std::vector<std::vector<float>>& host,
                                 int64_t optimizer_steps, const Backend& be) {
  const auto state = optimizer.state();
  CAIRN_ASSERT(state.size() == host.size(), "optimizer state changed between read and commit");
  for (size_t i = 0; i < state.size(); ++i)
    be.copy_to_device(state[i].data.data(), host[i].data(), int64_t(host[i].size()) * 4);
  optimizer.set_steps(optimizer_steps);
}

ShardContents checkpoint_read_shard(const std::string& path) {
  H5File f = open_shard(path);
  ShardContents c;
  c.optimizer = read_attr_string(f, "optimizer");
  c.steps = read_attr_int(f, "steps");
  c.rank = read_attr_int(f, "rank");
  for (const auto& name : list_datasets(f, "state")) {
    auto shape = f.dataset_shape("state/" + name);
    int64_t n = 1;
    for (auto d : shape) n *= d;
    c.elements += n;
    c.tensors.emplace_back(name, std::move(shape));
  }
  return c;
}

std::vector<std::pair<std::string, std::vector<int64_t>>> checkpoint_read_params(const std::string& path) {
  H5File f = H5File::open(path);
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  for (const auto& name : list_datasets(f, "params")) out.emplace_back(name, f.dataset_shape("params/" + name));
  return out;
}

// ---- stop signals ---------------------------------------------------------------------------

namespace {
std::atomic<int> g_stop_signal{0};
struct sigaction g_old_term, g_old_usr1;
extern "C" void on_stop_signal(int sig) { g_stop_signal.store(sig); }
}  // namespace

StopSignals::StopSignals() {
  g_stop_signal.store(0);
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  // Interrupted I/O resumes. A repeated signal changes nothing: under a scheduler one stop request
  // arrives several times (Slurm signals every process of the job, and the launcher forwards its
  // own copy), and ending the rank on the second would lose the checkpoint being written. Slurm
  // and mpirun follow with SIGKILL when they stop waiting.
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, &g_old_term);
  sigaction(SIGUSR1, &sa, &g_old_usr1);
}

StopSignals::~StopSignals() {
  // After a stop request, more copies of it may still be on their way (see above): they are the
  // request already acted on, so they are ignored rather than ending the stopping process non-zero.
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  const bool stopping = received() != 0;
  sigaction(SIGTERM, stopping ? &ignore : &g_old_term, nullptr);
  sigaction(SIGUSR1, stopping ? &ignore : &g_old_usr1, nullptr);
}

int StopSignals::received() { return g_stop_signal.load(); }

}  // namespace cairn
