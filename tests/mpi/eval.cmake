# `cairn eval` under mpirun (included by tests/CMakeLists.txt): 2 and 3 ranks share the windows and
# agree with one process. Needs CAIRN_MPI.
if(CAIRN_MPI)
  add_executable(eval_mpi ${CMAKE_CURRENT_LIST_DIR}/eval_mpi.cpp)
  target_link_libraries(eval_mpi PRIVATE cairn_launch GTest::gtest)
  foreach(np 2 3)
    add_test(NAME eval_mpi_np${np}
             COMMAND ${MPIEXEC_EXECUTABLE} --allow-run-as-root --oversubscribe ${MPIEXEC_PREFLAGS}
                     ${MPIEXEC_NUMPROC_FLAG} ${np} $<TARGET_FILE:eval_mpi> ${MPIEXEC_POSTFLAGS})
    set_tests_properties(eval_mpi_np${np} PROPERTIES TIMEOUT 120 PROCESSORS 2)
  endforeach()
endif()
