"""Run a command and write its wall time and its CPU time (user + system,
the command and what it waited for) in seconds, on one line, to the file named by
$CAUDAL_BENCH_TIME_FILE (bench/bench_heat.py's timer: under `caudal run` the
simulation's own times are not otherwise exposed). The CPU time leaves out
the time the command was not running: what another process on its core took.

    CAUDAL_BENCH_TIME_FILE=t.txt python3 bench/_timed.py CMD ARGS...

File descriptors stay open in the child: an MPI process manager may pass its
connection to the rank as one (MPICH's PMI_FD). Exits with the command's
status.
"""

import os
import resource
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
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out:
        with open(out, "w") as f:
            f.write("%.6f %.6f\n" % (elapsed, ru.ru_utime + ru.ru_stime))
    return rc if rc >= 0 else 128 - rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
