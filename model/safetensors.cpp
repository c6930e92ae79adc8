// Safetensors writer and validating reader (see safetensors.h).
#include "model/safetensors.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/file_io.h"

namespace cairn {

static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian; add byte swapping");

// The reference implementation's limit; a larger "header" is a corrupt or foreign file.
static constexpr int64_t kMaxHeaderBytes = 100'000'000;

const char* tensor_dtype_name(TensorDtype d) {
  return d == TensorDtype::bf16 ? "BF16" : d == TensorDtype::f16 ? "F16" : "F32";
}

TensorDtype tensor_dtype_from_option(const std::string& s) {
  if (s == "fp32" || s == "float32") return TensorDtype::f32;
  if (s == "bf16" || s == "bfloat16") return TensorDtype::bf16;
  if (s == "fp16" || s == "float16") return TensorDtype::f16;
  throw Error(str("--dtype ", s, " is not supported: use fp32, bf16 or fp16"));
}

int64_t tensor_dtype_bytes(TensorDtype d) { return d == TensorDtype::f32 ? 4 : 2; }

uint16_t bf16_from_f32(float x) {
  uint32_t u = std::bit_cast<uint32_t>(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN, sign kept
  // Adding 0x7fff plus the lowest kept bit rounds half to even; a carry into the exponent is the
  // correct rounding up (to the next binade or to infinity).
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

float f32_from_bf16(uint16_t b) { return std::bit_cast<float>(uint32_t(b) << 16); }

uint16_t f16_from_f32(float x) {
  uint32_t u = std::bit_cast<uint32_t>(x);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  u &= 0x7fffffffu;
  if (u > 0x7f800000u) return sign | 0x7e00u;   // NaN
  if (u >= 0x477ff000u) return sign | 0x7c00u;  // from 65520 (half-way above 65504, ties to even): inf
  if (u < 0x38800000u)                          // below 2^-14: a subnormal half, |x|·2^24 rounded to even
    return sign | uint16_t(std::nearbyint(std::bit_cast<float>(u) * 16777216.0f));
  u += 0xfffu + ((u >> 13) & 1u);  // round the 13 dropped bits half to even
  return sign | uint16_t((u - (112u << 23)) >> 13);  // exponent bias 127 → 15
}

float f32_from_f16(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  if (exp == 0) return std::bit_cast<float>(sign) + (sign ? -1.0f : 1.0f) * float(mant) * 5.9604644775390625e-8f;
  if (exp == 31) return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));
  return std::bit_cast<float>(sign | ((exp + 112u) << 23) | (mant << 13));
}

int64_t TensorSpec::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

void write_safetensors(const std::string& path, const std::vector<TensorSpec>& tensors, TensorDtype dtype,
                       const std::map<std::string, std::string>& metadata,
                       const std::function<void(size_t, std::span<float>)>& fill) {
  const int64_t elem = tensor_dtype_bytes(dtype);
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::set<std::string> names;
  int64_t offset = 0;
  for (const auto& t : tensors) {
    CAIRN_ASSERT(t.name != "__metadata__" && names.insert(t.name).second, "duplicate or reserved tensor name ", t.name);
    for (int64_t d : t.shape) CAIRN_ASSERT(d >= 0, "negative dimension in ", t.name);
    const int64_t bytes = t.numel() * elem;
    header[t.name] = {{"dtype", tensor_dtype_name(dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  // Pad with spaces so the data section starts 8-byte aligned (as the reference writer does).
  text.append((8 - text.size() % 8) % 8, ' ');

  OutputFile out(path, OutputFile::Mode::truncate);
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = uint8_t(uint64_t(text.size()) >> (8 * i));
  out.write(len, 8);
  out.write(text);
  std::vector<float> values;
  std::vector<uint16_t> halves;
  for (size_t i = 0; i < tensors.size(); ++i) {
    values.assign(size_t(tensors[i].numel()), 0.0f);
    fill(i, values);
    if (dtype == TensorDtype::f32) {
      out.write(values.data(), values.size() * 4);
    } else {
      halves.resize(values.size());
      std::transform(values.begin(), values.end(), halves.begin(),
                     dtype == TensorDtype::bf16 ? bf16_from_f32 : f16_from_f32);
      out.write(halves.data(), halves.size() * 2);
    }
  }
  out.close();
}

namespace {

[[noreturn]] void bad(const std::string& path, const std::string& what) {
  throw Error(str("'", path, "' is not a valid safetensors file: ", what));
}

SafetensorsEntry parse_entry(const std::string& path, const std::string& name, const nlohmann::ordered_json& v) {
  SafetensorsEntry e;
  e.name = name;
  if (!v.is_object()) bad(path, str("entry '", name, "' is not an object"));
  if (!v.contains("dtype") || !v["dtype"].is_string()) bad(path, str("tensor '", name, "' has no dtype string"));
  const std::string dt = v["dtype"].get<std::string>();
  if (dt == "F32") e.dtype = TensorDtype::f32;
  else if (dt == "BF16") e.dtype = TensorDtype::bf16;
  else if (dt == "F16") e.dtype = TensorDtype::f16;
  else bad(path, str("tensor '", name, "' has dtype ", dt, "; cairn reads F32, BF16 and F16"));
  if (!v.contains("shape") || !v["shape"].is_array()) bad(path, str("tensor '", name, "' has no shape array"));
  for (const auto& d : v["shape"]) {
    if (!d.is_number_unsigned()) bad(path, str("tensor '", name, "' has a shape entry that is not a non-negative integer"));
    e.shape.push_back(d.get<int64_t>());
  }
  const auto& off = v.contains("data_offsets") ? v["data_offsets"] : nlohmann::ordered_json();
  if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
    bad(path, str("tensor '", name, "' needs data_offsets [begin, end] of two non-negative integers"));
  e.begin = off[0].get<int64_t>();
  e.end = off[1].get<int64_t>();
  return e;
}

}  // namespace

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw Error(str("cannot open '", path, "'"));
  const int64_t file_size = int64_t(in.tellg());
  in.seekg(0);
  if (file_size < 8) bad(path, str("it has ", file_size, " bytes, fewer than the 8-byte header length"));
  uint8_t len[8];
  in.read(reinterpret_cast<char*>(len), 8);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(len[i]) << (8 * i);
  if (n < 2 || n > uint64_t(kMaxHeaderBytes) || int64_t(n) > file_size - 8)
    bad(path, str("header length ", n, " is impossible for a file of ", file_size, " bytes"));
  std::string text(size_t(n), '\0');
  in.read(text.data(), std::streamsize(n));
  if (!in) bad(path, "cannot read its header");
  auto header = nlohmann::ordered_json::parse(text, nullptr, false);
  if (header.is_discarded() || !header.is_object()) bad(path, "the header is not a JSON object");

  SafetensorsFile f;
  f.path_ = path;
  f.data_start_ = 8 + int64_t(n);
  const int64_t data_size = file_size - f.data_start_;
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      if (!value.is_object()) bad(path, "__metadata__ is not an object");
      for (const auto& [mk, mv] : value.items()) {
        if (!mv.is_string()) bad(path, str("__metadata__ value of '", mk, "' is not a string"));
        f.metadata_[mk] = mv.get<std::string>();
      }
      continue;
    }
    SafetensorsEntry e = parse_entry(path, key, value);
    if (e.begin > e.end || e.end > data_size)
      bad(path, str("tensor '", key, "' has data_offsets [", e.begin, ", ", e.end, "] outside the data section of ",
                    data_size, " bytes"));
    // numel × size must equal the byte length; compare without overflowing on absurd shapes.
    __extension__ using u128 = unsigned __int128;
    u128 numel = 1;
    const u128 saturated = (u128(1) << 64) + 1;  // any count this big is already wrong
    for (int64_t d : e.shape) numel = std::min<u128>(numel * u128(d), saturated);
    if (numel * u128(tensor_dtype_bytes(e.dtype)) != u128(e.end - e.begin))
      bad(path, str("tensor '", key, "' has ", e.end - e.begin, " bytes of data but its shape and dtype need ",
                    uint64_t(std::min<u128>(numel * u128(tensor_dtype_bytes(e.dtype)), ~uint64_t(0)))));
    f.entries_.push_back(std::move(e));
  }
  // The tensors must tile the data section: sorted by offset, each starts where the previous ended.
  std::vector<const SafetensorsEntry*> by_offset;
  for (const auto& e : f.entries_) by_offset.push_back(&e);
  std::stable_sort(by_offset.begin(), by_offset.end(),
                   [](const auto* a, const auto* b) { return a->begin != b->begin ? a->begin < b->begin : a->end < b->end; });
  int64_t covered = 0;
  const SafetensorsEntry* prev = nullptr;
  for (const auto* e : by_offset) {
    if (e->begin < covered)
      bad(path, str("tensor '", e->name, "' [", e->begin, ", ", e->end, "] overlaps tensor '", prev->name, "' [",
                    prev->begin, ", ", prev->end, "]"));
    if (e->begin > covered) bad(path, str("bytes [", covered, ", ", e->begin, ") of the data section belong to no tensor"));
    covered = e->end;
    prev = e;
  }
  if (covered != data_size)
    bad(path, str("the data section has ", data_size, " bytes but the tensors cover ", covered, " (truncated or padded file)"));
  return f;
}

bool SafetensorsFile::has(const std::string& name) const {
  return std::any_of(entries_.begin(), entries_.end(), [&](const auto& e) { return e.name == name; });
}

const SafetensorsEntry& SafetensorsFile::at(const std::string& name) const {
  for (const auto& e : entries_)
    if (e.name == name) return e;
  throw Error(str("'", path_, "' has no tensor '", name, "'"));
}

std::vector<float> SafetensorsFile::read(const std::string& name) const {
  const SafetensorsEntry& e = at(name);
  std::vector<float> out(size_t((e.end - e.begin) / tensor_dtype_bytes(e.dtype)));
  read_into(name, out);
  return out;
}

void SafetensorsFile::read_into(const std::string& name, std::span<float> out) const {
  const SafetensorsEntry& e = at(name);
  const size_t n = size_t((e.end - e.begin) / tensor_dtype_bytes(e.dtype));
  CAIRN_ASSERT(out.size() == n, "tensor '", name, "' has ", n, " values, the destination ", out.size());
  std::ifstream in(path_, std::ios::binary);
  if (!in) throw Error(str("cannot open '", path_, "'"));
  in.seekg(data_start_ + e.begin);
  if (e.dtype == TensorDtype::f32) {  // straight into place
    in.read(reinterpret_cast<char*>(out.data()), std::streamsize(n * 4));
  } else {
    std::vector<uint16_t> halves(n);
    in.read(reinterpret_cast<char*>(halves.data()), std::streamsize(n * 2));
    std::transform(halves.begin(), halves.end(), out.begin(),
                   e.dtype == TensorDtype::bf16 ? f32_from_bf16 : f32_from_f16);
  }
  if (!in) throw Error(str("cannot read tensor '", name, "' from '", path_, "' (file changed?)"));
}

}  // namespace cairn
