#!/usr/bin/env bash
# README's first command: set up, build, prepare the fortunes corpus and train the tiny preset.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
[ -f out/fortunes.h5 ] || build/cairn prepare --out out/fortunes.h5
build/cairn train --config configs/tiny.toml "$@"
