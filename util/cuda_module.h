// The CUDA module, libcairn_cuda.so: the CUDA backend (backend/cuda/) and the NCCL communicator
// (comm/nccl_communicator.cpp) built as one shared module that a process opens (dlopen) the first
// time it asks for a GPU. cuBLAS, cuBLASLt, cuDNN and NCCL are hundreds of MB: CPU ranks never map
// them, and a cairn built with CUDA still runs on nodes where those libraries are not installed.
#pragma once

#include <string>

namespace cairn {

// The module's file name, and the environment variable that names another path to open instead.
inline constexpr const char* kCudaModuleFile = "libcairn_cuda.so";
inline constexpr const char* kCudaModuleEnv = "CAIRN_CUDA_MODULE";

// Opens the module once per process, looking in order at $CAIRN_CUDA_MODULE, the running
// executable's folder, and the build folder it was built in. Returns an empty string when open,
// otherwise why not (the paths tried and the loader's message, e.g. a missing libcublas).
const std::string& cuda_module_error();

// The address of an entry point of the module. Throws Error naming the module and the reason when
// the module cannot be opened or lacks the symbol (a module from another build).
void* cuda_module_symbol(const char* symbol);

}  // namespace cairn
