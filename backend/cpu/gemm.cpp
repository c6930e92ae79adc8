// The CPU GEMM libraries (see gemm.h): OpenBLAS sgemm, oneDNN sgemm and bf16 matmul, and the
// widened bf16 fallback.
#include "backend/cpu/gemm.h"

#include <cblas.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <tuple>

#if CAIRN_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.hpp>
#endif

#include "backend/bf16.h"
#include "util/error.h"

namespace cairn {

void cpu_round_bf16(uint16_t* out, const float* in, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) out[i] = bf16_round_nearest(in[i]);
}

namespace {

void openblas_sgemm(float* out, const void* a, const void* b, int64_t M, int64_t N, int64_t K, bool ta, bool tb,
                    float alpha, float beta) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(M), int(N), int(K),
              alpha, static_cast<const float*>(a), int(ta ? M : K), static_cast<const float*>(b), int(tb ? K : N),
              beta, out, int(N));
}

// bf16 operands widened to fp32 (exactly) into per-thread staging, then OpenBLAS sgemm.
void widened_sgemm(float* out, const void* a, const void* b, int64_t M, int64_t N, int64_t K, bool ta, bool tb,
                   float alpha, float beta) {
  static thread_local std::vector<float> wa, wb;
  auto widen = [](std::vector<float>& w, const void* p, int64_t n) {
    if (int64_t(w.size()) < n) w.resize(size_t(n));
    const auto* h = static_cast<const uint16_t*>(p);
    float* dst = w.data();
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_float(h[i]);
  };
  widen(wa, a, M * K);
  widen(wb, b, K * N);
  openblas_sgemm(out, wa.data(), wb.data(), M, N, K, ta, tb, alpha, beta);
}

#if CAIRN_HAVE_ONEDNN
void onednn_sgemm(float* out, const void* a, const void* b, int64_t M, int64_t N, int64_t K, bool ta, bool tb,
                  float alpha, float beta) {
  const dnnl_status_t s = dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, alpha, static_cast<const float*>(a),
                                     ta ? M : K, static_cast<const float*>(b), tb ? K : N, beta, out, N);
  if (s != dnnl_success) throw Error(str("oneDNN sgemm failed (status ", int(s), ") for ", M, "x", N, "x", K));
}

// oneDNN's matmul primitive on bf16 A, B and fp32 C: transposes as strides, alpha as the output
// scale, beta as a sum post-op. Primitives are built once per shape and kept (a training step
// repeats a handful of shapes); creating one costs far more than running a small one.
class OnednnBf16 {
 public:
  void run(float* out, const void* a, const void* b, int64_t M, int64_t N, int64_t K, bool ta, bool tb, float alpha,
           float beta) {
    using dnnl::memory;
    const Key key{M, N, K, ta, tb, alpha, beta};
    std::unique_lock lock(mutex_);
    auto it = plans_.find(key);
    if (it == plans_.end()) it = plans_.emplace(key, make(key)).first;
    Plan& p = it->second;
    lock.unlock();
    try {
      memory ma(p.a, engine_, const_cast<void*>(a)), mb(p.b, engine_, const_cast<void*>(b)), mc(p.c, engine_, out);
      dnnl::stream stream(engine_);
      p.matmul.execute(stream, {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}});
      stream.wait();
    } catch (const dnnl::error& e) {
      throw Error(str("oneDNN bf16 matmul ", M, "x", N, "x", K, " failed: ", e.what()));
    }
  }

 private:
  using Key = std::tuple<int64_t, int64_t, int64_t, bool, bool, float, float>;
  struct Plan {
    dnnl::memory::desc a, b, c;
    dnnl::matmul matmul;
  };

  Plan make(const Key& k) {
    using dnnl::memory;
    const auto [M, N, K, ta, tb, alpha, beta] = k;
    try {
      Plan p;
      p.a = memory::desc({M, K}, memory::data_type::bf16, ta ? memory::dims{1, M} : memory::dims{K, 1});
      p.b = memory::desc({K, N}, memory::data_type::bf16, tb ? memory::dims{1, K} : memory::dims{N, 1});
      p.c = memory::desc({M, N}, memory::data_type::f32, memory::dims{N, 1});
      dnnl::primitive_attr attr;
      if (alpha != 1.0f) attr.set_output_scales(0, {alpha});
      if (beta != 0.0f) {
        dnnl::post_ops ops;
        ops.append_sum(beta);
        attr.set_post_ops(ops);
      }
      p.matmul = dnnl::matmul(dnnl::matmul::primitive_desc(dnnl::matmul::desc(p.a, p.b, p.c), attr, engine_));
      return p;
    } catch (const dnnl::error& e) {
      throw Error(str("oneDNN has no bf16 matmul for ", M, "x", N, "x", K, ": ", e.what()));
    }
  }

  dnnl::engine engine_{dnnl::engine::kind::cpu, 0};
  std::mutex mutex_;
  std::map<Key, Plan> plans_;
};

void onednn_bf16(float* out, const void* a, const void* b, int64_t M, int64_t N, int64_t K, bool ta, bool tb,
                 float alpha, float beta) {
  static OnednnBf16 lib;
  lib.run(out, a, b, M, N, K, ta, tb, alpha, beta);
}
#endif

}  // namespace

const std::vector<CpuGemm>& cpu_gemms() {
  // Order = preference, from bench/gemm_bench on the 60M preset's shapes (README).
  static const std::vector<CpuGemm> all = {
#if CAIRN_HAVE_ONEDNN
      {"onednn", CpuMath::fp32, onednn_sgemm},
      {"onednn", CpuMath::bf16, onednn_bf16},
#endif
      {"openblas", CpuMath::fp32, openblas_sgemm},
      {"widened openblas", CpuMath::bf16, widened_sgemm, 4},
  };
  return all;
}

const CpuGemm& cpu_gemm_named(CpuMath math, const char* name) {
  const bool first = !name || !*name;
  std::string names;
  for (const CpuGemm& g : cpu_gemms()) {
    if (g.math != math) continue;
    if (first || g.name == name) return g;
    names += str(names.empty() ? "" : ", ", "'", g.name, "'");
  }
  CAIRN_ASSERT(!first, "no CPU GEMM for ", cpu_math_name(math));
  throw Error(str(cpu_gemm_variable(math), "='", name, "': this build has no ", cpu_math_name(math),
                  " GEMM library of that name; it has ", names));
}

const char* cpu_gemm_variable(CpuMath math) {
  return math == CpuMath::bf16 ? "CAIRN_CPU_GEMM_BF16" : "CAIRN_CPU_GEMM_FP32";
}

const CpuGemm& cpu_gemm(CpuMath math) { return cpu_gemm_named(math, std::getenv(cpu_gemm_variable(math))); }

const char* cpu_math_name(CpuMath math) { return math == CpuMath::bf16 ? "bf16" : "fp32"; }

}  // namespace cairn
