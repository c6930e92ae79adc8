// TensorBoard event files (trainer/tensorboard.h): CRC-32C against published check values, and the
// records read back by an independent decoder of the TFRecord framing and of the protobuf wire
// format (each record's two CRCs, the file_version and SessionLog START events, the scalars).
// tools/reference/check_tensorboard.py reads a real run's files with TensorBoard itself.
#include "trainer/tensorboard.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "tests/test_support.h"
#include "trainer/metrics.h"

namespace cairn {
namespace {

namespace fs = std::filesystem;

TEST(Crc32c, MatchesTheCheckValues) {
  // RFC 3720 (iSCSI), appendix B.4, and the CRC catalogue's check value for "123456789".
  const std::string digits = "123456789";
  EXPECT_EQ(crc32c(digits.data(), digits.size()), 0xE3069283u);
  std::vector<unsigned char> bytes(32, 0);
  EXPECT_EQ(crc32c(bytes.data(), bytes.size()), 0x8A9136AAu);
  std::fill(bytes.begin(), bytes.end(), 0xFF);
  EXPECT_EQ(crc32c(bytes.data(), bytes.size()), 0x62A8AB43u);
  for (int i = 0; i < 32; ++i) bytes[size_t(i)] = static_cast<unsigned char>(i);
  EXPECT_EQ(crc32c(bytes.data(), bytes.size()), 0x46DD794Eu);
  for (int i = 0; i < 32; ++i) bytes[size_t(i)] = static_cast<unsigned char>(31 - i);
  EXPECT_EQ(crc32c(bytes.data(), bytes.size()), 0x113FDB5Cu);
  // Continuing a CRC equals one pass over the whole input.
  EXPECT_EQ(crc32c(digits.data() + 4, 5, crc32c(digits.data(), 4)), 0xE3069283u);
  // TFRecord's mask: rotate right by 15, add 0xa282ead8.
  EXPECT_EQ(masked_crc32c(digits.data(), digits.size()), ((0xE3069283u >> 15) | (0xE3069283u << 17)) + 0xa282ead8u);
}

// ---- an independent reader -------------------------------------------------------------------

struct Field {
  int number = 0, wire = 0;
  uint64_t value = 0;     // varint, fixed64, fixed32
  std::string bytes;      // length-delimited
};

uint64_t varint(const std::string& s, size_t& pos) {
  uint64_t v = 0;
  for (int shift = 0;; shift += 7) {
    if (pos >= s.size() || shift > 63) throw std::runtime_error("truncated varint");
    const auto b = static_cast<unsigned char>(s[pos++]);
    v |= uint64_t(b & 0x7F) << shift;
    if (!(b & 0x80)) return v;
  }
}

std::vector<Field> fields(const std::string& msg) {
  std::vector<Field> out;
  for (size_t pos = 0; pos < msg.size();) {
    const uint64_t key = varint(msg, pos);
    Field f;
    f.number = int(key >> 3);
    f.wire = int(key & 7);
    if (f.wire == 0) {
      f.value = varint(msg, pos);
    } else if (f.wire == 1 || f.wire == 5) {
      const size_t n = f.wire == 1 ? 8 : 4;
      if (pos + n > msg.size()) throw std::runtime_error("truncated fixed field");
      std::memcpy(&f.value, msg.data() + pos, n);
      pos += n;
    } else if (f.wire == 2) {
      const uint64_t n = varint(msg, pos);
      if (pos + n > msg.size()) throw std::runtime_error("truncated bytes field");
      f.bytes = msg.substr(pos, n);
      pos += n;
    } else {
      throw std::runtime_error("unexpected wire type");
    }
    out.push_back(std::move(f));
  }
  return out;
}

struct Event {
  double wall_time = 0;
  int64_t step = 0;
  std::string file_version;
  int64_t session_status = -1;
  std::vector<std::pair<std::string, float>> scalars;
};

Event decode_event(const std::string& data) {
  Event e;
  for (const auto& f : fields(data)) {
    if (f.number == 1 && f.wire == 1) std::memcpy(&e.wall_time, &f.value, 8);
    if (f.number == 2 && f.wire == 0) e.step = int64_t(f.value);
    if (f.number == 3 && f.wire == 2) e.file_version = f.bytes;
    if (f.number == 7 && f.wire == 2)  // session_log (6 is the deprecated log_message)
      for (const auto& s : fields(f.bytes))
        if (s.number == 1) e.session_status = int64_t(s.value);
    if (f.number == 5 && f.wire == 2)
      for (const auto& v : fields(f.bytes)) {
        EXPECT_EQ(v.number, 1);
        std::pair<std::string, float> scalar;
        for (const auto& x : fields(v.bytes)) {
          if (x.number == 1) scalar.first = x.bytes;
          if (x.number == 2 && x.wire == 5) {
            const auto bits = uint32_t(x.value);
            std::memcpy(&scalar.second, &bits, 4);
          }
        }
        e.scalars.push_back(scalar);
      }
  }
  return e;
}

uint32_t masked(const std::string& s) {  // the mask written out again, from crc32c alone
  const uint32_t c = crc32c(s.data(), s.size());
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

// Every record of an event file, each record's CRCs checked.
std::vector<Event> read_events(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  const std::string file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<Event> out;
  for (size_t pos = 0; pos < file.size();) {
    EXPECT_LE(pos + 12, file.size()) << "truncated record header";
    const std::string len_bytes = file.substr(pos, 8);
    uint64_t len = 0;
    uint32_t len_crc = 0, data_crc = 0;
    std::memcpy(&len, len_bytes.data(), 8);
    std::memcpy(&len_crc, file.data() + pos + 8, 4);
    EXPECT_EQ(len_crc, masked(len_bytes));
    EXPECT_LE(pos + 12 + len + 4, file.size()) << "truncated record";
    const std::string data = file.substr(pos + 12, len);
    std::memcpy(&data_crc, file.data() + pos + 12 + len, 4);
    EXPECT_EQ(data_crc, masked(data));
    out.push_back(decode_event(data));
    pos += 12 + len + 4;
  }
  return out;
}

std::vector<std::string> event_files(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().rfind("events.out.tfevents.", 0) == 0) out.push_back(e.path().string());
  return out;
}

class TensorBoardTest : public ScratchDirTest {};

TEST_F(TensorBoardTest, RecordsReadBackWithTheirCrcs) {
  {
    TensorBoardWriter w(path("tb"), 7);
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    const std::string prefix = path("tb") + "/events.out.tfevents.";
    ASSERT_EQ(w.path().rfind(prefix, 0), 0u) << w.path();
    const std::string rest = w.path().substr(prefix.size());  // <unix seconds>.<host>
    EXPECT_EQ(rest.substr(rest.find('.') + 1), host);
    EXPECT_NEAR(std::stod(rest.substr(0, rest.find('.'))), double(std::time(nullptr)), 5);
    w.scalars(8, 1.7e9 + 0.25, {{"loss", 2.5}, {"val_loss/wiki", 3.0}, {"lr", 3e-4}});
    w.scalars(9, 1.7e9 + 1.5, {{"loss", 2.25}});
  }
  const auto files = event_files(path("tb"));
  ASSERT_EQ(files.size(), 1u);
  EXPECT_NE(files[0].find(".tfevents."), std::string::npos);
  const auto events = read_events(files[0]);
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0].file_version, "brain.Event:2");
  EXPECT_GT(events[0].wall_time, 1e9);
  EXPECT_EQ(events[1].session_status, 1);  // SessionLog START
  EXPECT_EQ(events[1].step, 8);            // purges what earlier files hold from step 8 on
  EXPECT_EQ(events[2].step, 8);
  EXPECT_EQ(events[2].wall_time, 1.7e9 + 0.25);
  ASSERT_EQ(events[2].scalars.size(), 3u);
  EXPECT_EQ(events[2].scalars[0], (std::pair<std::string, float>{"loss", 2.5f}));
  EXPECT_EQ(events[2].scalars[1], (std::pair<std::string, float>{"val_loss/wiki", 3.0f}));
  EXPECT_EQ(events[2].scalars[2], (std::pair<std::string, float>{"lr", 3e-4f}));
  EXPECT_EQ(events[3].step, 9);
  EXPECT_EQ(events[3].scalars, (std::vector<std::pair<std::string, float>>{{"loss", 2.25f}}));
}

TEST_F(TensorBoardTest, MetricsLogWritesTheRecordsNumbersAsScalars) {
  MetricsLog::Options o;
  o.jsonl_path = path("metrics.jsonl");
  o.tensorboard_dir = path("tb");
  o.first_step = 0;
  o.total_steps = 10;
  o.progress_bar = false;
  {
    MetricsLog log(o, true);
    log.log({{"step", 5}, {"loss", 4.5}, {"tokens", 640}, {"note", "text is not a scalar"}});
  }
  const auto events = read_events(event_files(path("tb")).at(0));
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[1].step, 1);
  EXPECT_EQ(events[2].step, 5);
  EXPECT_EQ(events[2].scalars, (std::vector<std::pair<std::string, float>>{{"loss", 4.5f}, {"tokens", 640.0f}}));
  std::ifstream in(path("metrics.jsonl"));
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(nlohmann::json::parse(line)["loss"], 4.5);
}

TEST_F(TensorBoardTest, DisabledWritesNoEventFiles) {
  MetricsLog::Options o;
  o.jsonl_path = path("metrics.jsonl");
  o.total_steps = 1;
  o.progress_bar = false;
  MetricsLog(o, true).log({{"step", 1}, {"loss", 1.0}});
  EXPECT_FALSE(fs::exists(path("tb")));
  EXPECT_TRUE(fs::exists(path("metrics.jsonl")));
}

}  // namespace
}  // namespace cairn
