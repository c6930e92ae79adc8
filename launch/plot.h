// `cairn plot`: draws training/validation curves from metrics JSONL files (one JSON object per
// line, written by the trainer) into a PNG, with its own rasterizer and bitmap font and libpng for
// output. Also exposes the metrics reader and the tick chooser, which tests and bench scripts use
// directly.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace cairn {

struct PlotOptions {
  std::string x_key = "step";
  std::vector<std::string> y_keys;  // empty: "loss" and every key starting with "val_loss"
  int width = 1000, height = 600;   // pixels; at least 320 x 200
  bool log_y = false;               // log10 y axis; non-positive values are left out
  std::string title;                // empty: the run label (one file) or "<n> runs"
};

// Draws one series per (input file, y key) that has data, on one chart, and writes an RGB8 PNG to
// `png_path` (through `png_path + ".tmp"` and a rename, so readers never see half a file). Legend
// entries are "<run label>: <key>" with several files and "<key>" with one; the run label is the
// name of the directory holding the file. Series whose key starts with "val_" get markers.
// Throws cairn::Error for a missing or unreadable file, a line that is not a JSON object (naming
// file and line), or no plottable data for the requested keys (listing the keys that exist).
void plot_metrics(const std::vector<std::string>& jsonl_paths, const std::string& png_path,
                  const PlotOptions& options);

// One metrics file, by step. Lines without an integer "step" and blank lines are skipped; values
// that are not finite numbers are ignored. Lines with the same step merge (later values win). A
// line whose step is below the highest step seen so far starts a resumed run: every stored step
// >= it is dropped first, so the resumed run's values replace the old ones from there on.
struct MetricsRun {
  std::string label;  // name of the directory holding the file
  std::map<long long, std::map<std::string, double>> by_step;
};
MetricsRun read_metrics(const std::string& jsonl_path);

// Axis ticks on a 1-2-5 grid: `step` is the smallest of {1, 2, 5} x 10^k for which the range,
// widened outwards to multiples of `step` ([lo, hi] below), has at most `max_intervals` intervals.
// `ticks` runs from lo to hi in steps of `step`. A zero-width range is widened around its value.
struct Ticks {
  double lo = 0, hi = 0, step = 0;
  std::vector<double> ticks;
};
Ticks nice_ticks(double lo, double hi, int max_intervals);

// Tick label text: enough decimals for `step`; k/M/G suffixes once `axis_max_abs` reaches 1e4.
std::string format_tick(double value, double step, double axis_max_abs);

// Colour of the i-th series (cycles through a fixed palette of distinct colours).
std::array<std::uint8_t, 3> series_color(std::size_t i);

}  // namespace cairn
