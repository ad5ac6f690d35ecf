#!/usr/bin/env bash
# The demo: examples/heat2d on 4 MPI ranks under `caudal run`, on an embedded
# local Ray. The analytics (examples/analytics/heat_stats.py) compute each
# step's mean, min, max and rate of change from the ranks' blocks, and steer
# the heat source off once the mean passes 1.0; the simulation's own
# MPI_Allreduce means are then compared with the analytics'. Then LAMMPS
# (below). Installs what it needs first.
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

# The molecular dynamics demo, where scripts/setup.sh could install LAMMPS's
# library (Debian's, built with Open MPI): LAMMPS unchanged, stepped by
# examples/lammps/lammps_caudal, its atoms analysed where they lie.
if [ -x build/release/examples/lammps_caudal ] && command -v mpirun.openmpi >/dev/null; then
    mkdir -p "$run/lammps"
    echo "== caudal run: LAMMPS, 32,000 Lennard-Jones atoms, 500 steps, 2 Open MPI ranks"
    root=()
    [ "$(id -u)" = 0 ] && root=(--allow-run-as-root)  # Open MPI refuses root unless told
    .venv/bin/caudal run -n 2 --mpiexec "mpirun.openmpi ${root[*]}" \
        --analytics examples/lammps/md_analysis.py --run-dir "$run/md" \
        -- build/release/examples/lammps_caudal examples/lammps/in.lj 500 --every 100 \
        -- -var out "$run/lammps" -screen none
    echo "== the analytics against LAMMPS's own temperature, MSD and g(r)"
    .venv/bin/python examples/lammps/compare.py "$run/md" "$run/lammps"
else
    echo "== LAMMPS's library not installed: the molecular dynamics demo is skipped"
fi
