// Standalone runner of the CUDA-vs-CPU checks (tests/cuda_cases.cpp) for GPU machines without
// GoogleTest: prints the CUDA libraries it loaded, each check's comparisons (flushed per check, so
// a run killed by a time limit keeps what it did), then "N passed, M failed". Exit status 0 when
// all pass, 1 when any fails or the CUDA module does not load (its loader's message printed), 77
// (CTest's skip code here) when the module loads but no CUDA device is usable (the runtime's
// reason printed). Arguments run only the checks whose names contain one of them (e.g.
// `cuda_check attention_fp32` under compute-sanitizer); `--libraries` stops after the libraries
// and the device (bench/gpu_check.sh's first look). "RUN name" precedes each check, so a check
// that hangs or crashes is named in the output.
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "tests/cuda_cases.h"
#include "util/cuda_module.h"

int main(int argc, char** argv) {
  using namespace cairn;
  std::vector<std::string> only(argv + 1, argv + argc);
  const bool libraries_only = !only.empty() && only[0] == "--libraries";
  if (const std::string& why = cuda_module_error(); !why.empty()) {
    std::printf("FAIL: %s\n", why.c_str());
    return 1;
  }
  std::printf("libraries: %s\n", cuda_library_versions().c_str());
  if (const std::string why = cuda_unavailable_reason(); !why.empty()) {
    std::printf("SKIP: no CUDA device (%s)\n", why.c_str());
    return 77;
  }
  if (libraries_only) return 0;
  const auto selected = [&](const std::string& name) {
    if (only.empty()) return true;
    for (const std::string& part : only)
      if (name.find(part) != std::string::npos) return true;
    return false;
  };
  int passed = 0, failed = 0;
  for (const CudaCheck& check : cuda_checks()) {
    if (!selected(check.name)) continue;
    std::printf("RUN %s\n", check.name.c_str());
    std::fflush(stdout);
    Checker c;
    try {
      check.run(c);
    } catch (const std::exception& e) {
      c.expect(false, std::string("threw: ") + e.what());
    }
    std::printf("%s %s\n%s", c.ok() ? "PASS" : "FAIL", check.name.c_str(), c.report().c_str());
    std::fflush(stdout);
    (c.ok() ? passed : failed) += 1;
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
