// Standalone runner of the CUDA-vs-CPU checks (tests/cuda_cases.cpp) for GPU machines without
// GoogleTest: prints each check's comparisons, then "N passed, M failed". Exit status 0 when all
// pass, 1 when any fails, 77 (CTest's skip code here) when no CUDA device is present. An argument
// runs only the checks whose names contain it (e.g. `cuda_check attention_fp32` under compute-sanitizer).
#include <cstdio>
#include <exception>
#include <string>

#include "model/backend.h"
#include "tests/cuda_cases.h"

int main(int argc, char** argv) {
  using namespace cairn;
  const std::string only = argc > 1 ? argv[1] : "";
  if (!cuda_device_available()) {
    std::printf("SKIP: no CUDA device\n");
    return 77;
  }
  int passed = 0, failed = 0;
  for (const CudaCheck& check : cuda_checks()) {
    if (check.name.find(only) == std::string::npos) continue;
    Checker c;
    try {
      check.run(c);
    } catch (const std::exception& e) {
      c.expect(false, std::string("threw: ") + e.what());
    }
    std::printf("%s %s\n%s", c.ok() ? "PASS" : "FAIL", check.name.c_str(), c.report().c_str());
    (c.ok() ? passed : failed) += 1;
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
