# Multi-rank test of the NCCL Communicator (included by tests/CMakeLists.txt): every collective on
# device buffers at 2 ranks. Needs CAIRN_MPI and NCCL; without a GPU per rank it exits 77, which
# CTest reports as skipped.
if(CAIRN_MPI AND cairn_nccl)
  add_executable(nccl_mpi ${CMAKE_CURRENT_LIST_DIR}/nccl_mpi.cpp)
  target_link_libraries(nccl_mpi PRIVATE cairn_comm GTest::gtest)
  add_test(NAME nccl_mpi_np2
           COMMAND ${MPIEXEC_EXECUTABLE} --allow-run-as-root --oversubscribe ${MPIEXEC_PREFLAGS}
                   ${MPIEXEC_NUMPROC_FLAG} 2 $<TARGET_FILE:nccl_mpi> ${MPIEXEC_POSTFLAGS})
  set_tests_properties(nccl_mpi_np2 PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 180 PROCESSORS 2)
endif()
