// The `cairn` subcommands. Each takes the whole argv (its own options start at argv[2]) and
// returns the process exit code; errors a user can cause are thrown as cairn::Error.
#pragma once

#include <cstdint>

namespace cairn {

class Args;

int cmd_train(int argc, char** argv);
int cmd_prepare(int argc, char** argv);
int cmd_plot(int argc, char** argv);
int cmd_grow(int argc, char** argv);
int cmd_inspect(int argc, char** argv);
int cmd_export(int argc, char** argv);
int cmd_import(int argc, char** argv);
int cmd_eval(int argc, char** argv);
int cmd_generate(int argc, char** argv);
int cmd_plan(int argc, char** argv);

// Shared by `plan` and `grow --plan` (cmd_plan.cpp): the --factor option (an integer >= 1,
// default 4), and the G_stack growth timing for a target of n parameters and d tokens printed
// (layers > 0: the target's depth, a multiple of g).
int64_t growth_factor_option(const Args& args);
void print_growth_plan(double n, double d, int64_t g, double layers);

}  // namespace cairn
