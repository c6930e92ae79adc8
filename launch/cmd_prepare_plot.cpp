// `cairn prepare` (text to a token dataset) and `cairn plot` (metrics to a PNG or SVG).
#include <atomic>
#include <charconv>
#include <csignal>
#include <cstdint>
#include <filesystem>
#include <iostream>
#include <thread>

#include "data/prepare.h"
#include "launch/cli.h"
#include "launch/commands.h"
#include "launch/plot.h"
#include "util/error.h"

namespace cairn {

static const CommandSpec kPrepareSpec{
    "prepare",
    "--out DIR [--input PATH ...] [options]  |  --merge --out DIR PART_DIR ...",
    "Tokenizes a text corpus into a token dataset directory: HDF5 shards of training and validation\n"
    "tokens plus manifest.json (docs/formats.md). Inputs are plain text or JSON Lines, optionally\n"
    "gzip- or zstd-compressed (.gz, .zst), read in a streaming pass with bounded memory.\n"
    "Without --input it reads Debian's fortunes corpus (the files in " + std::string(kDefaultCorpus) +
        ", split on \"%\").",
    {{"input", "PATH", "a file, or a directory read recursively (sorted by path)", true},
     {"glob", "PATTERN", "files of input directories to read: a shell pattern on the name (\"*.jsonl.zst\") or, "
                         "with a '/', on the path below the directory; default: all", true},
     {"format", "F", "auto (default: .jsonl/.json/.ndjson[.gz|.zst] are JSON Lines, the rest text), text or jsonl"},
     {"json-key", "KEY", "the JSON Lines member holding a document's text (default \"text\")"},
     {"split-on", "LINE", "text: documents are separated by lines equal to LINE (default: one per file)"},
     {"skip-invalid", "", "skip (and count) binary files, documents with invalid UTF-8 and invalid JSON Lines "
                          "records instead of stopping at the first with an error"},
     {"out", "DIR", "the dataset directory to write (refused if it exists, unless --force)"},
     {"force", "", "replace an existing dataset at --out (only a cairn dataset)"},
     {"tokenizer", "KIND",
      "\"byte\" (default), \"sentencepiece\" (trained here), \"sentencepiece:MODEL\" or \"hf:TOKENIZER.json[#eos=TOKEN]\" or \"hf:MODEL_DIR\" (a Hugging Face model's tokenizer.json and EOS)"},
     {"vocab-size", "N", "vocabulary of a SentencePiece model trained here (--tokenizer sentencepiece; default 8000)"},
     {"sp-sentences", "N", "a trained SentencePiece model learns from a uniform sample of N lines (default 2000000)"},
     {"val-fraction", "F", "fraction of documents held out for validation, chosen by a hash of their text (default 0.05)"},
     {"seed", "N", "seed of the validation choice and the SentencePiece sample, an integer >= 0 (default 0)"},
     {"workers", "N", "tokenizing threads (default: the machine's cores); the output does not depend on N"},
     {"shard-tokens", "N", "tokens per shard file (default 1000000000); documents never span shards"},
     {"part", "I/N", "prepare only partition I (0-based) of N of the sorted inputs, for one job of an array"},
     {"merge", "", "write DIR/manifest.json over the part directories given as arguments (all inside --out)"}},
    "Interrupting (Ctrl-C, SIGTERM) stops at the next chunk and removes the partial output."};

namespace {
std::atomic<bool> prepare_stop{false};
void on_prepare_signal(int sig) {
  prepare_stop = true;
  std::signal(sig, SIG_DFL);  // a second signal ends the process at once
}
}  // namespace

int cmd_prepare(int argc, char** argv) {
  // Part files with --merge, nothing otherwise: checked below.
  const Args args = parse_command(kPrepareSpec, argc, argv, {Positionals::any, ""});
  if (args.help()) return 0;
  const std::string out = args.get("out");
  if (out.empty()) throw Error("--out DIR is required");
  PrepareSummary s;
  if (args.has("merge")) {
    for (const char* o : {"input", "glob", "tokenizer", "part", "workers", "shard-tokens", "val-fraction"})
      if (args.has(o)) throw Error(str("option --", o, " does not apply to --merge (the parts were prepared with it)"));
    s = merge_dataset_parts(args.positional(), out, args.has("force"));
  } else {
    if (!args.positional().empty())
      throw Error(str("unexpected argument '", args.positional().front(), "': give inputs with --input"));
    PrepareOptions o;
    CorpusOptions& c = o.corpus;
    c.inputs = args.all("input");
    if (c.inputs.empty()) {
      c.inputs = default_corpus_inputs();
      c.split_on.assign(1, '%');  // not = "%": GCC 12 warns falsely there (-Wrestrict, PR 105651)
    }
    c.globs = args.all("glob");
    c.format = args.get("format", c.format);
    c.json_key = args.get("json-key", c.json_key);
    c.split_on = args.get("split-on", c.split_on);
    c.skip_invalid = args.has("skip-invalid");
    c.stop = &prepare_stop;
    o.output = out;
    o.force = args.has("force");
    o.tokenizer = args.get("tokenizer", o.tokenizer);
    // Only a SentencePiece model trained here has a vocabulary to choose: the byte tokenizer's is 256
    // and a given model's is its own, so the option would be silently ignored.
    for (const char* sp_only : {"vocab-size", "sp-sentences"})
      if (args.has(sp_only) && o.tokenizer != "sentencepiece")
        throw Error(str("option --", sp_only, " applies only to --tokenizer sentencepiece (a model trained here), not to \"",
                        o.tokenizer, "\": drop it"));
    o.vocab_size = int(args.get_integer("vocab-size", o.vocab_size, 1, INT32_MAX));
    o.sp_sentences = args.get_integer("sp-sentences", o.sp_sentences, 1, INT64_MAX);
    o.val_fraction = args.get_number("val-fraction", o.val_fraction);
    o.seed = uint64_t(args.get_integer("seed", 0, 0, INT64_MAX));
    o.workers = int(args.get_integer("workers", std::max(1u, std::thread::hardware_concurrency()), 1, 1024));
    o.shard_tokens = args.get_integer("shard-tokens", o.shard_tokens, 1, INT64_MAX);
    if (args.has("part")) {
      const std::string p = args.get("part");
      const auto slash = p.find('/');
      int i = -1, n = 0;
      if (slash != std::string::npos) {
        const auto [e1, ec1] = std::from_chars(p.data(), p.data() + slash, i);
        const auto [e2, ec2] = std::from_chars(p.data() + slash + 1, p.data() + p.size(), n);
        if (ec1 != std::errc() || e1 != p.data() + slash || ec2 != std::errc() || e2 != p.data() + p.size()) i = -1;
      }
      if (i < 0 || n < 1 || i >= n) throw Error(str("--part expects I/N with 0 <= I < N, e.g. 3/8, got '", p, "'"));
      o.part = i;
      o.parts = n;
    }
    std::signal(SIGINT, on_prepare_signal);
    std::signal(SIGTERM, on_prepare_signal);
    s = prepare_dataset(o);
  }
  std::cout << "prepared " << out << ": " << s.files << " files, " << s.documents << " documents, " << s.tokens
            << " tokens (" << s.train_tokens << " training, " << s.val_tokens << " validation) in " << s.shards
            << " shard(s), " << s.tokenizer << " tokenizer, vocabulary " << s.vocab_size << "\n";
  if (s.skipped_files + s.skipped_documents > 0)
    std::cout << "skipped as invalid: " << s.skipped_files << " file(s) that are not UTF-8 text, " << s.skipped_documents
              << " document(s) or record(s)\n";
  if (!s.model_path.empty()) std::cout << "tokenizer model: " << s.model_path << "\n";
  return 0;
}

static const CommandSpec kPlotSpec{
    "plot",
    "RUN_DIR_OR_METRICS.jsonl ... [--out FILE.png|FILE.svg] [--x KEY] [--y KEY ...] [--log-y]",
    "Draws loss curves (training and validation) of one or more runs into a PNG or an SVG.",
    {{"out", "FILE", "image to write, PNG or SVG by its extension (default: loss.png in the first run directory)"},
     {"y", "KEY", "metric to draw (default: loss and every val_loss*)", true},
     {"x", "KEY", "x axis: step (default), tokens, or total_tokens (a stage-2 run continues stage 1's curve)"},
     {"log-y", "", "logarithmic y axis"}},
    ""};

int cmd_plot(int argc, char** argv) {
  const Args args = parse_command(kPlotSpec, argc, argv, {Positionals::at_least_one, "run directory or metrics.jsonl"});
  if (args.help()) return 0;
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
