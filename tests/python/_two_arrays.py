"""A small MPI program for the runtime tests: publishes array "a" every step
and "b" every second step, each rank a band of rows; the values say which
step and element they are, so the analytics can check what they got.

usage: mpiexec -n N python _two_arrays.py STEPS [--overlap]
--overlap declares every rank's block at row 0: blocks that do not tile.
"""

import sys

import numpy as np
from mpi4py import MPI

import caudal

ROWS, COLS = 4, 5  # per rank


def value(step, shape):
    return step * 1000.0 + np.arange(np.prod(shape), dtype=np.float64).reshape(shape)


def main():
    steps = int(sys.argv[1])
    overlap = "--overlap" in sys.argv
    comm = MPI.COMM_WORLD
    rank, size = comm.rank, comm.size
    shape = (ROWS * size, COLS)
    start = (0 if overlap else ROWS * rank, 0)
    with caudal.Client(rank, size) as c:
        c.declare("a", "float64", shape=shape, start=start, count=(ROWS, COLS))
        c.declare("b", "float64", shape=shape, start=start, count=(ROWS, COLS))
        for step in range(steps):
            full = value(step, shape)
            mine = np.ascontiguousarray(full[start[0]:start[0] + ROWS])
            c.begin_step(step)
            c.put("a", mine)
            if step % 2 == 0:
                c.put("b", -mine)
            c.end_step()
    return 0


if __name__ == "__main__":
    sys.exit(main())
