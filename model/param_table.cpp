// ParamTable and BufferTable bookkeeping.
#include "model/param_table.h"

#include "util/error.h"

namespace cairn {

const char* role_name(ParamRole role) {
  switch (role) {
    case ParamRole::matrix: return "matrix";
    case ParamRole::lowrank_factor: return "lowrank_factor";
    case ParamRole::sparse_values: return "sparse_values";
    case ParamRole::norm: return "norm";
    case ParamRole::embedding: return "embedding";
    case ParamRole::lm_head: return "lm_head";
  }
  return "?";
}

int ParamTable::add(std::string name, std::vector<int64_t> shape, ParamRole role, int layer) {
  CAIRN_ASSERT(find(name) < 0, "duplicate parameter ", name);
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  ParamRow r{std::move(name), std::move(shape), total_, n, role, layer};
  total_ += (n + 15) / 16 * 16;
  rows_.push_back(std::move(r));
  return int(rows_.size()) - 1;
}

int ParamTable::find(const std::string& name) const {
  for (size_t i = 0; i < rows_.size(); ++i)
    if (rows_[i].name == name) return int(i);
  return -1;
}

const ParamRow& ParamTable::at(const std::string& name) const {
  int i = find(name);
  if (i < 0) throw Error(str("no parameter named '", name, "' in this model"));
  return rows_[size_t(i)];
}

int64_t ParamTable::count() const {
  int64_t n = 0;
  for (const auto& r : rows_) n += r.numel;
  return n;
}

int64_t ParamTable::count(ParamRole role) const {
  int64_t n = 0;
  for (const auto& r : rows_)
    if (r.role == role) n += r.numel;
  return n;
}

BufferRow& BufferTable::add(std::string name, std::vector<int64_t> shape, int layer) {
  CAIRN_ASSERT(find(name) < 0, "duplicate buffer ", name);
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  rows_.push_back(BufferRow{std::move(name), std::move(shape), std::vector<int32_t>(size_t(n)), layer});
  ++version_;
  return rows_.back();
}

int BufferTable::find(const std::string& name) const {
  for (size_t i = 0; i < rows_.size(); ++i)
    if (rows_[i].name == name) return int(i);
  return -1;
}

}  // namespace cairn
