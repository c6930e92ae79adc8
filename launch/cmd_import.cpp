// `cairn import`: a Hugging Face LLaMA directory as a cairn weights file (model.h5 with its config),
// for eval, generate, grow and export; training starts from the directory itself with
// model.init_from = "hf:DIR".
#include <iostream>

#include "launch/cli.h"
#include "launch/commands.h"
#include "model/hf_import.h"
#include "model/weights_io.h"
#include "trainer/config.h"
#include "util/error.h"

namespace cairn {

static const CommandSpec kImportSpec{
    "import",
    "hf:DIR --out OUT.h5 [--seq-len T]",
    "Reads a Hugging Face LLaMA checkpoint (config.json; model.safetensors or the shards of\n"
    "model.safetensors.index.json; F32, BF16 or F16) tensor by tensor and writes it as a cairn weights\n"
    "file whose stored config is the checkpoint's architecture (grouped-query attention, head size,\n"
    "llama3 rope scaling, RMSNorm epsilon, tied embeddings). What cairn's model cannot represent\n"
    "(biases, a sliding window, another architecture, an unknown rope type) is refused by name.",
    {{"out", "OUT.h5", "weights file to create (must not exist)"},
     {"seq-len", "T", "model.seq_len stored with the weights (eval and generate windows; default 256)"}},
    ""};

int cmd_import(int argc, char** argv) {
  const Args args = parse_command(kImportSpec, argc, argv, {Positionals::one, "Hugging Face model directory as hf:DIR"});
  if (args.help()) return 0;
  if (hf_dir_of(args.positional()[0]).empty())
    throw Error(str("'", args.positional()[0], "' is not hf:DIR: name the Hugging Face model directory as hf:DIR"));
  if (!args.has("out")) throw Error("--out OUT.h5 is required");
  require_new_output(args.get("out"));
  const std::string dir = hf_dir_of(args.positional()[0]);
  TrainConfig cfg;
  cfg.init_from = args.positional()[0];
  cfg.model.seq_len = int64_t(args.get_number("seq-len", 256));
  config_resolve_hf_model(cfg, {"model.seq_len"});
  LlamaModel model(cfg.model, cpu_backend(), 1);
  const int64_t bytes = hf_load_weights(model, dir);
  save_model_weights(model, args.get("out"), config_to_toml(cfg));
  std::cout << "imported " << dir << " (" << model.params().count() << " parameters, " << bytes
            << " bytes of tensors; " << cfg.model.n_layers << " layers, width " << cfg.model.dim << ", "
            << cfg.model.n_heads << " heads, " << cfg.model.kv_heads() << " key/value heads) to " << args.get("out")
            << std::endl;
  return 0;
}

}  // namespace cairn
