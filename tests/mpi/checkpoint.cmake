# Multi-rank checkpoint tests (included by tests/CMakeLists.txt): a 2-rank run resumed at 2 ranks
# (bit-identical), at 1 and at 4 ranks (within tolerance), driven through `mpirun cairn train`; a
# failed metrics write stops both ranks after a checkpoint. Needs CAIRN_MPI.
if(CAIRN_MPI)
  add_executable(checkpoint_compare ${CMAKE_CURRENT_LIST_DIR}/checkpoint_compare.cpp)
  target_link_libraries(checkpoint_compare PRIVATE cairn_trainer)
  add_test(NAME checkpoint_mpi_resume
           COMMAND ${CMAKE_CURRENT_LIST_DIR}/checkpoint_resume.sh $<TARGET_FILE:cairn> $<TARGET_FILE:checkpoint_compare>
                   ${PROJECT_SOURCE_DIR}/configs/tiny-test.toml ${CMAKE_CURRENT_BINARY_DIR}/checkpoint_mpi_resume
                   ${MPIEXEC_EXECUTABLE} --allow-run-as-root --oversubscribe ${MPIEXEC_PREFLAGS})
  set_tests_properties(checkpoint_mpi_resume PROPERTIES TIMEOUT 300 PROCESSORS 2)
  add_test(NAME output_failure_mpi
           COMMAND ${CMAKE_CURRENT_LIST_DIR}/output_failure.sh $<TARGET_FILE:cairn> ${PROJECT_SOURCE_DIR}/configs/tiny-test.toml
                   ${CMAKE_CURRENT_BINARY_DIR}/output_failure_mpi ${MPIEXEC_EXECUTABLE} --allow-run-as-root --oversubscribe
                   ${MPIEXEC_PREFLAGS})
  set_tests_properties(output_failure_mpi PROPERTIES TIMEOUT 180 PROCESSORS 2 SKIP_RETURN_CODE 77)
endif()
