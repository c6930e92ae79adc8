// Hugging Face LLaMA checkpoints read into cairn (the way back from launch/hf_export.h): a
// directory with config.json and model.safetensors, or shards listed by
// model.safetensors.index.json, in F32, BF16 or F16. config.json becomes a ModelConfig, and what
// cairn's model cannot represent (biases, a sliding window, another architecture or activation,
// an unknown rope type) is refused with an Error naming the field. The weights stream into a
// LlamaModel's parameters one tensor at a time, after every name, shape and dtype was checked.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>

#include "model/llama.h"

namespace cairn {

// "hf:DIR" (model.init_from, prepare --tokenizer) → DIR; "" for anything else.
std::string hf_dir_of(const std::string& spec);

// The architecture DIR/config.json describes: dense projections, Pre-LN; seq_len and init_std keep
// their defaults (they are the run's choice). Reads both spellings of the rotary keys: rope_theta
// and rope_scaling at the top level (released checkpoints), and the nested rope_parameters that
// transformers 5.x writes.
ModelConfig hf_read_model_config(const std::string& dir);

// The run's model keys against the checkpoint's: a key not in `set_keys` (names "model.dim", ...)
// takes the checkpoint's value (as does model.vocab_size = 0, "automatic"); a set key whose value
// differs is an Error naming both values. Keys
// the checkpoint does not describe must keep what the import can fill: model.linear = "dense",
// model.norm_layout = "pre", model.norm_scaling = false.
void hf_merge_model_config(ModelConfig& run, const ModelConfig& checkpoint, const std::set<std::string>& set_keys,
                           const std::string& dir);

// Which file holds each tensor: DIR/model.safetensors, or the shards of
// DIR/model.safetensors.index.json's weight_map (each checked to exist).
std::map<std::string, std::string> hf_weight_files(const std::string& dir);

// Loads every parameter of `model` from DIR. First checks, reading headers only, that each row has
// a tensor of its name and shape and that every tensor of the checkpoint has a row (a tied
// checkpoint's redundant lm_head.weight must equal the embedding; old rotary_emb.inv_freq buffers
// are skipped), so an error changes nothing. Then reads tensor by tensor: besides the model, host
// memory holds one tensor as fp32 and its stored bytes. Returns the bytes of tensor data read.
int64_t hf_load_weights(LlamaModel& model, const std::string& dir);

}  // namespace cairn
