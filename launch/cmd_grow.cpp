// `cairn grow`: G_stack depthwise growth of a weights file (or a checkpoint's model.h5) into a
// deeper model of the same width, and `--plan`, the paper's recommended growth timing.
#include <iostream>

#include "launch/cli.h"
#include "launch/commands.h"
#include "model/growth.h"
#include "model/weights_io.h"
#include "trainer/checkpoint.h"
#include "trainer/config.h"
#include "util/error.h"

namespace cairn {

static const CommandSpec kGrowSpec{
    "grow",
    "--from WEIGHTS --factor G --out OUT.h5 | --plan --params N --tokens D [--layers L] [--factor G]",
    "Grows an L-layer model into G·L layers of the same width by repeating the whole stack in order\n"
    "(G_stack: layer i is a copy of layer i mod L; embeddings, final norm and LM head unchanged).\n"
    "The norm keys are kept: a Mix-LN model keeps model.mix_ln_alpha, so its Post-LN prefix grows.\n"
    "Train the grown weights with --set model.init_from=OUT.h5 (fresh optimizer, schedule from\n"
    "warmup) and --set training.tokens_before=<tokens the small model saw>.",
    {{"from", "WEIGHTS", "weights file, or a run/checkpoint directory holding model.h5"},
     {"factor", "G", "growth factor, an integer >= 1 (default 4, the paper's)"},
     {"out", "OUT.h5", "grown weights file to create (must not exist; its stored config has n_layers = G·L)"},
     {"plan", "", "print the growth timing for a target model instead of growing (`cairn plan` adds Step Law)"},
     {"params", "N", "--plan: parameters of the target (grown) model"},
     {"tokens", "D", "--plan: training tokens of the target model"},
     {"layers", "L", "--plan: layers of the target model (prints the small model's depth)"}},
    ""};

static int plan(const Args& args) {
  print_growth_plan(args.get_number("params", 0), args.get_number("tokens", 0), growth_factor_option(args),
                    args.get_number("layers", 0));
  return 0;
}

int cmd_grow(int argc, char** argv) {
  const Args args = parse_command(kGrowSpec, argc, argv);
  if (args.help()) return 0;
  if (args.has("plan")) return plan(args);
  if (!args.has("from") || !args.has("out")) throw Error("--from WEIGHTS and --out OUT.h5 are required (or --plan)");
  require_new_output(args.get("out"));  // as export: fail before the work, never overwrite
  const int64_t g = growth_factor_option(args);
  const std::string src_path = checkpoint_weights_path(args.get("from"));

  TrainConfig cfg;
  config_apply_toml(cfg, read_weights_config(src_path), src_path + " (stored config)");
  const Backend& be = cpu_backend();
  LlamaModel src(cfg.model, be, 1);
  load_model_weights(src, src_path);
  const std::vector<int64_t> changed = layers_changing_layout(cfg.model, g);
  cfg.model = grown_config(cfg.model, g);
  LlamaModel dst(cfg.model, be, 1);
  grow_depthwise(src, dst);
  save_model_weights(dst, args.get("out"), config_to_toml(cfg));
  std::cout << "grew " << src_path << " (" << src.config().n_layers << " layers, " << src.params().count()
            << " parameters) x" << g << " -> " << args.get("out") << " (" << dst.config().n_layers << " layers, "
            << dst.params().count() << " parameters)" << std::endl;
  if (!changed.empty()) {
    std::cout << "Mix-LN: the grown model keeps model.mix_ln_alpha = " << cfg.model.mix_ln_alpha << " ("
              << cfg.model.post_ln_layers() << " Post-LN layers); " << changed.size()
              << " layers change layout from their source layer's and take its two norm gains in order:";
    for (int64_t i : changed) std::cout << " " << i;
    std::cout << std::endl;
  }
  return 0;
}

}  // namespace cairn
