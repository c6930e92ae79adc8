#!/usr/bin/env bash
# README's second command: set up, build and run the whole test suite through CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
ctest --test-dir build --output-on-failure --timeout 900 -j 2 "$@"
