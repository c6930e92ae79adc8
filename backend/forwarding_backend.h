// A Backend that forwards every call to another one, with enter(op)/leave(op) hooks around each
// op that touches backend memory, for decorators: a profiler (bench/op_profile.h) or a stand-in
// device whose memory the host cannot touch (tests/guarded_backend.h). Not the inner backend
// itself, so code that asks "is this the CPU backend?" sees an off-host backend.
#pragma once

#include <functional>

#include "backend/backend.h"

namespace cairn {

class ForwardingBackend : public Backend {
 public:
  explicit ForwardingBackend(const Backend& inner) : inner_(inner) {}
  const Backend& inner() const { return inner_; }

  std::string name() const override { return inner_.name(); }
  int64_t attention_saved_floats(int64_t B, int64_t T, int64_t NH, int64_t HS) const override {
    return inner_.attention_saved_floats(B, T, NH, HS);
  }
  int64_t attention_scratch_floats(int64_t B, int64_t T, int64_t NH, int64_t HS) const override {
    return inner_.attention_scratch_floats(B, T, NH, HS);
  }
  int64_t attention_workspace_bytes(int64_t B, int64_t T, int64_t NH, int64_t HS) const override {
    return inner_.attention_workspace_bytes(B, T, NH, HS);
  }
  std::string attention_path() const override { return inner_.attention_path(); }
  Peak peak_flops() const override { return inner_.peak_flops(); }
  void* compute_stream() const override { return inner_.compute_stream(); }
  std::string device_summary() const override { return inner_.device_summary(); }
  std::optional<DeviceMemory> device_memory() const override { return inner_.device_memory(); }
  int64_t parameter_copy_bytes(int64_t n) const override { return inner_.parameter_copy_bytes(n); }
  int64_t matmul_staging_bytes(int64_t floats) const override { return inner_.matmul_staging_bytes(floats); }
  void register_parameters(const float* base, int64_t n) const override { inner_.register_parameters(base, n); }
  void parameters_changed(const float* p, int64_t n) const override { inner_.parameters_changed(p, n); }
  void* alloc(int64_t bytes) const override { return inner_.alloc(bytes); }
  void release(void* p) const override { inner_.release(p); }

  // Graphs: the decorator sees the bracket (a test double may record or replay what is inside).
  bool graph_begin(uint64_t key) const override { return inner_.graph_begin(key); }
  void graph_end(uint64_t key) const override { inner_.graph_end(key); }
  bool graph_abort(const std::string& why) const override { return inner_.graph_abort(why); }

  // An op that writes backend memory and returns nothing goes through run_op, which a test double
  // may defer (tests/graph_emulation.h records them as a graph would); ops that return a value or
  // touch host memory run at once.
#define CAIRN_FORWARD_OP(ret, op, params, args)            \
  ret op params const override {                           \
    run_op(#op, [=, this] {                                \
      const Scope scope(*this, #op);                       \
      inner_.op args;                                      \
    });                                                    \
  }
#define CAIRN_FORWARD_HOST_OP(ret, op, params, args) \
  ret op params const override {                     \
    host_op(#op);                                    \
    const Scope scope(*this, #op);                   \
    return inner_.op args;                           \
  }
  CAIRN_FORWARD_OP(void, zero, (void* p, int64_t bytes), (p, bytes))
  CAIRN_FORWARD_HOST_OP(void, copy_to_host, (void* host, const void* dev, int64_t bytes), (host, dev, bytes))
  CAIRN_FORWARD_HOST_OP(void, copy_to_device, (void* dev, const void* host, int64_t bytes), (dev, host, bytes))
  CAIRN_FORWARD_OP(void, matmul,
                   (float* out, const float* a, const float* b, int64_t M, int64_t N, int64_t K, bool ta, bool tb,
                    float alpha, float beta),
                   (out, a, b, M, N, K, ta, tb, alpha, beta))
  CAIRN_FORWARD_OP(void, matmul_batched,
                   (float* out, const float* a, const float* b, int64_t M, int64_t N, int64_t K, bool ta, bool tb,
                    float alpha, float beta, int64_t batch, int64_t so, int64_t sa, int64_t sb),
                   (out, a, b, M, N, K, ta, tb, alpha, beta, batch, so, sa, sb))
  CAIRN_FORWARD_OP(void, linear_backward,
                   (float* dw, float* dx, const float* dy, const float* x, const float* w, int64_t N, int64_t out,
                    int64_t in, int64_t k, bool acc),
                   (dw, dx, dy, x, w, N, out, in, k, acc))
  CAIRN_FORWARD_OP(void, embedding_forward, (float* out, const int32_t* t, const float* table, int64_t N, int64_t C),
                   (out, t, table, N, C))
  CAIRN_FORWARD_OP(void, embedding_backward,
                   (float* dt, const float* dout, const int32_t* t, int64_t N, int64_t C, int64_t V),
                   (dt, dout, t, N, C, V))
  CAIRN_FORWARD_OP(void, rmsnorm_forward,
                   (float* out, float* rstd, const float* inp, const float* w, int64_t N, int64_t C, float eps),
                   (out, rstd, inp, w, N, C, eps))
  CAIRN_FORWARD_OP(void, rmsnorm_backward,
                   (float* dinp, float* dw, const float* dout, const float* inp, const float* w, const float* rstd,
                    int64_t N, int64_t C),
                   (dinp, dw, dout, inp, w, rstd, N, C))
  CAIRN_FORWARD_OP(void, rope_forward,
                   (float* x, const float* c, const float* s, int64_t B, int64_t T, int64_t NH, int64_t HS),
                   (x, c, s, B, T, NH, HS))
  CAIRN_FORWARD_OP(void, rope_backward,
                   (float* dx, const float* c, const float* s, int64_t B, int64_t T, int64_t NH, int64_t HS),
                   (dx, c, s, B, T, NH, HS))
  CAIRN_FORWARD_OP(void, attention_forward,
                   (float* out, float* saved, const float* q, const float* k, const float* v, int64_t B, int64_t T,
                    int64_t NH, int64_t HS),
                   (out, saved, q, k, v, B, T, NH, HS))
  CAIRN_FORWARD_OP(void, attention_backward,
                   (float* dq, float* dk, float* dv, float* scratch, const float* dout, const float* q, const float* k,
                    const float* v, const float* out, const float* saved, int64_t B, int64_t T, int64_t NH,
                    int64_t HS),
                   (dq, dk, dv, scratch, dout, q, k, v, out, saved, B, T, NH, HS))
  CAIRN_FORWARD_OP(void, repeat_kv_forward,
                   (float* out, const float* inp, int64_t N, int64_t NKV, int64_t G, int64_t HS),
                   (out, inp, N, NKV, G, HS))
  CAIRN_FORWARD_OP(void, repeat_kv_backward,
                   (float* dinp, const float* dout, int64_t N, int64_t NKV, int64_t G, int64_t HS),
                   (dinp, dout, N, NKV, G, HS))
  CAIRN_FORWARD_OP(void, swiglu_forward, (float* out, const float* g, const float* u, int64_t n), (out, g, u, n))
  CAIRN_FORWARD_OP(void, swiglu_backward,
                   (float* dg, float* du, const float* dout, const float* g, const float* u, int64_t n),
                   (dg, du, dout, g, u, n))
  CAIRN_FORWARD_OP(void, crossentropy_forward_backward,
                   (float* losses, float* logits, const int32_t* t, int64_t N, int64_t V, float scale),
                   (losses, logits, t, N, V, scale))
  CAIRN_FORWARD_OP(void, crossentropy_forward,
                   (float* losses, const float* logits, const int32_t* t, int64_t N, int64_t V),
                   (losses, logits, t, N, V))
  CAIRN_FORWARD_OP(void, add_inplace, (float* y, const float* x, int64_t n), (y, x, n))
  CAIRN_FORWARD_OP(void, scale_inplace, (float* x, float s, int64_t n), (x, s, n))
  CAIRN_FORWARD_OP(void, scatter_add, (float* dst, const int32_t* idx, const float* v, int64_t n), (dst, idx, v, n))
  CAIRN_FORWARD_OP(void, gather_add, (float* dst, const float* src, const int32_t* idx, int64_t n), (dst, src, idx, n))
  CAIRN_FORWARD_OP(void, adam_direction,
                   (float* dir, float* m, float* v, const float* g, int64_t n, float b1, float b2, float eps),
                   (dir, m, v, g, n, b1, b2, eps))
  CAIRN_FORWARD_OP(void, norm_ratio,
                   (float* ratio, const float* a, const float* b, int64_t count, int64_t r, bool by_row),
                   (ratio, a, b, count, r, by_row))
  CAIRN_FORWARD_OP(void, scale_by, (float* x, const float* s, int64_t m, int64_t n, bool by_row), (x, s, m, n, by_row))
  CAIRN_FORWARD_OP(void, apply_update, (float* w, const float* u, int64_t n, float step, float decay),
                   (w, u, n, step, decay))
  CAIRN_FORWARD_HOST_OP(void, top_singular_vectors,
                   (float* proj, const float* g, int64_t m, int64_t n, int64_t r, bool by_row),
                   (proj, g, m, n, r, by_row))
  CAIRN_FORWARD_HOST_OP(double, sum_squares, (const float* x, int64_t n), (x, n))
  CAIRN_FORWARD_OP(void, limit_norm_growth, (float* x, int64_t n, float* prev, float gamma, bool first),
                   (x, n, prev, gamma, first))
  CAIRN_FORWARD_OP(void, adamw_update,
                   (float* p, const float* g, float* m, float* v, int64_t n, float lr, float b1, float b2, float eps,
                    float wd, float bc1, float bc2),
                   (p, g, m, v, n, lr, b1, b2, eps, wd, bc1, bc2))
#undef CAIRN_FORWARD_OP
#undef CAIRN_FORWARD_HOST_OP

 protected:
  // Around every forwarded op that reads or writes backend memory (not around alloc/release).
  virtual void enter(const char* /*op*/) const {}
  virtual void leave(const char* /*op*/) const {}
  // Runs (or, in a test double, defers) an op that writes backend memory; host_op announces one
  // that returns data to the host or reads host memory.
  virtual void run_op(const char* /*op*/, const std::function<void()>& call) const { call(); }
  virtual void host_op(const char* /*op*/) const {}

 private:
  class Scope {
   public:
    Scope(const ForwardingBackend& be, const char* op) : be_(be), op_(op) { be_.enter(op_); }
    ~Scope() { be_.leave(op_); }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    const ForwardingBackend& be_;
    const char* op_;
  };

  const Backend& inner_;
};

}  // namespace cairn
