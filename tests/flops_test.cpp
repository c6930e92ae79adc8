// MFU's two numbers. Model FLOPs: each linear kind's forward/backward count against hand counts,
// and the whole model's count against the GEMM work a step actually asks the backend for (a
// backend that adds up every matmul); dense models keep 6·N. The peak: a measurement is cached
// per host, backend and threads and reused, a corrupt cache is measured over and rewritten, a
// backend's own (datasheet) peak comes before both, and training.peak_flops overrides everything.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "backend/forwarding_backend.h"
#include "model/linear_sltrain.h"
#include "model/llama.h"
#include "tests/test_support.h"
#include "trainer/peak_flops.h"

namespace cairn {
namespace {

LinearConfig linear_config(LinearKind kind, SLTrainPathSetting path = SLTrainPathSetting::automatic) {
  LinearConfig c;
  c.kind = kind;
  c.rank = 3;
  c.density = 0.3f;  // nnz = floor(0.3·7·5) = 10
  c.sltrain_path = path;
  return c;
}

LinearFlops flops_of(const LinearConfig& c, const Backend& be = cpu_backend()) {
  return make_linear(c, "w", /*out=*/7, /*in=*/5, 0)->flops(be, /*N=*/4);
}

TEST(LinearFlops, EachKindMatchesItsHandCount) {
  // out 7, in 5, N 4, r 3, nnz 10.
  const LinearFlops dense = flops_of(linear_config(LinearKind::dense));
  EXPECT_EQ(dense.forward, 2 * 4 * 7 * 5);       // y = x·Wᵀ
  EXPECT_EQ(dense.backward, 2 * (2 * 4 * 7 * 5));  // dW, dx
  const LinearFlops lowrank = flops_of(linear_config(LinearKind::lowrank));
  EXPECT_EQ(lowrank.forward, 2 * 4 * 3 * 5 + 2 * 4 * 3 * 7);  // t = x·Aᵀ, y = s·t·Bᵀ
  // t again, dB = s·dyᵀ·t, u = dy·B, dA = s·uᵀ·x, dx = s·u·A
  EXPECT_EQ(lowrank.backward, 2 * 4 * 3 * 5 + 2 * 7 * 3 * 4 + 2 * 4 * 3 * 7 + 2 * 3 * 5 * 4 + 2 * 4 * 5 * 3);
  const LinearFlops factored = flops_of(linear_config(LinearKind::sltrain, SLTrainPathSetting::factored));
  EXPECT_EQ(factored.forward, lowrank.forward + 2 * 4 * 10);        // + x·Sᵀ
  EXPECT_EQ(factored.backward, lowrank.backward + 2 * (2 * 4 * 10));  // + dy·S, sampled dvalues
  const LinearFlops materialized = flops_of(linear_config(LinearKind::sltrain, SLTrainPathSetting::materialized));
  const double form = 2 * 7 * 5 * 3 + 10;  // W = s·B·A, then the scatter of S
  EXPECT_EQ(materialized.forward, form + 2 * 4 * 7 * 5);
  // W again, dx = dy·W, dW = dyᵀ·x, dB = s·dW·Aᵀ, dA = s·Bᵀ·dW, the gather of dvalues
  EXPECT_EQ(materialized.backward, form + 2 * 4 * 5 * 7 + 2 * 7 * 5 * 4 + 2 * 7 * 3 * 5 + 2 * 3 * 5 * 7 + 10);
}

// "auto" counts the path it takes: on the CPU backend the cost rule's, elsewhere materialized.
TEST(LinearFlops, AutoCountsThePathItTakes) {
  const auto lin = make_linear(linear_config(LinearKind::sltrain), "w", 7, 5, 0);
  const auto& sl = dynamic_cast<const SLTrainLinear&>(*lin);
  const LinearFlops a = lin->flops(cpu_backend(), 4);
  const LinearFlops want =
      flops_of(linear_config(LinearKind::sltrain, sl.path_for(4) == SLTrainPath::factored ? SLTrainPathSetting::factored : SLTrainPathSetting::materialized));
  EXPECT_EQ(a.forward, want.forward);
  EXPECT_EQ(a.backward, want.backward);
  const ForwardingBackend off_host(cpu_backend());
  EXPECT_EQ(lin->flops(off_host, 4).forward, flops_of(linear_config(LinearKind::sltrain, SLTrainPathSetting::materialized)).forward);
}

// A CPU backend that adds up the FLOPs of what it is asked to do: 2·M·N·K per matmul (per product
// of a batched one; linear_backward's weight and input gradients of k projections), one per
// scattered or gathered value. Attention runs inside its own op and is not counted here.
class FlopCounter final : public ForwardingBackend {
 public:
  FlopCounter() : ForwardingBackend(cpu_backend()) {}
  void matmul(float* out, const float* a, const float* b, int64_t M, int64_t N, int64_t K, bool ta, bool tb,
              float alpha, float beta) const override {
    flops += 2.0 * double(M) * double(N) * double(K);
    ForwardingBackend::matmul(out, a, b, M, N, K, ta, tb, alpha, beta);
  }
  void matmul_batched(float* out, const float* a, const float* b, int64_t M, int64_t N, int64_t K, bool ta, bool tb,
                      float alpha, float beta, int64_t batch, int64_t so, int64_t sa, int64_t sb) const override {
    flops += 2.0 * double(M) * double(N) * double(K) * double(batch);
    ForwardingBackend::matmul_batched(out, a, b, M, N, K, ta, tb, alpha, beta, batch, so, sa, sb);
  }
  void linear_backward(float* dw, float* dx, const float* dy, const float* x, const float* w, int64_t N, int64_t out,
                       int64_t in, int64_t k, bool acc) const override {
    flops += 4.0 * double(N) * double(out) * double(in) * double(k);
    ForwardingBackend::linear_backward(dw, dx, dy, x, w, N, out, in, k, acc);
  }
  void scatter_add(float* dst, const int32_t* idx, const float* v, int64_t n) const override {
    flops += double(n);
    ForwardingBackend::scatter_add(dst, idx, v, n);
  }
  void gather_add(float* dst, const float* src, const int32_t* idx, int64_t n) const override {
    flops += double(n);
    ForwardingBackend::gather_add(dst, src, idx, n);
  }
  mutable double flops = 0;
};

TEST(ModelFlops, ATrainingStepDoesTheCountedWork) {
  // Each kind with multi-head attention, and with grouped-query attention (4 query heads of size 6
  // sharing 2 key/value heads: q, k, v and o of three different shapes).
  for (LinearKind kind : {LinearKind::dense, LinearKind::lowrank, LinearKind::sltrain})
  for (bool gqa : {false, true}) {
    SCOPED_TRACE(str(linear_kind_name(kind), gqa ? " GQA" : ""));
    ModelConfig c;
    c.vocab_size = 50, c.dim = 16, c.n_layers = 2, c.n_heads = 2, c.ffn_dim = 24, c.seq_len = 8;
    if (gqa) c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 6;
    c.linear = linear_config(kind);
    const int64_t B = 3, N = B * c.seq_len;
    const FlopCounter be;  // off the host: SLTrain takes its materialized path, as counted
    LlamaModel model(c, be, B);
    model.init_weights(1);
    const auto in = random_tokens(N, c.vocab_size, 1), tg = random_tokens(N, c.vocab_size, 2);
    be.flops = 0;
    model.forward_backward(in.data(), tg.data(), B, 1.0f);
    const double attention = 12.0 * double(c.n_layers * c.q_dim() * c.seq_len) * double(N);
    const double counted = training_flops_per_token(c, be, N) * double(N) - attention;  // divided by N and back
    EXPECT_NEAR(be.flops, counted, 1e-9 * counted);
  }
}

TEST(ModelFlops, DenseKeepsSixFlopsPerParameterAndFactoredKindsCountTheirOwn) {
  ModelConfig c;
  c.vocab_size = 32000, c.dim = 512, c.n_layers = 8, c.n_heads = 8, c.ffn_dim = 1376, c.seq_len = 256;
  const double C = 512, F = 1376, L = 8, V = 32000, T = 256;
  EXPECT_EQ(training_flops_per_token(c, cpu_backend(), 2048),
            6 * (L * (4 * C * C + 3 * C * F) + V * C) + 12 * L * C * T);
  c.linear.kind = LinearKind::lowrank;
  c.linear.rank = 128;
  const double r = 128;
  const double per_weight = [&] {  // 2r(in+out) forward + 2r(3in+2out) backward, per token
    double s = 0;
    for (auto [out, in] : {std::pair{C, C}, std::pair{C, C}, std::pair{C, C}, std::pair{C, C}, std::pair{F, C},
                           std::pair{F, C}, std::pair{C, F}})
      s += 2 * r * (in + out) + 2 * r * (3 * in + 2 * out);
    return s;
  }();
  EXPECT_EQ(training_flops_per_token(c, cpu_backend(), 2048), L * per_weight + 6 * V * C + 12 * L * C * T);
}

// A backend whose GEMMs cost nothing and are counted: measurements are instant and visible.
class InstantGemm final : public ForwardingBackend {
 public:
  InstantGemm() : ForwardingBackend(cpu_backend()) {}
  std::string name() const override { return "instant-gemm"; }
  void matmul(float*, const float*, const float*, int64_t, int64_t, int64_t, bool, bool, float, float) const override {
    ++calls;
  }
  mutable int64_t calls = 0;
};

class PeakCacheTest : public ScratchDirTest {
 protected:
  void SetUp() override {
    ScratchDirTest::SetUp();
    setenv("XDG_CACHE_HOME", dir_.c_str(), 1);
  }
  void TearDown() override {
    unsetenv("XDG_CACHE_HOME");
    ScratchDirTest::TearDown();
  }
  std::string cache() const { return (dir_ / "cairn" / "peak.json").string(); }
};

TEST_F(PeakCacheTest, AMeasurementIsCachedPerHostBackendAndThreadsAndReused) {
  EXPECT_EQ(peak_cache_path(), cache());
  const InstantGemm be;
  const PeakFlops first = resolve_peak_flops(0, be, 3);
  EXPECT_GT(be.calls, 0);
  EXPECT_GT(first.flops, 0);
  EXPECT_NE(first.source.find("now, cached in " + cache()), std::string::npos) << first.source;
  std::ifstream in(cache());
  const auto j = nlohmann::json::parse(in);
  EXPECT_EQ(j["format"], 2);
  EXPECT_EQ(j["peaks"][peak_cache_key(be, 3)].get<double>(), first.flops);

  be.calls = 0;
  const PeakFlops again = resolve_peak_flops(0, be, 3);
  EXPECT_EQ(be.calls, 0) << "the cached peak was measured again";
  EXPECT_EQ(again.flops, first.flops);
  EXPECT_NE(again.source.find("cached in"), std::string::npos) << again.source;

  resolve_peak_flops(0, be, 4);  // another thread count is another machine configuration
  EXPECT_GT(be.calls, 0);
  EXPECT_NE(peak_cache_key(be, 3), peak_cache_key(be, 4));
  EXPECT_NE(peak_cache_key(be, 3), peak_cache_key(cpu_backend(), 3));
  // The CPU's math modes are two peaks, each keyed by the mode's GEMM libraries in name order (a
  // build with other libraries measures anew; the library the backend prefers does not matter).
  const std::string fp32 = peak_cache_key(cpu_backend(), 3), bf16 = peak_cache_key(cpu_backend(CpuMath::bf16), 3);
  EXPECT_NE(fp32, bf16);
  const size_t open = fp32.find(" cpu 3 threads [");
  ASSERT_NE(open, std::string::npos) << fp32;
  const std::string libs = fp32.substr(open + 16, fp32.find(']', open) - open - 16);
  std::vector<std::string> names;
  for (size_t at = 0; at <= libs.size();) {
    const size_t plus = std::min(libs.find('+', at), libs.size());
    names.push_back(libs.substr(at, plus - at));
    at = plus + 1;
  }
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end())) << fp32;
  EXPECT_NE(std::find(names.begin(), names.end(), "openblas"), names.end()) << fp32;
  EXPECT_NE(bf16.find(" cpu-bf16 3 threads ["), std::string::npos) << bf16;

  be.calls = 0;
  const PeakFlops configured = resolve_peak_flops(5e9, be, 3);
  EXPECT_EQ(configured.flops, 5e9);
  EXPECT_EQ(be.calls, 0);
}

TEST_F(PeakCacheTest, ACorruptOrForeignCacheIsMeasuredOverAndRewritten) {
  const InstantGemm be;
  for (const std::string& bad : {std::string("{\"format\": 1, \"peaks\": {\"x\": "), std::string("[1, 2]"),
                                 nlohmann::json{{"format", 1}, {"peaks", {{peak_cache_key(be, 1), 7.0}}}}.dump(),
                                 nlohmann::json{{"format", 3}, {"peaks", {{peak_cache_key(be, 1), 7.0}}}}.dump(),
                                 nlohmann::json{{"format", 2}, {"peaks", {{peak_cache_key(be, 1), -7.0}}}}.dump()}) {
    SCOPED_TRACE(bad);
    std::filesystem::create_directories(dir_ / "cairn");
    std::ofstream(cache()) << bad;
    be.calls = 0;
    const PeakFlops p = resolve_peak_flops(0, be, 1);
    EXPECT_GT(be.calls, 0);
    EXPECT_GT(p.flops, 0);
    std::ifstream in(cache());
    const auto j = nlohmann::json::parse(in, nullptr, false);
    ASSERT_FALSE(j.is_discarded());
    EXPECT_EQ(j["peaks"][peak_cache_key(be, 1)].get<double>(), p.flops);
  }
}

// A GPU backend knows its datasheet peak: neither measured nor cached; a configured peak still wins.
TEST_F(PeakCacheTest, ABackendsOwnPeakComesBeforeTheMeasurement) {
  class Datasheet final : public ForwardingBackend {
   public:
    using ForwardingBackend::ForwardingBackend;
    Peak peak_flops() const override { return {989e12, "datasheet bf16 dense peak of a test device"}; }
  };
  const InstantGemm gemm;
  const Datasheet be(gemm);
  const PeakFlops p = resolve_peak_flops(0, be, 1);
  EXPECT_EQ(p.flops, 989e12);
  EXPECT_EQ(p.source, "datasheet bf16 dense peak of a test device");
  EXPECT_EQ(gemm.calls, 0);
  EXPECT_FALSE(std::filesystem::exists(cache()));
  EXPECT_EQ(resolve_peak_flops(5e9, be, 1).flops, 5e9);
}

TEST_F(PeakCacheTest, AnUnwritableCacheIsSaidAndTheRunGoesOn) {
  std::ofstream(path("cairn")) << "a file where the cache directory should be";
  const InstantGemm be;
  const PeakFlops p = resolve_peak_flops(0, be, 1);
  EXPECT_GT(p.flops, 0);
  EXPECT_NE(p.source.find("not cached"), std::string::npos) << p.source;
}

}  // namespace
}  // namespace cairn
