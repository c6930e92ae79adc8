// `cairn eval` (loss and perplexity on token datasets, ranks sharing the windows) and
// `cairn generate` (sampled text, streamed as it comes).
#include <iostream>
#include <limits>
#include <thread>

#include <nlohmann/json.hpp>

#include "launch/cli.h"
#include "launch/commands.h"
#include "launch/use_model.h"
#include "model/sampling.h"
#include "trainer/checkpoint.h"
#include "util/error.h"
#include "util/file_io.h"

namespace cairn {

static const CommandSpec kEvalSpec{
    "eval",
    "WEIGHTS_OR_CHECKPOINT --data X.h5 [--data Y.h5 ...] [--split val|train] [--batches N] [--micro-batch B]",
    "Mean next-token loss and perplexity of a trained model on token datasets, one line per dataset.\n"
    "Windows of seq_len + 1 tokens are taken in order (as training's validation does); under mpirun\n"
    "or srun the ranks share them.",
    {{"data", "FILE", "token dataset written by cairn prepare", true},
     {"split", "SPLIT", "val (default: the held-out split) or train"},
     {"batches", "N", "evaluate the first N micro-batches of windows (default: all windows)"},
     {"micro-batch", "B", "windows per forward pass (default 8)"},
     {"json", "FILE", "also write the results as JSON"}},
    ""};

int cmd_eval(int argc, char** argv) {
  Args args(kEvalSpec, argc, argv, 2);
  if (args.help()) {
    std::cout << command_help(kEvalSpec);
    return 0;
  }
  if (args.positional().size() != 1) throw Error("give one weights file or checkpoint directory (see --help)");
  const std::vector<std::string> data = args.all("data");
  if (data.empty()) throw Error("give at least one --data DATASET.h5");
  const double batches_arg = args.get_number("batches", 0);
  if (args.has("batches") && !(batches_arg >= 1 && batches_arg == double(int64_t(batches_arg))))
    throw Error(str("--batches ", args.get("batches"), " must be a positive integer (leave it out for all windows)"));
  const int64_t batches = int64_t(batches_arg);
  const int64_t micro_batch = int64_t(args.get_number("micro-batch", 8));
  if (micro_batch <= 0) throw Error("--micro-batch must be positive");
  const std::string split = args.get("split", "val");
  auto comm = make_communicator(&argc, &argv);
  try {
    cpu_set_threads(threads_per_rank(*comm, int(std::thread::hardware_concurrency())));
    const std::string weights = checkpoint_weights_path(args.positional()[0]);
    TrainedModel m = load_trained_model(weights, micro_batch);
    nlohmann::ordered_json results = nlohmann::ordered_json::array();
    for (const auto& path : data) {
      const TokenDataset ds = TokenDataset::open(path);
      if (!check_dataset_tokenizer(m.config, ds) && comm->rank() == 0)
        std::cerr << "note: the model's training dataset '" << m.config.data.train
                  << "' is not available, so the tokenizer of " << path << " is not checked against it\n";
      const EvalResult r = evaluate_dataset(*m.model, ds, split, batches, micro_batch, *comm);
      if (comm->rank() == 0) {
        std::cout << path << " (" << split << "): loss " << r.loss << "  perplexity " << r.perplexity() << "  ("
                  << r.windows << " windows, " << r.tokens << " tokens" << (comm->size() > 1 ? str(", ", comm->size(), " ranks") : "")
                  << ")" << std::endl;
        results.push_back({{"data", path}, {"split", split}, {"windows", r.windows}, {"tokens", r.tokens},
                           {"loss", r.loss}, {"perplexity", r.perplexity()}});
      }
    }
    if (comm->rank() == 0 && args.has("json")) {
      write_file_atomic(args.get("json"), nlohmann::ordered_json{{"weights", weights}, {"results", results}}.dump(2) + "\n");
    }
  } catch (const std::exception& e) {
    if (comm->size() > 1) comm->abort(str("cairn eval: rank ", comm->rank(), ": error: ", e.what()));
    throw;
  }
  return 0;
}

static const CommandSpec kGenerateSpec{
    "generate",
    "WEIGHTS_OR_CHECKPOINT --prompt TEXT [--max-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S]",
    "Samples a continuation of the prompt and prints the text as the tokens come; stops at EOS (the\n"
    "end of a document) or after --max-tokens. The model's context is its training sequence length:\n"
    "the last seq_len tokens are kept, and each token costs one forward pass over them (no KV cache).",
    {{"prompt", "TEXT", "text to continue"},
     {"max-tokens", "N", "tokens to generate at most (default 128)"},
     {"temperature", "T", "softmax temperature (default 0.8; 0 = greedy)"},
     {"top-k", "K", "sample among the K most likely tokens (default 40; 0 = all)"},
     {"top-p", "P", "sample among the most likely tokens holding probability P (default 0.95; 1 = all)"},
     {"seed", "S", "random seed (default 0)"},
     {"tokenizer-from", "DATASET", "token dataset whose tokenizer to use (default: the training dataset)"}},
    ""};

int cmd_generate(int argc, char** argv) {
  Args args(kGenerateSpec, argc, argv, 2);
  if (args.help()) {
    std::cout << command_help(kGenerateSpec);
    return 0;
  }
  if (args.positional().size() != 1) throw Error("give one weights file or checkpoint directory (see --help)");
  if (!args.has("prompt")) throw Error("--prompt TEXT is required");
  GenerateOptions o;
  constexpr int64_t kMaxInt = std::numeric_limits<int64_t>::max();
  o.max_tokens = args.get_integer("max-tokens", o.max_tokens, 0, kMaxInt);
  o.sampling.temperature = float(args.get_number("temperature", o.sampling.temperature));
  o.sampling.top_k = args.get_integer("top-k", o.sampling.top_k, 0, kMaxInt);
  o.sampling.top_p = float(args.get_number("top-p", o.sampling.top_p));
  o.seed = uint64_t(args.get_integer("seed", 0, 0, kMaxInt));
  o.sampling.validate();
  const std::string weights = checkpoint_weights_path(args.positional()[0]);
  TrainedModel m = load_trained_model(weights, 1);
  const ModelTokenizer tok = tokenizer_for_model(m.config, args.get("tokenizer-from"));
  std::cerr << "tokenizer: " << tok.source << "\n";
  const std::vector<uint32_t> prompt = encode_prompt(*tok.tokenizer, args.get("prompt"));
  o.stop_token = tok.tokenizer->eos_id();
  o.sample_vocab = tok.tokenizer->vocab_size();
  IncrementalDecoder decoder(*tok.tokenizer, prompt);
  std::cout << args.get("prompt") << std::flush;
  generate_tokens(*m.model, prompt, o, [&](uint32_t id) { std::cout << decoder.push(id) << std::flush; });
  std::cout << decoder.finish() << std::endl;
  return 0;
}

}  // namespace cairn
