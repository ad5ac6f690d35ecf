"""Run a command and write its wall time in seconds to the file named by
$CAUDAL_BENCH_TIME_FILE (bench/bench_heat.py's timer: under `caudal run` the
simulation's own wall time is not otherwise exposed).

    CAUDAL_BENCH_TIME_FILE=t.txt python3 bench/_timed.py CMD ARGS...

File descriptors stay open in the child: an MPI process manager may pass its
connection to the rank as one (MPICH's PMI_FD). Exits with the command's
status.
"""

import os
import subprocess
import sys
import time


def main(argv):
    if not argv:
        sys.exit("usage: _timed.py CMD [ARGS...] (time file in $CAUDAL_BENCH_TIME_FILE)")
    out = os.environ.get("CAUDAL_BENCH_TIME_FILE")
    t0 = time.perf_counter()
    rc = subprocess.call(argv, close_fds=False)
    elapsed = time.perf_counter() - t0
    if out:
        with open(out, "w") as f:
            f.write("%.6f\n" % elapsed)
    return rc if rc >= 0 else 128 - rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
