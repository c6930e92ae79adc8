// RAII HDF5 helpers (see h5.h). Every HDF5 call goes through check(), which turns a negative
// return into cairn::Error carrying the operation, the object and HDF5's innermost error message.
#include "util/h5.h"

#include <filesystem>
#include <numeric>

#include "util/error.h"

namespace cairn {

namespace {

herr_t innermost_error(unsigned n, const H5E_error2_t* err, void* out) {
  if (n == 0 && err->desc) *static_cast<std::string*>(out) = err->desc;
  return 0;
}

// The most specific message on HDF5's error stack ("truncated file: eof = ..."), then clears it.
// A failed system call is reduced to its reason ("No space left on device"): HDF5's own text for
// it is a line of buffer addresses and byte counts.
std::string hdf5_detail() {
  std::string desc;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost_error, &desc);
  H5Eclear2(H5E_DEFAULT);
  const std::string marker = "error message = '";
  if (const size_t at = desc.find(marker); at != std::string::npos) {
    const size_t begin = at + marker.size(), end = desc.find('\'', begin);
    if (end != std::string::npos) desc = desc.substr(begin, end - begin);
  }
  return desc.empty() ? "" : ": " + desc;
}

template <typename R>
R check(R ret, const char* op, const std::string& object) {
  if (ret < 0) throw Error(str("HDF5 ", op, " '", object, "' failed", hdf5_detail()));
  return ret;
}

template <typename T>
hid_t native_type();
template <> hid_t native_type<float>() { return H5T_NATIVE_FLOAT; }
template <> hid_t native_type<double>() { return H5T_NATIVE_DOUBLE; }
template <> hid_t native_type<int32_t>() { return H5T_NATIVE_INT32; }
template <> hid_t native_type<int64_t>() { return H5T_NATIVE_INT64; }
template <> hid_t native_type<uint8_t>() { return H5T_NATIVE_UINT8; }
template <> hid_t native_type<uint16_t>() { return H5T_NATIVE_UINT16; }
template <> hid_t native_type<uint32_t>() { return H5T_NATIVE_UINT32; }

std::string child_name(const H5Node& loc, const std::string& path) { return loc.name() + ":" + path; }

// Link-creation properties that create missing parent groups ("a/b/c").
H5Handle intermediate_lcpl(const std::string& what) {
  H5Handle lcpl(check(H5Pcreate(H5P_LINK_CREATE), "property create", what), H5Pclose);
  check(H5Pset_create_intermediate_group(lcpl.id(), 1), "set intermediate groups", what);
  return lcpl;
}

H5Handle simple_space(const std::vector<int64_t>& shape, const std::string& what) {
  if (shape.empty()) return H5Handle(check(H5Screate(H5S_SCALAR), "dataspace create", what), H5Sclose);
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  return H5Handle(check(H5Screate_simple(int(dims.size()), dims.data(), nullptr), "dataspace create", what),
                  H5Sclose);
}

std::vector<int64_t> space_shape(hid_t space, const std::string& what) {
  int rank = check(H5Sget_simple_extent_ndims(space), "get rank", what);
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  check(H5Sget_simple_extent_dims(space, dims.data(), nullptr), "get dims", what);
  return std::vector<int64_t>(dims.begin(), dims.end());
}

H5Handle open_attr_for_write(const H5Node& loc, const std::string& attr, const std::string& object,
                             hid_t type) {
  std::string what = child_name(loc, object) + "@" + attr;
  if (check(H5Aexists_by_name(loc.id(), object.c_str(), attr.c_str(), H5P_DEFAULT), "attribute exists", what))
    check(H5Adelete_by_name(loc.id(), object.c_str(), attr.c_str(), H5P_DEFAULT), "attribute delete", what);
  H5Handle space(check(H5Screate(H5S_SCALAR), "dataspace create", what), H5Sclose);
  return H5Handle(check(H5Acreate_by_name(loc.id(), object.c_str(), attr.c_str(), type, space.id(),
                                          H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                        "attribute create", what),
                  H5Aclose);
}

H5Handle open_attr(const H5Node& loc, const std::string& attr, const std::string& object) {
  std::string what = child_name(loc, object) + "@" + attr;
  return H5Handle(check(H5Aopen_by_name(loc.id(), object.c_str(), attr.c_str(), H5P_DEFAULT, H5P_DEFAULT),
                        "attribute open", what),
                  H5Aclose);
}

}  // namespace

void h5_silence_errors() {
  static const bool done = [] {
    // No library shutdown at exit: after a failed write (disk full) HDF5 1.10 keeps the file whose
    // close failed, and its shutdown crashes on it (SIGSEGV instead of cairn's error exit). Every
    // file is closed explicitly (RAII) before exit, so the shutdown has nothing else to do.
    H5dont_atexit();
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    return true;
  }();
  (void)done;
}

H5Handle& H5Handle::operator=(H5Handle&& o) noexcept {
  if (this != &o) {
    reset();
    id_ = o.id_;
    closer_ = o.closer_;
    o.id_ = -1;
  }
  return *this;
}

void H5Handle::reset() {
  if (id_ >= 0 && closer_) closer_(id_);  // a failed close in a destructor has nobody to tell
  id_ = -1;
}

bool H5Node::has(const std::string& path) const {
  size_t pos = 0;
  while (true) {
    size_t slash = path.find('/', pos);
    std::string prefix = path.substr(0, slash);
    if (!prefix.empty() && !check(H5Lexists(id(), prefix.c_str(), H5P_DEFAULT), "link exists", child_name(*this, prefix)))
      return false;
    if (slash == std::string::npos) return true;
    pos = slash + 1;
  }
}

std::vector<int64_t> H5Node::dataset_shape(const std::string& path) const {
  std::string what = child_name(*this, path);
  H5Handle ds(check(H5Dopen2(id(), path.c_str(), H5P_DEFAULT), "dataset open", what), H5Dclose);
  H5Handle space(check(H5Dget_space(ds.id()), "get dataspace", what), H5Sclose);
  return space_shape(space.id(), what);
}

H5Group H5Group::open(const H5Node& parent, const std::string& path) {
  if (!parent.has(path)) return create(parent, path);
  std::string what = child_name(parent, path);
  return H5Group(H5Handle(check(H5Gopen2(parent.id(), path.c_str(), H5P_DEFAULT), "group open", what), H5Gclose),
                 what);
}

H5Group H5Group::create(const H5Node& parent, const std::string& path) {
  std::string what = child_name(parent, path);
  H5Handle lcpl = intermediate_lcpl(what);
  return H5Group(H5Handle(check(H5Gcreate2(parent.id(), path.c_str(), lcpl.id(), H5P_DEFAULT, H5P_DEFAULT),
                                "group create", what),
                          H5Gclose),
                 what);
}

H5File H5File::open(const std::string& path) {
  h5_silence_errors();
  if (!std::filesystem::exists(path)) throw Error(str("file '", path, "' does not exist"));
  htri_t is_h5 = H5Fis_hdf5(path.c_str());
  if (is_h5 <= 0) {
    H5Eclear2(H5E_DEFAULT);
    throw Error(str("file '", path, "' is not an HDF5 file (or is unreadable)"));
  }
  return H5File(H5Handle(check(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), "file open", path), H5Fclose),
                path);
}

H5File H5File::create(const std::string& path) {
  h5_silence_errors();
  return H5File(H5Handle(check(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), "file create", path),
                         H5Fclose),
                path);
}

H5File H5File::open_rw(const std::string& path) {
  h5_silence_errors();
  if (!std::filesystem::exists(path)) throw Error(str("file '", path, "' does not exist"));
  return H5File(H5Handle(check(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), "file open (read-write)", path),
                         H5Fclose),
                path);
}

void H5File::close() {
  if (!handle_.valid()) return;
  check(H5Fflush(id(), H5F_SCOPE_LOCAL), "file flush", name_);
  hid_t id = handle_.release();  // a failed close is not retried by the destructor
  check(H5Fclose(id), "file close", name_);
}

template <typename T>
void write_dataset(const H5Node& loc, const std::string& name, const T* data, const std::vector<int64_t>& shape) {
  std::string what = child_name(loc, name);
  H5Handle space = simple_space(shape, what);
  H5Handle lcpl = intermediate_lcpl(what);
  H5Handle ds(check(H5Dcreate2(loc.id(), name.c_str(), native_type<T>(), space.id(), lcpl.id(), H5P_DEFAULT,
                               H5P_DEFAULT),
                    "dataset create", what),
              H5Dclose);
  check(H5Dwrite(ds.id(), native_type<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, data), "dataset write", what);
}

template <typename T>
H5Array<T> read_dataset(const H5Node& loc, const std::string& name) {
  std::string what = child_name(loc, name);
  H5Handle ds(check(H5Dopen2(loc.id(), name.c_str(), H5P_DEFAULT), "dataset open", what), H5Dclose);
  H5Handle space(check(H5Dget_space(ds.id()), "get dataspace", what), H5Sclose);
  H5Array<T> out;
  out.shape = space_shape(space.id(), what);
  int64_t n = std::accumulate(out.shape.begin(), out.shape.end(), int64_t(1), std::multiplies<>());
  out.data.resize(size_t(n));
  if (n > 0)
    check(H5Dread(ds.id(), native_type<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data.data()), "dataset read", what);
  return out;
}

#define CAIRN_H5_INSTANTIATE(T)                                                                        \
  template void write_dataset<T>(const H5Node&, const std::string&, const T*, const std::vector<int64_t>&); \
  template H5Array<T> read_dataset<T>(const H5Node&, const std::string&);                              \
  template H5Dataset1D H5Dataset1D::create_extendable<T>(const H5Node&, const std::string&, int64_t);   \
  template void H5Dataset1D::append<T>(const T*, int64_t);                                             \
  template void H5Dataset1D::read<T>(int64_t, int64_t, T*) const;

void write_attr_int(const H5Node& loc, const std::string& attr, int64_t v, const std::string& object) {
  H5Handle a = open_attr_for_write(loc, attr, object, H5T_STD_I64LE);
  check(H5Awrite(a.id(), H5T_NATIVE_INT64, &v), "attribute write", child_name(loc, object) + "@" + attr);
}

void write_attr_double(const H5Node& loc, const std::string& attr, double v, const std::string& object) {
  H5Handle a = open_attr_for_write(loc, attr, object, H5T_IEEE_F64LE);
  check(H5Awrite(a.id(), H5T_NATIVE_DOUBLE, &v), "attribute write", child_name(loc, object) + "@" + attr);
}

void write_attr_string(const H5Node& loc, const std::string& attr, const std::string& v, const std::string& object) {
  std::string what = child_name(loc, object) + "@" + attr;
  H5Handle type(check(H5Tcopy(H5T_C_S1), "type copy", what), H5Tclose);
  check(H5Tset_size(type.id(), std::max<size_t>(v.size(), 1)), "type set size", what);
  check(H5Tset_strpad(type.id(), H5T_STR_NULLPAD), "type set pad", what);
  H5Handle a = open_attr_for_write(loc, attr, object, type.id());
  std::string padded = v.empty() ? std::string(1, '\0') : v;
  check(H5Awrite(a.id(), type.id(), padded.data()), "attribute write", what);
}

bool has_attr(const H5Node& loc, const std::string& attr, const std::string& object) {
  if (object != "." && !loc.has(object)) return false;
  return check(H5Aexists_by_name(loc.id(), object.c_str(), attr.c_str(), H5P_DEFAULT), "attribute exists",
               child_name(loc, object) + "@" + attr) > 0;
}

int64_t read_attr_int(const H5Node& loc, const std::string& attr, const std::string& object) {
  H5Handle a = open_attr(loc, attr, object);
  int64_t v = 0;
  check(H5Aread(a.id(), H5T_NATIVE_INT64, &v), "attribute read (as int64)", child_name(loc, object) + "@" + attr);
  return v;
}

double read_attr_double(const H5Node& loc, const std::string& attr, const std::string& object) {
  H5Handle a = open_attr(loc, attr, object);
  double v = 0;
  check(H5Aread(a.id(), H5T_NATIVE_DOUBLE, &v), "attribute read (as double)", child_name(loc, object) + "@" + attr);
  return v;
}

std::string read_attr_string(const H5Node& loc, const std::string& attr, const std::string& object) {
  std::string what = child_name(loc, object) + "@" + attr;
  H5Handle a = open_attr(loc, attr, object);
  H5Handle type(check(H5Aget_type(a.id()), "attribute type", what), H5Tclose);
  if (H5Tget_class(type.id()) != H5T_STRING) throw Error(str("HDF5 attribute '", what, "' is not a string"));
  if (check(H5Tis_variable_str(type.id()), "type query", what)) {
    H5Handle mem(check(H5Tcopy(H5T_C_S1), "type copy", what), H5Tclose);
    check(H5Tset_size(mem.id(), H5T_VARIABLE), "type set size", what);
    char* s = nullptr;
    check(H5Aread(a.id(), mem.id(), &s), "attribute read", what);
    std::string out = s ? s : "";
    H5free_memory(s);
    return out;
  }
  size_t n = H5Tget_size(type.id());
  std::string out(n, '\0');
  check(H5Aread(a.id(), type.id(), out.data()), "attribute read", what);
  out.resize(out.find('\0') == std::string::npos ? n : out.find('\0'));
  return out;
}

template <typename T>
H5Dataset1D H5Dataset1D::create_extendable(const H5Node& loc, const std::string& name, int64_t chunk) {
  std::string what = child_name(loc, name);
  CAIRN_ASSERT(chunk > 0, what);
  hsize_t zero = 0, unlimited = H5S_UNLIMITED, chunk_dim = hsize_t(chunk);
  H5Handle space(check(H5Screate_simple(1, &zero, &unlimited), "dataspace create", what), H5Sclose);
  H5Handle dcpl(check(H5Pcreate(H5P_DATASET_CREATE), "property create", what), H5Pclose);
  check(H5Pset_chunk(dcpl.id(), 1, &chunk_dim), "set chunk", what);
  H5Handle lcpl = intermediate_lcpl(what);
  H5Handle ds(check(H5Dcreate2(loc.id(), name.c_str(), native_type<T>(), space.id(), lcpl.id(), dcpl.id(),
                               H5P_DEFAULT),
                    "dataset create", what),
              H5Dclose);
  return H5Dataset1D(std::move(ds), what, 0);
}

H5Dataset1D H5Dataset1D::open(const H5Node& loc, const std::string& name) {
  std::string what = child_name(loc, name);
  // A larger chunk cache than the 1 MiB default keeps nearby windows from re-reading chunks.
  H5Handle dapl(check(H5Pcreate(H5P_DATASET_ACCESS), "property create", what), H5Pclose);
  check(H5Pset_chunk_cache(dapl.id(), 12421, 32 << 20, 1.0), "set chunk cache", what);
  H5Handle ds(check(H5Dopen2(loc.id(), name.c_str(), dapl.id()), "dataset open", what), H5Dclose);
  H5Handle space(check(H5Dget_space(ds.id()), "get dataspace", what), H5Sclose);
  std::vector<int64_t> shape = space_shape(space.id(), what);
  if (shape.size() != 1) throw Error(str("HDF5 dataset '", what, "' has rank ", shape.size(), ", expected 1-D"));
  return H5Dataset1D(std::move(ds), what, shape[0]);
}

template <typename T>
void H5Dataset1D::append(const T* data, int64_t n) {
  if (n <= 0) return;
  hsize_t new_size = hsize_t(size_ + n), start = hsize_t(size_), count = hsize_t(n);
  check(H5Dset_extent(handle_.id(), &new_size), "dataset extend", name_);
  H5Handle fspace(check(H5Dget_space(handle_.id()), "get dataspace", name_), H5Sclose);
  check(H5Sselect_hyperslab(fspace.id(), H5S_SELECT_SET, &start, nullptr, &count, nullptr), "select", name_);
  H5Handle mspace(check(H5Screate_simple(1, &count, nullptr), "dataspace create", name_), H5Sclose);
  check(H5Dwrite(handle_.id(), native_type<T>(), mspace.id(), fspace.id(), H5P_DEFAULT, data), "dataset append", name_);
  size_ += n;
}

template <typename T>
void H5Dataset1D::read(int64_t start, int64_t count, T* out) const {
  if (start < 0 || count < 0 || start > size_ - count)
    throw Error(str("read of [", start, ", ", start + count, ") from '", name_, "' is out of range (it has ", size_,
                    " elements)"));
  if (count == 0) return;
  hsize_t s = hsize_t(start), c = hsize_t(count);
  H5Handle fspace(check(H5Dget_space(handle_.id()), "get dataspace", name_), H5Sclose);
  check(H5Sselect_hyperslab(fspace.id(), H5S_SELECT_SET, &s, nullptr, &c, nullptr), "select", name_);
  H5Handle mspace(check(H5Screate_simple(1, &c, nullptr), "dataspace create", name_), H5Sclose);
  check(H5Dread(handle_.id(), native_type<T>(), mspace.id(), fspace.id(), H5P_DEFAULT, out), "dataset read", name_);
}

size_t H5Dataset1D::element_size() const {
  H5Handle type(check(H5Dget_type(handle_.id()), "get type", name_), H5Tclose);
  return H5Tget_size(type.id());
}

bool H5Dataset1D::is_unsigned_integer() const {
  H5Handle type(check(H5Dget_type(handle_.id()), "get type", name_), H5Tclose);
  return H5Tget_class(type.id()) == H5T_INTEGER && H5Tget_sign(type.id()) == H5T_SGN_NONE;
}

CAIRN_H5_INSTANTIATE(float)
CAIRN_H5_INSTANTIATE(double)
CAIRN_H5_INSTANTIATE(int32_t)
CAIRN_H5_INSTANTIATE(int64_t)
CAIRN_H5_INSTANTIATE(uint8_t)
CAIRN_H5_INSTANTIATE(uint16_t)
CAIRN_H5_INSTANTIATE(uint32_t)
#undef CAIRN_H5_INSTANTIATE

}  // namespace cairn
