"""A small MPI program for the molecular dynamics kernels across nodes:
N atoms at positions drawn from a seed per step in a periodic box, each
rank publishing the atoms of its slab along x (so every rank's atoms have
neighbours on the next ranks, and on the last rank across the box's face),
as examples/lammps publishes LAMMPS's: x (3 per atom), type, id, and the box
from rank 0. The test draws the same positions (atoms()) to count every
pair itself.

usage: mpiexec -n N python _atoms_sim.py STEPS
"""

import sys

import numpy as np

import caudal

NATOMS = 1500
LO, HI = np.array([-2.0, 0.0, 1.0]), np.array([10.0, 9.0, 10.0])


def atoms(step):
    """(positions (NATOMS, 3), types, ids) of every atom at `step`."""
    rng = np.random.default_rng(1000 + step)
    pos = LO + rng.random((NATOMS, 3)) * (HI - LO)
    types = rng.integers(1, 3, NATOMS).astype(np.int32)
    ids = rng.permutation(NATOMS).astype(np.int64) + 1
    return pos, types, ids


def mine(pos, rank, size):
    """The atoms of rank's slab along x."""
    edges = LO[0] + (HI[0] - LO[0]) * np.arange(size + 1) / size
    return (pos[:, 0] >= edges[rank]) & (pos[:, 0] < edges[rank + 1])


def main():
    from mpi4py import MPI

    rank, size = MPI.COMM_WORLD.rank, MPI.COMM_WORLD.size
    steps = int(sys.argv[1])
    c = caudal.Client(rank, size, ring_depth=8)
    c.declare_var("x", "float64", 3 * NATOMS)
    c.declare_var("type", "int32", NATOMS)
    c.declare_var("id", "int64", NATOMS)
    c.declare("box", "float64", shape=(6,), start=(0,), count=(6 if rank == 0 else 0,))
    for step in range(steps):
        pos, types, ids = atoms(step)
        keep = mine(pos, rank, size)
        c.begin_step(step)
        c.put_var("x", np.ascontiguousarray(pos[keep]).ravel())
        c.put_var("type", types[keep])
        c.put_var("id", ids[keep])
        c.put("box", np.concatenate([LO, HI]) if rank == 0 else np.zeros(0))
        c.end_step()
    c.close()


if __name__ == "__main__":
    main()
