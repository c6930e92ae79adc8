// Named choices: an enum whose values have fixed names (configuration strings such as
// optimizer.name = "fira"). Each enum lists its names once, beside its definition, by specializing
// ChoiceNames; parsing, printing and the list of allowed names in errors all read that table.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace cairn {

// Specialize for an enum E: `static constexpr std::array<std::pair<std::string_view, E>, N> names`,
// every value once, in the order the allowed names are listed.
template <typename E>
struct ChoiceNames;

template <typename E>
std::string_view choice_name(E value) {
  for (const auto& [name, v] : ChoiceNames<E>::names)
    if (v == value) return name;
  return "?";  // unreachable for a value of the table
}

template <typename E>
std::optional<E> choice_from_name(std::string_view name) {
  for (const auto& [n, v] : ChoiceNames<E>::names)
    if (n == name) return v;
  return std::nullopt;
}

// "\"a\", \"b\" or \"c\"": the allowed names, for messages.
template <typename E>
std::string choice_list() {
  std::string out;
  const auto& names = ChoiceNames<E>::names;
  for (std::size_t i = 0; i < names.size(); ++i)
    out += std::string(i == 0 ? "" : i + 1 == names.size() ? " or " : ", ") + "\"" + std::string(names[i].first) + "\"";
  return out;
}

}  // namespace cairn
