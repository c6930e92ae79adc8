// cuda_backend(), cuda_device_count() and cuda_device_available() for every build: they reach the
// CUDA backend through the CUDA module (util/cuda_module.h), opened on the first call, so neither
// this library nor the processes linking it depend on the CUDA libraries.
#include "model/backend.h"
#include "model/cuda/module_entry.h"
#include "util/cuda_module.h"
#include "util/error.h"

namespace cairn {

int cuda_device_count() {
  if (!cuda_module_error().empty()) return 0;
  return reinterpret_cast<decltype(&cairn_cuda_device_count)>(cuda_module_symbol("cairn_cuda_device_count"))();
}

bool cuda_device_available() { return cuda_device_count() > 0; }

const Backend& cuda_backend(CudaMath math) {
  const std::string& why = cuda_module_error();
  if (!why.empty()) throw Error(str("device = \"cuda\": ", why));
  return *reinterpret_cast<decltype(&cairn_cuda_backend)>(cuda_module_symbol("cairn_cuda_backend"))(math);
}

}  // namespace cairn
