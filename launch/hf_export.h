// Export of a trained model as a Hugging Face `transformers` LLaMA directory, loadable with
// LlamaForCausalLM.from_pretrained and no custom code: config.json, generation_config.json,
// model.safetensors (fp32 or bf16), the tokenizer (tokenizer.model + tokenizer_config.json for
// SentencePiece; tokenizer.json + tokenizer_config.json for a Hugging Face byte-level BPE; a
// README note for the byte-level tokenizer) and a README.md.
// Factored projection weights (low-rank, SLTrain) are exported as the dense W they define.
#pragma once

#include <string>
#include <vector>

#include "data/tokenizer.h"
#include "model/llama.h"
#include "model/safetensors.h"

namespace cairn {

// The tensors of model.safetensors in order: every ParamTable row that is not a factor or sparse
// part of a projection, under its own name, and every projection as "<prefix>.weight" [out, in].
std::vector<TensorSpec> hf_tensor_specs(const LlamaModel& model);

// Writes out_dir: built in "<out_dir>.tmp" (a stale one is removed) and renamed at the end, so
// out_dir appears only when complete; on any error the temporary directory is removed. out_dir
// must not exist yet. `source` (e.g. the weights path) goes into the README.
void export_hf(LlamaModel& model, const Tokenizer& tokenizer, const std::string& out_dir, TensorDtype dtype,
               const std::string& source);

}  // namespace cairn
