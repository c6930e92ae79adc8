// The `cairn` subcommands. Each takes the whole argv (its own options start at argv[2]) and
// returns the process exit code; errors a user can cause are thrown as cairn::Error.
#pragma once

namespace cairn {

int cmd_train(int argc, char** argv);
int cmd_prepare(int argc, char** argv);
int cmd_plot(int argc, char** argv);
int cmd_grow(int argc, char** argv);
int cmd_inspect(int argc, char** argv);
int cmd_export(int argc, char** argv);
int cmd_eval(int argc, char** argv);
int cmd_generate(int argc, char** argv);

}  // namespace cairn
