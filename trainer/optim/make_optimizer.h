// Building the configured optimizer ([optimizer] section) for the rows a rank owns, and the
// Fira/GaLore settings read from that section (also for the memory plan and the start-up report).
#pragma once

#include <memory>
#include <vector>

#include "backend/backend.h"
#include "model/param_table.h"
#include "trainer/optim/fira.h"
#include "trainer/optim/optimizer.h"
#include "trainer/train_config.h"

namespace cairn {

// Builds the optimizer named by cfg.optimizer.name for the given owned rows.
std::unique_ptr<Optimizer> make_optimizer(const TrainConfig& cfg, const ParamTable& table,
                                          std::vector<int> owned_rows, const Backend& be);

// Fira/GaLore settings from the [optimizer] section (throws Error naming a bad key).
LowRankConfig lowrank_config(const OptimizerConfig& o);

}  // namespace cairn
