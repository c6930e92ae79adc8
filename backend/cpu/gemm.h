// The GEMM libraries behind the CPU backend's matmul, per math mode, and the one each mode uses.
// fp32: OpenBLAS sgemm, and oneDNN's sgemm when built with oneDNN. bf16: oneDNN's matmul on bf16
// operands with fp32 accumulation (it dispatches AVX512-BF16/AMX kernels where the CPU has them);
// and, always, "widened": the bf16 operands widened back to fp32 for OpenBLAS sgemm — the same
// numbers (bf16 products are exact in fp32) at fp32 speed, so bf16 training works in every build.
// Debian's OpenBLAS 0.3.21 is built without bfloat16, so its cblas_sbgemm is declared but absent.
//
// Each mode's library is the first of its list unless the environment names another
// (CAIRN_CPU_GEMM_FP32, CAIRN_CPU_GEMM_BF16), not picked at start-up by timing: a run then
// reproduces bit for bit (libraries sum in different orders), and every library that can be chosen
// is one the op and model tests passed (CTest runs them once per fp32 library). The order is what
// bench/gemm_bench measured on the model's shapes (oneDNN sgemm ~9% ahead of OpenBLAS on every one);
// gemm_bench prints the choice beside the fastest library here, and the trainer prints the choice.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "backend/backend.h"

namespace cairn {

struct CpuGemm {
  std::string name;  // "openblas", "onednn", "widened openblas"
  CpuMath math;
  // out[M,N] = alpha·op(a)·op(b) + beta·out, row-major and dense as Backend::matmul (a is [K,M] when
  // trans_a, b [N,K] when trans_b). a and b are floats in fp32 mode, bf16 bit patterns (uint16_t,
  // backend/bf16.h) in bf16 mode; out is fp32 in both. M, N, K ≥ 1. Throws Error on a library error.
  void (*run)(float* out, const void* a, const void* b, int64_t M, int64_t N, int64_t K, bool trans_a,
              bool trans_b, float alpha, float beta);
  // Bytes of fp32 staging the library needs per operand float on top of the bf16 operands (the
  // widened library's fp32 copies: 4), for the memory plan.
  int64_t extra_bytes_per_operand_float = 0;
};

// Every library built in, each mode's in order of preference.
const std::vector<CpuGemm>& cpu_gemms();
// The library of mode `math` called `name` (cpu_gemms()' name), or the mode's first when name is
// null or empty. Throws Error naming the mode's libraries when none is called `name`.
const CpuGemm& cpu_gemm_named(CpuMath math, const char* name);
// The environment variable naming the library of a mode: "CAIRN_CPU_GEMM_FP32", "CAIRN_CPU_GEMM_BF16".
const char* cpu_gemm_variable(CpuMath math);
// The library cpu_backend(math) multiplies with: cpu_gemm_named(math, $cpu_gemm_variable(math)).
const CpuGemm& cpu_gemm(CpuMath math);
const char* cpu_math_name(CpuMath math);  // "fp32", "bf16"

// Rounds n floats to nearest bf16 (bf16_round_nearest), with the caller's OpenMP threads.
void cpu_round_bf16(uint16_t* out, const float* in, int64_t n);

}  // namespace cairn
