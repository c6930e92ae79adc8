// Command-line parsing for the `cairn` subcommands: each command declares its options (name,
// whether it takes a value, help); unknown options and missing values are errors that name them.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace cairn {

struct OptionSpec {
  std::string name;       // without dashes, e.g. "config"
  std::string value;      // placeholder for --help ("FILE"); empty for a flag
  std::string help;
  bool repeatable = false;
};

struct CommandSpec {
  std::string name, usage, summary;
  std::vector<OptionSpec> options;
  std::string epilog;     // extra --help text
};

class Args {
 public:
  // Throws Error for unknown options or a missing value. `--help` sets help().
  Args(const CommandSpec& spec, int argc, char** argv, int first);
  bool help() const { return help_; }
  bool has(const std::string& name) const { return values_.count(name) > 0; }
  std::string get(const std::string& name, const std::string& fallback = "") const;
  double get_number(const std::string& name, double fallback) const;
  // An integer option in [min, max]; otherwise an Error naming the option and the range.
  int64_t get_integer(const std::string& name, int64_t fallback, int64_t min, int64_t max) const;
  std::vector<std::string> all(const std::string& name) const;
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::multimap<std::string, std::string> values_;
  std::vector<std::string> positional_;
  bool help_ = false;
};

std::string command_help(const CommandSpec& spec);

// Commands never overwrite what --out names: throws Error ("'PATH' already exists: remove it or
// choose another --out") when `path` exists.
void require_new_output(const std::string& path);

}  // namespace cairn
