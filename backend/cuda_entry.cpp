// cuda_backend(), cuda_device_count(), cuda_device_available(), cuda_unavailable_reason() and
// cuda_library_versions() for every build: they reach the
// CUDA backend through the CUDA module (util/cuda_module.h), opened on the first call, so neither
// this library nor the processes linking it depend on the CUDA libraries.
#include "backend/backend.h"
#include "backend/cuda/module_entry.h"
#include "util/cuda_module.h"
#include "util/error.h"

namespace cairn {

namespace {

// The module's device count and, at 0, why: the module's own error when it cannot be opened.
int device_count(std::string* why) {
  if (const std::string& e = cuda_module_error(); !e.empty()) {
    if (why) *why = e;
    return 0;
  }
  try {
    const char* reason = "";
    const int n = reinterpret_cast<decltype(&cairn_cuda_device_count)>(
        cuda_module_symbol("cairn_cuda_device_count"))(&reason);
    if (why) *why = n > 0 ? "" : reason;
    return n;
  } catch (const Error& e) {  // a module from another build
    if (why) *why = e.what();
    return 0;
  }
}

}  // namespace

int cuda_device_count() { return device_count(nullptr); }

bool cuda_device_available() { return cuda_device_count() > 0; }

std::string cuda_unavailable_reason() {
  std::string why;
  device_count(&why);
  return why;
}

std::string cuda_library_versions() {
  return reinterpret_cast<decltype(&cairn_cuda_library_versions)>(cuda_module_symbol("cairn_cuda_library_versions"))();
}

const Backend& cuda_backend(CudaMath math) {
  const std::string& why = cuda_module_error();
  if (!why.empty()) throw Error(str("device = \"cuda\": ", why));
  return *reinterpret_cast<decltype(&cairn_cuda_backend)>(cuda_module_symbol("cairn_cuda_backend"))(math);
}

}  // namespace cairn
