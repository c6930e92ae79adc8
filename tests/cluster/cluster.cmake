# Tests on a multi-node cluster on this machine (tools/cluster/cluster.sh; included by
# tests/CMakeLists.txt after tests/mpi, whose checkpoint_compare they use). Label cluster; they need
# root (otherwise they skip, exit 77) and share one lock, the cluster. `ctest -L cluster` runs them.
if(CAIRN_MPI)
  set(cluster_test ${CMAKE_CURRENT_LIST_DIR}/cluster_test.sh)
  foreach(shape "2 1" "2 2" "4 1" "4 2")
    separate_arguments(kp UNIX_COMMAND "${shape}")
    list(JOIN kp "x" name)
    add_test(NAME cluster_mpirun_${name}
             COMMAND bash ${cluster_test} mpirun ${kp} ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR} $<TARGET_FILE:checkpoint_compare>)
    list(APPEND cluster_tests cluster_mpirun_${name})
  endforeach()
  foreach(mode loss-link loss-kill local-dir)
    add_test(NAME cluster_${mode}
             COMMAND bash ${cluster_test} ${mode} ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR} $<TARGET_FILE:checkpoint_compare>)
    list(APPEND cluster_tests cluster_${mode})
  endforeach()
  set_tests_properties(${cluster_tests} PROPERTIES LABELS cluster TIMEOUT 600 PROCESSORS 2
                       RESOURCE_LOCK cairn_cluster SKIP_RETURN_CODE 77)
endif()
