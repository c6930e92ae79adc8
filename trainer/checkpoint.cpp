// Checkpoint layout, discovery, trainer.json, verification and reading (see checkpoint.h and
// docs/formats.md); the write protocol is in checkpoint_save.cpp.
#include "trainer/checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "model/weights_io.h"
#include "util/error.h"
#include "util/file_io.h"
#include "util/h5.h"

namespace cairn {

namespace fs = std::filesystem;

// ---- helpers --------------------------------------------------------------------------------
namespace {

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
  if (!has_attr(f, "format") || read_attr_string(f, "format") != kOptimizerShardFormat)
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

std::string checkpoint_shard_name(int64_t rank) { return str("optimizer_rank", rank, ".h5"); }

int64_t checkpoint_step(const std::string& name) {
  if (name.size() < 13 || name.rfind("step_", 0) != 0) return -1;
  for (size_t i = 5; i < name.size(); ++i)
    if (name[i] < '0' || name[i] > '9') return -1;
  return std::stoll(name.substr(5));
}

std::string checkpoint_resolve(const std::string& path) {
  const fs::path p(path);
  if (!fs::is_directory(p)) throw Error(str("checkpoint '", path, "' does not exist or is not a directory"));
  if (fs::exists(p / kCheckpointInfoFile)) return p.string();
  if (fs::exists(p / "latest")) {
    std::ifstream in(p / "latest");
    std::string name;
    std::getline(in, name);
    if (!name.empty() && fs::exists(p / name / kCheckpointInfoFile)) return (p / name).string();
    throw Error(str("'", (p / "latest").string(), "' names '", name, "', which is not a complete checkpoint"));
  }
  throw Error(str("'", path, "' is not a checkpoint: it has no ", kCheckpointInfoFile,
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
  const std::string path = (fs::path(dir) / kCheckpointInfoFile).string();
  std::ifstream in(path);
  if (!in) throw Error(str("checkpoint '", dir, "' is missing ", kCheckpointInfoFile));
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
    info.state.step = j.at("step");
    info.state.samples = j.at("samples");
    info.state.tokens = j.at("tokens");
    info.state.skipped_steps = j.at("skipped_steps");
    info.interval.loss = j.value("interval_loss", 0.0);
    info.interval.steps = j.value("interval_steps", int64_t(0));
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
                    " bytes, but ", kCheckpointInfoFile, " records ", f.bytes));
  const uint64_t h = hash_file(p);
  if (h != f.hash)
    throw Error(str("'", p, "' is corrupted: checksum mismatch (xxh64 ", hash_hex(h), ", ", kCheckpointInfoFile, " records ",
                    hash_hex(f.hash), ")"));
}

static const CheckpointFile* listed_file(const CheckpointInfo& info, const std::string& name) {
  for (const auto& f : info.files)
    if (f.name == name) return &f;
  return nullptr;
}

void checkpoint_verify(const std::string& dir, const CheckpointInfo& info) {
  for (int64_t r = 0; r < info.world_size; ++r)
    if (!listed_file(info, checkpoint_shard_name(r)))
      throw Error(str("'", dir, "/", kCheckpointInfoFile, "' does not list ", checkpoint_shard_name(r), " of its ",
                      info.world_size, " ranks"));
  if (!listed_file(info, "model.h5")) throw Error(str("'", dir, "/", kCheckpointInfoFile, "' does not list model.h5"));
  for (const auto& f : info.files) verify_file(dir, f);
}

std::string checkpoint_weights_path(const std::string& arg) {
  const fs::path p(arg);
  const bool root = fs::is_directory(p) && !fs::exists(p / "model.h5") && fs::exists(p / "latest");
  const std::string weights = resolve_weights_path(root ? checkpoint_resolve(arg) : arg);
  fs::path dir = fs::path(weights).parent_path();
  if (dir.empty()) dir = ".";
  if (fs::path(weights).filename() != "model.h5" || !fs::exists(dir / kCheckpointInfoFile)) return weights;
  // Only the weights are hashed: the optimizer shards, twice their size, are not read.
  const CheckpointInfo info = checkpoint_read_info(dir.string());
  const CheckpointFile* f = listed_file(info, "model.h5");
  if (!f) throw Error(str("'", (dir / kCheckpointInfoFile).string(), "' does not list model.h5"));
  verify_file(dir.string(), *f);
  return weights;
}

// ---- loading --------------------------------------------------------------------------------

std::vector<std::vector<float>> checkpoint_read_optimizer(const std::string& dir, const CheckpointInfo& info,
                                                         Optimizer& optimizer) {
  if (info.optimizer != optimizer.name())
    throw Error(str("checkpoint '", dir, "' holds ", info.optimizer, " state but optimizer.name = \"", optimizer.name(),
                    "\": resume with the same optimizer"));
  std::vector<H5File> shards;
  for (int64_t r = 0; r < info.world_size; ++r)
    shards.push_back(open_shard((fs::path(dir) / checkpoint_shard_name(r)).string()));
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

}  // namespace cairn
