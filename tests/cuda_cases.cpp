// The CUDA-vs-CPU check table (see cuda_cases.h). An op record gives its buffers' starting
// contents (inputs random, outputs and accumulated gradients random too, so "overwrites" and
// "accumulates" are both checked), the call as a function of a backend and buffer pointers, and
// which buffers to compare; the harness runs the call on both backends from identical copies.
#include "tests/cuda_cases.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <utility>
#include <tuple>

#include "backend/backend.h"
#include "backend/bf16.h"
#include "model/llama.h"
#include "util/error.h"
#include "util/rng.h"

namespace cairn {

namespace {
BackendUnderTest& under_test() {
  static BackendUnderTest backend = [](CudaMath math) -> const Backend& { return cuda_backend(math); };
  return backend;
}
}  // namespace

void set_backend_under_test(BackendUnderTest backend) { under_test() = std::move(backend); }
const Backend& backend_under_test(CudaMath math) { return under_test()(math); }

void Checker::expect_close(const std::string& what, const std::vector<float>& ref, const std::vector<float>& got,
                           double rtol, double atol) {
  if (ref.size() != got.size()) {
    expect(false, what + ": sizes differ");
    return;
  }
  double worst = 0;  // max over elements of |err| / (atol + rtol·|ref|)
  size_t at = 0;
  bool finite = true;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(got[i]) && std::isfinite(ref[i])) finite = false;
    // Zero tolerance means bitwise equal values: 0/0 must count as a match, not as NaN.
    const double err = std::abs(double(got[i]) - double(ref[i]));
    const double r = err == 0 ? 0.0 : err / (atol + rtol * std::abs(double(ref[i])));
    if (!(r <= worst)) {
      worst = r;
      at = i;
    }
  }
  const bool ok = finite && worst <= 1.0;
  char line[256];
  std::snprintf(line, sizeof line, "  %-28s n=%-8zu worst err/tol %.3g at %zu (cpu %.7g gpu %.7g) rtol %.1e atol %.1e %s\n",
                what.c_str(), ref.size(), worst, at, ref.empty() ? 0.0 : double(ref[at]),
                got.empty() ? 0.0 : double(got[at]), rtol, atol, ok ? "ok" : "FAIL");
  report_ += line;
  failures_ += ok ? 0 : 1;
}

void Checker::expect_close(const std::string& what, double ref, double got, double rtol, double atol) {
  const bool ok = std::abs(got - ref) <= atol + rtol * std::abs(ref);
  char line[256];
  std::snprintf(line, sizeof line, "  %-28s cpu %.12g gpu %.12g rtol %.1e atol %.1e %s\n", what.c_str(), ref, got,
                rtol, atol, ok ? "ok" : "FAIL");
  report_ += line;
  failures_ += ok ? 0 : 1;
}

void Checker::expect(bool ok, const std::string& what) {
  report_ += "  " + what + (ok ? " ok\n" : " FAIL\n");
  failures_ += ok ? 0 : 1;
}

namespace {

using Vec = std::vector<float>;
using Ints = std::vector<int32_t>;
using OpCall = std::function<void(const Backend&, const std::vector<float*>&, const int32_t*)>;

struct OpSpec {
  std::string name;
  std::vector<Vec> buffers;         // starting contents of every float buffer
  Ints ints;                        // tokens or targets, uploaded alongside
  OpCall call;
  std::vector<int> compare;         // buffer indices compared after the call
  std::vector<std::string> labels;  // their names in the report
  double rtol, atol;
  CudaMath math = CudaMath::fp32;
};

Vec random_vec(Rng& rng, int64_t n, float scale = 1.0f) {
  Vec v(static_cast<size_t>(n));
  for (auto& e : v) e = scale * rng.normal();
  return v;
}

// Copies the buffers into be's memory, runs the call, returns the buffers' contents afterwards.
std::vector<Vec> run_on(const Backend& be, const OpSpec& op) {
  std::vector<DeviceArray<float>> dev;
  std::vector<float*> ptrs;
  for (const Vec& b : op.buffers) {
    dev.emplace_back(be, int64_t(b.size()));
    be.copy_to_device(dev.back().data(), b.data(), int64_t(b.size()) * 4);
    ptrs.push_back(dev.back().data());
  }
  DeviceArray<int32_t> ints(be, std::max<int64_t>(1, int64_t(op.ints.size())));
  if (!op.ints.empty()) be.copy_to_device(ints.data(), op.ints.data(), int64_t(op.ints.size()) * 4);
  op.call(be, ptrs, ints.data());
  std::vector<Vec> out;
  for (size_t i = 0; i < dev.size(); ++i) {
    out.emplace_back(op.buffers[i].size());
    be.copy_to_host(out.back().data(), dev[i].data(), int64_t(out.back().size()) * 4);
  }
  return out;
}

CudaCheck op_check(OpSpec op) {
  return {op.name, [op](Checker& c) {
            const auto ref = run_on(cpu_backend(), op);
            const auto got = run_on(backend_under_test(op.math), op);
            for (size_t i = 0; i < op.compare.size(); ++i)
              c.expect_close(op.labels[i], ref[size_t(op.compare[i])], got[size_t(op.compare[i])], op.rtol, op.atol);
          }};
}

// Shapes chosen off the kernels' block sizes (odd rows, C not a multiple of 32).
constexpr int64_t B = 2, T = 37, NH = 3, HS = 16, C = NH * HS, F = 136, V = 1000;
constexpr int64_t N = B * T;

Vec rope_table(bool cosine) {
  Vec t(size_t(T * HS / 2));
  for (int64_t p = 0; p < T; ++p)
    for (int64_t j = 0; j < HS / 2; ++j) {
      const double a = double(p) * std::pow(10000.0, -2.0 * double(j) / double(HS));
      t[size_t(p * HS / 2 + j)] = float(cosine ? std::cos(a) : std::sin(a));
    }
  return t;
}

// bf16 mode, unregistered operands (both rounded to nearest bf16, 2⁻⁹ relative): the error of
// each output is a sum of K products' rounding errors, about sqrt(K)·1.6e-3 for N(0,1) operands;
// the tolerance, 1e-2·sqrt(K) absolute plus 1e-2 relative, is ~6 of those standard deviations,
// while a wrong transposition or operand is off by ~sqrt(K). Odd shapes: unaligned rows.
void add_matmul_bf16_checks(std::vector<CudaCheck>& out, Rng& rng) {
  struct Shape { int64_t M, N, K; };
  for (Shape sh : {Shape{37, 53, 29}, Shape{33, 70, 257}, Shape{128, 96, 64}})
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        const int64_t M = sh.M, Nn = sh.N, K = sh.K;
        out.push_back(op_check({str("matmul_", ta ? "t" : "n", tb ? "t" : "n", "_bf16_", M, "x", Nn, "x", K),
                                {random_vec(rng, M * K), random_vec(rng, K * Nn), random_vec(rng, M * Nn)},
                                {},
                                [=](const Backend& be, const std::vector<float*>& p, const int32_t*) {
                                  be.matmul(p[2], p[0], p[1], M, Nn, K, ta, tb, 0.7f, 0.3f);
                                },
                                {2},
                                {"out"},
                                1e-2,
                                1e-2 * std::sqrt(double(K)),
                                CudaMath::bf16}));
      }
}

// matmul_batched as the model calls it: one activation [M,K] times `batch` adjacent weights (stride
// 0 on a; q, k, v), and the weight gradients dW_i += dY_iᵀ·X (stride 0 on b); then linear_backward
// of the same three projections (dW_i += dy_iᵀ·x, dx = Σ dy_i·W_i accumulated) and of one; in every
// math mode, in bf16 with the weights inside a registered buffer at an odd offset (read from the
// bf16 copy, entry by entry). Against the CPU's loops of matmuls with the mode's tolerance.
void add_matmul_batched_checks(std::vector<CudaCheck>& out, Rng& rng) {
  const int64_t M = 45, K = 40, NW = 36, nb = 3, off = 3;
  for (CudaMath math : {CudaMath::fp32, CudaMath::tf32, CudaMath::bf16}) {
    const char* mode = math == CudaMath::fp32 ? "fp32" : math == CudaMath::tf32 ? "tf32" : "bf16";
    const double rtol = math == CudaMath::fp32 ? 1e-5 : math == CudaMath::tf32 ? 5e-3 : 1e-2;
    // bf16: an absolute error growing as the square root of the longest sum, dx's nb·NW terms (a
    // CPU run of this bf16 recipe, equal to its emulation, reached 1.45x of the sqrt(M) it had).
    const double atol = math == CudaMath::fp32 ? 1e-5 : math == CudaMath::tf32 ? 2e-2 : 1e-2 * std::sqrt(double(nb * NW));
    // Buffers: 0 x [M,K], 1 weights [off + nb·NW·K] (registered in bf16), 2 y [nb,M,NW], 3 dy [nb,M,NW],
    // 4 dW [nb·NW·K] (accumulated), 5 and 6 dx [M,K] (accumulated), 7 dW of one projection.
    out.push_back(op_check({str("matmul_batched_linear_backward_", mode),
                            {random_vec(rng, M * K), random_vec(rng, off + nb * NW * K), random_vec(rng, nb * M * NW),
                             random_vec(rng, nb * M * NW), random_vec(rng, nb * NW * K), random_vec(rng, M * K),
                             random_vec(rng, M * K), random_vec(rng, NW * K)},
                            {},
                            [=](const Backend& be, const std::vector<float*>& p, const int32_t*) {
                              be.register_parameters(p[1], off + nb * NW * K);
                              be.matmul_batched(p[2], p[0], p[1] + off, M, NW, K, false, true, 1.0f, 0.0f, nb,
                                                M * NW, 0, NW * K);
                              be.matmul_batched(p[4], p[3], p[0], NW, K, M, true, false, 1.0f, 1.0f, nb, NW * K,
                                                M * NW, 0);
                              be.linear_backward(p[4], p[5], p[3], p[0], p[1] + off, M, NW, K, nb, true);
                              be.linear_backward(p[7], p[6], p[3] + M * NW, p[0], p[1] + off + NW * K, M, NW, K, 1,
                                                 false);
                            },
                            {2, 4, 5, 6, 7},
                            {"y_i = x.W_i^T", "dW_i += 2 dy_i^T.x", "dx += sum dy_i.W_i", "dx = dy_1.W_1",
                             "dW_1 += dy_1^T.x"},
                            rtol,
                            atol,
                            math}));
  }
}

void add_matmul_checks(std::vector<CudaCheck>& out, Rng& rng) {
  // (trans_a, trans_b) all four ways, alpha and beta not 0/1; TF32 rounds inputs to a 10-bit
  // mantissa, so its error grows like sqrt(K)·2⁻¹¹ of the operands' scale.
  const int64_t M = 37, Nn = 53, K = 29;
  add_matmul_bf16_checks(out, rng);
  add_matmul_batched_checks(out, rng);
  for (CudaMath math : {CudaMath::fp32, CudaMath::tf32})
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        const bool fp32 = math == CudaMath::fp32;
        out.push_back(op_check({str("matmul_", ta ? "t" : "n", tb ? "t" : "n", fp32 ? "_fp32" : "_tf32"),
                                {random_vec(rng, M * K), random_vec(rng, K * Nn), random_vec(rng, M * Nn)},
                                {},
                                [=](const Backend& be, const std::vector<float*>& p, const int32_t*) {
                                  be.matmul(p[2], p[0], p[1], M, Nn, K, ta, tb, 0.7f, 0.3f);
                                },
                                {2},
                                {"out"},
                                fp32 ? 1e-5 : 5e-3,
                                fp32 ? 1e-5 : 2e-2,
                                math}));
      }
}

// Attention forward + backward on one backend from the same inputs; `saved` and `scratch` are
// sized by what the backend asks for (their contents are backend-defined, so never compared
// across backends). Outputs start as garbage so that "overwrites" is checked. Returns out, dq,
// dk, dv, then `saved` as the forward left it.
std::vector<Vec> run_attention(const Backend& be, const std::vector<Vec>& in, int64_t B, int64_t T, int64_t NH,
                               int64_t HS) {
  const int64_t n = B * T * NH * HS, n_saved = be.attention_saved_floats(B, T, NH, HS);
  std::vector<DeviceArray<float>> d;
  for (const Vec& v : in) {  // q, k, v, dout, then out, dq, dk, dv
    d.emplace_back(be, n);
    be.copy_to_device(d.back().data(), v.data(), n * 4);
  }
  DeviceArray<float> saved(be, n_saved), scratch(be, be.attention_scratch_floats(B, T, NH, HS));
  be.attention_forward(d[4].data(), saved.data(), d[0].data(), d[1].data(), d[2].data(), B, T, NH, HS);
  Vec saved_after_forward(static_cast<size_t>(n_saved));
  be.copy_to_host(saved_after_forward.data(), saved.data(), n_saved * 4);
  be.attention_backward(d[5].data(), d[6].data(), d[7].data(), scratch.data(), d[3].data(), d[0].data(), d[1].data(),
                        d[2].data(), d[4].data(), saved.data(), B, T, NH, HS);
  std::vector<Vec> out;
  for (int i = 4; i < 8; ++i) {
    out.emplace_back(size_t(n));
    be.copy_to_host(out.back().data(), d[size_t(i)].data(), n * 4);
  }
  out.push_back(std::move(saved_after_forward));
  return out;
}

// The rows' log-sum-exp of the scaled causal scores [B,NH,T], natural log, in double: what both
// CUDA attention paths save (cuDNN's "Stats"); the backward of each path relies on its own.
Vec attention_lse(const Vec& q, const Vec& k, int64_t B, int64_t T, int64_t NH, int64_t HS) {
  const int64_t C = NH * HS;
  const double scale = 1.0 / std::sqrt(double(HS));
  Vec lse(size_t(B * NH * T));
  std::vector<double> s(static_cast<size_t>(T));
  for (int64_t bh = 0; bh < B * NH; ++bh) {
    const int64_t base = (bh / NH) * T * C + (bh % NH) * HS;
    for (int64_t t = 0; t < T; ++t) {
      double mx = -INFINITY, sum = 0;
      for (int64_t u = 0; u <= t; ++u) {
        double dot = 0;
        for (int64_t e = 0; e < HS; ++e) dot += double(q[size_t(base + t * C + e)]) * k[size_t(base + u * C + e)];
        s[size_t(u)] = dot * scale;
        mx = std::max(mx, s[size_t(u)]);
      }
      for (int64_t u = 0; u <= t; ++u) sum += std::exp(s[size_t(u)] - mx);
      lse[size_t(bh * T + t)] = float(mx + std::log(sum));
    }
  }
  return lse;
}


// One attention shape against the CPU oracle: |gpu − cpu| ≤ atol_rel·max(max|cpu|, 1) + rtol·|cpu|
// per output (the floor 1, the inputs' scale, because an output can be exactly 0 on the CPU: at
// T = 1, dq = dk = 0, which the GPU reaches only up to rounding). On the CUDA backend the saved
// state must be the rows' LSE within lse_atol. The path that ran must match `path_prefix`; the GPU
// run is repeated and must be bitwise identical (both paths are deterministic: no atomics, cuDNN's
// deterministic backward).
CudaCheck attention_check(CudaMath math, int64_t B, int64_t T, int64_t NH, int64_t HS, double rtol, double atol_rel,
                          double lse_atol, std::string path_prefix) {
  const char* mode = math == CudaMath::fp32 ? "fp32" : math == CudaMath::tf32 ? "tf32" : "bf16";
  return {str("attention_", mode, "_B", B, "_T", T, "_NH", NH, "_HS", HS), [=](Checker& c) {
            Rng r(uint64_t(B * 1000003 + T * 1009 + NH * 101 + HS));
            const int64_t n = B * T * NH * HS;
            std::vector<Vec> in;
            for (int i = 0; i < 8; ++i) in.push_back(random_vec(r, n));
            const auto ref = run_attention(cpu_backend(), in, B, T, NH, HS);
            const Backend& gpu = backend_under_test(math);
            const auto got = run_attention(gpu, in, B, T, NH, HS);
            const char* labels[4] = {"out", "dq", "dk", "dv"};
            for (size_t i = 0; i < 4; ++i) {
              float mx = 1.0f;
              for (float e : ref[i]) mx = std::max(mx, std::abs(e));
              c.expect_close(labels[i], ref[i], got[i], rtol, atol_rel * double(mx));
            }
            if (is_cuda(gpu)) {
              const Vec lse = attention_lse(in[0], in[1], B, T, NH, HS);  // what `saved` starts with
              c.expect_close("saved = lse", lse, Vec(got[4].begin(), got[4].begin() + std::ptrdiff_t(lse.size())), 0.0,
                             lse_atol);
              const std::string path = gpu.attention_path();
              c.expect(path.rfind(path_prefix, 0) == 0, str("path \"", path, "\" (expected \"", path_prefix, "...\")"));
            }
            c.expect(run_attention(gpu, in, B, T, NH, HS) == got, "bitwise repeatable");
          }};
}

void add_attention_checks(std::vector<CudaCheck>& out) {
  // Own fused kernel (fp32 arithmetic, also in TF32 mode): T off the tiles (16 query rows, 32 keys),
  // T = 1, exact tiles, HS not a multiple of 32, HS = 128 (shared memory above 48 KiB), B·NH > 1.
  const std::string own = "own fused kernel (fp32)";
  const int64_t shapes[][4] = {{2, 37, 3, 16}, {1, 1, 2, 64},  {1, 64, 1, 64},   {2, 100, 2, 128},
                               {1, 70, 2, 40}, {1, 300, 1, 32}, {3, 17, 2, 128}};
  for (const auto& s : shapes)
    out.push_back(attention_check(CudaMath::fp32, s[0], s[1], s[2], s[3], 2e-4, 2e-5, 1e-4, own));
  out.push_back(attention_check(CudaMath::tf32, 2, 37, 3, 16, 2e-4, 2e-5, 1e-4, own));
  // bf16 mode: cuDNN SDPA when built in (else the own kernel, fp32). bf16 inputs (8-bit mantissa),
  // bf16 probabilities in P·V and bf16 outputs: about 1% of the outputs' scale. A numpy emulation
  // of those roundings (bf16 q, k, v, dout, P and dS into the GEMMs, bf16 outputs) stays within a
  // quarter of these tolerances at these shapes and at T = 1024; its LSE within 7e-3.
  const std::string bf16_path = CAIRN_HAVE_CUDNN ? "cuDNN SDPA (bf16)" : own;
  out.push_back(attention_check(CudaMath::bf16, 2, 37, 3, 64, 2e-2, 3e-2, 3e-2, bf16_path));
  out.push_back(attention_check(CudaMath::bf16, 2, 256, 4, 128, 2e-2, 3e-2, 3e-2, bf16_path));
  // A head size the fused kernel does not take: a clear Error naming the shape, not a bad launch.
  out.push_back({"attention_unsupported_head_size", [](Checker& c) {
                   const Backend& gpu = backend_under_test(CudaMath::fp32);
                   if (!is_cuda(gpu)) return;  // a limit of the CUDA kernel, not of a stand-in
                   const int64_t b = 1, t = 8, nh = 1, hs = 192, n = b * t * nh * hs;
                   DeviceArray<float> q(gpu, n), o(gpu, n), saved(gpu, gpu.attention_saved_floats(b, t, nh, hs));
                   q.zero();
                   std::string msg;
                   try {
                     gpu.attention_forward(o.data(), saved.data(), q.data(), q.data(), q.data(), b, t, nh, hs);
                   } catch (const Error& e) {
                     msg = e.what();
                   }
                   c.expect(msg.find("head size 192") != std::string::npos, "HS=192 throws Error: " + msg);
                 }});
}

// The bf16 copy of registered parameters: a registered buffer holds a weight w [NW,K] at an
// unaligned offset; matmul reads it as b (forward x·wᵀ, backward dy·w) and as a (wᵀ·…), and must
// see every write to the buffer: copy_to_device of part of it, adamw_update (lr large enough to
// move every element by ~lr), zero, scale_inplace, and a write by another op followed by
// parameters_changed. A stale copy is off by O(sqrt(K)), far outside the bf16 tolerance.
CudaCheck bf16_param_copy_check() {
  return {"bf16_param_copy", [](Checker& c) {
            const int64_t M = 19, K = 67, NW = 45, off = 3, total = off + NW * K + 5;
            Rng r(21);
            const Vec p0 = random_vec(r, total), p1 = random_vec(r, NW * K / 2), x = random_vec(r, M * K);
            const Vec dy = random_vec(r, M * NW), g = random_vec(r, total), gate = random_vec(r, NW * K),
                      up = random_vec(r, NW * K);
            double wmax = 0;
            auto run = [&](const Backend& be) {
              DeviceArray<float> P(be, total), X(be, M * K), DY(be, M * NW), G(be, total), mom(be, total),
                  var(be, total), GATE(be, NW * K), UP(be, NW * K), y(be, K * std::max(M, NW));
              be.register_parameters(P.data(), total);
              be.copy_to_device(P.data(), p0.data(), total * 4);
              be.copy_to_device(X.data(), x.data(), M * K * 4);
              be.copy_to_device(DY.data(), dy.data(), M * NW * 4);
              be.copy_to_device(G.data(), g.data(), total * 4);
              be.copy_to_device(GATE.data(), gate.data(), NW * K * 4);
              be.copy_to_device(UP.data(), up.data(), NW * K * 4);
              mom.zero();
              var.zero();
              float* w = P.data() + off;
              std::vector<Vec> outs;
              auto forward = [&] {  // y[M,NW] = x·wᵀ; also tracks max |w| (for the tolerance)
                be.matmul(y.data(), X.data(), w, M, NW, K, false, true, 1.0f, 0.0f);
                outs.push_back(download(be, y.data(), M * NW));
                for (float e : download(be, w, NW * K)) wmax = std::max(wmax, double(std::abs(e)));
              };
              forward();
              be.matmul(y.data(), DY.data(), w, M, K, NW, false, false, 1.0f, 0.0f);  // dy·w [M,K]
              outs.push_back(download(be, y.data(), M * K));
              be.matmul(y.data(), w, DY.data(), K, M, NW, true, true, 1.0f, 0.0f);  // wᵀ·dyᵀ [K,M]
              outs.push_back(download(be, y.data(), K * M));
              be.copy_to_device(w + NW * K / 4, p1.data(), NW * K / 2 * 4);  // the middle half of w
              forward();
              be.adamw_update(P.data(), G.data(), mom.data(), var.data(), total, 0.5f, 0.9f, 0.95f, 1e-8f, 0.1f,
                              0.1f, 0.05f);
              forward();
              be.scale_inplace(P.data(), -2.0f, total);
              forward();
              be.swiglu_forward(w, GATE.data(), UP.data(), NW * K);  // not a parameter-aware op
              be.parameters_changed(w, NW * K);
              forward();
              be.zero(w, NW * K * 4);
              be.matmul(y.data(), X.data(), w, M, NW, K, false, true, 1.0f, 0.0f);
              outs.push_back(download(be, y.data(), M * NW));
              outs.push_back(download(be, P.data(), total));
              return outs;
            };
            const auto ref = run(cpu_backend()), got = run(backend_under_test(CudaMath::bf16));
            const char* names[] = {"x.w^T",       "dy.w",        "w^T.dy^T",      "after copy_to_device",
                                   "after adamw", "after scale", "after changed", "after zero",
                                   "master weights"};
            // x and dy are N(0,1); w's largest magnitude over the run scales the absolute tolerance.
            for (size_t i = 0; i < ref.size(); ++i) {
              const bool master = i + 1 == ref.size();
              c.expect_close(names[i], ref[i], got[i], master ? 1e-5 : 1e-2,
                             master ? 1e-6 : 1e-2 * std::sqrt(double(std::max(K, NW))) * std::max(1.0, wmax));
            }
          }};
}

// The bf16 copy read back bitwise: I·P (I an identity, exact in bf16; one nonzero product per
// output, exact in fp32) returns the copy of the registered buffer P [R,CC] itself. After every
// write — per-row AdamW as the optimizer calls it (element indices are offsets in the buffer, not
// in the row), partial copy_to_device, scale/add/zero/matmul output at odd offsets, a foreign
// write + parameters_changed — it must equal bf16_round_param(i, master[i]) for every i, exactly.
// A·I (A not registered, read at an odd offset and odd length) must equal A rounded to nearest.
CudaCheck bf16_copy_bitwise_check() {
  return {"bf16_copy_bitwise", [](Checker& c) {
            const Backend& be = backend_under_test(CudaMath::bf16);
            if (!rounds_to_bf16(be)) return;  // bf16 rounding itself: a stand-in computes in fp32
            const int64_t R = 48, CC = 70, total = R * CC, MA = 7;
            const int64_t rows[] = {0, 5, 1234, 2001, total};  // optimizer rows: [rows[i], rows[i+1])
            Rng r(41);
            const Vec p0 = random_vec(r, total), p1 = random_vec(r, 501), g1 = random_vec(r, total),
                      g2 = random_vec(r, total), gate = random_vec(r, 1500), up = random_vec(r, 1500),
                      xa = random_vec(r, 360), ma = random_vec(r, 20 * 9), mb = random_vec(r, 9 * 30),
                      act = random_vec(r, MA * R + 1);
            Vec eye(static_cast<size_t>(R * R), 0.0f);
            for (int64_t i = 0; i < R; ++i) eye[size_t(i * R + i)] = 1.0f;
            DeviceArray<float> P(be, total), I(be, R * R), out(be, std::max(R, MA) * CC), G(be, total), m(be, total),
                v(be, total), T1(be, 1500), T2(be, 1500), XA(be, 360), MAA(be, 20 * 9), MBB(be, 9 * 30),
                ACT(be, MA * R + 1);
            be.register_parameters(P.data(), total);
            be.copy_to_device(I.data(), eye.data(), R * R * 4);
            be.copy_to_device(T1.data(), gate.data(), 1500 * 4);
            be.copy_to_device(T2.data(), up.data(), 1500 * 4);
            be.copy_to_device(XA.data(), xa.data(), 360 * 4);
            be.copy_to_device(MAA.data(), ma.data(), 20 * 9 * 4);
            be.copy_to_device(MBB.data(), mb.data(), 9 * 30 * 4);
            be.copy_to_device(ACT.data(), act.data(), (MA * R + 1) * 4);
            m.zero();
            v.zero();
            auto expect_copy = [&](const std::string& after) {
              be.matmul(out.data(), I.data(), P.data(), R, CC, R, false, false, 1.0f, 0.0f);
              const Vec master = download(be, P.data(), total), copy = download(be, out.data(), total);
              Vec want(static_cast<size_t>(total));
              for (int64_t i = 0; i < total; ++i) want[size_t(i)] = bf16_to_float(bf16_round_param(i, master[size_t(i)]));
              c.expect_close("copy after " + after, want, copy, 0, 0);
            };
            be.copy_to_device(P.data(), p0.data(), total * 4);
            expect_copy("copy_to_device");
            for (int step = 1; step <= 2; ++step) {
              be.copy_to_device(G.data(), (step == 1 ? g1 : g2).data(), total * 4);
              for (int i = 0; i < 4; ++i) {
                const int64_t at = rows[i], n = rows[i + 1] - rows[i];
                be.adamw_update(P.data() + at, G.data() + at, m.data() + at, v.data() + at, n, 0.05f, 0.9f, 0.95f,
                                1e-8f, 0.1f, 1.0f - std::pow(0.9f, float(step)), 1.0f - std::pow(0.95f, float(step)));
              }
              expect_copy(str("adamw step ", step));
            }
            be.copy_to_device(P.data() + 777, p1.data(), 501 * 4);
            expect_copy("partial copy_to_device");
            be.scale_inplace(P.data() + 1001, 0.75f, 999);
            expect_copy("scale_inplace");
            be.add_inplace(P.data() + 3000, XA.data(), 360);
            expect_copy("add_inplace");
            be.swiglu_forward(P.data() + 2, T1.data(), T2.data(), 1500);
            be.parameters_changed(P.data() + 2, 1500);
            expect_copy("parameters_changed");
            be.zero(P.data() + 10, 100 * 4);
            expect_copy("zero");
            be.matmul(P.data() + 2501, MAA.data(), MBB.data(), 20, 30, 9, false, false, 1.0f, 0.0f);
            expect_copy("matmul into parameters");

            // Activations: rounded to nearest, through the unaligned (scalar) conversion path.
            be.matmul(out.data(), ACT.data() + 1, I.data(), MA, R, R, false, false, 1.0f, 0.0f);
            Vec want(static_cast<size_t>(MA * R));
            for (int64_t i = 0; i < MA * R; ++i) want[size_t(i)] = bf16_to_float(bf16_round_nearest(act[size_t(i + 1)]));
            c.expect_close("activation rounding (unaligned)", want, download(be, out.data(), MA * R), 0, 0);
            be.matmul(out.data(), ACT.data(), I.data(), MA, R, R, false, false, 1.0f, 0.0f);
            for (int64_t i = 0; i < MA * R; ++i) want[size_t(i)] = bf16_to_float(bf16_round_nearest(act[size_t(i)]));
            c.expect_close("activation rounding (vectorized)", want, download(be, out.data(), MA * R), 0, 0);
          }};
}

// Stochastic rounding of parameters, through matmul: column sums of P [K,N] (ones·P, fp32
// accumulation) whose values all sit 0.3 ulp above a bf16 value. Round-to-nearest would be off by
// −0.3 ulp per element; the stochastic copy must be within 0.01 ulp per element on average (its
// standard deviation is 0.46 ulp / sqrt(K·N) ≈ 0.0013 ulp). An AdamW step with lr = 0 rewrites
// the copy from the same values: bitwise the same sums. bf16-representable values come back
// exactly, as parameters and as activations (products with an identity matrix).
CudaCheck bf16_rounding_check() {
  return {"bf16_rounding", [](Checker& c) {
            const Backend& be = backend_under_test(CudaMath::bf16);
            if (!rounds_to_bf16(be)) return;  // bf16 rounding itself: a stand-in computes in fp32
            const int64_t K = 512, NC = 256, n = K * NC;
            Vec p(static_cast<size_t>(n));
            double sum = 0, sum_nearest = 0, ulps = 0;
            for (int64_t i = 0; i < n; ++i) {
              const int e = int(i % 4) - 3;
              p[size_t(i)] = float(std::ldexp(1.0 + (double((i / 4) % 100) + 0.3) / 128.0, e));
              sum += double(p[size_t(i)]);
              sum_nearest += double(bf16_to_float(bf16_round_nearest(p[size_t(i)])));
              ulps += std::ldexp(1.0 / 128.0, e);
            }
            DeviceArray<float> P(be, n), ones(be, K), sums(be, NC), zeros(be, n), m(be, n), v(be, n);
            be.register_parameters(P.data(), n);
            be.copy_to_device(P.data(), p.data(), n * 4);
            const Vec one(static_cast<size_t>(K), 1.0f);
            be.copy_to_device(ones.data(), one.data(), K * 4);
            auto column_sums = [&] {
              be.matmul(sums.data(), ones.data(), P.data(), 1, NC, K, false, false, 1.0f, 0.0f);
              return download(be, sums.data(), NC);
            };
            const Vec first = column_sums();
            double total = 0;
            for (float e : first) total += double(e);
            const double bound = 0.01 * ulps;
            c.expect(std::abs(total - sum) <= bound,
                     str("stochastic rounding mean bias ", (total - sum) / ulps, " ulp within 0.01 ulp"));
            c.expect(std::abs(sum_nearest - sum) > bound,
                     str("round-to-nearest would be off by ", (sum_nearest - sum) / ulps, " ulp (the check can fail)"));
            zeros.zero();
            m.zero();
            v.zero();
            be.adamw_update(P.data(), zeros.data(), m.data(), v.data(), n, 0.0f, 0.9f, 0.95f, 1e-8f, 0.0f, 0.1f, 0.05f);
            c.expect_close("sums after adamw(lr=0)", first, column_sums(), 0, 0);

            // Exactly representable values: E [KE,NE] registered, A [ME,KE] not; I is an identity.
            const int64_t KE = 40, NE = 24, ME = 16;
            Rng r(9);
            auto representable = [&](int64_t count) {
              Vec e = random_vec(r, count, 3.0f);
              for (auto& x : e) x = bf16_to_float(uint16_t(bf16_float_bits(x) >> 16));
              return e;
            };
            const Vec e = representable(KE * NE), a = representable(ME * KE);
            Vec eye(static_cast<size_t>(KE * KE), 0.0f);
            for (int64_t i = 0; i < KE; ++i) eye[size_t(i * KE + i)] = 1.0f;
            DeviceArray<float> E(be, KE * NE), A(be, ME * KE), I(be, KE * KE), out(be, KE * NE);
            be.register_parameters(E.data(), KE * NE);
            be.copy_to_device(E.data(), e.data(), KE * NE * 4);
            be.copy_to_device(A.data(), a.data(), ME * KE * 4);
            be.copy_to_device(I.data(), eye.data(), KE * KE * 4);
            be.matmul(out.data(), I.data(), E.data(), KE, NE, KE, false, false, 1.0f, 0.0f);
            c.expect_close("I·E (parameter copy) exact", e, download(be, out.data(), KE * NE), 0, 0);
            be.matmul(out.data(), A.data(), I.data(), ME, KE, KE, false, false, 1.0f, 0.0f);
            c.expect_close("A·I (activation rounding) exact", a, download(be, out.data(), ME * KE), 0, 0);
          }};
}

// The whole model: same seed on both backends, one forward/backward, then an AdamW step over the
// flat buffers and a loss on the updated weights.
CudaCheck whole_model_check(const std::string& name, const ModelConfig& cfg) {
  return {name, [cfg](Checker& c) {
            const int64_t b = 3, n = b * cfg.seq_len;
            const auto [in, tg] = check_tokens(n, 11);
            std::vector<float> losses[2];
            std::vector<Vec> grads;
            const Backend* backends[2] = {&cpu_backend(), &backend_under_test()};
            for (const Backend* be : backends) {
              LlamaModel m(cfg, *be, b);
              m.init_weights(5);
              const int64_t total = m.params().total();
              auto& l = losses[be == backends[0] ? 0 : 1];
              l.push_back(m.forward_backward(in.data(), tg.data(), b, 1.0f));
              Vec g(static_cast<size_t>(total));
              be->copy_to_host(g.data(), m.grad_data(), total * 4);
              grads.push_back(g);
              DeviceArray<float> mom(*be, total), var(*be, total);
              mom.zero();
              var.zero();
              be->adamw_update(m.param_data(), m.grad_data(), mom.data(), var.data(), total, 1e-2f, 0.9f, 0.95f,
                               1e-8f, 0.1f, 0.1f, 0.05f);
              l.push_back(m.forward_loss(in.data(), tg.data(), b));
            }
            c.expect_close("loss", losses[0][0], losses[1][0], 1e-4, 0);
            c.expect_close("loss after AdamW", losses[0][1], losses[1][1], 1e-4, 0);
            float gmax = 0;
            for (float e : grads[0]) gmax = std::max(gmax, std::abs(e));
            c.expect_close("gradients", grads[0], grads[1], 1e-3, 1e-4 * gmax);
          }};
}

// A few training steps of a tiny model, bf16 GPU against fp32 CPU from the same initialization:
// forward/backward, AdamW over the flat buffers (which rewrites the bf16 copy), repeated. bf16
// GEMM inputs perturb the losses by ~1e-4 relative (5e-5 with the CPU emulation of the roundings,
// tests/bf16_test.cpp); over 5 steps at lr 2e-3 (loss 4.6 → 3.5) the losses must stay within 5e-3 relative
// of fp32 (a stale parameter copy leaves the loss near 4.6), the first step's gradients within
// 5e-2 relative + 2e-2·max|g| (the emulation: 0.25 of that).
CudaCheck bf16_training_check(LinearKind kind) {
  return {str("model_", linear_kind_name(kind), "_bf16_training"), [kind](Checker& c) {
            const ModelConfig cfg = check_model_config(kind);
            const int64_t b = 3, n = b * cfg.seq_len, steps = 5;
            const auto [in, tg] = check_tokens(n, 11);
            std::vector<float> losses[2];
            Vec grads[2];
            const Backend* backends[2] = {&cpu_backend(), &backend_under_test(CudaMath::bf16)};
            for (int k = 0; k < 2; ++k) {
              const Backend& be = *backends[k];
              LlamaModel m(cfg, be, b);
              m.init_weights(5);
              const int64_t total = m.params().total();
              DeviceArray<float> mom(be, total), var(be, total);
              mom.zero();
              var.zero();
              for (int64_t t = 1; t <= steps; ++t) {
                m.zero_grads();
                losses[k].push_back(m.forward_backward(in.data(), tg.data(), b, 1.0f));
                if (t == 1) grads[k] = download(be, m.grad_data(), total);
                be.adamw_update(m.param_data(), m.grad_data(), mom.data(), var.data(), total, 2e-3f, 0.9f, 0.95f,
                                1e-8f, 0.1f, 1.0f - std::pow(0.9f, float(t)), 1.0f - std::pow(0.95f, float(t)));
              }
              losses[k].push_back(m.forward_loss(in.data(), tg.data(), b));
            }
            for (size_t i = 0; i < losses[0].size(); ++i)
              c.expect_close(str("loss ", i == losses[0].size() - 1 ? "final" : str("step ", i + 1)), losses[0][i],
                             losses[1][i], 5e-3, 0);
            c.expect(losses[1].back() < losses[1].front(), str("bf16 loss decreases: ", losses[1].front(), " → ",
                                                               losses[1].back()));
            float gmax = 0;
            for (float e : grads[0]) gmax = std::max(gmax, std::abs(e));
            c.expect_close("gradients (step 1)", grads[0], grads[1], 5e-2, 2e-2 * gmax);
          }};
}

}  // namespace

std::vector<CudaCheck> cuda_checks() {
  Rng rng(7);
  std::vector<CudaCheck> out;
  add_matmul_checks(out, rng);

  Ints tokens(static_cast<size_t>(N));
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int32_t((i * 7919) % 23);  // repeats on purpose
  out.push_back(op_check({"embedding_forward", {random_vec(rng, V * C), random_vec(rng, N * C)}, tokens,
                          [](const Backend& be, const std::vector<float*>& p, const int32_t* t) {
                            be.embedding_forward(p[1], t, p[0], N, C);
                          },
                          {1}, {"out"}, 0, 0}));
  out.push_back(op_check({"embedding_backward", {random_vec(rng, V * C), random_vec(rng, N * C)}, tokens,
                          [](const Backend& be, const std::vector<float*>& p, const int32_t* t) {
                            be.embedding_backward(p[0], p[1], t, N, C, V);
                          },
                          {0}, {"dtable (accumulated)"}, 1e-5, 1e-6}));
  {
    // A frequent token (as EOS is): 70% of 3001 positions, so its run crosses ~65 tiles of sorted
    // positions (the GPU sums them in parallel), and runs of other tokens that cross one tile.
    const int64_t n = 3001;
    Ints frequent(static_cast<size_t>(n));
    for (auto& t : frequent) t = rng.next_u64() % 10 < 7 ? 5 : int32_t(rng.next_u64() % uint64_t(V));
    out.push_back(op_check({"embedding_backward_frequent_token", {random_vec(rng, V * C), random_vec(rng, n * C)},
                            frequent,
                            [=](const Backend& be, const std::vector<float*>& p, const int32_t* t) {
                              be.embedding_backward(p[0], p[1], t, n, C, V);
                            },
                            {0}, {"dtable (accumulated)"}, 1e-5, 1e-4}));
  }

  // Buffers: 0 inp, 1 weight, 2 out, 3 rstd, 4 dout, 5 dinp (accumulated), 6 dweight (accumulated).
  out.push_back(op_check({"rmsnorm_forward_backward",
                          {random_vec(rng, N * C), random_vec(rng, C), random_vec(rng, N * C), random_vec(rng, N),
                           random_vec(rng, N * C), random_vec(rng, N * C), random_vec(rng, C)},
                          {},
                          [](const Backend& be, const std::vector<float*>& p, const int32_t*) {
                            be.rmsnorm_forward(p[2], p[3], p[0], p[1], N, C, 1e-5f);
                            be.rmsnorm_backward(p[5], p[6], p[4], p[0], p[1], p[3], N, C);
                          },
                          {2, 3, 5, 6}, {"out", "rstd", "dinp", "dweight"}, 1e-5, 1e-5}));

  out.push_back(op_check({"rope_forward_backward",
                          {random_vec(rng, N * C), random_vec(rng, N * C), rope_table(true), rope_table(false)},
                          {},
                          [](const Backend& be, const std::vector<float*>& p, const int32_t*) {
                            be.rope_forward(p[0], p[2], p[3], B, T, NH, HS);
                            be.rope_backward(p[1], p[2], p[3], B, T, NH, HS);
                          },
                          {0, 1}, {"x", "dx"}, 1e-5, 1e-6}));

  add_attention_checks(out);

  // Grouped-query attention's head repetition: 1 key/value head for the 3 query heads, and 3 for
  // 3 (groups of one) (buffers: 0 inp, 1 out, 2 dout, 3 dinp, overwritten).
  out.push_back(op_check({"repeat_kv_forward_backward",
                          {random_vec(rng, N * HS), random_vec(rng, N * C), random_vec(rng, N * C),
                           random_vec(rng, N * HS), random_vec(rng, N * C), random_vec(rng, N * C)},
                          {},
                          [](const Backend& be, const std::vector<float*>& p, const int32_t*) {
                            be.repeat_kv_forward(p[1], p[0], N, 1, NH, HS);
                            be.repeat_kv_backward(p[3], p[2], N, 1, NH, HS);
                            be.repeat_kv_forward(p[4], p[2], N, NH, 1, HS);
                            be.repeat_kv_backward(p[5], p[1], N, NH, 1, HS);
                          },
                          {1, 3, 4, 5}, {"out", "dinp", "out (G = 1)", "dinp (G = 1)"}, 1e-6, 0}));

  out.push_back(op_check({"swiglu_forward_backward",
                          {random_vec(rng, N * F), random_vec(rng, N * F), random_vec(rng, N * F),
                           random_vec(rng, N * F), random_vec(rng, N * F), random_vec(rng, N * F)},
                          {},
                          [](const Backend& be, const std::vector<float*>& p, const int32_t*) {
                            be.swiglu_forward(p[2], p[0], p[1], N * F);
                            be.swiglu_backward(p[4], p[5], p[3], p[0], p[1], N * F);
                          },
                          {2, 4, 5}, {"out", "dgate", "dup"}, 1e-5, 1e-6}));

  Ints targets(static_cast<size_t>(N));
  for (size_t i = 0; i < targets.size(); ++i) targets[i] = i % 11 == 3 ? -1 : int32_t((i * 104729) % V);
  // Buffers: 0 logits (overwritten by the gradient), 1 losses, 2 logits copy, 3 losses (forward only).
  {
    Vec logits = random_vec(rng, N * V, 3.0f);
    out.push_back(op_check({"crossentropy", {logits, random_vec(rng, N), logits, random_vec(rng, N)}, targets,
                            [](const Backend& be, const std::vector<float*>& p, const int32_t* t) {
                              be.crossentropy_forward(p[3], p[2], t, N, V);
                              be.crossentropy_forward_backward(p[1], p[0], t, N, V, 0.37f);
                            },
                            {0, 1, 3}, {"dlogits", "losses", "losses (forward only)"}, 1e-5, 1e-6}));
  }

  out.push_back(op_check({"add_scale", {random_vec(rng, 100003), random_vec(rng, 100003)}, {},
                          [](const Backend& be, const std::vector<float*>& p, const int32_t*) {
                            be.add_inplace(p[0], p[1], 100003);
                            be.scale_inplace(p[0], -0.3f, 100003);
                          },
                          {0}, {"y"}, 1e-6, 0}));

  // SLTrain's sparse part: a support of distinct sorted indices into a [300, 211] matrix.
  {
    const int64_t M = 300 * 211;
    Ints support;
    for (int64_t i = 0; i < M; ++i)
      if (rng.next_u64() % 29 == 0) support.push_back(int32_t(i));
    const int64_t nnz = int64_t(support.size());
    out.push_back(op_check({"scatter_gather_add", {random_vec(rng, M), random_vec(rng, nnz), random_vec(rng, nnz)},
                            support,
                            [=](const Backend& be, const std::vector<float*>& p, const int32_t* idx) {
                              be.scatter_add(p[0], idx, p[1], nnz);
                              be.gather_add(p[2], p[0], idx, nnz);
                            },
                            {0, 2}, {"W (scattered into)", "values (gathered into)"}, 1e-6, 0}));
  }

  // The low-rank optimizers' pieces (Fira, GaLore). Shapes: R [37, 12] read by rows and [12, 41]
  // by columns; U [37, 41].
  {
    const int64_t n = 37 * 12;
    Vec v = random_vec(rng, n);
    for (float& e : v) e = std::abs(e);
    out.push_back(op_check({"adam_direction", {random_vec(rng, n), random_vec(rng, n), v, random_vec(rng, n)}, {},
                            [=](const Backend& be, const std::vector<float*>& p, const int32_t*) {
                              be.adam_direction(p[0], p[1], p[2], p[3], n, 0.9f, 0.999f, 1e-6f);
                            },
                            {0, 1, 2}, {"dir", "m", "v"}, 1e-5, 1e-6}));
    for (bool by_row : {true, false}) {
      const int64_t count = by_row ? 37 : 41, r = 12, m = 37, cols = 41;
      out.push_back(op_check({str("norm_ratio_scale_by_", by_row ? "rows" : "columns"),
                              {random_vec(rng, count * r), random_vec(rng, count * r), random_vec(rng, count),
                               random_vec(rng, m * cols)},
                              {},
                              [=](const Backend& be, const std::vector<float*>& p, const int32_t*) {
                                be.norm_ratio(p[2], p[0], p[1], count, r, by_row);
                                be.scale_by(p[3], p[2], m, cols, by_row);
                              },
                              {2, 3}, {"ratio", "scaled"}, 1e-6, 0}));
    }
    out.push_back(op_check({"apply_update", {random_vec(rng, 5001), random_vec(rng, 5001)}, {},
                            [](const Backend& be, const std::vector<float*>& p, const int32_t*) {
                              be.apply_update(p[0], p[1], 5001, 0.03f, 0.0f);
                              be.apply_update(p[0], p[1], 5001, 0.03f, 1e-3f);
                            },
                            {0}, {"w"}, 1e-6, 1e-7}));
  }
  // Top singular vectors of G = Σ_i σ_i x_i y_iᵀ with σ_i = 10·0.6^i (well separated, so the
  // vectors are well defined up to sign, which the op fixes), wide and tall, each side: the GPU
  // reads VT when by_row == (m ≥ n) (Fira's choice) and U otherwise. 600×24 and 24×600 give
  // vectors of 600 elements, more than the 256 threads fixing a sign, which exposes a sign read
  // racing with the flip.
  for (auto [m, n, by_row] : {std::tuple<int64_t, int64_t, bool>{64, 40, true}, {40, 64, false}, {64, 40, false},
                              {40, 64, true}, {600, 24, false}, {24, 600, true}}) {
    Vec g(static_cast<size_t>(m * n), 0.0f);
    for (int i = 0; i < 12; ++i) {
      const Vec x = random_vec(rng, m), y = random_vec(rng, n);
      const float sigma = 10.0f * std::pow(0.6f, float(i));
      for (int64_t a = 0; a < m; ++a)
        for (int64_t b = 0; b < n; ++b) g[size_t(a * n + b)] += sigma * x[size_t(a)] * y[size_t(b)];
    }
    const int64_t r = 6;
    out.push_back(op_check({str("top_singular_vectors_", m, "x", n, by_row ? "_right" : "_left"),
                            {g, Vec(static_cast<size_t>(r * std::max(m, n)))},
                            {},
                            [=](const Backend& be, const std::vector<float*>& p, const int32_t*) {
                              be.top_singular_vectors(p[1], p[0], m, n, r, by_row);
                            },
                            {1}, {"proj"}, 1e-3, 1e-4}));
  }

  // A gradient holding NaN or Inf: an Error naming the failed SVD, never a projection of garbage.
  out.push_back({"top_singular_vectors_nonfinite", [](Checker& c) {
                   const Backend& be = backend_under_test();
                   for (const auto& [m, n] : {std::pair<int64_t, int64_t>{40, 24}, {24, 40}})
                     for (float bad : {NAN, INFINITY}) {
                       Rng r(5);
                       Vec g = random_vec(r, m * n);
                       g[size_t(m * n / 2)] = bad;
                       DeviceArray<float> dg(be, m * n), proj(be, 4 * std::max(m, n));
                       be.copy_to_device(dg.data(), g.data(), m * n * 4);
                       bool threw = false;
                       try {
                         be.top_singular_vectors(proj.data(), dg.data(), m, n, 4, m >= n);
                       } catch (const Error& e) {
                         threw = std::string(e.what()).find("SVD") != std::string::npos;
                       }
                       c.expect(threw, str("top_singular_vectors of a ", m, "x", n, " gradient holding ", bad,
                                           " throws an Error naming the SVD"));
                     }
                 }});

  // Buffers: 0 p, 1 g, 2 m, 3 v (v ≥ 0). Two steps, the second with weight decay.
  {
    Vec v = random_vec(rng, 50001);
    for (auto& e : v) e = e * e;
    out.push_back(op_check({"adamw", {random_vec(rng, 50001), random_vec(rng, 50001), random_vec(rng, 50001, 0.1f), v},
                            {},
                            [](const Backend& be, const std::vector<float*>& p, const int32_t*) {
                              be.adamw_update(p[0], p[1], p[2], p[3], 50001, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.0f,
                                              1 - 0.9f, 1 - 0.95f);
                              be.adamw_update(p[0], p[1], p[2], p[3], 50001, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f,
                                              1 - 0.81f, 1 - 0.9025f);
                            },
                            {0, 2, 3}, {"p", "m", "v"}, 1e-5, 1e-7}));
  }

  // Buffers: 0 x, 1 the limiter's stored norm. A first step, then growth far above gamma (x
  // scaled down), then a shrink (x untouched); x and the stored norm after each.
  for (int64_t n : {int64_t(1), int64_t(70001)}) {
    out.push_back(op_check({str("limit_norm_growth_", n), {random_vec(rng, n), {0.0f}}, {},
                            [n](const Backend& be, const std::vector<float*>& p, const int32_t*) {
                              be.limit_norm_growth(p[0], n, p[1], 1.01f, true);
                              be.scale_inplace(p[0], 3.0f, n);
                              be.limit_norm_growth(p[0], n, p[1], 1.01f, false);
                              be.scale_inplace(p[0], 0.5f, n);
                              be.limit_norm_growth(p[0], n, p[1], 1.01f, false);
                            },
                            {0, 1}, {"x", "prev"}, 1e-6, 1e-7}));
  }

  out.push_back({"sum_squares", [](Checker& c) {
                   Rng r(3);
                   for (int64_t n : {int64_t(1), int64_t(1000), int64_t(3000017)}) {
                     const Vec x = random_vec(r, n);
                     const Backend& gpu = backend_under_test();
                     DeviceArray<float> d(gpu, n);
                     gpu.copy_to_device(d.data(), x.data(), n * 4);
                     const double got = gpu.sum_squares(d.data(), n), again = gpu.sum_squares(d.data(), n);
                     c.expect_close(str("sum_squares n=", n), cpu_backend().sum_squares(x.data(), n), got, 1e-12, 0);
                     c.expect(got == again, str("sum_squares n=", n, " bitwise repeatable"));
                   }
                 }});

  out.push_back(bf16_param_copy_check());
  out.push_back(bf16_copy_bitwise_check());
  out.push_back(bf16_rounding_check());
  for (LinearKind kind : {LinearKind::dense, LinearKind::lowrank}) out.push_back(bf16_training_check(kind));

  // The whole model (whole_model_check): dense, low-rank and SLTrain projections (the CPU may take
  // SLTrain's factored path, the GPU always the materialized one), and the norm layouts: Mix-LN
  // (layer 0 of 2 Post-LN) and LayerNorm Scaling.
  for (LinearKind kind : {LinearKind::dense, LinearKind::lowrank, LinearKind::sltrain})
    out.push_back(whole_model_check(str("model_", linear_kind_name(kind)), check_model_config(kind)));
  ModelConfig mix = check_model_config();
  mix.norm_layout = NormLayout::mix;
  mix.mix_ln_alpha = 0.5;
  out.push_back(whole_model_check("model_mix_ln", mix));
  ModelConfig scaled = check_model_config();
  scaled.norm_scaling = true;
  out.push_back(whole_model_check("model_ln_scaling", scaled));
  // Grouped-query attention (4 query heads, 1 key/value head) with a head size that is not dim /
  // n_heads and llama3 rope scaling; and 2:1 groups with low-rank projections.
  ModelConfig gqa = check_model_config();
  gqa.n_kv_heads = 1;
  gqa.head_dim = 24;
  gqa.rope_type = "llama3";
  gqa.rope_original_context = 16;
  out.push_back(whole_model_check("model_gqa_llama3", gqa));
  ModelConfig gqa_lowrank = check_model_config(LinearKind::lowrank);
  gqa_lowrank.n_kv_heads = 2;
  out.push_back(whole_model_check("model_gqa_lowrank", gqa_lowrank));
  for (CudaCheck& check : cuda_training_checks()) out.push_back(std::move(check));
  for (CudaCheck& check : cuda_step_checks()) out.push_back(std::move(check));
  return out;
}

}  // namespace cairn
