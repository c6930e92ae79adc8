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
  // Backend::attention_forward/backward for a supported shape, with lse = the rows' log-sum-exp of
  // the scaled scores [B,NH,T] (cuDNN's "Stats"). backward re-rounds `out` to bf16, which gives back
  // exactly the bf16 output cuDNN's forward wrote.
  virtual void forward(float* out, float* lse, const float* q, const float* k, const float* v, int64_t B,
                       int64_t T, int64_t NH, int64_t HS) = 0;
  virtual void backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, int64_t B, int64_t T, int64_t NH,
                        int64_t HS) = 0;
};

// A cuDNN handle on be's stream. Null, with *why set, when cairn was built without cuDNN or cuDNN
// cannot start here (library missing or too old, no handle).
std::unique_ptr<CudnnSdpa> make_cudnn_sdpa(const CudaBackend& be, std::string* why);

}  // namespace cairn
