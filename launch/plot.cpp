// `cairn plot`: metrics JSONL -> PNG or SVG line chart. Reads each run's metrics (resumes handled
// by step), chooses the curves, lays out axes with 1-2-5 ticks and a legend that avoids the
// curves, and draws them with cairo (vector paths, the system's sans-serif font through
// fontconfig) onto an image surface written as PNG or onto an SVG surface.
#include "launch/plot.h"

#include <cairo-svg.h>
#include <cairo.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "util/error.h"
#include "util/file_io.h"
#include "util/utf8.h"

namespace cairn {
namespace {

namespace fs = std::filesystem;
using Rgb = std::array<std::uint8_t, 3>;

constexpr Rgb kBackground{255, 255, 255};
constexpr Rgb kGridColor{228, 228, 228};
constexpr Rgb kAxisColor{70, 70, 70};
constexpr Rgb kTextColor{20, 20, 20};
// The first series' colours (matplotlib's, without its gray); series_color generates more.
constexpr std::array<Rgb, 9> kPalette = {{{31, 119, 180},
                                          {255, 127, 14},
                                          {44, 160, 44},
                                          {214, 39, 40},
                                          {148, 103, 189},
                                          {140, 86, 75},
                                          {227, 119, 194},
                                          {188, 189, 34},
                                          {23, 190, 207}}};
constexpr const char* kFontFamily = "sans-serif";  // fontconfig's choice (DejaVu Sans on Debian)

struct CairoDeleter {
  void operator()(cairo_t* cr) const { cairo_destroy(cr); }
  void operator()(cairo_surface_t* s) const { cairo_surface_destroy(s); }
};
using CairoPtr = std::unique_ptr<cairo_t, CairoDeleter>;
using SurfacePtr = std::unique_ptr<cairo_surface_t, CairoDeleter>;

// Every size of the chart follows the text size: gaps, tick marks, strokes and markers are
// multiples of one unit, a seventh of the font size (2 px at the default 1000x600).
double unit(const PlotLayout& l) { return l.font / 7; }
double title_size(double font) { return font * 1.25; }

// Stroke widths, shared by the drawing and the legend placement that must avoid what is drawn.
double line_width(double u) { return 0.75 * u + 0.5; }
double marker_radius(double u) { return 1.75 * u; }
double lone_point_radius(double u) { return 1.5 * u; }

// cairo's text calls need valid UTF-8 (invalid input puts the context into an error state): each
// byte that starts no well-formed sequence becomes '?'.
std::string printable(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    const int n = utf8_sequence_length(s, i);
    out += n == 0 ? std::string("?") : s.substr(i, n);
    i += n == 0 ? 1 : n;
  }
  return out;
}

void select_font(cairo_t* cr, double size) {
  cairo_select_font_face(cr, kFontFamily, CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, size);
}

// Text metrics in pixels from the same font the drawing uses, so the layout knows what fits.
class TextMeasure {
 public:
  TextMeasure()
      : surface_(cairo_image_surface_create(CAIRO_FORMAT_ARGB32, 1, 1)), cr_(cairo_create(surface_.get())) {}
  double width(const std::string& s, double size) const {
    select_font(cr_.get(), size);
    cairo_text_extents_t e;
    cairo_text_extents(cr_.get(), printable(s).c_str(), &e);
    return e.x_advance;
  }
  // Ascent plus descent: the height of one line of text.
  double line_height(double size) const {
    select_font(cr_.get(), size);
    cairo_font_extents_t e;
    cairo_font_extents(cr_.get(), &e);
    return e.ascent + e.descent;
  }
  // Shortens `s` with "..." so it is at most `max_px` wide (whole characters only).
  std::string fit(const std::string& s, double size, double max_px) const {
    std::string text = printable(s);
    if (width(text, size) <= max_px) return text;
    while (!text.empty()) {
      std::size_t cut = text.size() - 1;
      while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;  // continuation byte
      text.resize(cut);
      if (width(text + "...", size) <= max_px) break;
    }
    return text + "...";
  }

 private:
  SurfacePtr surface_;
  CairoPtr cr_;
};

std::string join(const std::vector<std::string>& items, const std::string& sep) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : sep) + item;
  return out;
}

PlotAxis linear_axis(double lo, double hi, int max_intervals) {
  const Ticks t = nice_ticks(lo, hi, max_intervals);
  PlotAxis a{t.lo, t.hi, false, t.ticks, {}};
  const double max_abs = std::max(std::abs(t.lo), std::abs(t.hi));
  for (double v : t.ticks) a.labels.push_back(format_tick(v, t.step, max_abs));
  return a;
}

// Over 1.5 decades: ticks at whole decades. Less: the data range padded a little, with 1-2-5 ticks
// in data units placed logarithmically (whole decades would leave most of the chart empty).
PlotAxis log_axis(double lo, double hi, int max_intervals) {
  const double l0 = std::log10(lo), l1 = std::log10(hi);
  PlotAxis a;
  a.log = true;
  if (l1 - l0 >= 1.5) {
    Ticks t = nice_ticks(std::floor(l0), std::ceil(l1), max_intervals);
    t.step = std::max(t.step, 1.0);
    a.lo = std::floor(t.lo / t.step) * t.step;
    a.hi = std::ceil(t.hi / t.step) * t.step;
    for (double d = a.lo; d <= a.hi + 1e-9; d += t.step) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%g", std::pow(10.0, std::round(d)));
      a.ticks.push_back(d);
      a.labels.push_back(buf);
    }
    return a;
  }
  const double pad = std::max(0.04 * (l1 - l0), 0.02);
  a.lo = l0 - pad;
  a.hi = l1 + pad;
  const Ticks t = nice_ticks(std::pow(10.0, a.lo), std::pow(10.0, a.hi), max_intervals);
  for (double v : t.ticks) {
    if (v <= 0 || std::log10(v) < a.lo || std::log10(v) > a.hi) continue;
    a.ticks.push_back(std::log10(v));
    a.labels.push_back(format_tick(v, t.step, t.hi));
  }
  return a;
}

// Axis whose labels, at `length_px` of screen, keep at least `min_gap_px` between tick positions
// and `label_px(label)` room around each: tries the densest ticks first, then fewer.
template <typename Make, typename Room>
PlotAxis fitted_axis(Make make, int start_intervals, double length_px, Room room) {
  PlotAxis a;
  for (int n = std::max(start_intervals, 1); n >= 1; --n) {
    a = make(n);
    bool fits = true;
    for (std::size_t i = 1; i < a.ticks.size() && fits; ++i) {
      const double gap = (a.tick_frac(i) - a.tick_frac(i - 1)) * length_px;
      fits = gap >= room(a.labels[i - 1], a.labels[i]);
    }
    if (fits) return a;
  }
  return a;
}

// "loss" and every "val_loss*" key present, "val_loss" before the per-dataset "val_loss/<name>"
// keys (which std::set sorts).
std::vector<std::string> default_keys(const std::vector<MetricsRun>& runs) {
  std::set<std::string> val;
  for (const auto& run : runs)
    for (const auto& [step, row] : run.by_step)
      for (const auto& [key, value] : row)
        if (key.rfind("val_loss", 0) == 0) val.insert(key);
  std::vector<std::string> keys{"loss"};
  if (val.erase("val_loss")) keys.push_back("val_loss");
  keys.insert(keys.end(), val.begin(), val.end());
  return keys;
}

std::vector<std::pair<double, double>> points_of(const MetricsRun& run, const std::string& x_key,
                                                 const std::string& y_key, bool positive_only) {
  std::vector<std::pair<double, double>> points;
  for (const auto& [step, row] : run.by_step) {
    auto x = row.find(x_key);
    if (x == row.end() && x_key == "total_tokens") x = row.find("tokens");
    const auto y = row.find(y_key);
    if (x == row.end() || y == row.end() || (positive_only && y->second <= 0)) continue;
    points.emplace_back(x->second, y->second);
  }
  return points;
}

// With several validation sets the trainer writes val_loss = the first set's val_loss/<name>.
bool duplicates_a_named_val_loss(const MetricsRun& run, const std::vector<std::pair<double, double>>& val_loss,
                                 const std::vector<std::string>& keys, const PlotOptions& opt) {
  for (const auto& key : keys)
    if (key.rfind("val_loss/", 0) == 0 && points_of(run, opt.x_key, key, opt.log_y) == val_loss) return true;
  return false;
}

// Whether the segment (x0, y0)-(x1, y1) passes within `margin` of rectangle r (Liang-Barsky
// clipping against r grown by margin, corners squared off).
bool segment_near_rect(double x0, double y0, double x1, double y1, const PlotRect& r, double margin) {
  const double dx = x1 - x0, dy = y1 - y0;
  double t0 = 0, t1 = 1;
  const double p[4] = {-dx, dx, -dy, dy};
  const double q[4] = {x0 - (r.x0 - margin), (r.x1 + margin) - x0, y0 - (r.y0 - margin), (r.y1 + margin) - y0};
  for (int k = 0; k < 4; ++k) {
    if (p[k] == 0) {
      if (q[k] < 0) return false;  // parallel to this edge and outside it
      continue;
    }
    const double t = q[k] / p[k];
    if (p[k] < 0) t0 = std::max(t0, t);
    else t1 = std::min(t1, t);
    if (t0 > t1) return false;
  }
  return true;
}

bool covers_a_curve(const PlotLayout& l, const std::vector<PlotSeries>& series, const PlotRect& box) {
  const double u = unit(l);
  for (const auto& s : series) {
    double reach = s.points.size() == 1 ? lone_point_radius(u) : line_width(u) / 2;
    if (s.markers) reach = std::max(reach, marker_radius(u));
    for (std::size_t k = 0; k < s.points.size(); ++k) {
      const auto [x0, y0] = l.to_pixel(s.points[k].first, s.points[k].second);
      const auto [x1, y1] = k + 1 < s.points.size() ? l.to_pixel(s.points[k + 1].first, s.points[k + 1].second)
                                                    : std::pair{x0, y0};
      if (segment_near_rect(x0, y0, x1, y1, box, reach + 1)) return true;
    }
  }
  return false;
}

// CIELAB (D65) of an sRGB colour: distances there follow perceived differences.
std::array<double, 3> lab(const Rgb& c) {
  double lin[3];
  for (int k = 0; k < 3; ++k) {
    const double u = c[k] / 255.0;
    lin[k] = u <= 0.04045 ? u / 12.92 : std::pow((u + 0.055) / 1.055, 2.4);
  }
  const double xyz[3] = {(0.4124 * lin[0] + 0.3576 * lin[1] + 0.1805 * lin[2]) / 0.9505,
                         0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2],
                         (0.0193 * lin[0] + 0.1192 * lin[1] + 0.9505 * lin[2]) / 1.089};
  double f[3];
  for (int k = 0; k < 3; ++k) f[k] = xyz[k] > 0.008856 ? std::cbrt(xyz[k]) : 7.787 * xyz[k] + 16.0 / 116;
  return {116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])};
}

double lab_distance(const std::array<double, 3>& a, const std::array<double, 3>& b) {
  return std::hypot(a[0] - b[0], a[1] - b[1], a[2] - b[2]);
}

// Colour i (i >= kPalette.size()) is, among a grid of hues, saturations and values, the one
// farthest from every earlier colour and from the chart's own white, grays and text.
Rgb generated_color(std::size_t i) {
  static std::vector<Rgb> colors(kPalette.begin(), kPalette.end());
  static std::vector<std::array<double, 3>> taken = [] {
    std::vector<std::array<double, 3>> t;
    for (const Rgb& c : {kBackground, kGridColor, kAxisColor, kTextColor}) t.push_back(lab(c));
    for (const Rgb& c : kPalette) t.push_back(lab(c));
    return t;
  }();
  static const std::vector<Rgb> candidates = [] {
    std::vector<Rgb> out;
    for (int h = 0; h < 36; ++h)
      for (double sat : {0.45, 0.7, 0.95})
        for (double val : {0.45, 0.65, 0.85}) {  // HSV to RGB
          const double hh = h / 6.0, f = hh - std::floor(hh);
          const double p = val * (1 - sat), q = val * (1 - sat * f), t = val * (1 - sat * (1 - f));
          const double rgb[6][3] = {{val, t, p}, {q, val, p}, {p, val, t}, {p, q, val}, {t, p, val}, {val, p, q}};
          const auto& v = rgb[static_cast<int>(hh) % 6];
          out.push_back({static_cast<std::uint8_t>(std::lround(v[0] * 255)),
                         static_cast<std::uint8_t>(std::lround(v[1] * 255)),
                         static_cast<std::uint8_t>(std::lround(v[2] * 255))});
        }
    return out;
  }();
  while (colors.size() <= i) {
    Rgb best{};
    double best_distance = -1;
    for (const Rgb& c : candidates) {
      const auto l = lab(c);
      double nearest = INFINITY;
      for (const auto& t : taken) nearest = std::min(nearest, lab_distance(l, t));
      if (nearest > best_distance) best = c, best_distance = nearest;
    }
    colors.push_back(best);
    taken.push_back(lab(best));
  }
  return colors[i];
}

void set_colour(cairo_t* cr, Rgb c) { cairo_set_source_rgb(cr, c[0] / 255.0, c[1] / 255.0, c[2] / 255.0); }

// Fills [x0, x1) x [y0, y1); on whole pixels it is crisp.
void fill_rect(cairo_t* cr, double x0, double y0, double x1, double y1, Rgb c) {
  set_colour(cr, c);
  cairo_rectangle(cr, x0, y0, x1 - x0, y1 - y0);
  cairo_fill(cr);
}

void stroke_rect(cairo_t* cr, int x0, int y0, int x1, int y1, Rgb c) {
  set_colour(cr, c);
  cairo_set_line_width(cr, 1);
  cairo_rectangle(cr, x0 + 0.5, y0 + 0.5, x1 - x0 - 1, y1 - y0 - 1);  // the pixel row/column inside
  cairo_stroke(cr);
}

// Text with the top of its line box at y, starting at x; `up`: turned 90 degrees counter-clockwise
// (read bottom to top), with (x, y) the bottom-left corner of its line box.
void draw_text(cairo_t* cr, double x, double y, const std::string& s, double size, Rgb c, bool up = false) {
  select_font(cr, size);
  cairo_font_extents_t e;
  cairo_font_extents(cr, &e);
  set_colour(cr, c);
  cairo_save(cr);
  cairo_translate(cr, x, y);
  if (up) cairo_rotate(cr, -M_PI / 2);
  cairo_move_to(cr, 0, e.ascent);
  cairo_show_text(cr, printable(s).c_str());
  cairo_restore(cr);
}

// A polyline (a disc when it has one point) with round joins, and a dot on every point for
// `markers`; one path per series, so its joints are not darkened by overlapping segments.
void draw_curve(cairo_t* cr, const std::vector<std::pair<double, double>>& pixels, bool markers, double u, Rgb c) {
  set_colour(cr, c);
  if (pixels.size() > 1) {
    cairo_set_line_width(cr, line_width(u));
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    cairo_set_line_cap(cr, CAIRO_LINE_CAP_ROUND);
    cairo_move_to(cr, pixels[0].first, pixels[0].second);
    for (std::size_t k = 1; k < pixels.size(); ++k) cairo_line_to(cr, pixels[k].first, pixels[k].second);
    cairo_stroke(cr);
  }
  const double radius = markers ? marker_radius(u) : pixels.size() == 1 ? lone_point_radius(u) : 0;
  if (radius == 0) return;
  for (const auto& [x, y] : pixels) {
    cairo_new_sub_path(cr);
    cairo_arc(cr, x, y, radius, 0, 2 * M_PI);
  }
  cairo_fill(cr);
}

// What the layout does not decide: the words.
struct ChartText {
  std::string title, x_label, y_label;
};

void draw_chart(cairo_t* cr, const PlotLayout& l, const std::vector<PlotSeries>& series, const ChartText& text) {
  const TextMeasure measure;
  const double u = unit(l), font = l.font;
  const int line_h = static_cast<int>(std::lround(measure.line_height(font)));
  const double tick_len = std::lround(3 * u), pad = std::lround(4 * u);
  const int px0 = l.plot.x0, px1 = l.plot.x1, py0 = l.plot.y0, py1 = l.plot.y1;

  fill_rect(cr, 0, 0, l.width, l.height, kBackground);
  for (std::size_t i = 0; i < l.x.ticks.size(); ++i) {
    const double x = std::lround(px0 + l.x.tick_frac(i) * (px1 - px0));
    fill_rect(cr, x, py0, x + 1, py1, kGridColor);
    fill_rect(cr, x, py1, x + 1, py1 + tick_len, kAxisColor);
    draw_text(cr, x - measure.width(l.x.labels[i], font) / 2, py1 + tick_len + pad, l.x.labels[i], font, kTextColor);
  }
  for (std::size_t i = 0; i < l.y.ticks.size(); ++i) {
    const double y = std::lround(py1 - l.y.tick_frac(i) * (py1 - py0));
    fill_rect(cr, px0, y, px1, y + 1, kGridColor);
    fill_rect(cr, px0 - tick_len, y, px0, y + 1, kAxisColor);
    draw_text(cr, px0 - tick_len - pad - measure.width(l.y.labels[i], font), y + 0.5 - line_h / 2.0, l.y.labels[i],
              font, kTextColor);
  }
  stroke_rect(cr, px0, py0, px1 + 1, py1 + 1, kAxisColor);

  const std::string x_label = measure.fit(text.x_label, font, px1 - px0);
  draw_text(cr, (px0 + px1 - measure.width(x_label, font)) / 2, l.height - pad - line_h, x_label, font, kTextColor);
  const std::string y_label = measure.fit(text.y_label, font, py1 - py0);
  draw_text(cr, pad * 2, (py0 + py1 + measure.width(y_label, font)) / 2, y_label, font, kTextColor, true);
  const std::string title = measure.fit(text.title, title_size(font), l.width - 2 * pad);
  draw_text(cr, (l.width - measure.width(title, title_size(font))) / 2, pad, title, title_size(font), kTextColor);

  // Curves: training lines thin (they are noisy and dense), validation lines with dot markers.
  for (std::size_t i = 0; i < series.size(); ++i) {
    std::vector<std::pair<double, double>> pixels;
    for (const auto& [x, y] : series[i].points) pixels.push_back(l.to_pixel(x, y));
    draw_curve(cr, pixels, series[i].markers, u, series_color(i));
  }

  const PlotRect& b = l.legend;
  const double row_h = line_h + pad;
  fill_rect(cr, b.x0, b.y0, b.x1, b.y1, kBackground);
  stroke_rect(cr, b.x0, b.y0, b.x1, b.y1, kAxisColor);
  cairo_font_extents_t e;
  select_font(cr, font);
  cairo_font_extents(cr, &e);
  for (std::size_t i = 0; i < l.legend_entries.size(); ++i) {
    const double ty = b.y0 + pad + static_cast<double>(i) * row_h;
    const bool is_series = i + 1 < l.legend_entries.size() || l.legend_entries.size() == series.size();
    if (is_series) {
      const double cy = ty + e.ascent - 0.35 * font;  // the middle of a digit
      draw_curve(cr, {{b.x0 + pad, cy}, {l.legend_text_x - pad, cy}}, false, u, series_color(i));
      if (series[i].markers) draw_curve(cr, {{(b.x0 + l.legend_text_x) / 2.0, cy}}, true, u, series_color(i));
    }
    draw_text(cr, l.legend_text_x, ty, l.legend_entries[i], font, kTextColor);
  }
}

cairo_status_t append_to_string(void* closure, const unsigned char* data, unsigned int length) {
  static_cast<std::string*>(closure)->append(reinterpret_cast<const char*>(data), length);
  return CAIRO_STATUS_SUCCESS;
}

void check_cairo(cairo_status_t status, const std::string& path) {
  if (status != CAIRO_STATUS_SUCCESS)
    throw Error(str("cannot draw the chart for ", path, ": cairo says ", cairo_status_to_string(status)));
}

// Draws onto an RGB image encoded as PNG, or onto an SVG document (by the file name's extension),
// in memory, then writes the file atomically with checked writes.
template <typename Draw>
void write_chart(const std::string& path, int width, int height, Draw draw) {
  std::string ext = fs::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  if (ext != ".png" && ext != ".svg")
    throw Error(str("cannot tell which image format to write to ", path, ": name it *.png or *.svg"));
  std::string bytes;
  SurfacePtr surface(ext == ".svg" ? cairo_svg_surface_create_for_stream(append_to_string, &bytes, width, height)
                                   : cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height));
  check_cairo(cairo_surface_status(surface.get()), path);
  if (ext == ".svg") cairo_svg_surface_set_document_unit(surface.get(), CAIRO_SVG_UNIT_PX);
  {
    CairoPtr cr(cairo_create(surface.get()));
    draw(cr.get());
    check_cairo(cairo_status(cr.get()), path);
  }
  if (ext == ".png") check_cairo(cairo_surface_write_to_png_stream(surface.get(), append_to_string, &bytes), path);
  cairo_surface_finish(surface.get());  // an SVG surface writes its document here
  check_cairo(cairo_surface_status(surface.get()), path);
  write_file_atomic(path, bytes);
}

}  // namespace

std::array<std::uint8_t, 3> series_color(std::size_t i) { return generated_color(i); }

double PlotAxis::frac(double v) const { return ((log ? std::log10(v) : v) - lo) / (hi - lo); }

std::pair<double, double> PlotLayout::to_pixel(double xv, double yv) const {
  return {plot.x0 + x.frac(xv) * (plot.x1 - plot.x0), plot.y1 - y.frac(yv) * (plot.y1 - plot.y0)};
}

Ticks nice_ticks(double lo, double hi, int max_intervals) {
  CAIRN_ASSERT(std::isfinite(lo) && std::isfinite(hi) && lo <= hi, "bad tick range ", lo, "..", hi);
  max_intervals = std::max(max_intervals, 1);
  if (hi - lo <= 1e-12 * std::max(1.0, std::abs(lo))) {
    const double pad = lo == 0 ? 1.0 : 0.1 * std::abs(lo);
    lo -= pad;
    hi += pad;
  }
  const double mag = std::pow(10.0, std::floor(std::log10((hi - lo) / max_intervals)));
  Ticks t;
  // The smallest 1-2-5 step is at least (hi - lo) / max_intervals; widening the ends outwards to
  // whole steps can add an interval, so larger candidates follow.
  for (double m : {1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0}) {
    t.step = m * mag;
    const double a = std::floor(lo / t.step + 1e-9), b = std::ceil(hi / t.step - 1e-9);
    t.lo = a * t.step;
    t.hi = b * t.step;
    if (b - a <= max_intervals) break;
  }
  const long long n = std::llround((t.hi - t.lo) / t.step);
  for (long long i = 0; i <= n; ++i) t.ticks.push_back(t.lo + static_cast<double>(i) * t.step);
  return t;
}

std::string format_tick(double value, double step, double axis_max_abs) {
  if (std::abs(value) < step * 1e-6) return "0";
  double scale = 1;
  const char* suffix = "";
  if (axis_max_abs >= 1e9) {
    scale = 1e9, suffix = "G";
  } else if (axis_max_abs >= 1e6) {
    scale = 1e6, suffix = "M";
  } else if (axis_max_abs >= 1e4) {
    scale = 1e3, suffix = "k";
  }
  const int decimals = std::max(0, static_cast<int>(std::ceil(-std::log10(step / scale) - 1e-9)));
  char buf[48];
  if (decimals > 5)
    std::snprintf(buf, sizeof buf, "%.2g", value);
  else
    std::snprintf(buf, sizeof buf, "%.*f%s", decimals, value / scale, suffix);
  return buf;
}

MetricsRun read_metrics(const std::string& jsonl_path) {
  fs::path path = jsonl_path;
  if (fs::is_directory(path)) path /= "metrics.jsonl";  // a run directory works too
  if (!fs::exists(path))
    throw Error(str("metrics file ", path.string(),
                    " does not exist; pass the metrics.jsonl that "
                    "`cairn train` writes into its run directory"));
  std::ifstream in(path);
  if (!in) throw Error(str("cannot open metrics file ", path.string(), " for reading"));

  MetricsRun run;
  run.path = path.string();
  run.label = fs::absolute(path).lexically_normal().parent_path().filename().string();
  long long max_step = 0;
  std::string line;
  for (long long line_no = 1; std::getline(in, line); ++line_no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      throw Error(str(path.string(), ":", line_no, ": not valid JSON (", e.what(),
                      "); fix or delete that line"));
    }
    if (!j.is_object())
      throw Error(
          str(path.string(), ":", line_no, ": expected a JSON object, found ", j.type_name()));
    const auto step_it = j.find("step");
    if (step_it == j.end() || !step_it->is_number_integer()) continue;
    const long long step = step_it->get<long long>();
    if (!run.by_step.empty() && step < max_step)
      run.by_step.erase(run.by_step.lower_bound(step), run.by_step.end());
    max_step = step;
    auto& row = run.by_step[step];
    for (const auto& [key, value] : j.items())
      if (value.is_number() && std::isfinite(value.get<double>())) row[key] = value.get<double>();
  }
  return run;
}

std::vector<PlotSeries> plot_series(std::vector<MetricsRun> runs, const PlotOptions& opt) {
  // Runs from directories with the same name get "#2", "#3" so their legend entries differ.
  std::vector<std::string> labels;
  for (const auto& run : runs) labels.push_back(run.label);
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const auto same = std::count(labels.begin(), labels.begin() + static_cast<long>(i), labels[i]);
    if (same > 0) runs[i].label += str("#", same + 1);
  }
  const std::vector<std::string> keys = opt.y_keys.empty() ? default_keys(runs) : opt.y_keys;
  std::vector<PlotSeries> out;
  for (const auto& run : runs)
    for (const auto& key : keys) {
      PlotSeries s;
      s.name = runs.size() > 1 ? run.label + ": " + key : key;
      s.markers = key.rfind("val_", 0) == 0;
      s.points = points_of(run, opt.x_key, key, opt.log_y);
      if (s.points.empty()) continue;
      if (opt.y_keys.empty() && key == "val_loss" && duplicates_a_named_val_loss(run, s.points, keys, opt)) continue;
      out.push_back(std::move(s));
    }
  if (out.empty()) {
    std::set<std::string> present;
    std::vector<std::string> paths;
    for (const auto& run : runs) {
      paths.push_back(run.path);
      for (const auto& [step, row] : run.by_step)
        for (const auto& [key, value] : row) present.insert(key);
    }
    throw Error(str("nothing to plot: no line in ", join(paths, ", "), " has x key '", opt.x_key,
                    "' together with any of [", join(keys, ", "), "]",
                    opt.log_y ? " with a positive value" : "", "; keys present: [",
                    join({present.begin(), present.end()}, ", "), "]"));
  }
  return out;
}

PlotLayout plot_layout(const std::vector<PlotSeries>& series, const PlotOptions& opt) {
  double x_min = INFINITY, x_max = -INFINITY, y_min = INFINITY, y_max = -INFINITY;
  for (const auto& s : series)
    for (const auto& [x, y] : s.points) {
      x_min = std::min(x_min, x), x_max = std::max(x_max, x);
      y_min = std::min(y_min, y), y_max = std::max(y_max, y);
    }

  // Text grows with the image area: 14 px at the default 1000x600.
  PlotLayout l;
  const int W = l.width = opt.width, H = l.height = opt.height;
  const double font = l.font = std::clamp(std::sqrt(static_cast<double>(W) * H) / 55, 8.0, 64.0);
  const TextMeasure measure;
  const double u = unit(l);
  const int max_ticks = 10;  // per axis; more only clutters the grid
  const int line_h = static_cast<int>(std::lround(measure.line_height(font)));
  const int tick_len = static_cast<int>(std::lround(3 * u)), pad = static_cast<int>(std::lround(4 * u));
  const int top = pad * 2 + static_cast<int>(std::lround(measure.line_height(title_size(font))));
  const int bottom = tick_len + pad + line_h + pad + line_h + pad;
  const int right = pad * 2 + static_cast<int>(std::lround(measure.width("0000", font)));  // half the last x label
  const double plot_h = H - top - bottom;

  const auto make_y = [&](int n) { return opt.log_y ? log_axis(y_min, y_max, n) : linear_axis(y_min, y_max, n); };
  l.y = fitted_axis(make_y, std::min(max_ticks, static_cast<int>(plot_h / (2.5 * line_h))), plot_h,
                    [&](const std::string&, const std::string&) {
                      // Log ticks crowd towards the top: ask for more room there.
                      return opt.log_y ? 2.0 * line_h : line_h + pad;
                    });
  double y_label_w = 0;
  for (const auto& label : l.y.labels) y_label_w = std::max(y_label_w, measure.width(label, font));
  const int left = pad * 2 + line_h + pad + static_cast<int>(std::ceil(y_label_w)) + pad + tick_len;
  const auto place_x_axis = [&](int right_margin) {
    l.plot = {left, top, W - right_margin, H - bottom};
    const double plot_w = l.plot.x1 - l.plot.x0;
    l.x = fitted_axis([&](int n) { return linear_axis(x_min, x_max, n); },
                      std::min(max_ticks, static_cast<int>(plot_w / (4.0 * font))), plot_w,
                      [&](const std::string& a, const std::string& b) {
                        return (measure.width(a, font) + measure.width(b, font)) / 2.0 + 2 * pad;
                      });
  };
  place_x_axis(right);

  // Legend entries, as many as fit the plot area's height.
  const int row_h = line_h + pad, swatch = static_cast<int>(std::lround(8 * u));
  const int max_rows = std::max(1, (l.plot.y1 - l.plot.y0 - 4 * pad) / row_h);
  const auto fit_entries = [&](int max_text_w) {
    l.legend_entries.clear();
    for (std::size_t i = 0; i < series.size() && static_cast<int>(i) < max_rows; ++i)
      l.legend_entries.push_back(measure.fit(series[i].name, font, max_text_w));
    if (static_cast<int>(series.size()) > max_rows)
      l.legend_entries.back() = str("(", series.size() - max_rows + 1, " more)");
    double text_w = 0;
    for (const auto& e : l.legend_entries) text_w = std::max(text_w, measure.width(e, font));
    return std::pair{pad + swatch + pad + static_cast<int>(std::ceil(text_w)) + pad,
                     pad + static_cast<int>(l.legend_entries.size()) * row_h};
  };
  const auto place_legend = [&](const PlotRect& box) {
    l.legend = box;
    l.legend_text_x = box.x0 + pad + swatch + pad;
  };
  auto [box_w, box_h] = fit_entries((l.plot.x1 - l.plot.x0) / 2);
  const int inset = 2 * pad;
  const PlotRect& p = l.plot;
  const std::array<std::pair<int, int>, 4> corners = {{{p.x1 - inset - box_w, p.y0 + inset},
                                                       {p.x0 + inset, p.y0 + inset},
                                                       {p.x1 - inset - box_w, p.y1 - inset - box_h},
                                                       {p.x0 + inset, p.y1 - inset - box_h}}};
  for (const auto& [bx, by] : corners) {
    const PlotRect box{bx, by, bx + box_w, by + box_h};
    if (!covers_a_curve(l, series, box)) {
      place_legend(box);
      return l;
    }
  }
  // No free corner: beside the plot area, which gives up the room (at most a third of the width).
  std::tie(box_w, box_h) = fit_entries(W / 3 - swatch - 3 * pad);
  place_x_axis(box_w + pad + right);
  const int bx = W - pad - box_w;
  place_legend({bx, l.plot.y0, bx + box_w, l.plot.y0 + box_h});
  l.legend_outside = true;
  return l;
}

void plot_metrics(const std::vector<std::string>& jsonl_paths, const std::string& image_path,
                  const PlotOptions& opt) {
  if (jsonl_paths.empty()) throw Error("cairn plot: give at least one metrics.jsonl file");
  if (opt.width < 320 || opt.height < 200 || opt.width > 20000 || opt.height > 20000)
    throw Error(str("plot size ", opt.width, "x", opt.height,
                    " is out of range; use 320x200 to 20000x20000"));
  std::vector<MetricsRun> runs;
  for (const auto& p : jsonl_paths) runs.push_back(read_metrics(p));
  const std::vector<PlotSeries> series = plot_series(runs, opt);
  const PlotLayout l = plot_layout(series, opt);

  ChartText text;
  text.x_label = opt.x_key;
  bool all_loss = true;
  for (const auto& s : series) all_loss = all_loss && s.name.find("loss") != std::string::npos;
  text.y_label = all_loss ? "loss" : (opt.y_keys.size() == 1 ? opt.y_keys[0] : "value");
  if (opt.log_y) text.y_label += " (log scale)";
  text.title = opt.title;
  if (text.title.empty()) text.title = runs.size() == 1 ? runs[0].label : std::to_string(runs.size()) + " runs";
  write_chart(image_path, l.width, l.height, [&](cairo_t* cr) { draw_chart(cr, l, series, text); });
}

}  // namespace cairn
