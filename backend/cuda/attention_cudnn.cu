// cuDNN SDPA for CudaBackend's bf16 mode (contract in attention_cudnn.h). The activations stay in
// their [B,T,C] layout: cuDNN reads head h of row t at t·C + h·HS through strides, so the only
// copies are the fp32↔bf16 conversions. Graphs are built once per shape and kept; the backward
// graph asks for cuDNN's deterministic algorithm, with the linear workspace (see the factory).
// Without CAIRN_HAVE_CUDNN only the factory exists.
#include "backend/cuda/attention_cudnn.h"
#include "backend/cuda/cuda_common.cuh"

#if CAIRN_HAVE_CUDNN
#include <cuda_bf16.h>
#include <cudnn.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <cstring>  // before cudnn_frontend.h, which uses std::strlen without including it
#include <map>
#include <unordered_map>

#include <cudnn_frontend.h>
#endif

namespace cairn {

#if CAIRN_HAVE_CUDNN
namespace {

namespace fe = cudnn_frontend;

// Each bf16 copy takes n elements rounded up to 256 bytes (cuDNN wants aligned tensors); so does
// the LSE at the start of the saved state.
int64_t slot_bytes(int64_t n) { return (n * 2 + 255) / 256 * 256; }
int64_t saved_lse_bytes(int64_t B, int64_t T, int64_t NH) { return (B * NH * T * 4 + 255) / 256 * 256; }

__global__ void to_bf16_kernel(__nv_bfloat16* dst, const float* src, int64_t n) {
  CAIRN_GRID_STRIDE(i, n) dst[i] = __float2bfloat16(src[i]);
}

__global__ void to_fp32_kernel(float* dst, const __nv_bfloat16* src, int64_t n) {
  CAIRN_GRID_STRIDE(i, n) dst[i] = __bfloat162float(src[i]);
}

enum Uid : int64_t { kQ = 1, kK, kV, kO, kStats, kdO, kdQ, kdK, kdV };

// One shape's graphs and workspace needs; ok false (with why) when cuDNN had no plan.
struct Plans {
  std::shared_ptr<fe::graph::Graph> fwd, bwd;
  int64_t fwd_ws = 0, bwd_ws = 0;
  bool ok = false;
  std::string why;
};

class CudnnSdpaImpl final : public CudnnSdpa {
 public:
  CudnnSdpaImpl(const CudaBackend& be, cudnnHandle_t handle) : be_(be), handle_(handle) {}
  ~CudnnSdpaImpl() override { cudnnDestroy(handle_); }
  CudnnSdpaImpl(const CudnnSdpaImpl&) = delete;
  CudnnSdpaImpl& operator=(const CudnnSdpaImpl&) = delete;

  bool supports(int64_t B, int64_t T, int64_t NH, int64_t HS, std::string* why) override {
    const Plans& p = plans(B, T, NH, HS);
    if (!p.ok && why) *why = p.why;
    return p.ok;
  }

  int64_t scratch_bytes(int64_t B, int64_t T, int64_t NH, int64_t HS) override {
    const Plans& p = plans(B, T, NH, HS);
    return p.ok ? std::max(p.fwd_ws, 4 * slot_bytes(B * T * NH * HS) + p.bwd_ws) : 0;
  }

  void forward(float* out, float* saved, const float* q, const float* k, const float* v, int64_t B, int64_t T,
               int64_t NH, int64_t HS) override {
    const Plans& p = plans(B, T, NH, HS);
    CAIRN_ASSERT(p.ok);
    const int64_t n = B * T * NH * HS;
    char* copies = saved_copies(saved, B, T, NH);
    __nv_bfloat16* b[4];
    for (int i = 0; i < 4; ++i) b[i] = bf16_at(copies, i, n);
    convert_in(b[0], q, n);
    convert_in(b[1], k, n);
    convert_in(b[2], v, n);
    std::unordered_map<int64_t, void*> pack = {{kQ, b[0]}, {kK, b[1]}, {kV, b[2]}, {kO, b[3]}, {kStats, saved}};
    execute(*p.fwd, pack, workspace(0, n, p.fwd_ws), "forward");
    convert_out(out, b[3], n);
  }

  void backward(float* dq, float* dk, float* dv, const float* dout, const float* saved, int64_t B, int64_t T,
                int64_t NH, int64_t HS) override {
    const Plans& p = plans(B, T, NH, HS);
    CAIRN_ASSERT(p.ok);
    const int64_t n = B * T * NH * HS;
    char* copies = saved_copies(const_cast<float*>(saved), B, T, NH);
    char* base = workspace(4, n, p.bwd_ws);
    __nv_bfloat16* b[4];  // dout, dq, dk, dv
    for (int i = 0; i < 4; ++i) b[i] = bf16_at(base, i, n);
    convert_in(b[0], dout, n);
    std::unordered_map<int64_t, void*> pack = {
        {kQ, bf16_at(copies, 0, n)}, {kK, bf16_at(copies, 1, n)}, {kV, bf16_at(copies, 2, n)},
        {kO, bf16_at(copies, 3, n)}, {kdO, b[0]}, {kdQ, b[1]}, {kdK, b[2]}, {kdV, b[3]},
        {kStats, const_cast<float*>(saved)}};
    execute(*p.bwd, pack, base + 4 * slot_bytes(n), "backward");
    convert_out(dq, b[1], n);
    convert_out(dk, b[2], n);
    convert_out(dv, b[3], n);
  }

 private:
  static __nv_bfloat16* bf16_at(char* base, int i, int64_t n) {
    return reinterpret_cast<__nv_bfloat16*>(base + i * slot_bytes(n));
  }
  // The saved state's bf16 copies of q, k, v, out, after the LSE.
  static char* saved_copies(float* saved, int64_t B, int64_t T, int64_t NH) {
    return reinterpret_cast<char*>(saved) + saved_lse_bytes(B, T, NH);
  }
  // The backend's scratch holding `slots` bf16 copies followed by cuDNN's workspace.
  char* workspace(int slots, int64_t n, int64_t cudnn_bytes) const {
    const int64_t bytes = slots * slot_bytes(n) + cudnn_bytes;
    return reinterpret_cast<char*>(be_.scratch((bytes + 3) / 4));
  }
  void convert_in(__nv_bfloat16* dst, const float* src, int64_t n) const {
    to_bf16_kernel<<<grid_for(n, 256), 256, 0, be_.stream()>>>(dst, src, n);
    CUDA_CHECK_LAUNCH();
  }
  void convert_out(float* dst, const __nv_bfloat16* src, int64_t n) const {
    to_fp32_kernel<<<grid_for(n, 256), 256, 0, be_.stream()>>>(dst, src, n);
    CUDA_CHECK_LAUNCH();
  }

  void execute(fe::graph::Graph& g, std::unordered_map<int64_t, void*>& pack, void* ws, const char* what) {
    std::string msg;
    try {
      auto err = g.execute(handle_, pack, ws);
      if (err.is_good()) return;
      msg = err.get_message();
    } catch (const std::exception& e) {
      msg = e.what();
    }
    throw Error(str("attention: cuDNN SDPA ", what, " failed to run: ", msg));
  }

  const Plans& plans(int64_t B, int64_t T, int64_t NH, int64_t HS) {
    const std::array<int64_t, 4> key = {B, T, NH, HS};
    auto it = cache_.find(key);
    if (it == cache_.end()) it = cache_.emplace(key, build(B, T, NH, HS)).first;
    return it->second;
  }

  // Empty when g got a plan and its workspace size, else cuDNN's message.
  std::string plan(fe::graph::Graph& g, int64_t& ws_bytes) {
    auto built = g.build(handle_, {fe::HeurMode_t::A});
    if (built.is_bad()) return "build: " + built.get_message();
    auto sized = g.get_workspace_size(ws_bytes);
    if (sized.is_bad()) return "workspace: " + sized.get_message();
    return "";
  }

  Plans build(int64_t B, int64_t T, int64_t NH, int64_t HS) {
    Plans p;
    const std::string shape = str("B=", B, " T=", T, " NH=", NH, " HS=", HS);
    try {
      p.fwd = forward_graph(B, T, NH, HS);
      if (std::string e = plan(*p.fwd, p.fwd_ws); !e.empty()) {
        p.why = str("cuDNN has no forward plan for ", shape, " (", e, ")");
        return p;
      }
      p.bwd = backward_graph(B, T, NH, HS);
      if (std::string e = plan(*p.bwd, p.bwd_ws); !e.empty()) {
        p.why = str("cuDNN has no backward plan for ", shape, " (", e, ")");
        return p;
      }
      // The linear workspace of the ordered-dQ backward is a few fp32 copies of dQ; the dP one
      // (cuDNN < 9.25, or a GPU other than Hopper) is 2·B·NH·T² bytes: exactly 1 GiB at B32/NH16/
      // T1024. Tolerated up to an eighth of the device's memory (10 GB on an H100; the memory plan
      // counts it), past that the own kernel runs rather than a step running out of memory.
      const int64_t linear = 4 * B * NH * ((T + 127) / 128 * 128) * (HS + 16) * 4 + (int64_t(64) << 20);
      const auto memory = be_.device_memory();
      const int64_t cap = std::max(int64_t(1) << 30, memory ? memory->total_bytes / 8 : 0);
      if (p.bwd_ws > std::max(linear, cap)) {
        p.why = str("cuDNN ", cudnnGetVersion(), "'s deterministic backward wants a ", p.bwd_ws >> 20,
                    " MiB workspace for ", shape, ", more than the ", std::max(linear, cap) >> 20,
                    " MiB allowed (quadratic in T; cuDNN >= 9.25 on Hopper has a linear one)");
        return p;
      }
      p.ok = true;
    } catch (const std::exception& e) {
      p.why = str("cuDNN graph build threw for ", shape, ": ", e.what());
    }
    return p;
  }

  static std::shared_ptr<fe::graph::Graph> new_graph() {
    auto g = std::make_shared<fe::graph::Graph>();
    g->set_io_data_type(fe::DataType_t::BFLOAT16)
        .set_intermediate_data_type(fe::DataType_t::FLOAT)
        .set_compute_data_type(fe::DataType_t::FLOAT);
    return g;
  }
  // A [B,T,C] activation seen as (B, NH, T, HS) with head h at column h·HS.
  static void bshd(fe::graph::Tensor_attributes& t, const char* name, int64_t uid, int64_t B, int64_t T, int64_t NH,
                   int64_t HS) {
    t.set_name(name).set_uid(uid).set_dim({B, NH, T, HS}).set_stride({T * NH * HS, HS, NH * HS, 1});
  }
  static std::shared_ptr<fe::graph::Tensor_attributes> input(fe::graph::Graph& g, const char* name, int64_t uid,
                                                             int64_t B, int64_t T, int64_t NH, int64_t HS) {
    fe::graph::Tensor_attributes t;
    bshd(t, name, uid, B, T, NH, HS);
    return g.tensor(t);
  }
  static void stats_layout(fe::graph::Tensor_attributes& t, int64_t B, int64_t T, int64_t NH) {
    t.set_name("stats").set_uid(kStats).set_data_type(fe::DataType_t::FLOAT).set_dim({B, NH, T, 1}).set_stride(
        {NH * T, T, 1, 1});
  }

  static std::shared_ptr<fe::graph::Graph> forward_graph(int64_t B, int64_t T, int64_t NH, int64_t HS) {
    auto g = new_graph();
    auto Q = input(*g, "q", kQ, B, T, NH, HS), K = input(*g, "k", kK, B, T, NH, HS),
         V = input(*g, "v", kV, B, T, NH, HS);
    auto opts = fe::graph::SDPA_attributes()
                    .set_name("sdpa")
                    .set_generate_stats(true)
                    .set_causal_mask(true)
                    .set_attn_scale(1.0f / std::sqrt(float(HS)));
    auto [O, stats] = g->sdpa(Q, K, V, opts);
    O->set_output(true);
    bshd(*O, "o", kO, B, T, NH, HS);
    stats->set_output(true);
    stats_layout(*stats, B, T, NH);
    return g;
  }

  static std::shared_ptr<fe::graph::Graph> backward_graph(int64_t B, int64_t T, int64_t NH, int64_t HS) {
    auto g = new_graph();
    auto Q = input(*g, "q", kQ, B, T, NH, HS), K = input(*g, "k", kK, B, T, NH, HS),
         V = input(*g, "v", kV, B, T, NH, HS), O = input(*g, "o", kO, B, T, NH, HS),
         dO = input(*g, "do", kdO, B, T, NH, HS);
    fe::graph::Tensor_attributes st;
    stats_layout(st, B, T, NH);
    auto stats = g->tensor(st);
    auto opts = fe::graph::SDPA_backward_attributes()
                    .set_name("sdpa_backward")
                    .set_causal_mask(true)
                    .set_deterministic_algorithm(true)
                    .set_attn_scale(1.0f / std::sqrt(float(HS)));
    auto [dQ, dK, dV] = g->sdpa_backward(Q, K, V, O, dO, stats, opts);
    dQ->set_output(true);
    bshd(*dQ, "dq", kdQ, B, T, NH, HS);
    dK->set_output(true);
    bshd(*dK, "dk", kdK, B, T, NH, HS);
    dV->set_output(true);
    bshd(*dV, "dv", kdV, B, T, NH, HS);
    return g;
  }

  const CudaBackend& be_;
  cudnnHandle_t handle_;
  std::map<std::array<int64_t, 4>, Plans> cache_;
};

}  // namespace

int64_t cudnn_sdpa_saved_floats(int64_t B, int64_t T, int64_t NH, int64_t HS) {
  return (saved_lse_bytes(B, T, NH) + 4 * slot_bytes(B * T * NH * HS)) / 4;
}

std::unique_ptr<CudnnSdpa> make_cudnn_sdpa(const CudaBackend& be, std::string* why) {
  // Read by cudnn_frontend when it builds a backward graph; 0 = never the dP workspace. The
  // user's own setting wins (setenv does not overwrite).
  setenv("CUDNN_FRONTEND_ATTN_DP_WORKSPACE_LIMIT", "0", 0);
  cudnnHandle_t handle = nullptr;
  const cudnnStatus_t st = cudnnCreate(&handle);
  if (st != CUDNN_STATUS_SUCCESS) {
    *why = str("cudnnCreate failed: ", cudnnGetErrorString(st), " (cuDNN ", cudnnGetVersion(), " loaded)");
    return nullptr;
  }
  const cudnnStatus_t bound = cudnnSetStream(handle, be.stream());
  if (bound != CUDNN_STATUS_SUCCESS) {
    *why = str("cudnnSetStream failed: ", cudnnGetErrorString(bound));
    cudnnDestroy(handle);
    return nullptr;
  }
  return std::make_unique<CudnnSdpaImpl>(be, handle);
}

#else

int64_t cudnn_sdpa_saved_floats(int64_t B, int64_t T, int64_t NH, int64_t) { return B * NH * T; }

std::unique_ptr<CudnnSdpa> make_cudnn_sdpa(const CudaBackend&, std::string* why) {
  *why = "cairn was built without cuDNN (see the cuDNN= entry of the configure step's \"cairn features\" line)";
  return nullptr;
}

#endif

}  // namespace cairn
