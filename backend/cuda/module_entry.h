// The CUDA backend's entry points in libcairn_cuda.so, looked up by name (util/cuda_module.h).
// Both sides include this header, so the module and its callers agree on the signatures.
#pragma once

#include "backend/backend.h"

// The module is compiled with hidden visibility: only what is marked here is exported.
#define CAIRN_MODULE_EXPORT __attribute__((visibility("default")))

extern "C" {
// The backend for `math` on the current device, created once per math mode. Throws cairn::Error
// when no device is usable.
CAIRN_MODULE_EXPORT const cairn::Backend* cairn_cuda_backend(cairn::CudaMath math);
// How many CUDA devices are usable (0 without a driver or device); never throws. With `why`, at 0
// *why says why (the runtime's error, or that it sees no device); the text lives in the module.
CAIRN_MODULE_EXPORT int cairn_cuda_device_count(const char** why);
// "CUDA runtime 13.0 (built with 13.0), driver none, cuBLAS 13.1.0, cuDNN 9.19.0 (built with
// 9.19.0), NCCL 2.28.9": what the loaded libraries report; never throws, needs no device.
CAIRN_MODULE_EXPORT const char* cairn_cuda_library_versions();
}
