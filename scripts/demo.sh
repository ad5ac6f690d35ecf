#!/usr/bin/env bash
# The demo: examples/heat2d on 4 MPI ranks publishing every step to a Python
# receiver over shared memory, which checks each step's mean against the
# simulation's own and steers its source. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

echo "== building libcaudal and examples/heat2d"
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DCAUDAL_TESTS=OFF >/dev/null
cmake --build build/release -j"$(nproc)" >/dev/null

echo "== running heat2d (4 ranks) with the receiver"
# More ranks than cores is fine with MPICH; it oversubscribes without flags.
.venv/bin/python examples/heat2d/analyse.py build/release/examples/heat2d "$@"
