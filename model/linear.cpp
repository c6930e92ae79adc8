// Linear-weight kinds: names and the factory.
#include "model/linear.h"

#include "model/linear_dense.h"
#include "model/linear_lowrank.h"
#include "model/linear_sltrain.h"
#include "util/error.h"

namespace cairn {

LinearKind linear_kind_from_string(const std::string& s) {
  if (const auto kind = choice_from_name<LinearKind>(s)) return *kind;
  throw Error(str("model.linear = \"", s, "\" is not a linear-weight kind: use ", choice_list<LinearKind>()));
}

int64_t linear_weight_param_count(const LinearConfig& cfg, int64_t out, int64_t in) {
  switch (cfg.kind) {
    case LinearKind::dense: return out * in;
    case LinearKind::lowrank: return cfg.rank * (out + in);
    case LinearKind::sltrain: return cfg.rank * (out + in) + sltrain_nnz(cfg.density, out, in);
  }
  return 0;
}

const char* linear_kind_name(LinearKind k) { return choice_name(k).data(); }  // the table's literals

std::unique_ptr<Linear> make_linear(const LinearConfig& cfg, std::string name, int64_t out,
                                    int64_t in, int layer) {
  switch (cfg.kind) {
    case LinearKind::dense: return std::make_unique<DenseLinear>(std::move(name), out, in, layer);
    case LinearKind::lowrank:
      return std::make_unique<LowRankLinear>(std::move(name), out, in, layer, cfg.rank, cfg.alpha);
    case LinearKind::sltrain:
      return std::make_unique<SLTrainLinear>(std::move(name), out, in, layer, cfg.rank, cfg.alpha, cfg.density,
                                             cfg.sltrain_path);
  }
  CAIRN_ASSERT(false, "unknown linear kind");
  return nullptr;
}

}  // namespace cairn
