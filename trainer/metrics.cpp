// Metrics logging and the console display (see metrics.h).
#include "trainer/metrics.h"

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <vector>

#include "util/error.h"

namespace cairn {

// A record whose write was cut short (full disk, crash) is a last line without its newline: the
// next record appended would be glued to it, and both would be unreadable. Cuts the file back to
// its last complete line.
static void drop_incomplete_last_line(const std::string& path) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec || size == 0) return;
  std::ifstream in(path, std::ios::binary);
  std::vector<char> buf(4096);
  for (uintmax_t end = size; end > 0;) {
    const uintmax_t begin = end > buf.size() ? end - buf.size() : 0;
    in.seekg(std::streamoff(begin));
    in.read(buf.data(), std::streamsize(end - begin));
    if (!in) return;  // unreadable: leave it to the append to report
    for (uintmax_t i = end; i > begin; --i) {
      if (buf[size_t(i - 1 - begin)] != '\n') continue;
      if (i != size) std::filesystem::resize_file(path, i);
      return;
    }
    end = begin;
  }
  std::filesystem::resize_file(path, 0);  // no complete line at all
}

MetricsLog::MetricsLog(const Options& o, bool enabled)
    : enabled_(enabled), tty_(enabled && o.progress_bar && isatty(STDOUT_FILENO)), total_steps_(o.total_steps) {
  if (!enabled_) return;
  drop_incomplete_last_line(o.jsonl_path);
  out_ = std::make_unique<OutputFile>(o.jsonl_path, OutputFile::Mode::append);
  if (!o.tensorboard_dir.empty()) tensorboard_ = std::make_unique<TensorBoardWriter>(o.tensorboard_dir, o.first_step);
}

MetricsLog::~MetricsLog() {
  if (bar_shown_) std::cout << "\n";
}

void MetricsLog::clear_bar() {
  if (bar_shown_) std::cout << "\r\033[K";
  bar_shown_ = false;
}

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  if (s < 60) return str(std::round(s * 10) / 10, "s");
  const int64_t t = int64_t(s);
  char buf[32];
  if (t < 3600) std::snprintf(buf, sizeof buf, "%ldm%02lds", long(t / 60), long(t % 60));
  else std::snprintf(buf, sizeof buf, "%ldh%02ldm", long(t / 3600), long(t / 60 % 60));
  return buf;
}

static std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

static std::string si(double v) {
  char buf[64];
  if (v >= 1e6) std::snprintf(buf, sizeof buf, "%.2fM", v / 1e6);
  else if (v >= 1e3) std::snprintf(buf, sizeof buf, "%.1fk", v / 1e3);
  else std::snprintf(buf, sizeof buf, "%.0f", v);
  return buf;
}

void MetricsLog::log(const nlohmann::json& r) {
  if (!enabled_) return;
  out_->write(r.dump() + "\n");
  if (tensorboard_) {
    std::vector<std::pair<std::string, double>> scalars;
    for (const auto& [k, v] : r.items())
      if (k != "step" && v.is_number()) scalars.emplace_back(k, v.get<double>());
    const double wall = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    tensorboard_->scalars(r.value("step", int64_t(0)), wall, scalars);
  }
  std::string line = str("step ", r.value("step", 0), "/", total_steps_);
  if (r.contains("loss")) line += " | loss " + fixed(r["loss"].get<double>(), 4);
  for (const auto& [k, v] : r.items())
    if (k.rfind("val_loss", 0) == 0) line += " | " + (k == "val_loss" ? std::string("val") : k.substr(9)) + " " + fixed(v.get<double>(), 4);
  if (r.contains("lr")) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2e", r["lr"].get<double>());
    line += str(" | lr ", buf);
  }
  if (r.contains("grad_norm")) line += " | gnorm " + fixed(r["grad_norm"].get<double>(), 3);
  if (r.contains("tokens_per_s")) line += " | " + si(r["tokens_per_s"].get<double>()) + " tok/s";
  if (r.contains("mfu")) line += " | MFU " + fixed(100 * r["mfu"].get<double>(), 1) + "%";
  if (r.contains("elapsed_s")) line += " | " + format_duration(r["elapsed_s"].get<double>());
  if (r.contains("eta_s")) line += " (ETA " + format_duration(r["eta_s"].get<double>()) + ")";
  message(line);
}

void MetricsLog::message(const std::string& line) {
  if (!enabled_) return;
  clear_bar();
  std::cout << line << std::endl;
}

void MetricsLog::progress(int64_t step, double elapsed_s) {
  if (!tty_) return;
  const int width = 30;
  const double frac = double(step) / double(total_steps_);
  const int filled = int(frac * width);
  std::string bar(size_t(filled), '#');
  bar.resize(width, '.');
  const double eta = step > 0 ? elapsed_s / double(step) * double(total_steps_ - step) : NAN;
  std::cout << "\r\033[K[" << bar << "] " << fixed(100 * frac, 1) << "% step " << step << "/" << total_steps_
            << " ETA " << format_duration(eta) << std::flush;
  bar_shown_ = true;
}

}  // namespace cairn
