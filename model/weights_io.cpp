// Weights file I/O (see weights_io.h).
#include "model/weights_io.h"

#include <cstdio>
#include <filesystem>
#include <vector>

#include "util/error.h"
#include "util/file_io.h"
#include "util/h5.h"

namespace cairn {

static constexpr const char* kWeightsFormat = "cairn-weights";
static constexpr int64_t kWeightsVersion = 1;

void save_model_weights(const LlamaModel& model, const std::string& path, const std::string& config_toml) {
  const Backend& be = model.backend();
  std::vector<float> host(static_cast<size_t>(model.params().total()));
  be.copy_to_host(host.data(), const_cast<LlamaModel&>(model).param_data(), int64_t(host.size()) * 4);
  const std::string tmp = path + ".tmp";
  try {
    {
      H5File f = H5File::create(tmp);
      write_attr_string(f, "format", kWeightsFormat);
      write_attr_int(f, "format_version", kWeightsVersion);
      write_attr_string(f, "config", config_toml);
      {  // groups closed before the file, or H5Fclose only defers the real close (and its errors)
        H5Group params = H5Group::create(f, "params");
        for (const auto& r : model.params().rows()) write_dataset(params, r.name, host.data() + r.offset, r.shape);
        H5Group buffers = H5Group::create(f, "buffers");
        for (const auto& b : model.buffers().rows()) write_dataset(buffers, b.name, b.data.data(), b.shape);
      }
      f.close();
    }
    rename_file(tmp, path);
  } catch (const Error&) {
    std::remove(tmp.c_str());  // on a full disk, the space it held
    throw;
  }
}

static H5File open_weights(const std::string& path) {
  H5File f = H5File::open(path);
  if (!has_attr(f, "format") || read_attr_string(f, "format") != kWeightsFormat)
    throw Error(str("'", path, "' is not a cairn weights file (missing format attribute)"));
  if (read_attr_int(f, "format_version") != kWeightsVersion)
    throw Error(str("'", path, "' has weights format version ", read_attr_int(f, "format_version"),
                    "; this cairn reads version ", kWeightsVersion));
  return f;
}

void load_model_weights(LlamaModel& model, const std::string& path) {
  H5File f = open_weights(path);
  // Check everything before touching the model.
  for (const auto& r : model.params().rows()) {
    const std::string p = "params/" + r.name;
    if (!f.has(p)) throw Error(str("'", path, "' has no parameter '", r.name, "': it was saved from a different model"));
    if (f.dataset_shape(p) != r.shape)
      throw Error(str("parameter '", r.name, "' in '", path, "' has a different shape than the configured model"));
  }
  for (const auto& b : model.buffers().rows())
    if (!f.has("buffers/" + b.name) || f.dataset_shape("buffers/" + b.name) != b.shape)
      throw Error(str("'", path, "' lacks buffer '", b.name, "' of the configured shape"));
  std::vector<float> host(static_cast<size_t>(model.params().total()), 0.0f);
  for (const auto& r : model.params().rows()) {
    auto arr = read_dataset<float>(f, "params/" + r.name);
    std::copy(arr.data.begin(), arr.data.end(), host.begin() + r.offset);
  }
  for (auto& b : model.buffers().rows()) b.data = read_dataset<int32_t>(f, "buffers/" + b.name).data;
  model.backend().copy_to_device(model.param_data(), host.data(), int64_t(host.size()) * 4);
}

std::string read_weights_config(const std::string& path) {
  return read_attr_string(open_weights(path), "config");
}

namespace fs = std::filesystem;

static const char* kExpected =
    "give the model.h5 written by cairn train, its run directory, or a checkpoint directory";

std::string resolve_weights_path(const std::string& arg) {
  std::error_code ec;
  const fs::path p(arg);
  const auto st = fs::status(p, ec);
  if (!fs::exists(st)) throw Error(str("'", arg, "' does not exist: ", kExpected));
  if (fs::is_regular_file(st)) return arg;
  if (!fs::is_directory(st)) throw Error(str("'", arg, "' is neither a file nor a directory: ", kExpected));
  // A checkpoint is written under "<name>.tmp" and renamed when complete.
  const std::string name = fs::path(arg).lexically_normal().filename().string().empty()
                               ? fs::path(arg).lexically_normal().parent_path().filename().string()
                               : fs::path(arg).lexically_normal().filename().string();
  if (name.size() > 4 && name.ends_with(".tmp"))
    throw Error(str("'", arg, "' is an incomplete checkpoint (its writing never finished, so it kept the .tmp "
                    "name): use a finished checkpoint directory or the run's model.h5"));
  const fs::path weights = p / "model.h5";
  bool has_state;
  has_state = fs::exists(p / kCheckpointStateFile);
  const bool is_run_dir = fs::exists(p / "metrics.jsonl");
  if (!fs::exists(weights)) {
    if (has_state)
      throw Error(str("checkpoint '", arg, "' has its trainer state but no model.h5: it is damaged; use another checkpoint"));
    throw Error(str("directory '", arg, "' holds no model.h5",
                    is_run_dir ? " (the run has not finished: give one of its checkpoint directories)" : "", ": ",
                    kExpected));
  }
  if (!has_state && !is_run_dir)
    throw Error(str("checkpoint '", arg, "' is incomplete: it has model.h5 but no ", kCheckpointStateFile,
                    ", which a checkpoint writes last; use a finished checkpoint or pass a weights file directly"));
  return weights.string();
}

}  // namespace cairn
