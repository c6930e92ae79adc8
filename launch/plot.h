// `cairn plot`: draws training/validation curves from metrics JSONL files (one JSON object per
// line, written by the trainer) into a PNG or SVG with cairo. Also exposes the metrics reader, the
// curve chooser, the layout and the tick chooser, which tests use directly.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace cairn {

struct PlotOptions {
  // x axis: "step", "tokens" (this run's) or "total_tokens" (with model.init_from's
  // training.tokens_before, so a stage-2 run continues its stage 1's curve); any numeric key works.
  std::string x_key = "step";
  std::vector<std::string> y_keys;  // empty: "loss" and every key starting with "val_loss"
  int width = 1000, height = 600;   // pixels; at least 320 x 200
  bool log_y = false;               // log10 y axis; non-positive values are left out
  std::string title;                // empty: the run label (one file) or "<n> runs"
};

// Draws plot_series(...) on one chart laid out by plot_layout(...) and writes it to `image_path`:
// an RGB PNG for a name ending in .png, an SVG (vector paths, sizes in px) for .svg; any other
// name is refused. The file is written through `image_path + ".tmp"` and a rename, so readers never
// see half a file; a failed write is an Error naming the file and the reason. Throws cairn::Error
// for a missing or unreadable file, a line that is not a JSON object (naming file and line), or no
// plottable data for the requested keys (listing the keys that exist).
void plot_metrics(const std::vector<std::string>& jsonl_paths, const std::string& image_path,
                  const PlotOptions& options);

// One metrics file, by step. Lines without an integer "step" and blank lines are skipped; values
// that are not finite numbers are ignored. Lines with the same step merge (later values win). A
// line whose step is below the highest step seen so far starts a resumed run: every stored step
// >= it is dropped first, so the resumed run's values replace the old ones from there on.
struct MetricsRun {
  std::string path;   // the file read
  std::string label;  // name of the directory holding the file
  std::map<long long, std::map<std::string, double>> by_step;
};
MetricsRun read_metrics(const std::string& jsonl_path);

// One curve of the chart.
struct PlotSeries {
  std::string name;      // legend entry: "<key>" with one run, "<run label>: <key>" with several
  bool markers = false;  // keys starting with "val_": a dot at every point
  std::vector<std::pair<double, double>> points;  // (x, y) in data units, in step order
};

// The curves plot_metrics draws: one per (run, y key) that has data, runs in order. Runs whose
// directories share a name are labelled "name", "name#2", ... The default keys are "loss" and
// every "val_loss*" key, except that a run's "val_loss" is left out when one of its
// "val_loss/<name>" curves holds the same values (with several validation sets the trainer writes
// val_loss = the first set's). Records without "total_tokens" (written before it existed) use
// "tokens" for it. Throws Error when no curve has data.
std::vector<PlotSeries> plot_series(std::vector<MetricsRun> runs, const PlotOptions& options);

// [x0, x1) x [y0, y1) in pixels, y growing downwards.
struct PlotRect {
  int x0 = 0, y0 = 0, x1 = 0, y1 = 0;
};

// One axis: range [lo, hi] in axis units (log10 of the value on a log axis), ticks in axis units
// and their labels.
struct PlotAxis {
  double lo = 0, hi = 1;
  bool log = false;
  std::vector<double> ticks;
  std::vector<std::string> labels;
  double frac(double v) const;  // position of data value v along the axis, 0..1
  double tick_frac(std::size_t i) const { return (ticks[i] - lo) / (hi - lo); }
};

// Where everything goes, decided before anything is drawn.
struct PlotLayout {
  int width = 0, height = 0;
  double font = 0;  // text size in pixels; gaps, strokes and markers scale with it
  PlotRect plot;    // the plot area (its frame included)
  PlotAxis x, y;
  PlotRect legend;
  bool legend_outside = false;              // right of the plot area, which is narrowed for it
  std::vector<std::string> legend_entries;  // series names that fit; the last may be "(n more)"
  int legend_text_x = 0;                    // where the entries' text starts, right of the swatches
  std::pair<double, double> to_pixel(double x, double y) const;  // data units -> pixel coordinates
};

// The legend goes into the first corner of the plot area (top right, top left, bottom right,
// bottom left) where it covers no curve (lines and markers with their width); when every corner
// would, it goes to the right of the plot area, so it never hides data.
PlotLayout plot_layout(const std::vector<PlotSeries>& series, const PlotOptions& options);

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

// Colour of the i-th series: a fixed palette of 9, then colours generated to be as far as possible
// (CIELAB distance) from all earlier ones and from the background, grid and text, so any number of
// series get distinct colours.
std::array<std::uint8_t, 3> series_color(std::size_t i);

}  // namespace cairn
