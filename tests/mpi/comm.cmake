# Multi-rank tests of the MPI Communicator (included by tests/CMakeLists.txt): the collectives at
# 2, 3 (the ring's odd case) and 4 ranks, and two failures that must end the job in bounded time
# (a rank hung past the collective timeout, named with its host by the ranks that wait for it; a
# rank killed by SIGKILL). Needs CAIRN_MPI.
if(CAIRN_MPI)
  cairn_mpi_gtest(comm_mpi LIBS cairn_comm RANKS 2 3 4 TIMEOUT 180)
  set(comm_mpirun ${MPIEXEC_EXECUTABLE} --allow-run-as-root --oversubscribe ${MPIEXEC_PREFLAGS})
  set(expect_failure ${CMAKE_CURRENT_LIST_DIR}/expect_failure.sh)
  add_test(NAME comm_mpi_timeout_ends_job
           COMMAND ${expect_failure} 30 "did not complete within the communicator timeout.*no answer within [0-9.]+ s from rank 1 on host " --
                   ${comm_mpirun} ${MPIEXEC_NUMPROC_FLAG} 2 $<TARGET_FILE:comm_mpi> --scenario=timeout)
  add_test(NAME comm_mpi_killed_rank_ends_job
           COMMAND ${expect_failure} 30 "signal 9|Killed" --
                   ${comm_mpirun} ${MPIEXEC_NUMPROC_FLAG} 2 $<TARGET_FILE:comm_mpi> --scenario=kill)
  set_tests_properties(comm_mpi_timeout_ends_job comm_mpi_killed_rank_ends_job
                       PROPERTIES TIMEOUT 90 PROCESSORS 2)
endif()
