// Built instead of model/cuda/*.cu when cairn is configured without CUDA: the CUDA entry points
// exist everywhere, so callers need no #if, and say why they cannot be used.
#include "model/backend.h"
#include "util/error.h"

namespace cairn {

bool cuda_device_available() { return false; }

const Backend& cuda_backend(CudaMath) {
  throw Error("device = \"cuda\" but this cairn was built without CUDA (CAIRN_CUDA=OFF, or nvcc was not "
              "found at configure time): rebuild with the CUDA toolkit installed, or use device = \"cpu\"");
}

}  // namespace cairn
