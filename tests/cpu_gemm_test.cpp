// The CPU backend's GEMM libraries (backend/cpu/gemm.h): which one a mode uses (the first of the
// mode unless CAIRN_CPU_GEMM_FP32 / _BF16 names another; a name the build lacks is an error listing
// the choices), that cpu_backend() multiplies with that one, and that every fp32 library computes
// the same products as a plain loop on every transpose, alpha and beta.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "util/error.h"
#include "util/rng.h"

namespace cairn {
namespace {

TEST(CpuGemm, EachModesDefaultIsItsFirstLibrary) {
  for (CpuMath m : {CpuMath::fp32, CpuMath::bf16}) {
    const CpuGemm* first = nullptr;
    for (const CpuGemm& g : cpu_gemms())
      if (!first && g.math == m) first = &g;
    ASSERT_NE(first, nullptr) << cpu_math_name(m);
    EXPECT_EQ(&cpu_gemm_named(m, nullptr), first);
    EXPECT_EQ(&cpu_gemm_named(m, ""), first);
  }
}

TEST(CpuGemm, EveryLibraryCanBeNamed) {
  for (const CpuGemm& g : cpu_gemms()) EXPECT_EQ(&cpu_gemm_named(g.math, g.name.c_str()), &g) << g.name;
}

TEST(CpuGemm, AnUnknownNameIsAnErrorListingTheChoices) {
  try {
    cpu_gemm_named(CpuMath::fp32, "mkl");
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("CAIRN_CPU_GEMM_FP32='mkl'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("'openblas'"), std::string::npos) << msg;
  }
  // A bf16 library's name is not an fp32 one.
  EXPECT_THROW(cpu_gemm_named(CpuMath::fp32, "widened openblas"), Error);
}

// CTest runs the op, model and golden tests once per fp32 library through this variable: the
// backend they test must be the one it names.
TEST(CpuGemm, TheBackendUsesTheLibraryTheEnvironmentNames) {
  for (CpuMath m : {CpuMath::fp32, CpuMath::bf16}) {
    const auto& be = static_cast<const CpuBackend&>(cpu_backend(m));
    EXPECT_EQ(&be.gemm(), &cpu_gemm(m));
    const char* named = std::getenv(cpu_gemm_variable(m));
    if (named && *named) {
      EXPECT_EQ(be.gemm().name, named);
    }
    EXPECT_NE(be.device_summary().find(str(cpu_math_name(m), " GEMMs: ", be.gemm().name)), std::string::npos)
        << be.device_summary();
  }
}

// out = alpha·op(a)·op(b) + beta·out in double, row-major as CpuGemm::run.
std::vector<double> reference(const std::vector<float>& a, const std::vector<float>& b, const std::vector<float>& c0,
                              int64_t M, int64_t N, int64_t K, bool ta, bool tb, float alpha, float beta) {
  std::vector<double> out(size_t(M * N));
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k)
        s += double(a[size_t(ta ? k * M + i : i * K + k)]) * double(b[size_t(tb ? j * K + k : k * N + j)]);
      out[size_t(i * N + j)] = alpha * s + beta * double(c0[size_t(i * N + j)]);
    }
  return out;
}

TEST(CpuGemm, EveryFp32LibraryMatchesAPlainLoop) {
  constexpr int64_t M = 37, N = 29, K = 53;  // odd sizes: the libraries' edge kernels
  Rng rng(5);
  std::vector<float> a(size_t(M * K)), b(size_t(K * N)), c0(size_t(M * N));
  for (auto& x : a) x = rng.normal();
  for (auto& x : b) x = rng.normal();
  for (auto& x : c0) x = rng.normal();
  for (const CpuGemm& g : cpu_gemms()) {
    if (g.math != CpuMath::fp32) continue;
    for (int t = 0; t < 4; ++t)
      for (float beta : {0.0f, 1.0f}) {
        const bool ta = t & 1, tb = t & 2;
        const float alpha = 0.5f;
        std::vector<float> c = c0;
        g.run(c.data(), a.data(), b.data(), M, N, K, ta, tb, alpha, beta);
        const std::vector<double> want = reference(a, b, c0, M, N, K, ta, tb, alpha, beta);
        double worst = 0;
        for (size_t i = 0; i < c.size(); ++i) worst = std::max(worst, std::abs(double(c[i]) - want[i]));
        EXPECT_LT(worst, 1e-4) << g.name << " trans_a " << ta << " trans_b " << tb << " beta " << beta;
      }
  }
}

}  // namespace
}  // namespace cairn
