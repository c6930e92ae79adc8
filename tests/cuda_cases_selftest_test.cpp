// The CUDA check table run with a second CPU backend in the GPU's place: every check must pass
// (the two backends compute identically), so a check whose own plumbing is wrong (buffer sizes,
// shapes, the comparison, the resume harness) fails here, in CI, before it ever reaches a GPU.
// A second CpuBackend is not cpu_backend(), so code that branches on "host or not" (SLTrain's
// device copy of its support) takes its off-host path, as it would on the GPU.
#include <gtest/gtest.h>

#include "model/cpu/cpu_backend.h"
#include "tests/cuda_cases.h"

namespace cairn {

void PrintTo(const CudaCheck& c, std::ostream* os) { *os << c.name; }

namespace {

class CudaCasesOnCpu : public ::testing::TestWithParam<CudaCheck> {
 protected:
  static void SetUpTestSuite() {
    static const CpuBackend stand_in;
    set_backend_under_test([](CudaMath) -> const Backend& { return stand_in; });
  }
};

TEST_P(CudaCasesOnCpu, PassesAgainstItself) {
  Checker c;
  GetParam().run(c);
  EXPECT_TRUE(c.ok()) << c.report();
}

INSTANTIATE_TEST_SUITE_P(SelfTest, CudaCasesOnCpu, ::testing::ValuesIn(cuda_checks()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace cairn
