"""Receive heat2d's temperature field while it runs, and check it.

usage: python analyse.py HEAT2D_BINARY [--ranks 4] [--nx 256] [--ny 192]
                         [--steps 200] [--threshold 1.0]

Starts a receiver on a unix socket (shared memory transport), launches the
simulation with mpiexec, rebuilds every step's global field from zero-copy
views of the ranks' blocks, and compares its mean with the mean the
simulation computed itself with MPI_Allreduce. When the mean passes the
threshold it steers the simulation by lowering the source strength "q".
Exits non-zero if any step is missing or any mean differs.
"""

import argparse
import atexit
import os
import secrets
import shutil
import subprocess
import sys
import tempfile

import numpy as np

import caudal


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("heat2d")
    ap.add_argument("--ranks", type=int, default=4)
    ap.add_argument("--nx", type=int, default=256)
    ap.add_argument("--ny", type=int, default=192)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--threshold", type=float, default=1.0)
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="caudal-demo-")
    atexit.register(shutil.rmtree, tmp, True)
    endpoint = "unix:" + os.path.join(tmp, "ingest.sock")
    token = secrets.token_hex(8)
    mean_file = os.path.join(tmp, "mean.txt")
    env = dict(os.environ, CAUDAL_ENDPOINT=endpoint, CAUDAL_TOKEN=token)

    means, steered_at = {}, None
    fields = {}   # step -> (global array, blocks still missing)
    with caudal.Receiver(endpoint, token=token) as r:
        sim = subprocess.Popen(
            ["mpiexec", "-n", str(args.ranks), args.heat2d, str(args.nx), str(args.ny),
             str(args.steps), "--mean", mean_file], env=env)
        byes = 0
        while byes < args.ranks:
            ev = r.next(1000)
            if ev is None:
                if sim.poll() not in (None, 0):
                    sys.exit("demo: the simulation failed with exit code %d" % sim.returncode)
                continue
            if ev.type == "block":
                field, missing = fields.get(ev.step, (None, ev.size))
                if field is None:
                    field = np.empty(ev.array.shape, dtype=ev.dtype)
                view = np.asarray(ev.block)           # no copy: the rank's slot
                index = tuple(slice(s, s + c) for s, c in zip(ev.array.start, ev.array.count))
                field[index] = view
                del view
                ev.block.release()                    # the slot may be reused now
                fields[ev.step] = (field, missing - 1)
                if missing - 1 == 0:
                    means[ev.step] = float(field.mean())
                    del fields[ev.step]
                    if steered_at is None and means[ev.step] > args.threshold:
                        r.steer(-1, "q", 0.0)           # switch the source off
                        steered_at = ev.step
            elif ev.type == "disconnect":
                sys.exit("demo: rank %d: %s" % (ev.rank, ev.message))
            elif ev.type == "bye":
                byes += 1
        if sim.wait() != 0:
            sys.exit("demo: the simulation failed with exit code %d" % sim.returncode)

    oracle = {}
    with open(mean_file) as f:
        for line in f:
            step, mean = line.split()
            oracle[int(step)] = float(mean)
    missing = sorted(set(oracle) - set(means))
    worst = max(abs(means[s] - oracle[s]) / max(abs(oracle[s]), 1e-300) for s in means)
    print("steps published %d, received complete %d, missing %s" %
          (len(oracle), len(means), missing[:10] or "none"))
    print("largest relative difference of the mean against MPI_Allreduce: %.2e" % worst)
    for s in sorted(means)[:: max(1, len(means) // 8)]:
        print("  step %4d  mean %.6f  (simulation %.6f)" % (s, means[s], oracle[s]))
    if steered_at is None:
        sys.exit("demo: the mean never passed %g: nothing was steered" % args.threshold)
    # Heated, the mean rises every step; with the source off and cold borders
    # it falls: the first step where it falls is when the simulation reacted.
    rise = {t: oracle[t] - oracle[t - 1] for t in oracle if t - 1 in oracle}
    reacted = next((t for t in sorted(rise) if t > steered_at and rise[t] <= 0), None)
    if reacted is None or any(rise[t] > 0 for t in rise if t >= reacted):
        sys.exit("demo: the simulation did not react to steering")
    print("steered at step %d (mean %.3f > %g): source off; the simulation cooled "
          "from step %d on" % (steered_at, means[steered_at], args.threshold, reacted))
    if missing or worst > 1e-12:
        sys.exit("demo: FAILED")
    print("demo: OK")


if __name__ == "__main__":
    main()
