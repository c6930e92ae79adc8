// The safetensors format (Hugging Face): 8-byte little-endian header length N, N bytes of JSON
// {"<name>": {"dtype": "F32"|"BF16"|"F16", "shape": [...], "data_offsets": [begin, end]}, ...,
// "__metadata__": {string: string}}, then the raw little-endian tensor data; offsets are relative
// to the data section, which the tensors cover exactly, in header order, with no holes.
// The writer streams one tensor at a time; the reader validates the header against the file size
// and reads one tensor at a time, so neither holds a whole model.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <vector>

namespace cairn {

enum class TensorDtype { f32, bf16, f16 };
const char* tensor_dtype_name(TensorDtype d);          // "F32" / "BF16" / "F16"
TensorDtype tensor_dtype_from_option(const std::string& s);  // "fp32" | "bf16" | "fp16"; throws Error otherwise
int64_t tensor_dtype_bytes(TensorDtype d);

// bfloat16 by round-to-nearest-even of the fp32 bits (NaN stays NaN, overflow rounds to ±inf).
uint16_t bf16_from_f32(float x);
float f32_from_bf16(uint16_t b);
// IEEE half precision, also by round-to-nearest-even (subnormals kept, overflow to ±inf).
uint16_t f16_from_f32(float x);
float f32_from_f16(uint16_t h);

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;  // row-major; [] is a scalar
  int64_t numel() const;
};

// Writes `path` (not atomically: callers that need that write into a temporary directory).
// fill(i, out) must write tensor i's numel floats (fp32) into out; they are stored as `dtype`.
// Tensor names must be unique and must not be "__metadata__". Throws Error on I/O failure.
void write_safetensors(const std::string& path, const std::vector<TensorSpec>& tensors, TensorDtype dtype,
                       const std::map<std::string, std::string>& metadata,
                       const std::function<void(size_t, std::span<float>)>& fill);

struct SafetensorsEntry {
  std::string name;
  TensorDtype dtype = TensorDtype::f32;
  std::vector<int64_t> shape;
  int64_t begin = 0, end = 0;  // byte offsets into the data section
};

class SafetensorsFile {
 public:
  // Reads and validates the header: length within the file (and at most 100 MB), a JSON object,
  // every entry with a known dtype, non-negative shape, and offsets in range whose length equals
  // numel × dtype size, the entries covering the data section exactly without overlap.
  // Every problem is a cairn::Error naming the file and the problem.
  static SafetensorsFile open(const std::string& path);

  const std::string& path() const { return path_; }
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }  // header order
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const SafetensorsEntry& at(const std::string& name) const;  // throws Error naming the tensor
  bool has(const std::string& name) const;
  int64_t data_start() const { return data_start_; }  // 8 + header length
  // The tensor's values converted to fp32.
  std::vector<float> read(const std::string& name) const;
  // The same into out (numel floats), holding only the stored bytes besides: a whole model can be
  // streamed into its destination tensor by tensor.
  void read_into(const std::string& name, std::span<float> out) const;

 private:
  std::string path_;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, std::string> metadata_;
  int64_t data_start_ = 0;
};

}  // namespace cairn
