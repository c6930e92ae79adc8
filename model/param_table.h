// The parameter table: every trainable tensor is a slice of one flat float buffer (and its gradient
// a slice of one flat gradient buffer at the same offset). Rows carry Hugging Face LLaMA names.
// Non-trainable tensors that define the model (SLTrain support indices) live in a BufferTable.
// All-reduce walks the flat gradient buffer, checkpoints write rows, growth copies rows, and
// optimizer sharding assigns whole rows to ranks.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace cairn {

enum class ParamRole {
  matrix,         // a dense 2-D projection weight [out, in] (attention / MLP)
  lowrank_factor, // B [out, r] or A [r, in] of a factored projection
  sparse_values,  // values of an SLTrain sparse matrix on its fixed support, 1-D [nnz]
  norm,           // RMSNorm gain, 1-D [C]
  embedding,      // token embedding [V, C]
  lm_head,        // output projection [V, C]
};
const char* role_name(ParamRole role);

struct ParamRow {
  std::string name;            // e.g. "model.layers.3.self_attn.q_proj.weight"
  std::vector<int64_t> shape;  // row-major, Hugging Face orientation ([out, in] for linears)
  int64_t offset = 0;          // in floats, into the flat buffers
  int64_t numel = 0;
  ParamRole role = ParamRole::matrix;
  int layer = -1;              // block index, -1 outside the blocks
};

class ParamTable {
 public:
  // Appends a row; offsets are assigned in order, aligned to 16 floats (64 bytes).
  int add(std::string name, std::vector<int64_t> shape, ParamRole role, int layer);
  const std::vector<ParamRow>& rows() const { return rows_; }
  const ParamRow& row(int i) const { return rows_[i]; }
  int find(const std::string& name) const;  // -1 when absent
  const ParamRow& at(const std::string& name) const;  // throws Error naming the missing row
  int64_t total() const { return total_; }  // floats in the flat buffer, padding included
  int64_t count() const;                    // trainable scalars, padding excluded
  int64_t count(ParamRole role) const;

 private:
  std::vector<ParamRow> rows_;
  int64_t total_ = 0;
};

// Integer tensors that define the model without being trained (SLTrain supports).
struct BufferRow {
  std::string name;  // e.g. "model.layers.0.self_attn.q_proj.sparse_index"
  std::vector<int64_t> shape;
  std::vector<int32_t> data;
  int layer = -1;
};

class BufferTable {
 public:
  BufferRow& add(std::string name, std::vector<int64_t> shape, int layer);
  // Mutable access counts as a change: copies kept elsewhere (a GPU mirror of a support) compare
  // version() to know whether they are stale.
  std::vector<BufferRow>& rows() {
    ++version_;
    return rows_;
  }
  const std::vector<BufferRow>& rows() const { return rows_; }
  int find(const std::string& name) const;
  uint64_t version() const { return version_; }

 private:
  std::vector<BufferRow> rows_;
  uint64_t version_ = 0;
};

// A view of one row inside a flat buffer.
inline std::span<float> row_span(std::span<float> flat, const ParamRow& r) {
  return flat.subspan(size_t(r.offset), size_t(r.numel));
}
inline std::span<const float> row_span(std::span<const float> flat, const ParamRow& r) {
  return flat.subspan(size_t(r.offset), size_t(r.numel));
}

}  // namespace cairn
