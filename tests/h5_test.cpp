// util/h5: round trips of every element type, attributes, groups, append and hyperslab reads, the
// errors for missing and non-HDF5 files, and a failed write (disk full) ending in an error, not a crash.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <iostream>

#include "tests/test_support.h"
#include "util/error.h"
#include "util/h5.h"

namespace cairn {
namespace {

// Each test's files live in its own scratch directory.
class H5 : public ScratchDirTest {};

template <typename T>
void round_trip(H5File& f, const std::string& name) {
  std::vector<T> v(2 * 3 * 4);
  for (size_t i = 0; i < v.size(); ++i) v[i] = T(i * 7 % 23 + 1);
  write_dataset(f, name, v.data(), {2, 3, 4});
  H5Array<T> back = read_dataset<T>(f, name);
  EXPECT_EQ(back.shape, (std::vector<int64_t>{2, 3, 4})) << name;
  EXPECT_EQ(back.data, v) << name;
  EXPECT_EQ(f.dataset_shape(name), (std::vector<int64_t>{2, 3, 4}));
}

TEST_F(H5, AWriteThatFailsForLackOfSpaceIsAnErrorAndTheProcessExitsCleanly) {
  // A full disk, simulated by a file size limit (EFBIG instead of ENOSPC) in a child process: the
  // write must throw Error, and exiting afterwards must not crash in HDF5's own cleanup (it did,
  // with SIGSEGV, over the file whose close had failed: cairn train exited 139 on a full disk).
  const std::string file = path("big.h5");
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::signal(SIGXFSZ, SIG_IGN);
    const rlimit limit{64 * 1024, 64 * 1024};
    ::setrlimit(RLIMIT_FSIZE, &limit);
    int code = 2;  // no error: the test fails
    try {
      H5File f = H5File::create(file);
      const std::vector<float> v(size_t(1) << 16, 1.0f);
      {
        H5Group g = H5Group::create(f, "params");
        for (int i = 0; i < 4; ++i) write_dataset(g, "w" + std::to_string(i), v.data(), {int64_t(v.size())});
      }
      f.close();
    } catch (const Error& e) {
      std::cerr << "error (expected): " << e.what() << std::endl;
      code = 1;
    }
    std::exit(code);  // runs the atexit handlers, HDF5's among them
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "the child died of signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  EXPECT_EQ(WEXITSTATUS(status), 1);
}

TEST_F(H5, EveryTypeRoundTrips) {
  const std::string file = path("types.h5");
  {
    H5File f = H5File::create(file);
    round_trip<float>(f, "f32");
    round_trip<double>(f, "f64");
    round_trip<int32_t>(f, "i32");
    round_trip<int64_t>(f, "i64");
    round_trip<uint8_t>(f, "u8");
    round_trip<uint16_t>(f, "u16");
    round_trip<uint32_t>(f, "u32");
  }
  H5File f = H5File::open(file);
  EXPECT_EQ(read_dataset<uint16_t>(f, "u16").data[5], uint16_t(5 * 7 % 23 + 1));
  // Conversion on read: stored uint16, read as float and int64.
  EXPECT_FLOAT_EQ(read_dataset<float>(f, "u16").data[3], float(3 * 7 % 23 + 1));
  EXPECT_EQ(read_dataset<int64_t>(f, "f32").data[2], 15);
}

TEST_F(H5, GroupsAttributesAndScalars) {
  const std::string file = path("attrs.h5");
  {
    H5File f = H5File::create(file);
    H5Group g = H5Group::create(f, "a/b/c");
    float x = 2.5f;
    write_dataset(g, "x", &x, {});
    write_dataset(f, "d/e", &x, {1});
    write_attr_int(f, "step", int64_t(1) << 40);
    write_attr_double(g, "lr", 3e-4);
    write_attr_string(f, "name", "cairn");
    write_attr_string(f, "empty", "");
    write_attr_int(f, "n", 7, "d/e");
    write_attr_int(f, "step", 5);  // overwrite
  }
  H5File f = H5File::open(file);
  EXPECT_TRUE(f.has("a/b/c/x"));
  EXPECT_TRUE(f.has("d/e"));
  EXPECT_FALSE(f.has("a/b/z"));
  EXPECT_FALSE(f.has("q/r"));
  EXPECT_EQ(f.dataset_shape("a/b/c/x"), std::vector<int64_t>{});
  EXPECT_EQ(read_attr_int(f, "step"), 5);
  EXPECT_DOUBLE_EQ(read_attr_double(f, "lr", "a/b/c"), 3e-4);
  H5Group g = H5Group::open(f, "a/b/c");
  EXPECT_DOUBLE_EQ(read_attr_double(g, "lr"), 3e-4);
  EXPECT_EQ(read_attr_string(f, "name"), "cairn");
  EXPECT_EQ(read_attr_string(f, "empty"), "");
  EXPECT_EQ(read_attr_int(f, "n", "d/e"), 7);
  EXPECT_TRUE(has_attr(f, "name"));
  EXPECT_FALSE(has_attr(f, "nope"));
  EXPECT_FALSE(has_attr(f, "n", "missing/path"));
  EXPECT_THROW(read_attr_int(f, "nope"), Error);
  EXPECT_THROW(read_attr_string(f, "step"), Error);
  EXPECT_THROW(read_dataset<float>(f, "missing"), Error);
}

TEST_F(H5, AppendAndHyperslab) {
  const std::string file = path("append.h5");
  std::vector<uint32_t> all;
  {
    H5File f = H5File::create(file);
    H5Dataset1D d = H5Dataset1D::create_extendable<uint16_t>(f, "t", 100);
    for (int part = 0; part < 5; ++part) {
      std::vector<uint32_t> v(size_t(37 + part * 50));
      for (auto& x : v) x = uint32_t(all.size() * 31 % 60000), all.push_back(x);
      d.append(v.data(), int64_t(v.size()));
    }
    EXPECT_EQ(d.size(), int64_t(all.size()));
  }
  H5File f = H5File::open(file);
  H5Dataset1D d = H5Dataset1D::open(f, "t");
  EXPECT_EQ(d.size(), int64_t(all.size()));
  EXPECT_EQ(d.element_size(), 2u);
  EXPECT_TRUE(d.is_unsigned_integer());
  for (int64_t start : {0, 1, 99, 100, 150, int(all.size()) - 10}) {
    std::vector<int32_t> out(10);
    d.read(start, 10, out.data());
    for (int i = 0; i < 10; ++i) EXPECT_EQ(uint32_t(out[size_t(i)]), all[size_t(start + i)]);
  }
  std::vector<int32_t> out(20);
  EXPECT_THROW(d.read(int64_t(all.size()) - 5, 10, out.data()), Error);
  EXPECT_THROW(d.read(-1, 2, out.data()), Error);
}

TEST_F(H5, MissingAndGarbageFiles) {
  try {
    H5File::open(path("does_not_exist.h5"));
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does_not_exist.h5"), std::string::npos);
  }
  std::string garbage = path("garbage.h5");
  std::ofstream(garbage) << "this is not HDF5 at all\n";
  try {
    H5File::open(garbage);
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not an HDF5 file"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace cairn
