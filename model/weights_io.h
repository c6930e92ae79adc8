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
// The config TOML stored in a weights file.
std::string read_weights_config(const std::string& path);

}  // namespace cairn
