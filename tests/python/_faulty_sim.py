"""A small mpi4py simulation for the fault tests (tests/python/test_faults.py).

Each rank owns a band of ROWS rows of a (ROWS * size, COLS) array "field"
whose values are known (value(step)); rank 0 writes the mean of every step,
from an MPI allreduce of the ranks' sums, to --oracle and flushes each line,
so that the file holds every step computed even when the run is killed.

usage: mpiexec -n N python _faulty_sim.py STEPS [--oracle FILE] [--env FILE]
       [--sleep SECONDS] [--abort-at STEP] [--carry-on]

--env FILE      rank 0 writes CAUDAL_ENDPOINT, CAUDAL_TOKEN and Ray's token
                settings there (JSON)
--sleep S       per step, so that a test can act while the run goes on
--abort-at K    rank 1 calls MPI_Abort at step K
--carry-on      a failing Caudal call does not stop the simulation: it
                computes its steps to the end (what a code under the drop
                policy may do when the analytics are gone)
--open-late S   rank 1 opens Caudal S seconds after the others (which then
                wait for it in the step's allreduce)
"""

import argparse
import json
import os
import sys
import time

import numpy as np
from mpi4py import MPI

import caudal

ROWS, COLS = 3, 8


def value(step, shape):
    i = np.arange(shape[0] * shape[1], dtype=np.float64).reshape(shape)
    return np.sin(0.37 * step + 0.01 * i) + step


def main():
    p = argparse.ArgumentParser()
    p.add_argument("steps", type=int)
    p.add_argument("--oracle")
    p.add_argument("--env")
    p.add_argument("--sleep", type=float, default=0.0)
    p.add_argument("--abort-at", type=int, default=-1)
    p.add_argument("--carry-on", action="store_true")
    p.add_argument("--open-late", type=float, default=0.0)
    a = p.parse_args()
    comm = MPI.COMM_WORLD
    rank, size = comm.rank, comm.size
    shape = (ROWS * size, COLS)
    if rank == 0 and a.env:
        with open(a.env + ".tmp", "w") as f:
            json.dump({k: os.environ.get(k) for k in ("CAUDAL_ENDPOINT", "CAUDAL_TOKEN",
                                                 "RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")}, f)
        os.rename(a.env + ".tmp", a.env)
    oracle = open(a.oracle, "w") if rank == 0 and a.oracle else None
    if rank == 1 and a.open_late:
        time.sleep(a.open_late)
    try:
        c = caudal.Client(rank, size)
    except caudal.CaudalError as e:  # as a C code would: the others wait in MPI
        print("faulty_sim: %s" % e, file=sys.stderr, flush=True)
        time.sleep(1)  # the launcher forwards the line before the abort ends its proxies
        comm.Abort(2)
    c.declare("field", "float64", shape=shape, start=(ROWS * rank, 0), count=(ROWS, COLS))
    first_error = None
    for step in range(a.steps):
        mine = np.ascontiguousarray(value(step, shape)[ROWS * rank:ROWS * (rank + 1)])
        total = comm.allreduce(float(mine.sum()), op=MPI.SUM)
        if oracle:
            oracle.write("%d %.17g\n" % (step, total / (shape[0] * shape[1])))
            oracle.flush()
        if step == a.abort_at and rank == 1:
            comm.Abort(3)
        try:
            c.begin_step(step)
            c.put("field", mine)
            c.end_step()
        except caudal.CaudalError as e:
            if not a.carry_on:  # stop at the first failing call, in one line
                print("faulty_sim: rank %d: step %d: %s" % (rank, step, e), file=sys.stderr,
                      flush=True)
                return 1
            if first_error is None:
                first_error = (step, str(e))
        if a.sleep:
            time.sleep(a.sleep)
    k = c.counters()
    try:
        c.close()
    except caudal.CaudalError:
        if not a.carry_on:
            raise
    comm.Barrier()
    if rank == 0:
        print("faulty_sim: finished %d steps; first error %s; dropped %d"
              % (a.steps, "at step %d: %s" % first_error if first_error else "none",
                 k["steps_dropped"]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
