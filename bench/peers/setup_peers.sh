#!/usr/bin/env bash
# The peer systems' own virtual environments, apart from .venv (which holds
# caudal with its own ray/dask): .venv-peers/deisa-dask and .venv-peers/deisa-ray,
# each with numpy, mpi4py built against this machine's MPICH (as scripts/setup.sh
# does) and the peer from PyPI. Run by the benchmark, never by the tests; safe to
# run again (a complete environment is left as it is).
#
# deisa-ray declares Requires-Python >= 3.12 and this machine has 3.11. Its only
# 3.12-only construct is the PEP 695 `type X = Y` statement (five type aliases
# in deisa/ray/types.py, used in annotations only), so it is installed with
# --ignore-requires-python --no-deps, its declared dependencies are installed
# by pip as usual (each at a version for 3.11), and those five statements are
# rewritten to the equivalent `X: TypeAlias = Y`: no change of behaviour.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=.venv-peers
PY=${PYTHON:-python3}

DEISA_DASK_VERSION=0.6.3
DEISA_RAY_VERSION=0.1.8

if ! command -v mpicc >/dev/null; then
    echo "setup_peers: mpicc not found (run scripts/setup.sh first)" >&2
    exit 1
fi

base_env() {  # DIR: a venv with pip, numpy and mpi4py built against mpicc
    local dir=$1
    if [ ! -x "$dir/bin/python" ]; then
        echo "== creating $dir"
        "$PY" -m venv "$dir"
        "$dir/bin/python" -m pip install -q --upgrade pip
    fi
    "$dir/bin/python" -c "import numpy" 2>/dev/null || "$dir/bin/python" -m pip install -q numpy
    if ! "$dir/bin/python" -c "from mpi4py import MPI" 2>/dev/null; then
        echo "== building mpi4py against $(command -v mpicc) in $dir"
        MPICC=mpicc "$dir/bin/python" -m pip install -q --no-binary=mpi4py "mpi4py>=4.1.2"
    fi
}

mkdir -p "$ROOT"

# --- deisa-dask: supports 3.11, a plain install
D=$ROOT/deisa-dask
base_env "$D"
if ! "$D/bin/python" -c "import deisa.dask, sys; sys.exit(deisa.dask.__version__ != '$DEISA_DASK_VERSION')" 2>/dev/null; then
    echo "== installing deisa-dask $DEISA_DASK_VERSION into $D"
    "$D/bin/python" -m pip install -q "deisa-dask==$DEISA_DASK_VERSION"
fi

# --- deisa-ray: Requires-Python >= 3.12, see above
R=$ROOT/deisa-ray
base_env "$R"
if ! "$R/bin/python" -c "import ray, dask, zarr, xarray, h5py, h5netcdf, deisa.core" 2>/dev/null; then
    echo "== installing deisa-ray's dependencies into $R"
    # deisa-ray $DEISA_RAY_VERSION's Requires-Dist, verbatim
    "$R/bin/python" -m pip install -q "dask[dataframe]==2025.5.0" "deisa-core>=0.5.0" h5netcdf \
        "h5py>=3.15.1" "mpi4py>=4.1.2" numpy "ray>=2.48.0" xarray "zarr>=3.1.5"
fi
if ! "$R/bin/python" -m pip show deisa-ray 2>/dev/null | grep -qx "Version: $DEISA_RAY_VERSION"; then
    echo "== installing deisa-ray $DEISA_RAY_VERSION into $R (--ignore-requires-python)"
    "$R/bin/python" -m pip install -q --no-deps --ignore-requires-python "deisa-ray==$DEISA_RAY_VERSION"
fi
TYPES=$("$R/bin/python" -c "import importlib.util as u; print(u.find_spec('deisa.ray').submodule_search_locations[0])")/types.py
if grep -qE '^type [A-Za-z_]+ = ' "$TYPES"; then
    echo "== rewriting PEP 695 type aliases in $TYPES for Python 3.11"
    sed -i -E 's/^type ([A-Za-z_][A-Za-z0-9_]*) = (.*)$/\1: TypeAlias = \2/' "$TYPES"
fi
"$R/bin/python" -c "import deisa.ray; from deisa.ray import Bridge, Deisa" >/dev/null
"$D/bin/python" -c "import deisa.dask; from deisa.dask import Bridge, Deisa" >/dev/null
echo "== peers ready: $D, $R"
