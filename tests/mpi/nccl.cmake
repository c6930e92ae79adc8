# Multi-rank test of the NCCL Communicator (included by tests/CMakeLists.txt): every collective on
# device buffers at 2 ranks. Needs CAIRN_MPI and NCCL; without a GPU per rank it exits 77, which
# CTest reports as skipped.
if(CAIRN_MPI AND cairn_nccl)
  cairn_mpi_gtest(nccl_mpi LIBS cairn_comm CUDA::cudart RANKS 2 TIMEOUT 180 SKIP_RETURN_CODE 77)
endif()
