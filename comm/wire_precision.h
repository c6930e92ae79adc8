// What a float all-reduce puts on the wire between hosts (training.grad_wire). bf16 halves the
// bytes; the sums stay fp32 (each contribution is rounded to bf16 once, added in fp32 by the owner
// of its chunk, and the result is rounded once more to be shared: see comm/mpi_pairwise_allreduce.h).
#pragma once

#include "util/choice.h"

namespace cairn {

enum class WirePrecision { fp32, bf16 };
template <>
struct ChoiceNames<WirePrecision> {
  static constexpr std::array<std::pair<std::string_view, WirePrecision>, 2> names{
      {{"fp32", WirePrecision::fp32}, {"bf16", WirePrecision::bf16}}};
};

}  // namespace cairn
