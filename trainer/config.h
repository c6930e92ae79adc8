// TOML configuration of a run. One table of keys maps every TrainConfig field to its TOML name,
// type and meaning; reading a file, applying `--set key=value`, printing the resolved config and
// storing it in checkpoints all go through that table, so they cannot disagree. Unknown keys and
// wrong types are errors that name the key.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "trainer/train_config.h"

namespace cairn {

// Reads a TOML file into cfg (keys absent from the file keep their current values).
void config_apply_file(TrainConfig& cfg, const std::string& path);
// Applies TOML text (used for stored configs and tests); `origin` names it in errors.
void config_apply_toml(TrainConfig& cfg, const std::string& text, const std::string& origin);
// Applies one "section.key=value" override; the value is parsed as TOML, or taken as a string.
void config_apply_override(TrainConfig& cfg, const std::string& assignment);
// The whole resolved config as TOML text, sections in a fixed order.
std::string config_to_toml(const TrainConfig& cfg);
// Loads file then overrides, resolves a Hugging Face model.init_from (config_resolve_hf_model,
// with the keys the file and overrides name as set), and validates the result.
TrainConfig config_load(const std::string& path, const std::vector<std::string>& overrides);
// With model.init_from = "hf:DIR": the model keys not in set_keys take the values of DIR's
// config.json; a set key that disagrees is an Error naming both values (model/hf_import.h).
void config_resolve_hf_model(TrainConfig& cfg, const std::set<std::string>& set_keys);
// Cross-field checks (throws Error naming the key).
void config_validate(const TrainConfig& cfg);
// Rewrites deprecated keys of an old config into their replacements (training.eval_batches into
// training.eval_windows = eval_batches x micro_batch); returns one note per rewritten key for the
// user. Call after config_validate.
std::vector<std::string> config_upgrade(TrainConfig& cfg);
// Every key's name ("section.key"), in the table's order (deprecated keys left out).
std::vector<std::string> config_key_names();
// One key whose value differs between two configs, the values as the TOML file writes them.
struct ConfigDifference {
  std::string key, a, b;
};
// The keys of `keys` (names of the key table, e.g. "model.dim") whose values differ between a and
// b, in the order given.
std::vector<ConfigDifference> config_diff(const TrainConfig& a, const TrainConfig& b, const std::vector<std::string>& keys);
// "key  (type)  meaning" lines for --help.
std::string config_describe();

}  // namespace cairn
