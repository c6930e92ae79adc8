// TensorBoard event files (see tensorboard.h). The few protobuf fields needed are written with the
// wire format directly: a key is (field number << 3 | wire type), wire types 0 varint, 1 fixed64,
// 2 length-delimited, 5 fixed32. Field numbers from tensorflow/core/util/event.proto and
// tensorflow/core/framework/summary.proto.
#include "trainer/tensorboard.h"

#include <unistd.h>

#include <array>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "util/error.h"

namespace cairn {

namespace {

const std::array<uint32_t, 256> kCrcTable = [] {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    t[i] = c;
  }
  return t;
}();

void put_varint(std::string& out, uint64_t v) {
  for (; v >= 0x80; v >>= 7) out += char((v & 0x7F) | 0x80);
  out += char(v);
}

template <typename T>
void put_fixed(std::string& out, T v) {  // little-endian hosts only, like the checkpoint hashes
  char b[sizeof v];
  std::memcpy(b, &v, sizeof v);
  out.append(b, sizeof v);
}

void put_bytes(std::string& out, int field, const std::string& bytes) {
  put_varint(out, (uint64_t(field) << 3) | 2);
  put_varint(out, bytes.size());
  out += bytes;
}

// tensorflow.Event: wall_time = 1 (double), step = 2 (int64); one of file_version = 3 (string),
// summary = 5 (Summary), session_log = 7 (SessionLog; 6 is the deprecated log_message).
std::string event(double wall_time, int64_t step) {
  std::string e;
  put_varint(e, (1 << 3) | 1);
  put_fixed(e, wall_time);
  put_varint(e, (2 << 3) | 0);
  put_varint(e, uint64_t(step));
  return e;
}

double now_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

// Creates the directory: the file name alone cannot.
std::string created_file_name(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw Error(str("cannot create TensorBoard directory '", dir, "': ", ec.message()));
  return tensorboard_file_name(dir);
}

}  // namespace

uint32_t crc32c(const void* data, size_t n, uint32_t crc) {
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = kCrcTable[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

uint32_t masked_crc32c(const void* data, size_t n) {
  const uint32_t c = crc32c(data, n);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

std::string tensorboard_file_name(const std::string& dir) {
  char host[256] = "localhost";
  if (gethostname(host, sizeof host - 1) != 0) std::strcpy(host, "localhost");
  host[sizeof host - 1] = '\0';
  return str(dir, "/events.out.tfevents.", int64_t(std::time(nullptr)), ".", host);
}

TensorBoardWriter::TensorBoardWriter(const std::string& dir, int64_t first_step)
    : file_(created_file_name(dir), OutputFile::Mode::append) {
  const double t = now_seconds();
  std::string version = event(t, 0);
  put_bytes(version, 3, "brain.Event:2");
  record(version);
  std::string start = event(t, first_step + 1);
  std::string session_log;  // tensorflow.SessionLog: status = 1 (enum; START = 1)
  put_varint(session_log, (1 << 3) | 0);
  put_varint(session_log, 1);
  put_bytes(start, 7, session_log);
  record(start);
}

void TensorBoardWriter::scalars(int64_t step, double wall_time,
                                const std::vector<std::pair<std::string, double>>& values) {
  std::string summary;  // tensorflow.Summary: repeated Value value = 1
  for (const auto& [tag, v] : values) {
    std::string value;  // Summary.Value: tag = 1 (string), simple_value = 2 (float)
    put_bytes(value, 1, tag);
    put_varint(value, (2 << 3) | 5);
    put_fixed(value, float(v));
    put_bytes(summary, 1, value);
  }
  std::string e = event(wall_time, step);
  put_bytes(e, 5, summary);
  record(e);
}

// One TFRecord, written in one call so that a failure leaves no partial record behind.
void TensorBoardWriter::record(const std::string& data) {
  std::string rec;
  const uint64_t length = data.size();
  put_fixed(rec, length);
  put_fixed(rec, masked_crc32c(&length, sizeof length));
  rec += data;
  put_fixed(rec, masked_crc32c(data.data(), data.size()));
  file_.write(rec);
}

}  // namespace cairn
