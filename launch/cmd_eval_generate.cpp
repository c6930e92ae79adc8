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
    "WEIGHTS_OR_CHECKPOINT --data DATASET [--data DATASET ...] [--split val|train] [--windows N] [--micro-batch B]",
    "Mean next-token loss and perplexity of a trained model on token datasets, one line per dataset.\n"
    "Windows of seq_len + 1 tokens are taken in order, as training's validation takes them (the first\n"
    "training.eval_windows of the val split give its val_loss); under mpirun or srun the ranks share\n"
    "them. The result does not depend on the rank count or --micro-batch. --skip-layer measures what\n"
    "layers contribute: a skipped layer passes its input through unchanged (the model keeps its other\n"
    "layers' positions and norms).",
    {{"data", "DATASET", "token dataset written by cairn prepare (a directory, or an older .h5 file)", true},
     {"split", "SPLIT", "val (default: the held-out split) or train"},
     {"windows", "N", "evaluate the first N windows (default: all windows)"},
     {"batches", "N", "the first N x micro-batch windows (older form of --windows)"},
     {"micro-batch", "B", "windows per forward pass (default 8)"},
     {"json", "FILE", "also write the results as JSON"},
     {"skip-layer", "L|each", "skip layer L (0-based); each: the whole model, then every layer skipped in turn"}},
    ""};

// The layers to skip, one evaluation each: -1 is none (the whole model).
static std::vector<int64_t> skip_plan(const Args& args, int64_t n_layers) {
  if (!args.has("skip-layer")) return {-1};
  if (args.get("skip-layer") == "each") {
    std::vector<int64_t> plan{-1};
    for (int64_t l = 0; l < n_layers; ++l) plan.push_back(l);
    return plan;
  }
  return {args.get_integer("skip-layer", -1, 0, n_layers - 1)};
}

int cmd_eval(int argc, char** argv) {
  const Args args = parse_command(kEvalSpec, argc, argv, {Positionals::one, "weights file or checkpoint directory"});
  if (args.help()) return 0;
  const std::vector<std::string> data = args.all("data");
  if (data.empty()) throw Error("give at least one --data DATASET (a dataset directory or .h5 file)");
  const int64_t micro_batch = int64_t(args.get_number("micro-batch", 8));
  if (micro_batch <= 0) throw Error("--micro-batch must be positive");
  if (args.has("windows") && args.has("batches")) throw Error("give --windows or --batches, not both");
  auto count = [&](const char* name) {  // a positive integer option; 0 (all windows) when absent
    const double v = args.get_number(name, 0);
    if (args.has(name) && !(v >= 1 && v <= 1e15 && v == double(int64_t(v))))
      throw Error(str("--", name, " ", args.get(name), " must be a positive integer (leave it out for all windows)"));
    return int64_t(v);
  };
  const int64_t windows = args.has("batches") ? count("batches") * micro_batch : count("windows");
  const std::string split = args.get("split", "val");
  auto comm = make_communicator(&argc, &argv);
  try {
    cpu_set_threads(threads_per_rank(*comm, int(std::thread::hardware_concurrency())));
    const std::string weights = checkpoint_weights_path(args.positional()[0]);
    TrainedModel m = load_trained_model(weights, micro_batch);
    const std::vector<int64_t> skips = skip_plan(args, m.config.model.n_layers);
    nlohmann::ordered_json results = nlohmann::ordered_json::array();
    for (const auto& path : data) {
      const TokenDataset ds = TokenDataset::open(path);
      if (!check_dataset_tokenizer(m.config, ds) && comm->rank() == 0)
        std::cerr << "note: the model's training dataset '" << m.config.data.train
                  << "' is not available, so the tokenizer of " << path << " is not checked against it\n";
      double whole = 0;
      for (const int64_t skip : skips) {
        m.model->set_skipped_layer(skip);
        const EvalResult r = evaluate_dataset(*m.model, ds, split, windows, micro_batch, *comm);
        if (skip < 0) whole = r.loss;
        if (comm->rank() != 0) continue;
        std::cout << path << " (" << split << (skip >= 0 ? str(", layer ", skip, " skipped") : "") << "): loss "
                  << r.loss << "  perplexity " << r.perplexity() << "  ("
                  << (skip >= 0 && skips.front() < 0 ? str("loss change ", r.loss - whole, ", ") : "") << r.windows
                  << " windows, " << r.tokens << " tokens" << (comm->size() > 1 ? str(", ", comm->size(), " ranks") : "")
                  << ")" << std::endl;
        nlohmann::ordered_json result = {{"data", path}, {"split", split}, {"windows", r.windows}, {"tokens", r.tokens},
                                         {"loss", r.loss}, {"perplexity", r.perplexity()}};
        if (skip >= 0) result["skipped_layer"] = skip;
        results.push_back(result);
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
  const Args args = parse_command(kGenerateSpec, argc, argv, {Positionals::one, "weights file or checkpoint directory"});
  if (args.help()) return 0;
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
