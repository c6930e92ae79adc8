// Linear-weight kinds: names and the factory.
#include "model/linear.h"

#include "model/linear_dense.h"
#include "util/error.h"

namespace cairn {

LinearKind linear_kind_from_string(const std::string& s) {
  if (s == "dense") return LinearKind::dense;
  if (s == "lowrank") return LinearKind::lowrank;
  if (s == "sltrain") return LinearKind::sltrain;
  throw Error(str("model.linear = \"", s, "\" is not a linear-weight kind: use \"dense\", \"lowrank\" or \"sltrain\""));
}

const char* linear_kind_name(LinearKind k) {
  switch (k) {
    case LinearKind::dense: return "dense";
    case LinearKind::lowrank: return "lowrank";
    case LinearKind::sltrain: return "sltrain";
  }
  return "?";
}

std::unique_ptr<Linear> make_linear(const LinearConfig& cfg, std::string name, int64_t out,
                                    int64_t in, int layer) {
  switch (cfg.kind) {
    case LinearKind::dense: return std::make_unique<DenseLinear>(std::move(name), out, in, layer);
    case LinearKind::lowrank:
    case LinearKind::sltrain: break;
  }
  throw Error(str("model.linear = \"", linear_kind_name(cfg.kind), "\" is not built into this cairn yet"));
}

}  // namespace cairn
