// The peak FLOP/s that MFU is reported against. A peak measured afresh at every start varied by
// 2x between runs on a shared machine, so the measurement is robust (best of repeated timings of
// several GEMM shapes, each timing long enough to average out scheduler noise) and is cached per
// host, backend and thread count: runs on one machine report MFU against the same number.
//
// Cache file: $XDG_CACHE_HOME/cairn/peak.json, else ~/.cache/cairn/peak.json; JSON
// {"format": 2, "peaks": {"<host> <backend> <threads> threads[ [<CPU GEMM libraries>]][ <OPENBLAS_CORETYPE>]": FLOP/s}}.
// A missing, unreadable or corrupt file (or format 1, whose CPU peaks were OpenBLAS's alone) is
// ignored and rewritten; delete it to measure again.
#pragma once

#include <string>

#include "backend/backend.h"

namespace cairn {

// GEMM throughput (FLOP/s) of `be` with its current threads: the best over several shapes of the
// best of several timings, each of enough repetitions to run for about 0.1 s. For cpu_backend(math)
// the peak of the machine in that math mode rather than of one library: the best of every GEMM
// library of the mode (backend/cpu/gemm.h) on operands already in its type (bf16 for bf16).
double measure_matmul_peak(const Backend& be);

// A peak and where it came from, for the start-up report.
struct PeakFlops {
  double flops = 0;
  std::string source;  // "configured", "measured <backend> GEMM, cached in <file>", ...
};

// In order: `configured` when > 0 (training.peak_flops); else the backend's own answer
// (Backend::peak_flops: a GPU's datasheet peak for its math mode); else this host's cached
// measurement for `be` and `threads`; else measure_matmul_peak now and cache it (a cache that
// cannot be written is said in `source`, and the run goes on).
PeakFlops resolve_peak_flops(double configured, const Backend& be, int threads);

// The cache file's path ("" when neither XDG_CACHE_HOME nor HOME is set).
std::string peak_cache_path();
// The cache key of `be` at `threads` threads on this host.
std::string peak_cache_key(const Backend& be, int threads);

}  // namespace cairn
