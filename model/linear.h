// A linear weight is pluggable: dense W, low-rank B·A, and SLTrain's scale·B·A + S share this
// interface. Each declares its own parameter rows (and buffers), computes y = x·Wᵀ and its
// backward, and can materialize the dense W it represents (export, tests, growth checks).
// Factored kinds never keep a dense W or a dense dW alive between calls.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "backend/backend.h"
#include "model/param_table.h"
#include "util/choice.h"
#include "util/rng.h"

namespace cairn {

enum class LinearKind { dense, lowrank, sltrain };
template <>
struct ChoiceNames<LinearKind> {
  static constexpr std::array<std::pair<std::string_view, LinearKind>, 3> names{
      {{"dense", LinearKind::dense}, {"lowrank", LinearKind::lowrank}, {"sltrain", LinearKind::sltrain}}};
};
LinearKind linear_kind_from_string(const std::string& s);  // throws Error naming the valid kinds
const char* linear_kind_name(LinearKind k);

// model.sltrain_path: "auto" picks per shape by measurement; the others force one path.
enum class SLTrainPathSetting { automatic, materialized, factored };
template <>
struct ChoiceNames<SLTrainPathSetting> {
  static constexpr std::array<std::pair<std::string_view, SLTrainPathSetting>, 3> names{
      {{"auto", SLTrainPathSetting::automatic},
       {"materialized", SLTrainPathSetting::materialized},
       {"factored", SLTrainPathSetting::factored}}};
};

struct LinearConfig {
  LinearKind kind = LinearKind::dense;
  int64_t rank = 0;      // r, for lowrank and sltrain
  float alpha = 32.0f;   // scale s = alpha / r
  float density = 0.0f;  // δ, for sltrain: nnz = floor(δ·out·in)
  SLTrainPathSetting sltrain_path = SLTrainPathSetting::automatic;
};

// Floating-point operations of one forward and one backward call of a linear weight on N rows, as
// its kind computes them: a multiply-add counts 2, an add of SLTrain's scatter or gather 1.
struct LinearFlops {
  double forward = 0, backward = 0;
};

class Linear {
 public:
  // name is the module prefix, e.g. "model.layers.0.self_attn.q_proj"; W is [out, in].
  Linear(std::string name, int64_t out, int64_t in, int layer)
      : name_(std::move(name)), out_(out), in_(in), layer_(layer) {}
  virtual ~Linear() = default;

  // Adds this weight's rows to the tables (called once, in model order).
  virtual void declare(ParamTable& params, BufferTable& buffers) = 0;
  // Initializes its rows of the flat parameter buffer (and its buffers) from rng.
  virtual void init(std::span<float> params, BufferTable& buffers, Rng& rng) const = 0;
  // y[N,out] = x[N,in]·Wᵀ (overwrites y). workspace: workspace_floats(N) floats.
  virtual void forward(const Backend& be, float* y, const float* x, int64_t N, const float* params,
                       const BufferTable& buffers, float* workspace) const = 0;
  // dx[N,in] = dy·W (accumulated into dx when accumulate_dx), and this weight's gradient rows
  // accumulated into grads.
  virtual void backward(const Backend& be, float* dx, bool accumulate_dx, float* grads,
                        const float* dy, const float* x, int64_t N, const float* params,
                        const BufferTable& buffers, float* workspace) const = 0;
  virtual int64_t workspace_floats(int64_t N) const = 0;
  // The work forward and backward do on `be` for N rows (the path SLTrain takes there).
  virtual LinearFlops flops(const Backend& be, int64_t N) const = 0;
  // W [out, in] as a dense row-major matrix, on the host.
  virtual void dense_weight(float* W, std::span<const float> params, const BufferTable& buffers) const = 0;

  const std::string& name() const { return name_; }
  int64_t out_features() const { return out_; }
  int64_t in_features() const { return in_; }
  int layer() const { return layer_; }

 protected:
  std::string name_;
  int64_t out_, in_;
  int layer_;
};

// Trainable parameters of one [out, in] weight of this kind: out·in, r·(out+in), or
// r·(out+in) + floor(δ·out·in) — the closed form the parameter table must match.
int64_t linear_weight_param_count(const LinearConfig& cfg, int64_t out, int64_t in);

std::unique_ptr<Linear> make_linear(const LinearConfig& cfg, std::string name, int64_t out,
                                    int64_t in, int layer);

}  // namespace cairn
