// TensorBoard event files: the run's scalars in the format TensorFlow's summary writers produce, so
// `tensorboard --logdir RUN_DIR/tb` (or a directory of runs) shows the training curves. Encoded by
// hand, without a protobuf dependency (format: docs/formats.md, "TensorBoard event files"): a file
// is a sequence of TFRecords
//   uint64 length | uint32 masked_crc32c(length bytes) | data[length] | uint32 masked_crc32c(data)
// (little-endian) whose data are serialized tensorflow.Event messages.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "util/file_io.h"

namespace cairn {

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), continuing from `crc` (0 to start).
uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);
// TFRecord's masked CRC: rotate right by 15 bits, add 0xa282ead8.
uint32_t masked_crc32c(const void* data, size_t n);

class TensorBoardWriter {
 public:
  // Creates `dir` if needed and appends to <dir>/events.out.tfevents.<unix seconds>.<host> (a new
  // file per process start, as TensorBoard expects). Writes the file_version event "brain.Event:2",
  // then a SessionLog START event at step first_step + 1: on it TensorBoard drops the steps above
  // first_step that earlier files of the directory hold (a run resumed from an older checkpoint
  // repeats those steps). Throws Error naming the file on any failure, as do the writes below.
  TensorBoardWriter(const std::string& dir, int64_t first_step);
  // One Event at `step` (wall_time in seconds since the epoch) holding one simple_value per scalar,
  // written through to the file.
  void scalars(int64_t step, double wall_time, const std::vector<std::pair<std::string, double>>& values);
  const std::string& path() const { return file_.path(); }

 private:
  void record(const std::string& event);
  OutputFile file_;
};

// The event file name for a directory, this host and now.
std::string tensorboard_file_name(const std::string& dir);

}  // namespace cairn
