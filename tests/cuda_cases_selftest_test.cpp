// The CUDA check table run with the CPU in the GPU's place: every check must pass (the two compute
// identically), so a check whose own plumbing is wrong (buffer sizes, shapes, the comparison, the
// resume harness) fails here, in CI, before it ever reaches a GPU. The stand-in is the CPU behind
// the CUDA graph protocol (tests/graph_emulation.h: micro-steps recorded and replayed with their
// arguments as captured), so the model's graph brackets and keys are checked too; and it is not
// cpu_backend(), so code that branches on "host or not" (SLTrain's device copy of its support)
// takes its off-host path, as it would on the GPU.
#include <gtest/gtest.h>

#include "tests/cuda_cases.h"
#include "tests/graph_emulation.h"

namespace cairn {

void PrintTo(const CudaCheck& c, std::ostream* os) { *os << c.name; }

namespace {

class CudaCasesOnCpu : public ::testing::TestWithParam<CudaCheck> {
 protected:
  static void SetUpTestSuite() {
    static const GraphEmulationBackend stand_in;
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
