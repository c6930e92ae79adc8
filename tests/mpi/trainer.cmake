# Multi-rank trainer tests (included by tests/CMakeLists.txt): data-parallel equivalence with one
# rank, ZeRO-1 against replicated optimizer state, and the divergence check, at 2 and 4 ranks.
if(CAIRN_MPI)
  add_executable(trainer_mpi ${CMAKE_CURRENT_LIST_DIR}/trainer_mpi.cpp)
  target_link_libraries(trainer_mpi PRIVATE cairn_trainer GTest::gtest)
  foreach(np 2 4)
    add_test(NAME trainer_mpi_np${np}
             COMMAND ${MPIEXEC_EXECUTABLE} --allow-run-as-root --oversubscribe ${MPIEXEC_PREFLAGS}
                     ${MPIEXEC_NUMPROC_FLAG} ${np} $<TARGET_FILE:trainer_mpi> ${MPIEXEC_POSTFLAGS})
    set_tests_properties(trainer_mpi_np${np} PROPERTIES TIMEOUT 300 PROCESSORS 2)
  endforeach()
endif()
