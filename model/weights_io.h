// Model weights as HDF5, by Hugging Face parameter name: /params/<name> (float32, HF shape) and
// /buffers/<name> (int32, e.g. SLTrain supports), with attributes format = "cairn-weights",
// format_version and the resolved config (TOML). Written to "<path>.tmp" and renamed, so a crash
// never leaves a half-written file under the real name.
#pragma once

#include <string>

#include "model/llama.h"

namespace cairn {

void save_model_weights(const LlamaModel& model, const std::string& path, const std::string& config_toml);
// Loads every row and buffer, checking names and shapes first: nothing is changed on error.
void load_model_weights(LlamaModel& model, const std::string& path);
// The file a checkpoint writes last (trainer/checkpoint.h); a checkpoint directory without it is
// incomplete.
inline constexpr const char* kCheckpointStateFile = "trainer.json";

// The weights file for `arg`: arg itself when it is a file; <arg>/model.h5 when arg is a complete
// checkpoint directory (model.h5 plus trainer.json) or a finished run directory (model.h5 plus
// metrics.jsonl). A directory named *.tmp, or a checkpoint without its trainer state, is
// incomplete: cairn::Error says so, as it does for anything else it cannot use.
std::string resolve_weights_path(const std::string& arg);

// The config TOML stored in a weights file.
std::string read_weights_config(const std::string& path);

}  // namespace cairn
