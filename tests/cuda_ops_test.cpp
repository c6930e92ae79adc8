// The CUDA backend against the CPU oracle: every record of tests/cuda_cases.cpp as one test case
// (skipped, not passed, where no CUDA device is present), and the errors a user gets without one.
#include <gtest/gtest.h>

#include "model/backend.h"
#include "tests/cuda_cases.h"
#include "trainer/config.h"
#include "util/error.h"

namespace cairn {

// Found by argument-dependent lookup: test names show the check, not its bytes.
void PrintTo(const CudaCheck& c, std::ostream* os) { *os << c.name; }

namespace {

class CudaOps : public ::testing::TestWithParam<CudaCheck> {};

TEST_P(CudaOps, MatchesCpu) {
  if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
  Checker c;
  GetParam().run(c);
  EXPECT_TRUE(c.ok()) << GetParam().name << ":\n" << c.report();
  std::printf("%s:\n%s", GetParam().name.c_str(), c.report().c_str());
}

INSTANTIATE_TEST_SUITE_P(Cuda, CudaOps, ::testing::ValuesIn(cuda_checks()),
                         [](const auto& info) { return info.param.name; });

TEST(CudaBackend, WithoutDeviceSaysWhy) {
  if (cuda_device_available()) GTEST_SKIP() << "a CUDA device is present";
  for (CudaMath math : {CudaMath::fp32, CudaMath::tf32, CudaMath::bf16}) {
    try {
      cuda_backend(math);
      FAIL() << "cuda_backend() returned without a device";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("device = \"cpu\""), std::string::npos) << e.what();
    }
  }
  TrainConfig cfg;
  cfg.device = "cuda";
  EXPECT_THROW(config_validate(cfg), Error);
  cfg.training.precision = "bf16";
  EXPECT_THROW(config_validate(cfg), Error);
}

}  // namespace
}  // namespace cairn
