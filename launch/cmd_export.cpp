// `cairn export`: a trained model (weights file or checkpoint) as a Hugging Face directory.
#include <iostream>

#include "launch/cli.h"
#include "launch/commands.h"
#include "launch/hf_export.h"
#include "launch/use_model.h"
#include "trainer/checkpoint.h"
#include "util/error.h"

namespace cairn {

static const CommandSpec kExportSpec{
    "export",
    "WEIGHTS_OR_CHECKPOINT --format hf --out DIR [--dtype fp32|bf16|fp16] [--tokenizer-from DATASET]",
    "Writes a directory that Hugging Face transformers loads with LlamaForCausalLM.from_pretrained\n"
    "(no custom code): config.json, model.safetensors, generation_config.json and the tokenizer.\n"
    "Low-rank and SLTrain projections are written as the dense matrices they define; LayerNorm\n"
    "Scaling (model.norm_scaling) is folded into the norm gains; Mix-LN models (model.norm_layout =\n"
    "\"mix\") are refused: LlamaForCausalLM has no Post-LN layers. DIR appears only once it is complete.",
    {{"format", "FMT", "export format: hf (the only one)"},
     {"out", "DIR", "directory to create (must not exist)"},
     {"dtype", "TYPE", "fp32 (default), bf16 or fp16 (both rounded to nearest even)"},
     {"tokenizer-from", "DATASET", "token dataset whose tokenizer to ship, or hf:DIR (a Hugging Face model's; default: the training dataset, data.train)"}},
    ""};

int cmd_export(int argc, char** argv) {
  const Args args = parse_command(kExportSpec, argc, argv, {Positionals::one, "weights file or checkpoint directory"});
  if (args.help()) return 0;
  if (args.get("format", "hf") != "hf") throw Error(str("--format ", args.get("format"), " is unknown: use hf"));
  if (!args.has("out")) throw Error("--out DIR is required");
  const TensorDtype dtype = tensor_dtype_from_option(args.get("dtype", "fp32"));
  const std::string weights = checkpoint_weights_path(args.positional()[0]);
  TrainedModel m = load_trained_model(weights, 1);
  hf_check_exportable(m.config.model);  // before looking for the tokenizer
  const ModelTokenizer tok = tokenizer_for_model(m.config, args.get("tokenizer-from"));
  std::cout << "tokenizer: " << tok.source << "\n";
  export_hf(*m.model, *tok.tokenizer, args.get("out"), dtype, weights);
  std::cout << "exported " << weights << " to " << args.get("out") << " (" << m.model->params().count()
            << " trained parameters, " << tensor_dtype_name(dtype) << ")" << std::endl;
  return 0;
}

}  // namespace cairn
