// The CUDA backend's bf16 mode: the GEMM on cuBLASLt (see bf16_gemm.h), the fp32 → bf16
// conversion kernels, and the registry of parameter buffers whose bf16 copies matmul reads.
#include "backend/cuda/bf16_gemm.h"

#include <algorithm>

#include "backend/bf16.h"
#include "backend/cuda/cuda_common.cuh"

namespace cairn {

// ---- conversion kernels ---------------------------------------------------------------------------

// Four values per thread when both pointers allow 16-byte loads and 8-byte stores, else one.
static __global__ void round_nearest_vec4_kernel(ushort4* out, const float4* in, int64_t n4) {
  CAIRN_GRID_STRIDE(i, n4) {
    const float4 v = in[i];
    out[i] = make_ushort4(bf16_round_nearest(v.x), bf16_round_nearest(v.y), bf16_round_nearest(v.z),
                          bf16_round_nearest(v.w));
  }
}

static __global__ void round_nearest_kernel(uint16_t* out, const float* in, int64_t n) {
  CAIRN_GRID_STRIDE(i, n) out[i] = bf16_round_nearest(in[i]);
}

static __global__ void round_params_kernel(uint16_t* out, const float* in, int64_t first_index, int64_t n) {
  CAIRN_GRID_STRIDE(i, n) out[i] = bf16_round_param(first_index + i, in[i]);
}

void bf16_round_nearest_launch(uint16_t* out, const float* in, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  const bool vec = reinterpret_cast<uintptr_t>(in) % 16 == 0 && reinterpret_cast<uintptr_t>(out) % 8 == 0;
  const int64_t n4 = vec ? n / 4 : 0;
  if (n4 > 0) {
    round_nearest_vec4_kernel<<<grid_for(n4, 256), 256, 0, stream>>>(reinterpret_cast<ushort4*>(out),
                                                                      reinterpret_cast<const float4*>(in), n4);
    CUDA_CHECK_LAUNCH();
  }
  const int64_t rest = n - 4 * n4;
  if (rest > 0) {
    round_nearest_kernel<<<grid_for(rest, 256), 256, 0, stream>>>(out + 4 * n4, in + 4 * n4, rest);
    CUDA_CHECK_LAUNCH();
  }
}

void bf16_round_params_launch(uint16_t* out, const float* in, int64_t first_index, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  round_params_kernel<<<grid_for(n, 256), 256, 0, stream>>>(out, in, first_index, n);
  CUDA_CHECK_LAUNCH();
}

// ---- cuBLASLt ---------------------------------------------------------------------------------------

namespace {

constexpr size_t kWorkspaceBytes = size_t(32) << 20;  // what cuBLASLt's Hopper kernels ask for at most

// The largest power of two ≤ 256 dividing the address: cuBLASLt's heuristic assumes 256-byte
// aligned operands unless told otherwise, and parameter tensors start at arbitrary offsets.
// In a batch, every entry's address counts: also the stride's.
uint32_t alignment_of(const void* p, int64_t batch = 1, int64_t stride_bytes = 0) {
  const uintptr_t v = reinterpret_cast<uintptr_t>(p) | (batch > 1 ? uintptr_t(stride_bytes) : 0);
  uint32_t a = 256;
  while (a > 1 && v % a != 0) a /= 2;
  return a;
}

}  // namespace

struct Bf16Gemm::Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;  // cuBLAS's A, B, C (= D)
  cublasLtMatmulAlgo_t algo{};
  bool use_lt = true;  // false: no cuBLASLt algorithm, cublasGemmEx instead
  ~Plan() {
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (desc) cublasLtMatmulDescDestroy(desc);
  }
};

Bf16Gemm::Bf16Gemm(cudaStream_t stream, cublasHandle_t cublas) : stream_(stream), cublas_(cublas) {
  CUBLAS_CHECK(cublasLtCreate(&handle_));
  const cudaError_t e = cudaMalloc(&workspace_, kWorkspaceBytes);
  if (e != cudaSuccess) {
    cublasLtDestroy(handle_);
    CUDA_CHECK(e);
  }
}

Bf16Gemm::~Bf16Gemm() {
  plans_.clear();
  if (staging_) cudaFree(staging_);
  if (workspace_) cudaFree(workspace_);
  if (handle_) cublasLtDestroy(handle_);
}

bool Bf16Gemm::staging(std::initializer_list<int64_t> elems, uint16_t** areas) const {
  int64_t need = 0;
  for (int64_t e : elems) need += (e + 127) / 128 * 128;  // 128 bf16 = 256 bytes
  const bool grow = need > staging_elems_;
  if (grow) {
    CUDA_CHECK(cudaStreamSynchronize(stream_));  // earlier GEMMs may still read the old buffer
    if (staging_) CUDA_CHECK(cudaFree(staging_));
    staging_ = nullptr;
    staging_elems_ = 0;
    void* p = nullptr;
    const cudaError_t e = cudaMalloc(&p, size_t(need) * 2);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      throw Error(str("out of GPU memory allocating ", need * 2, " bytes of bf16 GEMM staging: lower "
                      "training.micro_batch or model size"));
    }
    staging_ = static_cast<uint16_t*>(p);
    staging_elems_ = need;
  }
  int64_t at = 0;
  for (int64_t e : elems) {
    *areas++ = staging_ + at;
    at += (e + 127) / 128 * 128;
  }
  return grow;
}

// Row-major out = op(a)·op(b) is column-major outᵀ[N,M] = op(b)ᵀ·op(a)ᵀ: cuBLAS's A is b and its B
// is a, transpose flags kept. A row-major [R,C] matrix is a column-major [C,R] one with ld = C.
const Bf16Gemm::Plan& Bf16Gemm::plan(const Key& key) const {
  auto it = plans_.find(key);
  if (it != plans_.end()) return *it->second;
  const auto [trans_a, trans_b, M, N, K, align_a, align_b, align_out, batch, stride_out, stride_a, stride_b] = key;
  auto p = std::make_unique<Plan>();
  CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t op_a = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;  // cuBLAS's A is our b
  const cublasOperation_t op_b = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof op_a));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof op_b));
  // Stored (before op) column-major shapes: b is [N,K] (ld N) or, transposed, [K,N] (ld K);
  // a is [K,M] (ld K) or, transposed, [M,K] (ld M); out is [N,M] (ld N).
  const uint64_t ar = uint64_t(trans_b ? K : N), ac = uint64_t(trans_b ? N : K);
  const uint64_t br = uint64_t(trans_a ? M : K), bc = uint64_t(trans_a ? K : M);
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->a, CUDA_R_16BF, ar, ac, int64_t(ar)));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->b, CUDA_R_16BF, br, bc, int64_t(br)));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->c, CUDA_R_32F, uint64_t(N), uint64_t(M), N));
  if (batch > 1) {  // strided batch: cuBLAS's A is our b, its B our a
    const int32_t count = int32_t(batch);
    const std::pair<cublasLtMatrixLayout_t, int64_t> strided[] = {{p->a, stride_b}, {p->b, stride_a}, {p->c, stride_out}};
    for (const auto& [layout, stride] : strided) {
      CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof count));
      CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride,
                                                    sizeof stride));
    }
  }

  cublasLtMatmulPreference_t pref = nullptr;
  CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t ws = kWorkspaceBytes;
  const uint32_t al_a = align_b, al_b = align_a;  // cuBLAS's A is our b
  cublasLtMatmulHeuristicResult_t result{};
  int returned = 0;
  cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof al_a);
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof al_b);
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_out, sizeof align_out);
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_out, sizeof align_out);
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulAlgoGetHeuristic(handle_, p->desc, p->a, p->b, p->c, p->c, pref, 1, &result, &returned);
  cublasLtMatmulPreferenceDestroy(pref);
  // NOT_SUPPORTED (or no result) means no algorithm fits these operands: cublasGemmEx handles any
  // leading dimension and alignment, with the same types and accumulation.
  if (st != CUBLAS_STATUS_NOT_SUPPORTED) CUBLAS_CHECK(st);
  p->use_lt = st == CUBLAS_STATUS_SUCCESS && returned > 0 && result.state == CUBLAS_STATUS_SUCCESS;
  if (p->use_lt) p->algo = result.algo;
  return *plans_.emplace(key, std::move(p)).first->second;
}

void Bf16Gemm::run(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* a,
                   const uint16_t* b, float beta, float* out, int64_t batch, int64_t stride_out, int64_t stride_a,
                   int64_t stride_b) const {
  CAIRN_ASSERT(M > 0 && N > 0 && K > 0 && batch > 0, "bf16 GEMM of an empty shape");
  if (batch == 1) stride_out = stride_a = stride_b = 0;  // one plan per shape whatever the caller passed
  const Plan& p = plan({trans_a, trans_b, M, N, K, alignment_of(a, batch, 2 * stride_a),
                        alignment_of(b, batch, 2 * stride_b), alignment_of(out, batch, 4 * stride_out), batch,
                        stride_out, stride_a, stride_b});
  if (p.use_lt) {
    CUBLAS_CHECK(cublasLtMatmul(handle_, p.desc, &alpha, b, p.a, a, p.b, &beta, out, p.c, out, p.c, &p.algo,
                                workspace_, kWorkspaceBytes, stream_));
    return;
  }
  CAIRN_ASSERT(M <= INT32_MAX && N <= INT32_MAX && K <= INT32_MAX && batch <= INT32_MAX, "GEMM dimension beyond int");
  CUBLAS_CHECK(cublasGemmStridedBatchedEx(cublas_, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                          trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, int(N), int(M), int(K), &alpha, b,
                                          CUDA_R_16BF, int(trans_b ? K : N), stride_b, a, CUDA_R_16BF,
                                          int(trans_a ? M : K), stride_a, &beta, out, CUDA_R_32F, int(N), stride_out,
                                          int(batch), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

// ---- the backend's bf16 mode ------------------------------------------------------------------------

void CudaBackend::register_parameters(const float* base, int64_t n) const {
  if (math_ != CudaMath::bf16 || n == 0) return;
  const auto it = alloc_bytes_.find(base);
  CAIRN_ASSERT(it != alloc_bytes_.end() && n > 0 && n * 4 <= it->second,
               "register_parameters needs a pointer returned by alloc() and n floats inside that allocation");
  for (const ParamShadow& s : shadows_) CAIRN_ASSERT(s.base != base, "parameters registered twice");
  uint16_t* copy = static_cast<uint16_t*>(alloc(n * 2));
  shadows_.push_back({base, n, copy});
  params_written(base, n * 4);
}

void CudaBackend::parameters_changed(const float* p, int64_t n) const { params_written(p, n * 4); }

// Addresses compared as integers: the pointers may belong to different allocations.
const CudaBackend::ParamShadow* CudaBackend::shadow_containing(const float* p, int64_t n) const {
  const uintptr_t lo = reinterpret_cast<uintptr_t>(p), hi = lo + uintptr_t(n) * 4;
  for (const ParamShadow& s : shadows_) {
    const uintptr_t b = reinterpret_cast<uintptr_t>(s.base), e = b + uintptr_t(s.n) * 4;
    if (lo >= b && hi <= e && (lo - b) % 4 == 0) return &s;
  }
  return nullptr;
}

void CudaBackend::params_written(const void* p, int64_t bytes) const {
  if (shadows_.empty() || bytes <= 0) return;
  const uintptr_t lo = reinterpret_cast<uintptr_t>(p), hi = lo + uintptr_t(bytes);
  for (const ParamShadow& s : shadows_) {
    const uintptr_t b = reinterpret_cast<uintptr_t>(s.base), e = b + uintptr_t(s.n) * 4;
    if (hi <= b || lo >= e) continue;
    const int64_t first = int64_t((std::max(lo, b) - b) / 4), end = int64_t((std::min(hi, e) - b + 3) / 4);
    bf16_round_params_launch(s.bf16 + first, s.base + first, first, end - first, stream_);
  }
}

// Operands inside a registered buffer are read from its bf16 copy; the others are rounded to
// nearest into the staging buffer first, once per call (a stride-0 operand of a batch once for
// all of it), keeping their batch strides. The output and its accumulation stay fp32.
void CudaBackend::matmul_bf16(float* out, const float* a, const float* b, int64_t M, int64_t N, int64_t K,
                              bool trans_a, bool trans_b, float alpha, float beta, int64_t batch, int64_t stride_out,
                              int64_t stride_a, int64_t stride_b) const {
  if (M == 0 || N == 0) return;
  if (K == 0) {  // op(a)·op(b) is empty: out = beta·out, exactly 0 for beta = 0 (BLAS semantics)
    for (int64_t i = 0; i < batch; ++i) {
      if (beta == 0.0f) {
        CUDA_CHECK(cudaMemsetAsync(out + i * stride_out, 0, size_t(M * N) * 4, stream_));
      } else {
        scale_inplace(out + i * stride_out, beta, M * N);
      }
    }
    return;
  }
  const int64_t span_a = (batch - 1) * stride_a + M * K, span_b = (batch - 1) * stride_b + K * N;
  const ParamShadow* sa = shadow_containing(a, span_a);
  const ParamShadow* sb = shadow_containing(b, span_b);
  uint16_t* stage[2];
  bf16_staging({sa ? 0 : span_a, sb ? 0 : span_b}, stage);
  const uint16_t* a16 = bf16_operand(sa, a, span_a, stage[0]);
  const uint16_t* b16 = bf16_operand(sb, b, span_b, stage[1]);
  bf16_->run(trans_a, trans_b, M, N, K, alpha, a16, b16, beta, out, batch, stride_out, stride_a, stride_b);
}

void CudaBackend::bf16_staging(std::initializer_list<int64_t> elems, uint16_t** areas) const {
  if (bf16_->staging(elems, areas)) {
    CAIRN_ASSERT(!capturing_, "bf16 GEMM staging grew inside a graph capture (the warm-up did not need it)");
    drop_graphs();
  }
}

const uint16_t* CudaBackend::bf16_operand(const ParamShadow* shadow, const float* p, int64_t n, uint16_t* stage) const {
  if (shadow) return shadow->bf16 + (p - shadow->base);
  bf16_round_nearest_launch(stage, p, n, stream_);
  return stage;
}

// bf16: dy and x rounded once for the weight gradients and the input gradient (two matmuls would
// round dy twice); the weights read from the parameters' copy. fp32/TF32: the matmuls.
void CudaBackend::linear_backward(float* dw, float* dx, const float* dy, const float* x, const float* w, int64_t N,
                                  int64_t out, int64_t in, int64_t k, bool accumulate_dx) const {
  if (math_ != CudaMath::bf16 || N == 0 || out == 0 || in == 0 || k == 0) {
    Backend::linear_backward(dw, dx, dy, x, w, N, out, in, k, accumulate_dx);
    return;
  }
  const ParamShadow* sdy = shadow_containing(dy, k * N * out);
  const ParamShadow* sx = shadow_containing(x, N * in);
  const ParamShadow* sw = shadow_containing(w, k * out * in);
  uint16_t* stage[3];
  bf16_staging({sdy ? 0 : k * N * out, sx ? 0 : N * in, sw ? 0 : k * out * in}, stage);
  const uint16_t* dy16 = bf16_operand(sdy, dy, k * N * out, stage[0]);
  const uint16_t* x16 = bf16_operand(sx, x, N * in, stage[1]);
  const uint16_t* w16 = bf16_operand(sw, w, k * out * in, stage[2]);
  bf16_->run(true, false, out, in, N, 1.0f, dy16, x16, 1.0f, dw, k, out * in, N * out, 0);
  params_written(dw, k * out * in * 4);
  for (int64_t i = 0; i < k; ++i)
    bf16_->run(false, false, N, in, out, 1.0f, dy16 + i * N * out, w16 + i * out * in,
               accumulate_dx || i > 0 ? 1.0f : 0.0f, dx, 1, 0, 0, 0);
  params_written(dx, N * in * 4);
}

}  // namespace cairn
