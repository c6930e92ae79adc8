// Choosing the communicator for this process (mpirun/srun or a plain single process) and the
// threads each rank may use. Kept out of communicator.cpp, which the CUDA module also compiles (the
// NCCL communicator's base class), so that the module needs none of these factories.
#include <algorithm>
#include <cstdlib>

#include "comm/communicator.h"
#include "util/error.h"

namespace cairn {

bool launched_by_mpi() {
  // Open MPI's mpirun, and srun or other PMI/PMIx launchers (MPICH's hydra sets PMI_SIZE too).
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"}) {
    if (std::getenv(var)) return true;
  }
  return false;
}

std::unique_ptr<Communicator> make_communicator(int* argc, char*** argv, const CommOptions& options) {
  if (!launched_by_mpi()) return make_self_communicator();
  if (!CAIRN_HAVE_MPI) {
    throw Error("this process was started by mpirun/srun but cairn was built without MPI: rebuild "
                "with -DCAIRN_MPI=ON, or run it without mpirun for a single rank");
  }
  return make_mpi_communicator(argc, argv, options);
}

int threads_per_rank(const Communicator& comm, int hardware_threads) {
  return std::max(1, hardware_threads / std::max(1, comm.local_size()));
}

}  // namespace cairn
