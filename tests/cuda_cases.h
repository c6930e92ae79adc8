// The CUDA-vs-CPU check table, shared by the GoogleTest program (cuda_ops_test) and the
// standalone runner (cuda_check, for GPU machines without GoogleTest). Each check runs one op —
// or the whole model — on the CPU backend (the oracle) and on the CUDA backend from the same
// inputs and compares the outputs elementwise: |gpu − cpu| ≤ atol + rtol·|cpu|, with the
// tolerances stated per check. Calling a check needs a CUDA device (or a substitute, below).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "model/llama.h"
#include "util/rng.h"

namespace cairn {

// The backend the checks run as "the GPU": cuda_backend(math) unless overridden. The self-test
// (cuda_cases_selftest_test) substitutes a second CPU backend, so that every check's own plumbing
// (buffer sizes, harness, tolerances of exact checks) runs in CI on machines without a GPU.
using BackendUnderTest = std::function<const Backend&(CudaMath)>;
void set_backend_under_test(BackendUnderTest backend);
const Backend& backend_under_test(CudaMath math = CudaMath::fp32);

// The small model of every whole-model check (odd vocabulary, 2 layers, off the kernels' block
// sizes): rank 16 for the factored kinds, density 0.05 for SLTrain.
inline ModelConfig check_model_config(LinearKind kind = LinearKind::dense) {
  ModelConfig cfg;
  cfg.vocab_size = 97;
  cfg.dim = 64;
  cfg.n_layers = 2;
  cfg.n_heads = 4;
  cfg.ffn_dim = 160;
  cfg.seq_len = 32;
  cfg.linear.kind = kind;
  if (kind != LinearKind::dense) cfg.linear.rank = 16;
  if (kind == LinearKind::sltrain) cfg.linear.density = 0.05f;
  return cfg;
}

// Inputs and targets for n token positions of a check model (ids below its vocabulary of 97),
// drawn alternately from one seeded generator.
struct CheckTokens {
  std::vector<int32_t> inputs, targets;
};
inline CheckTokens check_tokens(int64_t n, uint64_t seed) {
  CheckTokens t{std::vector<int32_t>(static_cast<size_t>(n)), std::vector<int32_t>(static_cast<size_t>(n))};
  Rng r(seed);
  for (size_t i = 0; i < size_t(n); ++i) {
    t.inputs[i] = int32_t(r.next_u64() % 97);
    t.targets[i] = int32_t(r.next_u64() % 97);
  }
  return t;
}

// Expectations about the CUDA backend's own behaviour (which attention path runs, its limits) apply
// only when the backend under test is CUDA, not a stand-in (cuda_cases_selftest_test).
inline bool is_cuda(const Backend& be) { return be.name().rfind("cuda", 0) == 0; }
// A backend that rounds GEMM inputs to bf16 itself ("cuda-bf16", "cpu-bf16"), not a stand-in that
// computes the bf16 checks in fp32: the checks of the rounding itself apply to it.
inline bool rounds_to_bf16(const Backend& be) {
  const std::string n = be.name();
  return n.size() >= 5 && n.compare(n.size() - 5, 5, "-bf16") == 0;
}

// n floats of a backend's memory, copied to the host.
inline std::vector<float> download(const Backend& be, const float* p, int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  be.copy_to_host(v.data(), p, n * 4);
  return v;
}

// Collects comparisons; a check fails when any comparison fails.
class Checker {
 public:
  // Compares ref (CPU) with got (GPU); records the worst error relative to the tolerance.
  void expect_close(const std::string& what, const std::vector<float>& ref, const std::vector<float>& got,
                    double rtol, double atol);
  void expect_close(const std::string& what, double ref, double got, double rtol, double atol);
  void expect(bool ok, const std::string& what);
  bool ok() const { return failures_ == 0; }
  // One line per comparison: its name, the worst |err| / tolerance, and pass or FAIL.
  const std::string& report() const { return report_; }

 private:
  int failures_ = 0;
  std::string report_;
};

struct CudaCheck {
  std::string name;
  std::function<void(Checker&)> run;
};

// Every check: the op and model table (cuda_cases.cpp), then the training checks.
std::vector<CudaCheck> cuda_checks();
// Resume and device hand-off at the training level (cuda_training_cases.cpp).
std::vector<CudaCheck> cuda_training_checks();
// The step's machinery (cuda_step_cases.cpp): upload staging, CUDA graph replay of a micro-step,
// attention's workspace growth in T, the MFU peak.
std::vector<CudaCheck> cuda_step_checks();

}  // namespace cairn
