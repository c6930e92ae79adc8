// A small RAII layer over the HDF5 C API (1.10, serial) for token datasets and checkpoints.
// Handles are move-only and close themselves; HDF5's automatic error printing is switched off and
// every failing call throws cairn::Error naming the operation and the object. Shapes are
// std::vector<int64_t>; element types are float, double, int32, int64, uint8, uint16, uint32.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <string>
#include <vector>

namespace cairn {

// Turns off HDF5's automatic error stack printing (idempotent; every entry point calls it).
void h5_silence_errors();

// An open HDF5 object id (file, group, dataset, ...) closed by the matching H5*close on destruction.
class H5Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  H5Handle() = default;
  H5Handle(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  H5Handle(H5Handle&& o) noexcept : id_(o.id_), closer_(o.closer_) { o.id_ = -1; }
  H5Handle& operator=(H5Handle&& o) noexcept;
  H5Handle(const H5Handle&) = delete;
  H5Handle& operator=(const H5Handle&) = delete;
  ~H5Handle() { reset(); }

  hid_t id() const { return id_; }
  bool valid() const { return id_ >= 0; }
  void reset();
  // Gives up ownership without closing and returns the id.
  hid_t release() {
    hid_t id = id_;
    id_ = -1;
    return id;
  }

 private:
  hid_t id_ = -1;
  Closer closer_ = nullptr;
};

// A file or a group: something that holds named links. Paths may be nested ("a/b/c").
class H5Node {
 public:
  hid_t id() const { return handle_.id(); }
  // True if every component of `path` exists below this node.
  bool has(const std::string& path) const;
  // Shape of the dataset at `path`; throws if it does not exist or is not a dataset.
  std::vector<int64_t> dataset_shape(const std::string& path) const;
  // What this node is called in error messages (the file path, or file path + group path).
  const std::string& name() const { return name_; }

 protected:
  H5Node() = default;
  H5Node(H5Handle h, std::string name) : handle_(std::move(h)), name_(std::move(name)) {}
  H5Handle handle_;
  std::string name_;
};

class H5Group : public H5Node {
 public:
  // Opens an existing group, or creates it with any missing parents.
  static H5Group open(const H5Node& parent, const std::string& path);
  static H5Group create(const H5Node& parent, const std::string& path);

 private:
  using H5Node::H5Node;
};

class H5File : public H5Node {
 public:
  // Read-only. Throws cairn::Error naming the path if it is missing or not an HDF5 file.
  static H5File open(const std::string& path);
  // Creates the file, truncating any existing one.
  static H5File create(const std::string& path);
  // Read-write on an existing HDF5 file.
  static H5File open_rw(const std::string& path);
  // Flushes and closes now (errors surface here instead of silently in the destructor).
  void close();

 private:
  using H5Node::H5Node;
};

// Whole N-D datasets. `shape` lists every dimension (empty = scalar); `data` holds prod(shape)
// elements in row-major order. Reading converts from the stored type where HDF5 allows it.
template <typename T>
void write_dataset(const H5Node& loc, const std::string& name, const T* data,
                   const std::vector<int64_t>& shape);
template <typename T>
struct H5Array {
  std::vector<T> data;
  std::vector<int64_t> shape;
};
template <typename T>
H5Array<T> read_dataset(const H5Node& loc, const std::string& name);

// Scalar attributes on `loc` itself (object ".") or on the object at path `object` below it.
void write_attr_int(const H5Node& loc, const std::string& attr, int64_t v, const std::string& object = ".");
void write_attr_double(const H5Node& loc, const std::string& attr, double v, const std::string& object = ".");
void write_attr_string(const H5Node& loc, const std::string& attr, const std::string& v,
                       const std::string& object = ".");
bool has_attr(const H5Node& loc, const std::string& attr, const std::string& object = ".");
int64_t read_attr_int(const H5Node& loc, const std::string& attr, const std::string& object = ".");
double read_attr_double(const H5Node& loc, const std::string& attr, const std::string& object = ".");
std::string read_attr_string(const H5Node& loc, const std::string& attr, const std::string& object = ".");

// An open 1-D dataset: chunked and extendable for appending (the token writer), or any 1-D
// dataset for reading ranges [start, start + count) through a hyperslab without loading it whole.
class H5Dataset1D {
 public:
  // Creates an empty, unlimited, chunked (uncompressed) dataset of element type T.
  template <typename T>
  static H5Dataset1D create_extendable(const H5Node& loc, const std::string& name, int64_t chunk);
  static H5Dataset1D open(const H5Node& loc, const std::string& name);

  int64_t size() const { return size_; }
  // Appends `n` elements given in memory type T (converted to the stored type by HDF5).
  template <typename T>
  void append(const T* data, int64_t n);
  // Reads elements [start, start + count) into `out` as memory type T; throws if out of range.
  template <typename T>
  void read(int64_t start, int64_t count, T* out) const;
  // The stored element type's size in bytes and whether it is an integer type.
  size_t element_size() const;
  bool is_unsigned_integer() const;
  // Checked close: HDF5 writes a dataset's cached chunks when it is closed, so a full disk may be
  // reported only here (the destructor's close cannot report it).
  void close();

 private:
  H5Dataset1D(H5Handle h, std::string name, int64_t size)
      : handle_(std::move(h)), name_(std::move(name)), size_(size) {}
  H5Handle handle_;
  std::string name_;
  int64_t size_ = 0;
};

}  // namespace cairn
