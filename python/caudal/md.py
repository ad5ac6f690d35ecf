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

__all__ = ["Kinetic", "MSD", "kinetic"]


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


def aligned(arrays, kernel):
    """The grids of per-atom arrays of one step, rank by rank: a rank's
    block of each holds its atoms (some hold 3 values per atom), so all
    must have blocks from the same ranks."""
    grids = [as_grid(a, n) for a, n in arrays]
    g = grids[0]
    for h in grids[1:]:
        if h.step != g.step:
            raise KernelError("%s: %s and %s are of different steps"
                              % (kernel, g.describe(), h.describe()))
        if set(h.blocks) != set(g.blocks):
            only = sorted(set(g.blocks) ^ set(h.blocks))
            raise KernelError("%s: %s and %s have atoms on different ranks (blocks %s in one "
                              "only)" % (kernel, g.describe(), h.describe(), only))
    return grids


def _require(grid, dtype, kernel):
    if grid.dtype != dtype:
        raise KernelError("%s: %s must be %s, not %s" % (kernel, grid.describe(),
                                                          np.dtype(dtype), grid.dtype))


def kinetic(v, types, mass):
    """Kinetic sums per type over every rank's atoms: v (float64, 3 per
    atom) and types (int32) of one step, mass per type (index 0 unused)."""
    mass = np.ascontiguousarray(mass, dtype=np.float64).ravel()
    g, h = aligned([(v, "v"), (types, "types")], "kinetic")
    _require(g, np.float64, "kinetic")
    _require(h, np.int32, "kinetic")
    if not g.blocks:
        return Kinetic(np.zeros(len(mass)), np.zeros(len(mass), np.int64))
    parts = g.map_each(_kinetic_block, lambda b: (*b.args(), *h.blocks[b.pos].args(), mass))
    return Kinetic(*g.reduce(_kinetic_merge, parts))


def _unwrapped_block(x, image, ids, prd):
    x = flat_view(x).reshape(-1, 3)
    return flat_view(ids).copy(), x + flat_view(image).reshape(-1, 3) * prd


def _msd_block(x, image, ids, prd, ref):
    sums = np.zeros(4)
    _kernels.md_msd(flat_view(x), flat_view(image), flat_view(ids), prd, ref, sums)
    return sums


def _sum(*parts):
    return np.sum(parts, axis=0)


class MSD:
    """Mean square displacement of the atoms from where they were at the
    first step given, LAMMPS's compute msd (com no):

        msd = caudal.md.MSD()

        @caudal.analysis("x", "image", "id", "box")
        def diffusion(x, image, ids, box, ctx):
            mx, my, mz, m = msd.update(x[-1], image[-1], ids[-1], box[-1].data.compute())
            ctx.record("msd", m)

    Positions are unwrapped with the image flags (x + image * box length),
    and each atom is followed by its id whatever rank holds it: the first
    step's unwrapped positions, indexed by id, go once into Ray's object
    store and each rank's atoms are compared with them where they lie (the
    C kernel md_msd); only 4 sums per rank travel. The atoms must stay the
    same ones (the mean is over the first step's count, as LAMMPS's over
    its group)."""

    def __init__(self):
        self.ref = None  # (max id + 1) x 3 unwrapped positions, NaN for no atom
        self.shared = None  # the same, as the blocks' backend shares it
        self.natoms = 0
        self.first_step = None

    def update(self, x, image, ids, box):
        """[x, y, z, total] mean square displacements at this step, in the
        positions' units squared: zeros at the first step."""
        box = np.ascontiguousarray(box, dtype=np.float64).ravel()
        gx, gi, gd = aligned([(x, "x"), (image, "image"), (ids, "ids")], "msd")
        _require(gx, np.float64, "msd")
        _require(gi, np.int32, "msd")
        _require(gd, np.int64, "msd")
        if box.size != 6:
            raise KernelError("msd: %s: box must hold lo x y z then hi x y z, not %d values"
                              % (gx.describe(), box.size))
        prd = box[3:] - box[:3]
        natoms = int(gd.shape[0])
        if self.ref is None:
            self._reference(gx, gi, gd, prd)
        elif natoms != self.natoms:
            raise KernelError("msd: %s holds %d atoms, the first step (%s) held %d: the "
                              "atoms followed must stay the same"
                              % (gd.describe(), natoms, self.first_step, self.natoms))
        if not gx.blocks:
            return np.zeros(4)
        parts = gx.map_each(_msd_block, lambda b: (*b.args(), *gi.blocks[b.pos].args(),
                                                   *gd.blocks[b.pos].args(), prd, self.shared))
        return gx.reduce(_sum, parts) / self.natoms

    def _reference(self, gx, gi, gd, prd):
        parts = gx.map_each(_unwrapped_block, lambda b: (*b.args(), *gi.blocks[b.pos].args(),
                                                         *gd.blocks[b.pos].args(), prd))
        got = gx.fetch([parts[p] for p in sorted(parts)])
        ids = np.concatenate([i for i, _ in got]) if got else np.zeros(0, np.int64)
        if ids.size and ids.min() < 0:
            raise KernelError("msd: %s holds a negative id, %d" % (gd.describe(), ids.min()))
        if np.unique(ids).size != ids.size:
            raise KernelError("msd: %s holds an id twice" % gd.describe())
        ref = np.full((int(ids.max()) + 1 if ids.size else 0, 3), np.nan)
        for i, u in got:
            ref[i] = u
        self.ref, self.natoms, self.first_step = ref, int(ids.size), gx.step
        self.shared = gx.backend.share(ref)
