# The Slurm tests (included by tests/CMakeLists.txt): each starts its own throwaway single-node
# cluster (slurm/test-cluster), so they share one lock; `ctest -L slurm` runs just these. They need
# root and Debian's slurm-wlm and munge (tools/setup.sh installs both).
if(CAIRN_MPI)
  foreach(mode requeue sigterm error prepare)
    add_test(NAME slurm_${mode}
             COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/slurm_test.sh ${mode} ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR})
    set_tests_properties(slurm_${mode} PROPERTIES LABELS slurm TIMEOUT 600 PROCESSORS 2
                         RESOURCE_LOCK slurm_cluster SKIP_RETURN_CODE 77)
  endforeach()
endif()
