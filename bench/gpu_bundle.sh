#!/usr/bin/env bash
# Packs what the GPU machine needs to run the full cairn there — it has nvcc, CMake, PyTorch and
# NVIDIA's libraries but none of cairn's Debian ones: cairn, libcairn_cuda.so and cuda_ops_test from
# a build made here (sm_90), the Debian shared libraries they load (not glibc, libstdc++ or CUDA's,
# which the machine has), and a prepared dataset, as gpu_bundle/bundle.tar.xz (gitignored). Carry
# gpu_bundle to the machine; bench/gpu_check.sh then also runs the real trainer and the
# checkpoint tests on the GPU.
#   bash bench/gpu_bundle.sh [BUILD]    # BUILD: a configured and built tree (default build/)
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$src/build}
for f in cairn libcairn_cuda.so tests/cuda_ops_test; do
  [ -e "$build/$f" ] || { echo "gpu_bundle: $build/$f is missing: build cairn with CUDA first (tools/setup.sh)" >&2; exit 1; }
done
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib" "$stage/data"
cp "$build/cairn" "$build/libcairn_cuda.so" "$build/tests/cuda_ops_test" "$stage/bin/"
# The loader's closure, minus the C/C++ runtime and CUDA's libraries (the machine's own match its driver).
for f in "$stage"/bin/*; do ldd "$f"; done | awk '$3 ~ /^\// {print $3}' | sort -u |
  grep -v -E '/usr/local/cuda|/(libc|libm|libdl|libpthread|librt|libgcc_s|libstdc\+\+|ld-linux-x86-64)\.so' |
  while read -r lib; do cp -L "$lib" "$stage/lib/"; done
[ -d "$src/out/fortunes" ] || "$build/cairn" prepare --out "$src/out/fortunes"
cp -r "$src/out/fortunes" "$stage/data/"
mkdir -p "$src/gpu_bundle"
tar -C "$stage" -cJf "$src/gpu_bundle/bundle.tar.xz" .
echo "gpu_bundle: $(du -h "$src/gpu_bundle/bundle.tar.xz" | cut -f1) in gpu_bundle/bundle.tar.xz ($(ls "$stage/lib" | wc -l) libraries)"
echo "run on the GPU machine: run(command=\"bash bench/gpu_check.sh\", carry=[\"third_party/cudnn_frontend\", \"gpu_bundle\"])"
