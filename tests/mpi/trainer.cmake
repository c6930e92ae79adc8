# Multi-rank trainer tests (included by tests/CMakeLists.txt): data-parallel equivalence with one
# rank, ZeRO-1 against replicated optimizer state, and the divergence check, at 2 and 4 ranks; the
# same on one GPU per rank over NCCL (trainer_mpi_cuda_np2: skipped without 2 GPUs).
if(CAIRN_MPI)
  cairn_mpi_gtest(trainer_mpi LIBS cairn_trainer RANKS 2 4 TIMEOUT 300)
  if(cairn_nccl)
    cairn_mpi_gtest(trainer_mpi VARIANT _cuda ARGS --device=cuda RANKS 2 TIMEOUT 300 SKIP_RETURN_CODE 77)
  endif()
endif()
