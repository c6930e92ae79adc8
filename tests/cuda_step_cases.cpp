// Checks of the machinery around a GPU training step (part of the CUDA check table,
// tests/cuda_cases.h): uploads through the pinned staging ring, a micro-step replayed as a CUDA
// graph against its eager run and the CPU, a capture that an op throws out of, the growth of attention's workspace with T (cuDNN's
// deterministic backward must stay linear), and the peak that MFU divides by.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/forwarding_backend.h"
#include "model/llama.h"
#include "tests/cuda_cases.h"
#include "util/error.h"

namespace cairn {
namespace {

using Vec = std::vector<float>;

// Twelve small uploads queued behind a long GEMM, each from a host buffer overwritten as soon as the
// call returns: more uploads than staging slots, so a slot refilled before the device read its
// previous copy would leave a later upload's contents in an earlier buffer.
CudaCheck staging_ring_check() {
  return {"copy_to_device_staging_ring", [](Checker& c) {
            const Backend& be = backend_under_test();
            const int64_t n = 50000, big = 1024, uploads = 12;
            DeviceArray<float> a(be, big * big), out(be, big * big);
            a.zero();
            std::vector<DeviceArray<float>> bufs;
            for (int64_t i = 0; i < uploads; ++i) bufs.emplace_back(be, n);
            be.matmul(out.data(), a.data(), a.data(), big, big, big, false, false, 1.0f, 0.0f);  // keeps the GPU busy
            Vec host(static_cast<size_t>(n));
            for (int64_t i = 0; i < uploads; ++i) {
              for (int64_t j = 0; j < n; ++j) host[size_t(j)] = float(i * 100000 + j);
              be.copy_to_device(bufs[size_t(i)].data(), host.data(), n * 4);
              std::fill(host.begin(), host.end(), -1.0f);
            }
            for (int64_t i = 0; i < uploads; ++i) {
              Vec want(static_cast<size_t>(n));
              for (int64_t j = 0; j < n; ++j) want[size_t(j)] = float(i * 100000 + j);
              c.expect_close(str("upload ", i), want, download(be, bufs[size_t(i)].data(), n), 0, 0);
            }
          }};
}

// A micro-step of the check model, five times on alternating token batches a, b, a, b, a with zeroed
// gradients and fixed weights, then once more on a with grad_scale 0.5. On the CUDA backend the
// first runs eagerly, the second is captured, the rest replay (Backend::graph_begin): a replay must
// equal the eager run on the same tokens bit for bit (tokens are uploaded outside the graph), every
// run must follow the CPU, and the halved scale (a new graph key; a stale graph would bake the old
// scale in) must give exactly half the gradients.
CudaCheck graph_replay_check(CudaMath math) {
  const char* mode = math == CudaMath::bf16 ? "bf16" : "fp32";
  return {str("model_graph_replay_", mode), [math](Checker& c) {
            const ModelConfig cfg = check_model_config();
            const int64_t b = 3, n = b * cfg.seq_len;
            const CheckTokens tokens[2] = {check_tokens(n, 21), check_tokens(n, 22)};
            std::vector<float> losses[2];
            std::vector<Vec> grads[2];
            const Backend* backends[2] = {&cpu_backend(), &backend_under_test(math)};
            for (int k = 0; k < 2; ++k) {
              const Backend& be = *backends[k];
              LlamaModel m(cfg, be, b);
              m.init_weights(5);
              const int64_t total = m.params().total();
              for (int s = 0; s < 6; ++s) {
                const CheckTokens& t = tokens[s == 5 ? 0 : s % 2];
                m.zero_grads();
                losses[k].push_back(m.forward_backward(t.inputs.data(), t.targets.data(), b, s == 5 ? 0.5f : 1.0f));
                grads[k].push_back(download(be, m.grad_data(), total));
              }
            }
            const bool bf16 = math == CudaMath::bf16;
            float gmax = 0;
            for (float e : grads[0][0]) gmax = std::max(gmax, std::abs(e));
            for (size_t s = 0; s < losses[0].size(); ++s) {
              c.expect_close(str("loss ", s), losses[0][s], losses[1][s], bf16 ? 5e-3 : 1e-4, 0);
              c.expect_close(str("gradients ", s), grads[0][s], grads[1][s], bf16 ? 5e-2 : 1e-3,
                             (bf16 ? 2e-2 : 1e-4) * gmax);
            }
            for (size_t s = 2; s < 5; ++s) {
              c.expect(losses[1][s] == losses[1][s - 2], str("loss ", s, " equals loss ", s - 2, " bit for bit"));
              c.expect(grads[1][s] == grads[1][s - 2], str("gradients ", s, " equal gradients ", s - 2, " bit for bit"));
            }
            Vec half = grads[1][0];
            for (float& e : half) e *= 0.5f;
            c.expect_close("gradients at grad_scale 0.5", half, grads[1][5], 0, 0);
          }};
}

// cuDNN's deterministic SDPA backward must take the workspace linear in T (the ordered dQ
// accumulation, cuDNN >= 9.25 on Hopper), not the [B,NH,T,T] dP one: from T = 1024 to 4096 the
// attention scratch may grow 4× (4.5× allowed for padding), where the dP workspace alone would grow
// 16×. An older cuDNN has only the dP one (2 GiB here at T = 4096): the backend accepts it up to an
// eighth of the device's memory, past that the own kernel, which takes no scratch, runs. Plans only:
// nothing runs.
CudaCheck attention_workspace_check() {
  return {"attention_bf16_workspace_linear_in_T", [](Checker& c) {
            const Backend& be = backend_under_test(CudaMath::bf16);
            if (!is_cuda(be)) return;  // a property of cuDNN's plans
            const int64_t b = 4, nh = 16, hs = 64;
            const int64_t ws1 = be.attention_workspace_bytes(b, 1024, nh, hs);
            const std::string path1 = be.attention_path();
            const int64_t ws4 = be.attention_workspace_bytes(b, 4096, nh, hs);
            const std::string path4 = be.attention_path();
            c.expect(true, str("scratch ", ws1 >> 20, " MiB at T=1024 (", path1, "), ", ws4 >> 20, " MiB at T=4096 (",
                               path4, ")"));
            if (path4.rfind("cuDNN", 0) == 0) {
              const bool linear = ws1 > 0 && double(ws4) <= 4.5 * double(ws1);
              const auto memory = be.device_memory();
              c.expect(linear || (memory && ws4 <= std::max(int64_t(1) << 30, memory->total_bytes / 8)),
                       linear ? "cuDNN's workspace grows at most linearly in T"
                              : "cuDNN's dP workspace (cuDNN < 9.25: quadratic in T) is within an eighth of the device");
            } else {
              c.expect(ws4 == 0, "the own kernel takes no backend scratch");
            }
          }};
}

// The backend under test with one op failing once, inside the first capture (a key's second
// bracket): an exception out of a capture, as when an op the capture refuses runs in it.
class ThrowInFirstCapture final : public ForwardingBackend {
 public:
  using ForwardingBackend::ForwardingBackend;
  bool graph_begin(uint64_t key) const override {
    ++brackets_;
    return inner().graph_begin(key);
  }
  bool thrown() const { return thrown_; }
  mutable int64_t ops = 0;  // ops that ran through this wrapper, not inside a replayed graph

 protected:
  void run_op(const char* op, const std::function<void()>& call) const override {
    if (brackets_ == 2 && !thrown_ && std::string(op) == "rmsnorm_backward") {
      thrown_ = true;
      throw Error("rmsnorm_backward failed inside the capture (injected)");
    }
    ++ops;
    call();
  }

 private:
  mutable int brackets_ = 0;
  mutable bool thrown_ = false;
};

// Micro-steps on tokens a, b, a, b, a where the second one's capture fails (an op throws out of
// it): the capture must end, the micro-step run eagerly instead (Backend::run_graph) and graphs stay
// off, so every micro-step runs its ops eagerly, bitwise equal to the eager run on the same tokens
// and close to the CPU. TF32: the backend whose graphs this turns off is used by no graph check.
CudaCheck graph_capture_failure_check() {
  return {"model_graph_capture_failure_runs_eagerly", [](Checker& c) {
            const ModelConfig cfg = check_model_config();
            const int64_t b = 2, n = b * cfg.seq_len;
            const CheckTokens tokens[2] = {check_tokens(n, 31), check_tokens(n, 32)};
            const ThrowInFirstCapture failing(backend_under_test(CudaMath::tf32));
            std::vector<float> losses[2];
            std::vector<int64_t> ops;
            const Backend* backends[2] = {&cpu_backend(), &failing};
            for (int k = 0; k < 2; ++k) {
              LlamaModel m(cfg, *backends[k], b);
              m.init_weights(7);
              for (int s = 0; s < 5; ++s) {
                const CheckTokens& t = tokens[s % 2];
                const int64_t before = failing.ops;
                m.zero_grads();
                losses[k].push_back(m.forward_backward(t.inputs.data(), t.targets.data(), b, 1.0f));
                if (k == 1) ops.push_back(failing.ops - before);
              }
            }
            c.expect(failing.thrown(), "the second micro-step was captured and the injected failure thrown");
            for (size_t s = 0; s < losses[0].size(); ++s)
              c.expect_close(str("loss ", s), losses[0][s], losses[1][s], 1e-3, 0);
            for (size_t s = 2; s < 5; ++s)
              c.expect(losses[1][s] == losses[1][s - 2], str("loss ", s, " equals loss ", s - 2, " bit for bit"));
            for (size_t s = 2; s < 5; ++s)
              c.expect(ops[s] == ops[0], str("micro-step ", s, " ran its ", ops[0], " ops eagerly (ran ", ops[s],
                                             "): graphs are off"));
          }};
}

// MFU's denominator on the GPU: a datasheet entry for the device or a measurement, in range.
CudaCheck peak_check() {
  return {"peak_flops", [](Checker& c) {
            for (CudaMath math : {CudaMath::bf16, CudaMath::tf32, CudaMath::fp32}) {
              const Backend& be = backend_under_test(math);
              if (!is_cuda(be)) return;  // the CPU's peak is measured by the trainer
              const Backend::Peak p = be.peak_flops();
              c.expect(p.flops >= 1e12 && p.flops <= 1e16 && !p.source.empty(),
                       str(be.name(), ": ", p.flops / 1e12, " TFLOP/s (", p.source, ")"));
            }
          }};
}

}  // namespace

std::vector<CudaCheck> cuda_step_checks() {
  // The capture failure last: it turns graphs off for the rest of the process (in cuda_check, one
  // process runs the whole table).
  return {staging_ring_check(),          graph_replay_check(CudaMath::fp32), graph_replay_check(CudaMath::bf16),
          attention_workspace_check(),   peak_check(),                       graph_capture_failure_check()};
}

}  // namespace cairn
