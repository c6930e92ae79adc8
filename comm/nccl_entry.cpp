// make_nccl_communicator for every build: the NCCL communicator lives in the CUDA module
// (util/cuda_module.h), opened on first use, so cairn_comm itself never links NCCL or CUDA.
#include <memory>

#include "comm/nccl_communicator.h"
#include "util/cuda_module.h"
#include "util/error.h"

namespace cairn {

std::unique_ptr<NcclCommunicator> make_nccl_communicator(Communicator& bootstrap, const CommOptions& options) {
  if (CAIRN_HAVE_CUDA && !CAIRN_HAVE_NCCL)
    throw Error("cairn was built with CUDA but NCCL was not found (nccl.h, libnccl): install NCCL next to "
                "the CUDA toolkit and reconfigure; the configure summary says NCCL=yes when found");
  const std::string& why = cuda_module_error();
  if (!why.empty()) throw Error(str("the NCCL communicator: ", why));
  const auto make = reinterpret_cast<decltype(&cairn_make_nccl_communicator)>(
      cuda_module_symbol("cairn_make_nccl_communicator"));
  return std::unique_ptr<NcclCommunicator>(make(bootstrap, options));
}

}  // namespace cairn
