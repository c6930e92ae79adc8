#!/usr/bin/env bash
# Installs the Debian packages cairn needs (only those missing) and builds it into build/.
# Usage: tools/setup.sh [extra cmake args...]
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential cmake pkg-config libopenblas-openmp-dev liblapacke-dev libhdf5-dev hdf5-tools
          libopenmpi-dev openmpi-bin libgtest-dev libtomlplusplus-dev nlohmann-json3-dev
          libsentencepiece-dev libpcre2-dev libicu-dev libpng-dev zlib1g-dev libzstd-dev fortunes fortunes-de slurm-wlm
          munge iproute2 iperf3)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# With a CUDA toolkit: the header-only cudnn_frontend (cuDNN's graph API in C++, for fused
# attention) from its PyPI wheel into third_party/ (gitignored), once.
fe_version=1.32.0
fe_dir=third_party/cudnn_frontend
if { command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ]; } && [ ! -f "$fe_dir/include/cudnn_frontend.h" ]; then
  echo "setup: fetching cudnn_frontend $fe_version headers into $fe_dir"
  tmp=$(mktemp -d)
  if python3 -m pip download -q --no-deps --only-binary=:all: -d "$tmp" "nvidia-cudnn-frontend==$fe_version" &&
     mkdir -p "$fe_dir" && python3 -m zipfile -e "$tmp"/nvidia_cudnn_frontend-*.whl "$tmp/wheel" &&
     cp -r "$tmp/wheel/include" "$fe_dir/"; then
    echo "$fe_version" > "$fe_dir/VERSION"
  else
    echo "setup: could not fetch cudnn_frontend; CUDA attention will use its own kernel only" >&2
  fi
  rm -rf "$tmp"
fi

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build build -j "$(nproc)"
