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

// The positional arguments a command takes, checked by parse_command.
struct Positionals {
  enum Count { none, one, at_least_one, any } count = none;  // any: the command checks them itself
  std::string what;  // named in the error: "give one <what> (see --help)", "give at least one <what>"
};

// The preamble of every `cairn <command>`: parses its arguments (argv[2] on) against `spec` and
// checks the positional ones. With --help it prints command_help(spec), then `more_help`, and
// returns Args whose help() is true: the command then returns 0. Throws Error as Args does, and
// for positional arguments that `positionals` does not allow.
Args parse_command(const CommandSpec& spec, int argc, char** argv, const Positionals& positionals = {},
                   const std::string& more_help = "");

// Commands never overwrite what --out names: throws Error ("'PATH' already exists: remove it or
// choose another --out") when `path` exists.
void require_new_output(const std::string& path);

}  // namespace cairn
