#!/usr/bin/env bash
# Install what Caudal needs on a fresh Debian machine with Python 3.11, gcc and
# cmake: an MPI (MPICH, from Debian) and clang with libFuzzer (for the
# fuzzers), then a virtual environment in .venv with the Python package built
# from this checkout. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_updated=0
apt_install() {
    if [ "$apt_updated" = 0 ]; then
        apt-get update -qq
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! command -v mpicc >/dev/null || ! command -v mpiexec >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        echo "== installing MPICH from Debian"
        apt_install mpich libmpich-dev
    else
        echo "setup: mpicc/mpiexec not found; install MPICH (sudo apt-get install mpich libmpich-dev)" >&2
        exit 1
    fi
fi

# The Fortran module and example (gfortran; MPICH's mpif90 wraps it).
if ! command -v gfortran >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        echo "== installing gfortran from Debian"
        apt_install gfortran
    else
        echo "setup: gfortran not found; install it (sudo apt-get install gfortran)" >&2
        exit 1
    fi
fi

# The report test opens report.html in a headless browser.
if ! command -v chromium >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        echo "== installing chromium from Debian"
        apt_install chromium
    else
        echo "setup: chromium not found; install it (sudo apt-get install chromium)" >&2
        exit 1
    fi
fi

# The multi-node tests make hosts out of network namespaces (ip, nsenter).
if ! command -v ip >/dev/null || ! command -v nsenter >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        echo "== installing iproute2 and util-linux from Debian"
        apt_install iproute2 util-linux
    else
        echo "setup: ip or nsenter not found, the multi-node tests will be skipped" \
             "(sudo apt-get install iproute2 util-linux)" >&2
    fi
fi

# tests/python/test_slurm.py starts a real Slurm of its own (slurmctld, one
# slurmd per network-namespace host, munged with its own key): it needs the
# daemons, not a configured system Slurm. Root only, as the namespaces are.
if ! [ -x /usr/sbin/slurmd ] || ! [ -x /usr/sbin/munged ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "== installing Slurm and munge from Debian"
        apt_install slurm-wlm munge
    else
        echo "setup: slurmd/munged not found, the Slurm tests will be skipped" \
             "(sudo apt-get install slurm-wlm munge)" >&2
    fi
fi

# examples/lammps and tests/python/test_lammps.py: Debian's LAMMPS library,
# built against Open MPI. Installing Open MPI makes it the default mpicc and
# mpiexec (Debian's alternatives rank it above MPICH), so MPICH is set back:
# the project's MPI stays MPICH, and the LAMMPS driver uses Open MPI by name.
if ! [ -e /usr/include/lammps/library.h ] || ! command -v mpirun.openmpi >/dev/null ||
   ! command -v pkg-config >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        echo "== installing LAMMPS's library (with Open MPI) and pkg-config from Debian"
        apt_install liblammps-dev pkg-config
    else
        echo "setup: LAMMPS's library not found, the LAMMPS tests will be skipped" \
             "(sudo apt-get install liblammps-dev pkg-config)" >&2
    fi
fi
if [ "$(id -u)" = 0 ] && [ -x /usr/bin/mpicc.mpich ] && [ -x /usr/bin/mpirun.mpich ]; then
    update-alternatives --set mpi /usr/bin/mpicc.mpich >/dev/null
    update-alternatives --set mpirun /usr/bin/mpirun.mpich >/dev/null
fi

# The fuzzers (scripts/fuzz.sh) need clang and its libFuzzer runtime, which
# Debian ships apart (libclang-rt-dev, only recommended by clang).
libfuzzer_links() {
    command -v clang >/dev/null &&
        echo 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { return d && n; }' |
        clang -fsanitize=fuzzer -x c - -o /dev/null 2>/dev/null
}
if ! libfuzzer_links; then
    if [ "$(id -u)" = 0 ]; then
        echo "== installing clang and libFuzzer from Debian"
        apt_install clang libclang-rt-dev
    else
        echo "setup: clang with libFuzzer not found, the fuzzers will be skipped" \
             "(sudo apt-get install clang libclang-rt-dev)" >&2
    fi
fi

if [ ! -x .venv/bin/python ]; then
    echo "== creating .venv"
    python3 -m venv .venv
fi
echo "== installing the caudal package into .venv"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q ".[test]"
# mpi4py built against this machine's MPI: PyPI's binary wheel looks for a
# libmpi.so.12 that Debian's MPICH names libmpich.so.12. pip caches the build.
if ! .venv/bin/python -c "from mpi4py import MPI" 2>/dev/null; then
    echo "== building mpi4py against $(command -v mpicc)"
    MPICC=mpicc .venv/bin/python -m pip install -q --no-binary=mpi4py "mpi4py>=4"
fi
