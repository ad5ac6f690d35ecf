"""A small MPI program for the completeness tests: every step each rank
publishes its band of a fixed 2-D array "field" and its particles, a
variable-length array "particles" whose count differs per rank and step
(some ranks have none at some steps). Values are whole numbers, so sums are
exact in any order. Each rank writes what it put, one line per step, to
TRUTH/rank<R>.txt: "step particles particle_sum field_sum put_particles
put_field", the ground truth the analytics are compared with.

usage: mpiexec -n N python _particles_sim.py STEPS TRUTH [options]
  --ring-depth R:D  rank R's client has a ring of D slots (the others 64)
  --omit ARRAY:R:S  rank R does not put ARRAY at step S (no drop: it is absent)
  --zero R:S        rank R has no particles at step S (R may be '*': every rank)
  --undeclared R   every rank but R declares and puts a third array, "extra"
  --pace S          sleep S seconds after each step (a simulation that computes)
  --lose R:S        rank R publishes from a child process that kills itself
                    (SIGKILL, no goodbye) at step S, once every other rank wrote
                    its TRUTH/done<R> file; the MPI rank itself ends normally
"""

import argparse
import os
import signal
import subprocess
import sys
import time

import numpy as np

import caudal

ROWS, COLS = 3, 4  # per rank
CAPACITY = 8  # particles per rank at most


def count(rank, step, zero):
    if (rank, step) in zero or ("*", step) in zero:
        return 0
    return (3 * rank + 5 * step + 1) % 6  # 0 at some steps for every rank


def particles(rank, step, n):
    return step * 1000.0 + rank * 100.0 + np.arange(n, dtype=np.float64)


def field(rank, step):
    return step * 10000.0 + rank * 100.0 + np.arange(ROWS * COLS, dtype=np.float64).reshape(
        ROWS, COLS)


def publish(rank, size, args, depth, lose_at=None):
    """This rank's steps; at step lose_at the process kills itself once the
    other ranks are done, as a crash between steps would end it."""
    omit = {(a, int(r), int(s)) for a, r, s in (o.split(":") for o in args.omit)}
    zero = {(r if r == "*" else int(r), int(s)) for r, s in (z.split(":") for z in args.zero)}
    truth = open(os.path.join(args.truth, "rank%d.txt" % rank), "w", buffering=1)
    c = caudal.Client(rank, size, ring_depth=depth)
    c.declare("field", "float64", shape=(ROWS * size, COLS), start=(ROWS * rank, 0),
              count=(ROWS, COLS))
    c.declare_var("particles", "float64", CAPACITY)
    extra = args.undeclared is not None and args.undeclared != rank
    if extra:
        c.declare("extra", "int64", shape=(size,), start=(rank,), count=(1,))
    for step in range(args.steps):
        if step == lose_at:
            others = [os.path.join(args.truth, "done%d" % r) for r in range(size) if r != rank]
            deadline = time.monotonic() + 120
            while not all(map(os.path.exists, others)) and time.monotonic() < deadline:
                time.sleep(0.02)
            os.kill(os.getpid(), signal.SIGKILL)
        n = count(rank, step, zero)
        p, f = particles(rank, step, n), field(rank, step)
        put_p, put_f = ("particles", rank, step) not in omit, ("field", rank, step) not in omit
        c.begin_step(step)
        if put_f:
            c.put("field", f)
        if put_p:
            c.put_var("particles", p)
        if extra:
            c.put("extra", np.array([step], np.int64))
        c.end_step()
        truth.write("%d %d %.17g %.17g %d %d\n" % (step, n, p.sum(), f.sum(), put_p, put_f))
        time.sleep(args.pace)
    c.close()
    truth.close()
    open(os.path.join(args.truth, "done%d" % rank), "w").close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("steps", type=int)
    ap.add_argument("truth")
    ap.add_argument("--ring-depth", default=None)
    ap.add_argument("--omit", action="append", default=[])
    ap.add_argument("--zero", action="append", default=[])
    ap.add_argument("--lose", default=None)
    ap.add_argument("--pace", type=float, default=0.0)
    ap.add_argument("--undeclared", type=int, default=None)
    ap.add_argument("--child", type=int, nargs=3, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:  # the publishing process of a rank that will be lost
        rank, size, lose_at = args.child
        publish(rank, size, args, 64, lose_at)
        return 0

    from mpi4py import MPI

    rank, size = MPI.COMM_WORLD.rank, MPI.COMM_WORLD.size
    depth = 64  # deeper than any test's steps: these ranks never drop
    if args.ring_depth:
        r, d = map(int, args.ring_depth.split(":"))
        depth = d if r == rank else depth
    lose = tuple(map(int, args.lose.split(":"))) if args.lose else None
    if lose and lose[0] == rank:
        # A child without MPI, so that losing it leaves the MPI job running.
        child = [sys.executable, os.path.abspath(__file__)] + sys.argv[1:] + [
            "--child", str(rank), str(size), str(lose[1])]
        subprocess.run(child)
    else:
        publish(rank, size, args, depth)
    MPI.COMM_WORLD.Barrier()
    return 0


if __name__ == "__main__":
    sys.exit(main())
