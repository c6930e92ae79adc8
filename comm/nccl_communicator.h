// The NCCL Communicator: the Communicator's collectives on GPU memory, one GPU per rank, for the
// CUDA backend's data parallelism. It is bootstrapped by another (MPI) communicator, which also
// serves rank/size/host, barrier and all_gather_strings. Built into the CUDA module when CUDA and
// NCCL are found (CAIRN_HAVE_NCCL); otherwise make_nccl_communicator throws.
#pragma once

#include <memory>

#include "comm/communicator.h"

namespace cairn {

// Contract beyond Communicator's:
// - Every data pointer given to all_reduce, all_reduce_start, reduce_scatter, all_gather and
//   broadcast is a DEVICE pointer on this rank's GPU (cudaMalloc'd), never host memory.
// - All collectives run in order on one communication stream owned by the communicator. Blocking
//   ones return when the result is in device memory; all_reduce_start returns once the operation
//   is enqueued (wait/test as usual). A wait past CommOptions::timeout_seconds, or an asynchronous
//   NCCL error, prints the collective and ends the job (ncclCommAbort, then bootstrap.abort).
// - barrier, all_gather_strings and abort go through the bootstrap communicator (host side).
// - The bootstrap communicator must outlive this one, and every Request must complete before it is
//   destroyed.
class NcclCommunicator : public Communicator {
 public:
  // Orders every later collective after the work queued on cuda_stream (a cudaStream_t, e.g. the
  // CUDA backend's compute stream) at the time of the call: each collective records an event on
  // that stream and makes the communication stream wait for it, so gradients written by queued
  // kernels are complete before NCCL reads them, without blocking the host. nullptr (the default)
  // means no ordering: the caller synchronizes its compute work before each collective. The stream
  // must stay alive while it is set.
  virtual void set_compute_stream(void* cuda_stream) = 0;
};

// Collective over every rank of bootstrap (which must span the same ranks, e.g. the MPI
// communicator): rank 0 creates the NCCL unique id and broadcasts it over bootstrap; each rank
// selects GPU bootstrap.local_rank() % device count, then joins with ncclCommInitRank. Every rank
// must call it. Throws cairn::Error when built without NCCL, when no GPU is visible, or when NCCL
// cannot initialise (e.g. two ranks on one GPU).
std::unique_ptr<NcclCommunicator> make_nccl_communicator(Communicator& bootstrap,
                                                         const CommOptions& options = {});

}  // namespace cairn

// The CUDA module's entry point behind make_nccl_communicator (comm/nccl_communicator.cpp).
extern "C" __attribute__((visibility("default"))) cairn::NcclCommunicator* cairn_make_nccl_communicator(
    cairn::Communicator& bootstrap, const cairn::CommOptions& options);
