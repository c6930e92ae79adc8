// Finding and opening libcairn_cuda.so (see cuda_module.h). The handle is never closed: the CUDA
// runtime's own exit handlers live in the libraries the module pulled in.
#include "util/cuda_module.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <vector>

#include "util/error.h"

namespace cairn {
namespace {

struct ModuleState {
  void* handle = nullptr;
  std::string error;
};

std::vector<std::string> candidate_paths() {
  std::vector<std::string> paths;
  if (const char* env = std::getenv(kCudaModuleEnv); env && *env) return {env};
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) paths.push_back((exe.parent_path() / kCudaModuleFile).string());
#ifdef CAIRN_MODULE_BUILD_DIR
  paths.push_back(std::string(CAIRN_MODULE_BUILD_DIR) + "/" + kCudaModuleFile);
#endif
  return paths;
}

const ModuleState& module_state() {
  static ModuleState state;
  static std::once_flag once;
  std::call_once(once, [] {
    if (!CAIRN_HAVE_CUDA) {
      state.error = "this cairn was built without CUDA (CAIRN_CUDA=OFF, or nvcc was not found at configure "
                    "time): rebuild with the CUDA toolkit installed, or use device = \"cpu\"";
      return;
    }
    std::string tried;
    for (const std::string& path : candidate_paths()) {
      if (access(path.c_str(), F_OK) != 0) {
        tried += str("\n  ", path, ": no such file");
        continue;
      }
      // RTLD_LOCAL: the module's copies of cairn's helpers stay private to it.
      state.handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (state.handle) return;
      tried += str("\n  ", path, ": ", dlerror());
    }
    state.error = str("cannot open the CUDA module ", kCudaModuleFile, " (set ", kCudaModuleEnv,
                      " to its path, or install the CUDA libraries it needs):", tried);
  });
  return state;
}

}  // namespace

const std::string& cuda_module_error() { return module_state().error; }

void* cuda_module_symbol(const char* symbol) {
  const ModuleState& m = module_state();
  if (!m.handle) throw Error(m.error);
  void* address = dlsym(m.handle, symbol);
  if (!address)
    throw Error(str("the CUDA module ", kCudaModuleFile, " has no entry point '", symbol,
                    "': it comes from another build of cairn; rebuild it with this one"));
  return address;
}

}  // namespace cairn
