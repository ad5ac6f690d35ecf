#!/usr/bin/env bash
# The demo: examples/heat2d on 4 MPI ranks under `caudal run`, on an embedded
# local Ray. The analytics (examples/analytics/heat_stats.py) compute each
# step's mean, min, max and rate of change from the ranks' blocks, and steer
# the heat source off once the mean passes 1.0; the simulation's own
# MPI_Allreduce means are then compared with the analytics'. Installs what it
# needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

echo "== building libcaudal and examples/heat2d"
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DCAUDAL_TESTS=OFF >/dev/null
cmake --build build/release -j"$(nproc)" >/dev/null

run=runs/demo-$(date +%Y%m%d-%H%M%S)
mkdir -p "$run"
echo "== caudal run: heat2d 256 x 192, 200 steps, 4 ranks (MPICH oversubscribes the cores)"
.venv/bin/caudal run -n 4 --analytics examples/analytics/heat_stats.py --run-dir "$run" \
    -- build/release/examples/heat2d 256 192 200 --mean "$run/simulation_mean.txt"
echo "== the analytics against the simulation's own means"
.venv/bin/python examples/analytics/compare_means.py "$run" "$run/simulation_mean.txt"
