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
  add_test(NAME cluster_harness COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/harness_test.sh harness ${PROJECT_SOURCE_DIR})
  list(APPEND cluster_tests cluster_harness)
  set_tests_properties(${cluster_tests} PROPERTIES LABELS cluster TIMEOUT 600 PROCESSORS 2
                       RESOURCE_LOCK cairn_cluster SKIP_RETURN_CODE 77)
endif()
# The harness's refusals need no root and touch nothing: part of the ordinary suite.
add_test(NAME cluster_harness_refuses_bad_subnets
         COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/harness_test.sh refuses ${PROJECT_SOURCE_DIR})

# Slurm on the cluster (tools/cluster/slurm.sh): preemption and requeue across 2 nodes, node loss
# under Slurm, and a node-range job finishing on the node that is left. Labels cluster and slurm.
if(CAIRN_MPI)
  foreach(mode requeue loss loss-srun fewer)
    add_test(NAME cluster_slurm_${mode}
             COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/slurm_cluster_test.sh ${mode} ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR})
    set_tests_properties(cluster_slurm_${mode} PROPERTIES LABELS "cluster;slurm" TIMEOUT 900 PROCESSORS 2
                         RESOURCE_LOCK cairn_cluster SKIP_RETURN_CODE 77)
  endforeach()
endif()
