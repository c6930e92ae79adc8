// What the ranks run on, for the start-up report: which hosts hold which ranks, and how ranks on
// different hosts reach each other (transport, network interfaces and their addresses).
#pragma once

#include <string>
#include <vector>

#include "comm/communicator.h"

namespace cairn {

// Collective. On rank 0, the report's lines ("hosts: ...", "network: ..."); empty on the others.
// The transport and interfaces are those Open MPI is told to use (OMPI_MCA_pml, OMPI_MCA_btl,
// OMPI_MCA_btl_tcp_if_include/exclude, as launch/cairn-mpirun.sh and slurm/launch.sh set them),
// resolved against each host's own interfaces.
std::vector<std::string> describe_network(Communicator& comm);

// This host's IPv4 interfaces that are up and not loopback, as "NAME ADDRESS", kept to those that
// `include` names (a comma-separated list of interface names or CIDR subnets, Open MPI's
// if_include syntax; empty: all) and not excluded by `exclude` (the same syntax).
std::vector<std::string> usable_interfaces(const std::string& include, const std::string& exclude);

}  // namespace cairn
