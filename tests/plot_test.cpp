// Tests for `cairn plot` (launch/plot.h): the metrics reader (resume semantics, errors), the choice
// of curves (no val_loss duplicating a val_loss/<name>, total_tokens across stages), the tick chooser
// and label format, distinct colours for many series, a legend that covers no curve (checked on the
// layout and on the pixels), the rendered PNG read back with cairo (size, ink in the plot area,
// series colours, a falling curve drawn high on the left and low on the right), and the same chart
// as SVG (size, one stroked path in each series' colour).
#include "launch/plot.h"

#include <gtest/gtest.h>
#include <cairo.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "util/error.h"

namespace cairn {
namespace {

namespace fs = std::filesystem;

struct Image {
  int width = 0, height = 0;
  std::vector<std::uint8_t> rgb;
  std::array<std::uint8_t, 3> at(int x, int y) const {
    const std::size_t i = (static_cast<std::size_t>(y) * width + x) * 3;
    return {rgb[i], rgb[i + 1], rgb[i + 2]};
  }
};

Image read_png(const std::string& path) {
  cairo_surface_t* s = cairo_image_surface_create_from_png(path.c_str());
  EXPECT_EQ(cairo_surface_status(s), CAIRO_STATUS_SUCCESS) << cairo_status_to_string(cairo_surface_status(s));
  cairo_surface_flush(s);
  Image out{cairo_image_surface_get_width(s), cairo_image_surface_get_height(s), {}};
  const int stride = cairo_image_surface_get_stride(s);
  const unsigned char* data = cairo_image_surface_get_data(s);
  for (int y = 0; y < out.height && data; ++y)
    for (int x = 0; x < out.width; ++x) {
      std::uint32_t px;  // native-endian 0xAARRGGBB; the chart is opaque
      std::memcpy(&px, data + static_cast<std::size_t>(y) * stride + 4 * x, 4);
      for (int shift : {16, 8, 0}) out.rgb.push_back(static_cast<std::uint8_t>(px >> shift));
    }
  cairo_surface_destroy(s);
  return out;
}

class PlotTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(CAIRN_BINARY_DIR) / "plot_test" /
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }

  // Writes `lines` to <dir>/<run>/metrics.jsonl and returns the file's path.
  std::string write_run(const std::string& run, const std::vector<std::string>& lines) {
    fs::create_directories(dir_ / run);
    const fs::path p = dir_ / run / "metrics.jsonl";
    std::ofstream out(p);
    for (const auto& l : lines) out << l << "\n";
    return p.string();
  }

  // A training loss falling from ~10 to ~3 over 200 steps, validation every 50 steps.
  std::vector<std::string> falling_curve(double offset = 0) {
    std::vector<std::string> lines;
    for (int step = 1; step <= 200; ++step) {
      const double loss = 3 + offset + 7 * std::exp(-step / 40.0);
      lines.push_back("{\"step\": " + std::to_string(step) +
                      ", \"tokens\": " + std::to_string(step * 4096) +
                      ", \"loss\": " + std::to_string(loss) + ", \"lr\": 0.0003}");
      if (step % 50 == 0)
        lines.push_back("{\"step\": " + std::to_string(step) +
                        ", \"val_loss\": " + std::to_string(loss + 0.2) +
                        ", \"val_loss/wiki\": " + std::to_string(loss + 0.4) + "}");
    }
    return lines;
  }

  std::string png() const { return (dir_ / "out.png").string(); }

  fs::path dir_;
};

// Pixels of exactly `colour` (the opaque core of a curve), counted per image third.
struct ColourStats {
  long count = 0;
  double mean_y_left = 0, mean_y_right = 0;
};
ColourStats colour_stats(const Image& img, std::array<std::uint8_t, 3> colour) {
  ColourStats st;
  long left = 0, right = 0;
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < img.width; ++x) {
      if (img.at(x, y) != colour) continue;
      ++st.count;
      if (x < img.width / 3) st.mean_y_left += y, ++left;
      if (x > 2 * img.width / 3) st.mean_y_right += y, ++right;
    }
  if (left) st.mean_y_left /= left;
  if (right) st.mean_y_right /= right;
  return st;
}

TEST(NiceTicks, ChoosesOneTwoFiveSteps) {
  Ticks t = nice_ticks(0.37, 4.2, 10);
  EXPECT_DOUBLE_EQ(t.step, 0.5);
  EXPECT_DOUBLE_EQ(t.lo, 0.0);
  EXPECT_DOUBLE_EQ(t.hi, 4.5);
  ASSERT_EQ(t.ticks.size(), 10u);
  EXPECT_NEAR(t.ticks[3], 1.5, 1e-12);

  t = nice_ticks(0.37, 4.2, 5);
  EXPECT_DOUBLE_EQ(t.step, 1.0);
  EXPECT_DOUBLE_EQ(t.hi, 5.0);

  t = nice_ticks(0, 1000, 8);
  EXPECT_DOUBLE_EQ(t.step, 200.0);
  EXPECT_EQ(t.ticks.size(), 6u);

  t = nice_ticks(-3.3, 7.1, 6);
  EXPECT_DOUBLE_EQ(t.step, 2.0);
  EXPECT_DOUBLE_EQ(t.lo, -4.0);
  EXPECT_DOUBLE_EQ(t.hi, 8.0);

  t = nice_ticks(2.5, 2.5, 4);  // a flat series still gets a range around its value
  EXPECT_LT(t.lo, 2.5);
  EXPECT_GT(t.hi, 2.5);
}

TEST(FormatTick, DecimalsFollowStepAndLargeValuesGetSuffixes) {
  EXPECT_EQ(format_tick(1.5, 0.5, 4.5), "1.5");
  EXPECT_EQ(format_tick(2.0, 1.0, 5.0), "2");
  EXPECT_EQ(format_tick(0.0004, 0.0002, 0.001), "0.0004");
  EXPECT_EQ(format_tick(1e-17, 0.5, 4.5), "0");
  EXPECT_EQ(format_tick(1.5e9, 5e8, 2e9), "1.5G");
  EXPECT_EQ(format_tick(400000, 200000, 1e6), "0.4M");
  EXPECT_EQ(format_tick(20000, 10000, 50000), "20k");
}

TEST_F(PlotTest, ResumedRunReplacesStepsFromTheResumePoint) {
  const auto path = write_run("run", {
                                         R"({"step": 1, "loss": 5.0})",
                                         R"({"step": 2, "loss": 4.0})",
                                         R"({"step": 3, "loss": 3.9})",
                                         R"({"step": 3, "val_loss": 4.2})",
                                         R"({"note": "config line without a step"})",
                                         "",
                                         R"({"step": 2, "loss": 3.5})",  // resumed from step 1
                                         R"({"step": 3, "loss": 3.4, "lr": null})",
                                     });
  const MetricsRun run = read_metrics(path);
  EXPECT_EQ(run.label, "run");
  ASSERT_EQ(run.by_step.size(), 3u);
  EXPECT_DOUBLE_EQ(run.by_step.at(1).at("loss"), 5.0);
  EXPECT_DOUBLE_EQ(run.by_step.at(2).at("loss"), 3.5);
  EXPECT_DOUBLE_EQ(run.by_step.at(3).at("loss"), 3.4);
  EXPECT_EQ(run.by_step.at(3).count("val_loss"), 0u);  // belonged to the replaced run
  EXPECT_EQ(run.by_step.at(3).count("lr"), 0u);
}

TEST_F(PlotTest, DrawsFallingCurveHighOnTheLeftLowOnTheRight) {
  const auto path = write_run("falling", falling_curve());
  PlotOptions opt;
  opt.y_keys = {"loss"};
  plot_metrics({path}, png(), opt);
  ASSERT_TRUE(fs::exists(png()));
  EXPECT_FALSE(fs::exists(png() + ".tmp"));

  const Image img = read_png(png());
  ASSERT_EQ(img.width, 1000);
  ASSERT_EQ(img.height, 600);
  long ink = 0;  // the middle of the image lies inside the plot area
  for (int y = img.height / 4; y < 3 * img.height / 4; ++y)
    for (int x = img.width / 4; x < 3 * img.width / 4; ++x)
      ink += img.at(x, y) != std::array<std::uint8_t, 3>{255, 255, 255};
  EXPECT_GT(ink, 100);

  const ColourStats st = colour_stats(img, series_color(0));
  EXPECT_GT(st.count, 200);
  EXPECT_LT(st.mean_y_left + 100, st.mean_y_right) << "a falling loss must sit lower on the right";
  EXPECT_EQ(colour_stats(img, series_color(1)).count, 0);  // only one series
}

TEST_F(PlotTest, DefaultKeysAndSeveralRunsGetTheirOwnColours) {
  const auto a = write_run("runA", falling_curve());
  const auto b = write_run("runB", falling_curve(1.0));
  PlotOptions opt;
  opt.width = 800;
  opt.height = 500;
  opt.log_y = true;
  opt.x_key = "tokens";
  plot_metrics({a, b}, png(), opt);
  const Image img = read_png(png());
  ASSERT_EQ(img.width, 800);
  ASSERT_EQ(img.height, 500);
  // Two runs x (loss, val_loss, val_loss/wiki) = six series, each visible.
  for (std::size_t i = 0; i < 6; ++i)
    EXPECT_GT(colour_stats(img, series_color(i)).count, 10) << "series " << i;
  EXPECT_EQ(colour_stats(img, series_color(6)).count, 0);
}

TEST_F(PlotTest, SvgByExtensionHoldsOneStrokedPathPerSeries) {
  const auto a = write_run("runA", falling_curve());
  const auto b = write_run("runB", falling_curve(1.0));
  PlotOptions opt;
  opt.width = 800;
  opt.height = 500;
  const std::string svg_path = (dir_ / "chart.SVG").string();  // the extension in any case
  plot_metrics({a, b}, svg_path, opt);
  EXPECT_FALSE(fs::exists(svg_path + ".tmp"));
  std::ifstream in(svg_path);
  std::stringstream buf;
  buf << in.rdbuf();
  const std::string svg = buf.str();
  ASSERT_EQ(svg.rfind("<?xml", 0), 0u) << svg.substr(0, 200);
  EXPECT_NE(svg.find("<svg"), std::string::npos);
  EXPECT_NE(svg.find("width=\"800px\""), std::string::npos);
  EXPECT_NE(svg.find("height=\"500px\""), std::string::npos);
  EXPECT_EQ(svg.find("<image"), std::string::npos) << "drawn as vectors, not a raster inside an SVG";
  // Stroke colours as cairo writes them: rgb(r%,g%,b%).
  std::multiset<std::array<int, 3>> strokes;
  const std::regex stroke(R"(stroke:rgb\(([0-9.]+)%,([0-9.]+)%,([0-9.]+)%\))");
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), stroke); it != std::sregex_iterator(); ++it)
    strokes.insert({static_cast<int>(std::lround(std::stod((*it)[1]) * 2.55)),
                    static_cast<int>(std::lround(std::stod((*it)[2]) * 2.55)),
                    static_cast<int>(std::lround(std::stod((*it)[3]) * 2.55))});
  const auto count = [&](std::size_t i) {
    const auto c = series_color(i);
    return strokes.count({c[0], c[1], c[2]});
  };
  for (std::size_t i = 0; i < 6; ++i) EXPECT_EQ(count(i), 2u) << "series " << i << ": its curve and its legend swatch";
  EXPECT_EQ(count(6), 0u);
}

TEST_F(PlotTest, OutputNameMustSayPngOrSvg) {
  const auto path = write_run("run", falling_curve());
  const std::string pdf = (dir_ / "chart.pdf").string();
  try {
    plot_metrics({path}, pdf, PlotOptions{});
    FAIL() << "a .pdf name accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(".svg"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(pdf));
}

TEST_F(PlotTest, ValLossIdenticalToANamedSetIsDrawnOnce) {
  // Several validation sets: the trainer writes val_loss = the first set's val_loss/<name>.
  std::vector<std::string> lines;
  for (int step = 10; step <= 50; step += 10)
    lines.push_back(str("{\"step\": ", step, ", \"loss\": ", 5.0 - step / 20.0, ", \"val_loss\": ", 6.0 - step / 25.0,
                        ", \"val_loss/en\": ", 6.0 - step / 25.0, ", \"val_loss/de\": ", 7.0 - step / 30.0, "}"));
  const auto several = write_run("several", lines);
  std::vector<std::string> names;
  for (const auto& s : plot_series({read_metrics(several)}, PlotOptions{})) names.push_back(s.name);
  EXPECT_EQ(names, (std::vector<std::string>{"loss", "val_loss/de", "val_loss/en"}));

  PlotOptions asked;  // asked for by name, it is drawn
  asked.y_keys = {"val_loss"};
  EXPECT_EQ(plot_series({read_metrics(several)}, asked).size(), 1u);

  // A val_loss of its own (one validation set, or values that differ) stays.
  const auto own = write_run("own", falling_curve());
  names.clear();
  for (const auto& s : plot_series({read_metrics(own)}, PlotOptions{})) names.push_back(s.name);
  EXPECT_EQ(names, (std::vector<std::string>{"loss", "val_loss", "val_loss/wiki"}));
}

TEST_F(PlotTest, TotalTokensContinuesAStageOneRunAndOlderRecordsUseTokens) {
  const auto stage1 = write_run("stage1", {R"({"step": 1, "tokens": 100, "total_tokens": 100, "loss": 5.0})",
                                           R"({"step": 2, "tokens": 200, "total_tokens": 200, "loss": 4.0})"});
  // Started from stage 1's weights with training.tokens_before = 200.
  const auto stage2 = write_run("stage2", {R"({"step": 1, "tokens": 100, "total_tokens": 300, "loss": 3.5})",
                                           R"({"step": 2, "tokens": 200, "total_tokens": 400, "loss": 3.0})"});
  const auto older = write_run("older", {R"({"step": 1, "tokens": 50, "loss": 6.0})"});  // before total_tokens
  PlotOptions opt;
  opt.x_key = "total_tokens";
  const auto series = plot_series({read_metrics(stage1), read_metrics(stage2), read_metrics(older)}, opt);
  ASSERT_EQ(series.size(), 3u);
  EXPECT_EQ(series[0].points, (std::vector<std::pair<double, double>>{{100, 5.0}, {200, 4.0}}));
  EXPECT_EQ(series[1].points, (std::vector<std::pair<double, double>>{{300, 3.5}, {400, 3.0}}));
  EXPECT_EQ(series[2].points, (std::vector<std::pair<double, double>>{{50, 6.0}}));
  opt.x_key = "tokens";  // this run's tokens: stage 2 starts again at the left
  EXPECT_EQ(plot_series({read_metrics(stage2)}, opt)[0].points.front().first, 100);
}

TEST(SeriesColor, ManySeriesGetDistinctColours) {
  const std::vector<std::array<std::uint8_t, 3>> chart = {{255, 255, 255}, {228, 228, 228}, {70, 70, 70}, {20, 20, 20}};
  auto distance = [](const std::array<std::uint8_t, 3>& a, const std::array<std::uint8_t, 3>& b) {
    return std::hypot(a[0] - b[0], a[1] - b[1], a[2] - b[2]);
  };
  for (std::size_t i = 0; i < 32; ++i) {
    for (const auto& c : chart) EXPECT_GT(distance(series_color(i), c), 30) << "series " << i << " looks like the chart";
    for (std::size_t j = 0; j < i; ++j)
      EXPECT_GT(distance(series_color(i), series_color(j)), 30) << "series " << i << " and " << j;
  }
  EXPECT_EQ(series_color(20), series_color(20));  // stable
}

TEST_F(PlotTest, SixteenRunsAreEachVisibleInTheirOwnColour) {
  std::vector<std::string> paths;
  for (int r = 0; r < 16; ++r) {
    std::vector<std::string> lines;
    for (int step = 1; step <= 40; ++step)
      lines.push_back(str("{\"step\": ", step, ", \"loss\": ", 3 + r * 0.5 + 2 * std::exp(-step / 10.0), "}"));
    paths.push_back(write_run(str("run", r), lines));
  }
  plot_metrics(paths, png(), PlotOptions{});
  const Image img = read_png(png());
  for (std::size_t i = 0; i < 16; ++i) EXPECT_GT(colour_stats(img, series_color(i)).count, 10) << "series " << i;
}

// Whether any point of the curves, sampled every half pixel along each segment, lies within
// `margin` pixels of the box (independent of the layout's own clipping test).
bool curve_near(const PlotLayout& l, const std::vector<PlotSeries>& series, const PlotRect& box, double margin) {
  for (const auto& s : series)
    for (std::size_t k = 0; k < s.points.size(); ++k) {
      const auto [x0, y0] = l.to_pixel(s.points[k].first, s.points[k].second);
      const auto [x1, y1] = k + 1 < s.points.size() ? l.to_pixel(s.points[k + 1].first, s.points[k + 1].second)
                                                    : std::pair{x0, y0};
      const int n = 1 + static_cast<int>(2 * std::hypot(x1 - x0, y1 - y0));
      for (int i = 0; i <= n; ++i) {
        const double x = x0 + (x1 - x0) * i / n, y = y0 + (y1 - y0) * i / n;
        if (x > box.x0 - margin && x < box.x1 + margin && y > box.y0 - margin && y < box.y1 + margin) return true;
      }
    }
  return false;
}

TEST_F(PlotTest, LegendSitsInACornerFreeOfCurves) {
  const auto path = write_run("falling", falling_curve());
  const auto series = plot_series({read_metrics(path)}, PlotOptions{});
  const PlotLayout l = plot_layout(series, PlotOptions{});
  EXPECT_FALSE(l.legend_outside);
  EXPECT_EQ(l.legend_entries, (std::vector<std::string>{"loss", "val_loss", "val_loss/wiki"}));
  // Inside the plot area, clear of every curve.
  EXPECT_GE(l.legend.x0, l.plot.x0);
  EXPECT_LE(l.legend.x1, l.plot.x1);
  EXPECT_GE(l.legend.y0, l.plot.y0);
  EXPECT_LE(l.legend.y1, l.plot.y1);
  EXPECT_FALSE(curve_near(l, series, l.legend, 2));
  EXPECT_LT(l.legend.y1, (l.plot.y0 + l.plot.y1) / 2) << "a falling curve leaves the top right free";
  EXPECT_GT(l.legend.x0, (l.plot.x0 + l.plot.x1) / 2);
}

TEST_F(PlotTest, LegendGoesBesideThePlotWhenEveryCornerHasACurve) {
  // An X: one curve from top left to bottom right, one from bottom left to top right.
  std::vector<std::string> lines;
  for (int step = 0; step <= 100; ++step)
    lines.push_back(str("{\"step\": ", step, ", \"loss\": ", 10 - 0.08 * step, ", \"val_loss\": ", 2 + 0.08 * step, "}"));
  const auto path = write_run("crossing", lines);
  PlotOptions opt;
  const auto series = plot_series({read_metrics(path)}, opt);
  const PlotLayout l = plot_layout(series, opt);
  ASSERT_TRUE(l.legend_outside);
  EXPECT_GT(l.legend.x0, l.plot.x1);
  EXPECT_LE(l.legend.x1, l.width);
  EXPECT_FALSE(curve_near(l, series, l.legend, 2));

  // On the pixels: inside the legend box, right of the swatches, only text and background.
  plot_metrics({path}, png(), opt);
  const Image img = read_png(png());
  const int text_x0 = l.legend_text_x;
  for (std::size_t i = 0; i < series.size(); ++i) {
    long inside = 0;
    for (int y = l.legend.y0; y < l.legend.y1; ++y)
      for (int x = text_x0; x < l.legend.x1; ++x) inside += img.at(x, y) == series_color(i);
    EXPECT_EQ(inside, 0) << "series " << i << " drawn under the legend";
  }
  EXPECT_GT(colour_stats(img, series_color(0)).count, 200);
  EXPECT_GT(colour_stats(img, series_color(1)).count, 200);
}

TEST_F(PlotTest, ErrorsNameTheProblem) {
  PlotOptions opt;
  try {
    plot_metrics({(dir_ / "nope" / "metrics.jsonl").string()}, png(), opt);
    FAIL() << "missing file accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not exist"), std::string::npos) << e.what();
  }

  const auto bad = write_run("bad", {R"({"step": 1, "loss": 2.0})", "", R"({"step": 2, "loss": )"});
  try {
    plot_metrics({bad}, png(), opt);
    FAIL() << "bad JSON accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("metrics.jsonl:3:"), std::string::npos) << e.what();
  }

  const auto no_loss = write_run("noloss", {R"({"step": 1, "lr": 0.1, "grad_norm": 1.5})"});
  try {
    plot_metrics({no_loss}, png(), opt);
    FAIL() << "empty plot accepted";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("grad_norm"), std::string::npos) << msg;
    EXPECT_NE(msg.find("lr"), std::string::npos) << msg;
  }
  EXPECT_FALSE(fs::exists(png()));
}

}  // namespace
}  // namespace cairn
