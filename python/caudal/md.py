"""Molecular dynamics analyses of the atoms a simulation publishes rank by
rank (examples/lammps: ids, types, positions, velocities and image flags as
variable-length arrays, x y z of an atom one after the other).

    @caudal.analysis("v", "type", "mass", "units")
    def temperature(v, types, mass, units, ctx):
        boltz, mvv2e, dt = units[-1].data.compute()
        k = caudal.md.kinetic(v[-1], types[-1], mass[-1].data.compute())
        ctx.record("temp", k.temperature(boltz, mvv2e))

Each rank's atoms are reduced where their blocks lie (the C kernels of
kernels/md.c); only per-type sums travel.
"""

from typing import NamedTuple

import numpy as np

from . import _kernels
from .blocks import KernelError, as_grid, flat_view

__all__ = ["Kinetic", "kinetic"]


class Kinetic(NamedTuple):
    """Per type (index 0 unused, as LAMMPS's types count from 1): the sum
    of m |v|^2 and the number of atoms."""

    mv2: np.ndarray
    count: np.ndarray

    @property
    def natoms(self):
        return int(self.count.sum())

    def energy(self, mvv2e=1.0):
        """The kinetic energy, 1/2 sum of m |v|^2 in the simulation's
        energy units (mvv2e: LAMMPS's conversion factor, 1 in LJ units)."""
        return 0.5 * mvv2e * float(self.mv2.sum())

    def temperature(self, boltz=1.0, mvv2e=1.0, extra_dof=3, dimension=3):
        """LAMMPS's compute temp: sum m |v|^2 * mvv2e / (dof * boltz), with
        dof = dimension * natoms - extra_dof (its default removes the centre
        of mass' 3)."""
        dof = float(dimension * self.natoms) - extra_dof
        if dof <= 0:
            raise KernelError("temperature: %d atoms leave no degrees of freedom" % self.natoms)
        return float(self.mv2.sum()) * (mvv2e / (dof * boltz))


def _kinetic_block(v, types, mass):
    mv2, count = np.zeros(len(mass)), np.zeros(len(mass), np.int64)
    _kernels.md_kinetic(flat_view(v), flat_view(types), mass, mv2, count)
    return mv2, count


def _kinetic_merge(*parts):
    return (np.sum([p[0] for p in parts], axis=0), np.sum([p[1] for p in parts], axis=0))


def paired(a, b, kernel):
    """The grids of two per-atom arrays of one step, rank by rank: a rank's
    block of each holds its atoms (b may hold fewer values per atom), so
    both must have blocks from the same ranks."""
    g, h = as_grid(a, "a"), as_grid(b, "b")
    if g.step != h.step:
        raise KernelError("%s: %s and %s are of different steps" % (kernel, g.describe(),
                                                                     h.describe()))
    if set(g.blocks) != set(h.blocks):
        only = sorted(set(g.blocks) ^ set(h.blocks))
        raise KernelError("%s: %s and %s have atoms on different ranks (blocks %s in one only)"
                          % (kernel, g.describe(), h.describe(), only))
    return g, h


def kinetic(v, types, mass):
    """Kinetic sums per type over every rank's atoms: v (float64, 3 per
    atom) and types (int32) of one step, mass per type (index 0 unused)."""
    mass = np.ascontiguousarray(mass, dtype=np.float64).ravel()
    g, h = paired(v, types, "kinetic")
    if g.dtype != np.float64 or h.dtype != np.int32:
        raise KernelError("kinetic: %s must be float64 and %s int32, not %s and %s"
                          % (g.describe(), h.describe(), g.dtype, h.dtype))
    if not g.blocks:
        return Kinetic(np.zeros(len(mass)), np.zeros(len(mass), np.int64))
    parts = g.map_each(_kinetic_block, lambda b: (*b.args(), *h.blocks[b.pos].args(), mass))
    return Kinetic(*g.reduce(_kinetic_merge, parts))
