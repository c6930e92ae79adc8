// cuDNN's fused scaled-dot-product attention (graph API through the header-only cudnn_frontend),
// the bf16 path of CudaBackend's attention: q, k, v (and dout) are converted to bf16 copies in the
// backend's scratch, cuDNN runs causal SDPA with fp32 softmax statistics, outputs come back as
// fp32. Built only with CAIRN_HAVE_CUDNN; included only by CUDA sources.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace cairn {

class CudaBackend;

class CudnnSdpa {
 public:
  virtual ~CudnnSdpa() = default;
  // Whether cuDNN has plans for this shape: builds the forward and backward graphs on the first
  // call per shape and caches them (and the answer). When false, *why says what cuDNN reported.
  virtual bool supports(int64_t B, int64_t T, int64_t NH, int64_t HS, std::string* why) = 0;
  // Bytes of the backend's scratch the forward or backward takes at a supported shape (bf16
  // copies and cuDNN's workspace), 0 at an unsupported one.
  virtual int64_t scratch_bytes(int64_t B, int64_t T, int64_t NH, int64_t HS) = 0;
  // Backend::attention_forward/backward for a supported shape. `saved` (cudnn_sdpa_saved_floats)
  // starts with the rows' log-sum-exp of the scaled scores [B,NH,T] (cuDNN's "Stats"), followed by
  // the bf16 q, k, v and output of the forward, which the backward reads instead of converting
  // q, k, v and out again (the same values: they are not changed in between).
  virtual void forward(float* out, float* saved, const float* q, const float* k, const float* v, int64_t B,
                       int64_t T, int64_t NH, int64_t HS) = 0;
  virtual void backward(float* dq, float* dk, float* dv, const float* dout, const float* saved, int64_t B, int64_t T,
                        int64_t NH, int64_t HS) = 0;
};

// Floats of the saved state at a shape: the LSE padded to 256 bytes, then four bf16 copies.
int64_t cudnn_sdpa_saved_floats(int64_t B, int64_t T, int64_t NH, int64_t HS);

// A cuDNN handle on be's stream. Null, with *why set, when cairn was built without cuDNN or cuDNN
// cannot start here (library missing or too old, no handle). Sets
// CUDNN_FRONTEND_ATTN_DP_WORKSPACE_LIMIT=0 for the process unless it is set: with cuDNN ≥ 9.25 on
// Hopper the deterministic backward then accumulates dQ in order, in a workspace linear in T,
// instead of a [B,NH,T,T] dP workspace (1 GiB at B32/NH16/T1024, 16 GiB at T4096).
std::unique_ptr<CudnnSdpa> make_cudnn_sdpa(const CudaBackend& be, std::string* why);

}  // namespace cairn
