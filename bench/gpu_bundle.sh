#!/usr/bin/env bash
# Packs what the GPU machine needs, prebuilt, so that bench/gpu_check.sh compiles nothing there (it
# has nvcc, CMake, PyTorch and NVIDIA's libraries but none of cairn's Debian ones): cairn,
# libcairn_cuda.so, cuda_check, cuda_ops_test and cuda_bench from a build made here (sm_90), the
# Debian shared libraries they load (not glibc, libstdc++ or CUDA's, which the machine has), and a
# prepared dataset, as gpu_bundle/bundle.tar.xz (gitignored; about 20 MB, under the device tool's
# 64 MiB carry limit). Carry gpu_bundle to the machine.
#   bash bench/gpu_bundle.sh [BUILD]    # BUILD: a configured and built tree (default build/)
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$src/build}
bins=(cairn libcairn_cuda.so tests/cuda_check tests/cuda_ops_test bench/cuda_bench)
cmake --build "$build" -j2 --target cairn cairn_cuda cuda_check cuda_ops_test cuda_bench > /dev/null ||
  { echo "gpu_bundle: building the bundle's programs in $build failed" >&2; exit 1; }
for f in "${bins[@]}"; do
  [ -e "$build/$f" ] || { echo "gpu_bundle: $build/$f is missing: build cairn with CUDA first (tools/setup.sh)" >&2; exit 1; }
done
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib" "$stage/data"
for f in "${bins[@]}"; do cp "$build/$f" "$stage/bin/"; done
echo "$(git -C "$src" describe --always --dirty) built $(date -u '+%Y-%m-%d %H:%M UTC') on $(ldd --version | head -1 | grep -o '[0-9.]*$' | sed 's/^/glibc /')" > "$stage/BUILD_INFO"
# The loader's closure, minus the C/C++ runtime and CUDA's libraries (the machine's own match its driver).
for f in "$stage"/bin/*; do ldd "$f"; done | awk '$3 ~ /^\// {print $3}' | sort -u |
  grep -v -E '/usr/local/cuda|/(libc|libm|libdl|libpthread|librt|libgcc_s|libstdc\+\+|ld-linux-x86-64)\.so' |
  while read -r lib; do cp -L "$lib" "$stage/lib/"; done
[ -d "$src/out/fortunes" ] || "$build/cairn" prepare --out "$src/out/fortunes"
cp -r "$src/out/fortunes" "$stage/data/"
mkdir -p "$src/gpu_bundle"
tar -C "$stage" -cJf "$src/gpu_bundle/bundle.tar.xz" .
echo "gpu_bundle: $(du -h "$src/gpu_bundle/bundle.tar.xz" | cut -f1) in gpu_bundle/bundle.tar.xz ($(ls "$stage/lib" | wc -l) libraries)"
echo "run on the GPU machine: run(command=\"bash bench/gpu_check.sh\", carry=[\"gpu_bundle\", \"third_party/cudnn_frontend\"], timeout_s=600)"
