# launch/cairn-mpirun.sh (included by tests/CMakeLists.txt): a log file written through it holds no
# progress-bar escape codes. Needs CAIRN_MPI.
if(CAIRN_MPI)
  add_test(NAME launch_mpirun_log_has_no_progress_bar
           COMMAND ${CMAKE_CURRENT_LIST_DIR}/launch_progress.sh ${PROJECT_SOURCE_DIR} $<TARGET_FILE:cairn>
                   ${CMAKE_CURRENT_BINARY_DIR}/launch_progress)
  set_tests_properties(launch_mpirun_log_has_no_progress_bar PROPERTIES TIMEOUT 120 PROCESSORS 2)
endif()
