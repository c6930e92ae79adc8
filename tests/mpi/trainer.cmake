# Multi-rank trainer tests (included by tests/CMakeLists.txt): data-parallel equivalence with one
# rank, ZeRO-1 against replicated optimizer state, and the divergence check, at 2 and 4 ranks.
if(CAIRN_MPI)
  cairn_mpi_gtest(trainer_mpi LIBS cairn_trainer RANKS 2 4 TIMEOUT 300)
endif()
