// Run metrics: one JSON object per log interval appended to <run_dir>/metrics.jsonl (rank 0
// only), the same as one console line, and a live progress bar with ETA when stdout is a terminal.
#pragma once

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "model/backend.h"

namespace cairn {

class MetricsLog {
 public:
  // enabled = false (ranks other than 0) makes every call a no-op.
  MetricsLog(const std::string& jsonl_path, bool enabled, int64_t total_steps, bool progress_bar = true);
  ~MetricsLog();
  // Appends a record and prints it as a console line.
  void log(const nlohmann::json& record);
  // Redraws the progress bar (terminal only) after step `step` of total.
  void progress(int64_t step, double elapsed_s);
  // A plain message line (keeps the progress bar below it).
  void message(const std::string& line);

 private:
  void clear_bar();
  bool enabled_, tty_;
  int64_t total_steps_;
  std::ofstream out_;
  bool bar_shown_ = false;
};

// "1h02m", "3m05s", "12.3s".
std::string format_duration(double seconds);

}  // namespace cairn
