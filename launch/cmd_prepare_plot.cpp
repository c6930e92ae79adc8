// `cairn prepare` (text to a token dataset) and `cairn plot` (metrics to a PNG).
#include <cstdint>
#include <filesystem>
#include <iostream>

#include "data/prepare.h"
#include "launch/cli.h"
#include "launch/commands.h"
#include "launch/plot.h"
#include "util/error.h"

namespace cairn {

static const CommandSpec kPrepareSpec{
    "prepare",
    "--out FILE.h5 [--input PATH ...] [options]",
    "Tokenizes text files into an HDF5 token dataset with a held-out validation split.\n"
    "Without --input it reads Debian's fortunes corpus (" + std::string(kDefaultCorpus) + ", split on \"%\").",
    {{"input", "PATH", "a text file or a directory of them", true},
     {"out", "FILE", "the dataset to write (.h5)"},
     {"tokenizer", "KIND",
      "\"byte\" (default), \"sentencepiece\" (trained here), \"sentencepiece:MODEL\" or \"hf:TOKENIZER.json[#eos=TOKEN]\""},
     {"vocab-size", "N", "vocabulary of a SentencePiece model trained here (--tokenizer sentencepiece; default 8000)"},
     {"split-on", "LINE", "documents are separated by lines equal to LINE (default: one per file)"},
     {"val-fraction", "F", "fraction of tokens held out for validation (default 0.05)"},
     {"seed", "N", "seed of the document shuffle, an integer >= 0 (default 0)"}},
    ""};

int cmd_prepare(int argc, char** argv) {
  Args args(kPrepareSpec, argc, argv, 2);
  if (args.help()) {
    std::cout << command_help(kPrepareSpec);
    return 0;
  }
  PrepareOptions o;
  o.inputs = args.all("input");
  if (o.inputs.empty()) {
    o.inputs = {kDefaultCorpus};
    o.split_on.assign(1, '%');  // not = "%": GCC 12 warns falsely there (-Wrestrict, PR 105651)
  }
  o.split_on = args.get("split-on", o.split_on);
  o.output = args.get("out");
  if (o.output.empty()) throw Error("--out FILE.h5 is required");
  o.tokenizer = args.get("tokenizer", o.tokenizer);
  // Only a SentencePiece model trained here has a vocabulary to choose: the byte tokenizer's is 256
  // and a given model's is its own, so the option would be silently ignored.
  if (args.has("vocab-size") && o.tokenizer != "sentencepiece")
    throw Error(str("option --vocab-size applies only to --tokenizer sentencepiece (a model trained here), not to \"",
                    o.tokenizer, "\": drop it"));
  o.vocab_size = int(args.get_integer("vocab-size", o.vocab_size, 1, INT32_MAX));
  o.val_fraction = args.get_number("val-fraction", o.val_fraction);
  o.seed = uint64_t(args.get_integer("seed", 0, 0, INT64_MAX));
  const auto parent = std::filesystem::path(o.output).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
  const PrepareSummary s = prepare_dataset(o);
  std::cout << "prepared " << o.output << ": " << s.files << " files, " << s.documents << " documents, "
            << s.tokens << " tokens (" << s.train_tokens << " training, " << s.val_tokens << " validation), "
            << s.tokenizer << " tokenizer, vocabulary " << s.vocab_size << "\n";
  if (!s.model_path.empty()) std::cout << "tokenizer model: " << s.model_path << "\n";
  return 0;
}

static const CommandSpec kPlotSpec{
    "plot",
    "RUN_DIR_OR_METRICS.jsonl ... [--out FILE.png] [--x KEY] [--y KEY ...] [--log-y]",
    "Draws loss curves (training and validation) of one or more runs into a PNG.",
    {{"out", "FILE", "PNG to write (default: loss.png in the first run directory)"},
     {"y", "KEY", "metric to draw (default: loss and every val_loss*)", true},
     {"x", "KEY", "x axis: step (default), tokens, or total_tokens (a stage-2 run continues stage 1's curve)"},
     {"log-y", "", "logarithmic y axis"}},
    ""};

int cmd_plot(int argc, char** argv) {
  Args args(kPlotSpec, argc, argv, 2);
  if (args.help()) {
    std::cout << command_help(kPlotSpec);
    return 0;
  }
  if (args.positional().empty()) throw Error("give at least one run directory or metrics.jsonl");
  std::vector<std::string> files;
  for (const auto& p : args.positional())
    files.push_back(std::filesystem::is_directory(p) ? p + "/metrics.jsonl" : p);
  PlotOptions o;
  o.y_keys = args.all("y");
  o.x_key = args.get("x", o.x_key);
  o.log_y = args.has("log-y");
  const std::string out =
      args.get("out", (std::filesystem::path(files[0]).parent_path() / "loss.png").string());
  plot_metrics(files, out, o);
  std::cout << "wrote " << out << "\n";
  return 0;
}

}  // namespace cairn
