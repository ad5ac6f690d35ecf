"""A fast MPI simulation for the load tests: no physics, no sleep, so that
the analytics fall behind. Each rank publishes one block of ROWS x COLS
float64 per step, a band of rows of array "field"; its values are
step + rank + element / 2**20, so every step has a mean of its own. Each
rank writes the sum of its block per step and the steps its ring dropped
(under the drop policy), so the tests have an independent reference.

The ranks do not communicate during the steps: MPICH waits by spinning,
and a rank spinning in a collective while the other waits for its ring
(policy block) takes the CPUs from the analytics on a small machine, which
is not the load these tests mean.

--pause SECONDS makes each step take that long besides its work, as a
simulation's computation would.

usage: mpiexec -n N python _load_sim.py STEPS ROWS COLS --out PREFIX [--pause S]
writes PREFIX.sum.RANK ("step sum" lines) and PREFIX.dropped.RANK (a step a line).
"""

import argparse
import sys
import time

import numpy as np
from mpi4py import MPI

import caudal


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("steps", type=int)
    ap.add_argument("rows", type=int)
    ap.add_argument("cols", type=int)
    ap.add_argument("--out", required=True)
    ap.add_argument("--pause", type=float, default=0.0)
    args = ap.parse_args()
    comm = MPI.COMM_WORLD
    rank, size = comm.rank, comm.size
    shape = (args.rows * size, args.cols)
    base = rank + np.arange(args.rows * args.cols, dtype=np.float64).reshape(
        args.rows, args.cols) / 2**20
    block = np.empty_like(base)
    sums = open("%s.sum.%d" % (args.out, rank), "w")
    dropped = []
    with caudal.Client(rank, size) as c:
        c.declare("field", "float64", shape=shape, start=(args.rows * rank, 0),
                  count=(args.rows, args.cols))
        for step in range(args.steps):
            np.add(base, float(step), out=block)
            before = c.counters()["steps_dropped"]
            c.begin_step(step)
            c.put("field", block)
            c.end_step()
            if c.counters()["steps_dropped"] != before:
                dropped.append(step)
            sums.write("%d %.17g\n" % (step, float(block.sum())))
            if args.pause:
                time.sleep(args.pause)
    sums.close()
    with open("%s.dropped.%d" % (args.out, rank), "w") as f:
        f.writelines("%d\n" % s for s in dropped)
    return 0


if __name__ == "__main__":
    sys.exit(main())
