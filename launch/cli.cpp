// Command-line parsing (see cli.h).
#include "launch/cli.h"

#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "util/error.h"

namespace cairn {

Args::Args(const CommandSpec& spec, int argc, char** argv, int first) {
  for (int i = first; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      help_ = true;
      continue;
    }
    if (a.rfind("--", 0) != 0 || a.size() == 2) {
      positional_.push_back(a);
      continue;
    }
    std::string name = a.substr(2), value;
    const auto eq = name.find('=');
    const bool inline_value = eq != std::string::npos;
    if (inline_value) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    const OptionSpec* opt = nullptr;
    for (const auto& o : spec.options)
      if (o.name == name) opt = &o;
    if (!opt) throw Error(str("unknown option --", name, " (see cairn ", spec.name, " --help)"));
    if (!opt->value.empty() && !inline_value) {
      if (i + 1 >= argc) throw Error(str("option --", name, " needs a value ", opt->value));
      value = argv[++i];
    }
    if (!opt->repeatable && values_.count(name))
      throw Error(str("option --", name, " given twice"));
    values_.emplace(name, opt->value.empty() ? "1" : value);
  }
}

std::string Args::get(const std::string& name, const std::string& fallback) const {
  auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second;
}

double Args::get_number(const std::string& name, double fallback) const {
  if (!has(name)) return fallback;
  const std::string v = get(name);
  char* end = nullptr;
  const double d = std::strtod(v.c_str(), &end);
  if (end == v.c_str() || *end != '\0') throw Error(str("option --", name, " expects a number, got '", v, "'"));
  return d;
}

int64_t Args::get_integer(const std::string& name, int64_t fallback, int64_t min, int64_t max) const {
  if (!has(name)) return fallback;
  const std::string v = get(name);
  int64_t x = 0;
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
  if (ec != std::errc() || end != v.data() + v.size() || x < min || x > max)
    throw Error(str("option --", name, " expects an integer in [", min, ", ", max, "], got '", v, "'"));
  return x;
}

std::vector<std::string> Args::all(const std::string& name) const {
  std::vector<std::string> out;
  auto [lo, hi] = values_.equal_range(name);
  for (auto it = lo; it != hi; ++it) out.push_back(it->second);
  return out;
}

std::string command_help(const CommandSpec& spec) {
  std::ostringstream os;
  os << "usage: cairn " << spec.name << " " << spec.usage << "\n\n" << spec.summary << "\n\noptions:\n";
  for (const auto& o : spec.options) {
    std::string left = "  --" + o.name + (o.value.empty() ? "" : " " + o.value);
    if (left.size() < 30) left.resize(30, ' ');
    os << left << " " << o.help << (o.repeatable ? " (repeatable)" : "") << "\n";
  }
  os << "  --help                       this text\n";
  if (!spec.epilog.empty()) os << "\n" << spec.epilog;
  return os.str();
}

Args parse_command(const CommandSpec& spec, int argc, char** argv, const Positionals& positionals,
                   const std::string& more_help) {
  Args args(spec, argc, argv, 2);
  if (args.help()) {
    std::cout << command_help(spec) << more_help;
    return args;
  }
  const auto& given = args.positional();
  switch (positionals.count) {
    case Positionals::none:
      if (!given.empty()) throw Error(str("unexpected argument '", given[0], "'"));
      break;
    case Positionals::one:
      if (given.size() != 1) throw Error(str("give one ", positionals.what, " (see --help)"));
      break;
    case Positionals::at_least_one:
      if (given.empty()) throw Error(str("give at least one ", positionals.what));
      break;
    case Positionals::any:
      break;
  }
  return args;
}

void require_new_output(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) throw Error(str("'", path, "' already exists: remove it or choose another --out"));
}

}  // namespace cairn
