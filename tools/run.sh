#!/usr/bin/env bash
# README's first command: set up, build, prepare the fortunes corpus and train the tiny preset on
# two data-parallel ranks (one thread each).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
[ -d out/fortunes ] || build/cairn prepare --out out/fortunes
launch/cairn-mpirun.sh -n 2 -- train --config configs/tiny.toml "$@"
