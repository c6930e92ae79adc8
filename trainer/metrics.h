// Run metrics: one JSON object per log interval appended to <run_dir>/metrics.jsonl and the same
// scalars to TensorBoard event files (rank 0 only), one console line each, and a live progress bar
// with ETA when stdout is a terminal.
#pragma once

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "trainer/tensorboard.h"
#include "util/file_io.h"

namespace cairn {

class MetricsLog {
 public:
  struct Options {
    std::string jsonl_path;       // appended to (a resumed run's records follow the stopped run's)
    std::string tensorboard_dir;  // "": no event files
    int64_t first_step = 0;       // the step this process starts from (see TensorBoardWriter)
    int64_t total_steps = 0;
    bool progress_bar = true;
  };
  // enabled = false (ranks other than 0) makes every call a no-op. Throws Error naming the file
  // when an output cannot be opened.
  MetricsLog(const Options& options, bool enabled);
  ~MetricsLog();
  // Appends a record (its numbers, but "step", as TensorBoard scalars) and prints it as a console
  // line. Throws Error naming the file and the reason when a write fails (a full disk); a record is
  // then whole or absent in each file.
  void log(const nlohmann::json& record);
  // Redraws the progress bar (terminal only) after step `step` of total.
  void progress(int64_t step, double elapsed_s);
  // A plain message line (keeps the progress bar below it).
  void message(const std::string& line);

 private:
  void clear_bar();
  bool enabled_, tty_;
  int64_t total_steps_;
  std::unique_ptr<OutputFile> out_;
  std::unique_ptr<TensorBoardWriter> tensorboard_;
  bool bar_shown_ = false;
};

// "1h02m", "3m05s", "12.3s".
std::string format_duration(double seconds);

}  // namespace cairn
