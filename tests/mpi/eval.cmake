# `cairn eval` under mpirun (included by tests/CMakeLists.txt): 2 and 3 ranks share the windows and
# agree with one process. Needs CAIRN_MPI.
if(CAIRN_MPI)
  cairn_mpi_gtest(eval_mpi LIBS cairn_launch RANKS 2 3 TIMEOUT 120)
endif()
