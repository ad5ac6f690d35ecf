#!/usr/bin/env bash
# The I/O peers of the benchmark (bench/peers/systems/adios2_sst.py and
# hdf5_posthoc.py) run in their own virtual environment, .venv-peers/io, so
# that .venv keeps only what Caudal needs. Safe to run again: each step is
# skipped when its result is there.
#
#  - numpy, and mpi4py built against Debian's MPICH (as scripts/setup.sh does).
#  - h5py from PyPI: its wheel is serial HDF5 (Debian's python3-h5py-mpi is
#    built with Open MPI, not the MPICH our ranks use), so the simulation
#    writes one HDF5 file per rank.
#  - ADIOS2 built from its PyPI source with MPI on (against Debian's MPICH and
#    this mpi4py): PyPI's adios2 wheel is built without MPI, and Debian 12 has
#    no ADIOS2. Only what the benchmark uses is built (core engines, SST with
#    its sockets data plane, Python bindings): about 10 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV=.venv-peers/io
PY=$VENV/bin/python
NUMPY=2.4.6
MPI4PY=4.1.2
H5PY=3.16.0
ADIOS2=2.12.1.1001

if [ ! -x "$PY" ]; then
    echo "== creating $VENV"
    mkdir -p .venv-peers
    python3 -m venv "$VENV"
    "$PY" -m pip install -q --upgrade pip
fi
if ! "$PY" -c "import numpy, h5py" 2>/dev/null; then
    echo "== installing numpy, h5py into $VENV"
    "$PY" -m pip install -q "numpy==$NUMPY" "h5py==$H5PY"
fi
if ! "$PY" -c "from mpi4py import MPI" 2>/dev/null; then
    echo "== building mpi4py against $(command -v mpicc)"
    MPICC=mpicc "$PY" -m pip install -q --no-binary=mpi4py "mpi4py==$MPI4PY"
fi
if ! "$PY" -c "import adios2.bindings as b, sys; sys.exit(not b.is_built_with_mpi)" 2>/dev/null; then
    echo "== building ADIOS2 $ADIOS2 with MPI (long the first time)"
    "$PY" -m pip install -q scikit-build-core "setuptools_scm>=8"
    off=""
    for o in BigWhoop Blosc2 BZip2 Caliper ZFP SZ SZ3 LIBPRESSIO MGARD PRODM PNG DAOS \
             DataMan DataSpaces MHS ZeroMQ HDF5 HDF5_VOL IME Fortran UCX Profiling Sodium \
             Catalyst Campaign OpenSSL XRootD CURL KVCACHE; do
        off="$off -Ccmake.define.ADIOS2_USE_$o=OFF"
    done
    # The sdist's pip build looks for mpi4py only when it is not a pip build
    # (cmake/DetectOptions.cmake), and leaves the Python bindings out with MPI
    # on: look for it in the pip branch too.
    src=.venv-peers/build
    rm -rf "$src"
    mkdir -p "$src"
    "$PY" -m pip download -q --no-deps --no-binary=:all: --no-build-isolation \
        -d "$src" "adios2==$ADIOS2"
    tar -xzf "$src/adios2-$ADIOS2.tar.gz" -C "$src"
    sed -i 's/^  set(ADIOS2_HAVE_PIP TRUE)$/  set(ADIOS2_HAVE_PIP TRUE)\n  if(ADIOS2_HAVE_MPI)\n    find_package(PythonModule REQUIRED COMPONENTS mpi4py mpi4py\/mpi4py.h)\n  endif()/' \
        "$src/adios2-$ADIOS2/cmake/DetectOptions.cmake"
    grep -A1 "^  set(ADIOS2_HAVE_PIP TRUE)" "$src/adios2-$ADIOS2/cmake/DetectOptions.cmake" \
        | grep -q "if(ADIOS2_HAVE_MPI)"
    # shellcheck disable=SC2086
    CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} CC=mpicc CXX=mpicxx \
        "$PY" -m pip install -v --no-build-isolation "./$src/adios2-$ADIOS2" \
        -Ccmake.define.ADIOS2_USE_MPI=ON -Ccmake.define.ADIOS2_USE_SST=ON \
        -Ccmake.define.ADIOS2_USE_Python=ON -Ccmake.define.ADIOS2_BUILD_EXAMPLES=OFF \
        -Ccmake.define.BUILD_TESTING=OFF $off
    rm -rf "$src"
fi
"$PY" -m pip check
"$PY" -c "import adios2.bindings as b, h5py; from mpi4py import MPI; \
print('adios2', b.__version__, 'mpi', b.is_built_with_mpi, '| h5py', h5py.__version__, \
'| mpi4py on', MPI.Get_library_version().split(chr(10))[0])"
