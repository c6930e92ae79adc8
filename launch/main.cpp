// The `cairn` executable: dispatches to a subcommand and turns errors into a message and a
// non-zero exit.
#include <cstring>
#include <iostream>

#include "launch/commands.h"
#include "util/error.h"

namespace {

struct Command {
  const char* name;
  int (*run)(int, char**);
  const char* summary;
};

const Command kCommands[] = {
    {"train", cairn::cmd_train, "train a model (alone or under mpirun/srun)"},
    {"prepare", cairn::cmd_prepare, "tokenize text into an HDF5 token dataset"},
    {"plot", cairn::cmd_plot, "draw loss curves of runs into a PNG"},
    {"grow", cairn::cmd_grow, "G_stack: grow a model's depth by repeating its layers (or --plan)"},
    {"plan", cairn::cmd_plan, "Step Law LR and batch size, and G_stack growth timing, for a budget"},
    {"inspect", cairn::cmd_inspect, "show and verify what a checkpoint holds"},
    {"export", cairn::cmd_export, "write a trained model as a Hugging Face transformers directory"},
    {"import", cairn::cmd_import, "read a Hugging Face LLaMA directory (hf:DIR) into a cairn weights file"},
    {"eval", cairn::cmd_eval, "loss and perplexity of a trained model on token datasets"},
    {"generate", cairn::cmd_generate, "sample text from a trained model"},
};

void usage(std::ostream& os) {
  os << "usage: cairn COMMAND [options]   (cairn COMMAND --help for its options)\n\ncommands:\n";
  for (const auto& c : kCommands) os << "  " << c.name << std::string(12 - std::strlen(c.name), ' ') << c.summary << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    usage(argc < 2 ? std::cerr : std::cout);
    return argc < 2 ? 2 : 0;
  }
  for (const auto& c : kCommands) {
    if (std::strcmp(argv[1], c.name) != 0) continue;
    try {
      return c.run(argc, argv);
    } catch (const cairn::Error& e) {
      std::cerr << "cairn " << c.name << ": error: " << e.what() << std::endl;
      return 1;
    } catch (const std::exception& e) {
      std::cerr << "cairn " << c.name << ": internal error: " << e.what() << std::endl;
      return 3;
    }
  }
  std::cerr << "cairn: unknown command '" << argv[1] << "'\n";
  usage(std::cerr);
  return 2;
}
