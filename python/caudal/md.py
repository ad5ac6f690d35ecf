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

import itertools
from typing import NamedTuple

import numpy as np

from . import _kernels, stats
from .blocks import KernelError, _checked, as_grid, flat_view

__all__ = ["Kinetic", "MSD", "Rdf", "kinetic", "rdf", "speeds"]


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


def _args(grids, pos):
    """The blocks at `pos` of each of `grids` (one rank's arrays), in order,
    as task arguments."""
    return tuple(a for g in grids for a in g.blocks[pos].args())


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


def _box(box, grid, kernel):
    """(lo, hi, lengths, periodic) of a box given as lo x y z, hi x y z,
    and optionally 1 or 0 per dimension for periodic or not (as
    examples/lammps publishes it; without them, periodic in all three)."""
    box = np.ascontiguousarray(box, dtype=np.float64).ravel()
    if box.size not in (6, 9) or not np.all(np.isfinite(box)) or np.any(box[3:6] <= box[:3]):
        raise KernelError("%s: %s: box must hold lo x y z, hi x y z (each above lo), and "
                          "optionally 1 or 0 per dimension (periodic or not), not %s"
                          % (kernel, grid.describe(), box.tolist()))
    periodic = box[6:9] != 0 if box.size == 9 else np.ones(3, bool)
    return box[:3], box[3:6], box[3:6] - box[:3], periodic


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
    parts = g.map_each(_kinetic_block, lambda b: (*_args((g, h), b.pos), mass))
    return Kinetic(*g.reduce(_kinetic_merge, parts))


def _unwrapped_block(x, image, ids, prd):
    x = flat_view(x).reshape(-1, 3)
    return flat_view(ids).copy(), x + flat_view(image).reshape(-1, 3) * prd


def _msd_block(x, image, ids, prd, ref_id, ref):
    sums = np.zeros(4)
    _kernels.md_msd(flat_view(x), flat_view(image), flat_view(ids), prd, ref_id, ref, sums)
    return sums


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
    C kernel md_msd, which finds each id by binary search in the sorted
    reference ids: sparse or large ids cost nothing); only 4 sums per rank
    travel. The atoms must stay the same ones (the mean is over the first
    step's count, as LAMMPS's over its group): a changed count, or an id the
    first step did not have, is refused."""

    def __init__(self):
        self.ref_id = None  # the first step's ids, sorted
        self.ref = None  # their unwrapped positions, (natoms, 3), in that order
        self.shared = None  # both, as the blocks' backend shares them
        self.natoms = 0
        self.first_step = None

    def update(self, x, image, ids, box):
        """[x, y, z, total] mean square displacements at this step, in the
        positions' units squared: zeros at the first step."""
        gx, gi, gd = aligned([(x, "x"), (image, "image"), (ids, "ids")], "msd")
        _require(gx, np.float64, "msd")
        _require(gi, np.int32, "msd")
        _require(gd, np.int64, "msd")
        prd = _box(box, gx, "msd")[2]
        natoms = int(gd.shape[0])
        if self.ref is None:
            self._reference(gx, gi, gd, prd)
        elif natoms != self.natoms:
            raise KernelError("msd: %s holds %d atoms, the first step (%s) held %d: the "
                              "atoms followed must stay the same"
                              % (gd.describe(), natoms, self.first_step, self.natoms))
        if not gx.blocks:
            return np.zeros(4)
        parts = gx.map_each(_msd_block,
                            lambda b: (*_args((gx, gi, gd), b.pos), prd, *self.shared))
        return gx.reduce(stats._sum, parts) / self.natoms

    def _reference(self, gx, gi, gd, prd):
        parts = gx.map_each(_unwrapped_block, lambda b: (*_args((gx, gi, gd), b.pos), prd))
        got = gx.fetch([parts[p] for p in sorted(parts)])
        ids = np.concatenate([i for i, _ in got]) if got else np.zeros(0, np.int64)
        pos = np.concatenate([u for _, u in got]) if got else np.zeros((0, 3))
        order = np.argsort(ids, kind="stable")
        ids, pos = ids[order], np.ascontiguousarray(pos[order])
        if ids.size and np.any(ids[1:] == ids[:-1]):
            twice = ids[1:][ids[1:] == ids[:-1]][0]
            raise KernelError("msd: %s holds id %d twice: atoms are followed by id"
                              % (gd.describe(), twice))
        self.ref_id, self.ref, self.natoms, self.first_step = ids, pos, int(ids.size), gx.step
        self.shared = (gx.backend.share(ids), gx.backend.share(pos.ravel()))


# ---- radial distribution function

SHIFTS = np.array(list(itertools.product((-1, 0, 1), repeat=3)), dtype=np.int64)


class Rdf(NamedTuple):
    """One step's pair counts within the cutoff, binned, and what LAMMPS's
    compute rdf makes of them: g(r) and the coordination number, for all
    atoms or one pair of types."""

    counts: np.ndarray  # [ti, tj, bin], ti <= tj: each unordered pair once
    typecount: np.ndarray  # atoms per type (index 0 unused)
    cutoff: float
    prd: tuple  # the box's lengths
    steps: int = 1  # steps whose counts are summed here (Rdf.mean)

    @staticmethod
    def mean(rdfs):
        """The average over steps, as LAMMPS's fix ave/time of compute rdf
        averages them (of the same atoms in the same box: g is then the
        summed counts' over the number of steps)."""
        rdfs = list(rdfs)
        if not rdfs:
            raise KernelError("rdf: no steps to average")
        first = rdfs[0]
        for r in rdfs[1:]:
            if (r.counts.shape != first.counts.shape or r.cutoff != first.cutoff
                    or r.prd != first.prd or not np.array_equal(r.typecount, first.typecount)):
                raise KernelError("rdf: the steps averaged differ in their bins, box or atoms "
                                  "per type (give rdf() ntypes, so that every step has them "
                                  "all)")
        return first._replace(counts=np.sum([r.counts for r in rdfs], axis=0),
                              steps=sum(r.steps for r in rdfs))

    @property
    def nbins(self):
        return self.counts.shape[-1]

    @property
    def delr(self):
        return self.cutoff / self.nbins

    @property
    def r(self):
        """Bin centres, LAMMPS's first column."""
        return (np.arange(self.nbins) + 0.5) * self.delr

    def hist(self, i=None, j=None):
        """LAMMPS's histogram of one pair of types (None: all atoms): ordered
        pairs, so a pair of atoms of one type counts twice."""
        if i is None and j is None:
            pairs = 2 * self.counts.sum(axis=(0, 1))
        elif i is None or j is None:
            raise KernelError("rdf: give both types of the pair, or neither")
        else:
            if not (1 <= min(i, j) and max(i, j) < len(self.typecount)):
                raise KernelError("rdf: types %r, %r: the atoms have types 1..%d"
                                  % (i, j, len(self.typecount) - 1))
            lo, hi = min(i, j), max(i, j)
            pairs = self.counts[lo, hi] * (2 if i == j else 1)
        return pairs if self.steps == 1 else pairs / self.steps

    def g(self, i=None, j=None):
        return self._normalised(i, j)[0]

    def coord(self, i=None, j=None):
        return self._normalised(i, j)[1]

    def _normalised(self, i, j):
        """(g, coordination number) per bin, LAMMPS's compute rdf in 3-D,
        expression by expression (so its output is matched to the bit)."""
        hist = self.hist(i, j).astype(np.float64)
        if i is None:
            icount = jcount = duplicates = int(self.typecount.sum())
        else:
            icount, jcount = int(self.typecount[i]), int(self.typecount[j])
            duplicates = icount if i == j else 0
        normfac = float(jcount) - float(duplicates) / icount if icount > 0 else 0.0
        xprd, yprd, zprd = self.prd
        constant = 4.0 * np.pi / (3.0 * xprd * yprd * zprd)
        delr = self.delr
        g, coord, ncoord = np.zeros(self.nbins), np.zeros(self.nbins), 0.0
        for b in range(self.nbins):
            rlower, rupper = b * delr, (b + 1) * delr
            vfrac = constant * (rupper * rupper * rupper - rlower * rlower * rlower)
            gr = hist[b] / (vfrac * normfac * icount) if vfrac * normfac != 0.0 else 0.0
            if icount != 0:
                ncoord += gr * vfrac * normfac
            g[b], coord[b] = gr, ncoord
        return g, coord


def _atoms_block(x, types, ids, ntypes):
    """A rank's atoms' bounding box and count per type, once they are
    found fit to count pairs of: finite positions, types 1..ntypes (None:
    any), each id once."""
    p = flat_view(x).reshape(-1, 3)
    t, i = flat_view(types), flat_view(ids)
    if not np.all(np.isfinite(p)):
        raise ValueError("atom %d's position is not finite" % np.flatnonzero(
            ~np.all(np.isfinite(p), axis=1))[0])
    if t.size and (t.min() < 1 or (ntypes is not None and t.max() > ntypes)):
        k = int(np.flatnonzero((t < 1) | (t > (ntypes or t.max())))[0])
        raise ValueError("atom %d has type %d, outside 1..%s" % (k, t[k], ntypes or "ntypes"))
    if np.unique(i).size != i.size:
        raise ValueError("an id appears twice: a pair across ranks is counted by its smaller "
                         "id, so ids must be unique (LAMMPS: atom_modify id yes)")
    return p.min(axis=0), p.max(axis=0), np.bincount(t, minlength=(ntypes or 0) + 1)


def _halo_block(x, types, ids, shifts, prd, lo, hi):
    """This rank's atoms, shifted by each of `shifts` box lengths (as
    LAMMPS makes its ghost atoms: x + shift * length), that fall within
    [lo, hi]: another rank's halo."""
    p = flat_view(x).reshape(-1, 3)
    out = []
    for sh in shifts:
        q = p + sh * prd
        keep = np.all((q >= lo) & (q <= hi), axis=1)
        out.append((q[keep], flat_view(types)[keep], flat_view(ids)[keep]))
    return (np.ascontiguousarray(np.concatenate([o[0] for o in out])).ravel(),
            np.concatenate([o[1] for o in out]), np.concatenate([o[2] for o in out]))


def _pairs_block(x, types, ids, cutoff, delrinv, nbins, ntypes, *halos):
    counts = np.zeros((ntypes + 1, ntypes + 1, nbins), np.int64)
    if halos:
        hx = np.concatenate([h[0] for h in halos])
        ht = np.concatenate([h[1] for h in halos])
        hid = np.concatenate([h[2] for h in halos])
    else:
        hx, ht, hid = np.zeros(0), np.zeros(0, np.int32), np.zeros(0, np.int64)
    _kernels.md_pairs(flat_view(x), flat_view(types), flat_view(ids), hx, ht, hid,
                      cutoff, delrinv, nbins, ntypes, counts)
    return counts


def rdf(x, types, ids, box, cutoff, nbins=100, ntypes=None):
    """The pair counts of g(r) over every rank's atoms at one step, with
    periodic boundaries where the box says so (all three for a box of 6
    values; the minimum image: each periodic length must be at least twice
    the cutoff): an Rdf, whose g() and coord() are LAMMPS's
    compute rdf for all atoms or a pair of types, and whose counts are each
    pair once. ntypes: the simulation's number of types (LAMMPS: the masses
    less one), so that steps compare whichever types they hold; by default
    the highest type present. Ids must be unique (a pair across ranks is
    counted by the rank of its smaller id) and positions within a quarter
    box of it (the images are those of one box length), as LAMMPS's are.

    Each rank's atoms are counted where they lie, with cell lists (C,
    md_pairs), against their halo: the atoms of other ranks, and periodic
    images, within the cutoff of the rank's bounding box, selected where
    those atoms lie and sent to it (for ranks on other nodes, through Ray's
    store). A pair across two ranks is counted by the rank of its smaller
    id. Only the counts, types x types x nbins integers per rank, travel
    back."""
    gx, gt, gd = aligned([(x, "x"), (types, "types"), (ids, "ids")], "rdf")
    _require(gx, np.float64, "rdf")
    _require(gt, np.int32, "rdf")
    _require(gd, np.int64, "rdf")
    box_lo, box_hi, prd, periodic = _box(box, gx, "rdf")
    if not (cutoff > 0 and np.isfinite(cutoff)) or int(nbins) != nbins or nbins < 1:
        raise KernelError("rdf: %s: the cutoff must be a positive number and nbins a "
                          "positive integer, not %r and %r" % (gx.describe(), cutoff, nbins))
    if ntypes is not None and (int(ntypes) != ntypes or ntypes < 1):
        raise KernelError("rdf: %s: ntypes must be a positive integer, not %r"
                          % (gx.describe(), ntypes))
    if np.any(periodic & (prd < 2 * cutoff)):
        raise KernelError("rdf: %s: the box (%s) is shorter than twice the cutoff %g: an atom "
                          "would meet two images of another" % (gx.describe(), prd, cutoff))
    # images only across the periodic faces
    shifts = SHIFTS[np.all((SHIFTS == 0) | periodic, axis=1)]
    nbins = int(nbins)
    delrinv = 1.0 / (cutoff / nbins)  # LAMMPS's delr, then its inverse
    if not gx.blocks:
        nt = int(ntypes or 1) + 1
        return Rdf(np.zeros((nt, nt, nbins), np.int64), np.zeros(nt, np.int64), cutoff,
                   tuple(prd))
    grids, order = (gx, gt, gd), sorted(gx.blocks)
    info = gx.map_each(_atoms_block, lambda b: (*_args(grids, b.pos), ntypes))
    info = dict(zip(order, gx.fetch([info[p] for p in order])))
    # Images of one box length find every pair while atoms stray less than
    # a quarter of (length - 2 cutoff) outside the box.
    margin = (prd - 2 * cutoff) / 4
    for p, (blo, bhi, _) in info.items():
        out = np.maximum(box_lo - blo, bhi - box_hi)
        if np.any(periodic & (out > margin)):
            d = int(np.argmax(np.where(periodic, out - margin, -np.inf)))
            raise KernelError("rdf: %s: atoms lie %g outside the box along %s, more than "
                              "%g: wrap the positions into the box"
                              % (gx.blocks[p].where(gx), out[d], "xyz"[d], margin[d]))
    ntypes = int(ntypes) if ntypes is not None else max(len(c) for _, _, c in info.values()) - 1
    typecount = np.zeros(ntypes + 1, np.int64)
    for _, _, c in info.values():
        typecount[:len(c)] += c
    width = cutoff * (1 + 1e-9)
    halos = {p: [] for p in order}
    for r in order:
        lo, hi = info[r][0] - width, info[r][1] + width
        for s in order:
            slo, shi = info[s][0], info[s][1]
            near = [sh for sh in shifts if (s != r or sh.any())
                    and np.all(slo + sh * prd <= hi) and np.all(shi + sh * prd >= lo)]
            if near:
                b = gx.blocks[s]
                halos[r].append(gx.backend.submit(
                    _checked, (_halo_block, b.where(gx), *_args(grids, s), np.array(near), prd,
                               lo, hi), b.node))
    parts = {}
    for r in order:
        b = gx.blocks[r]
        parts[r] = gx.backend.submit(
            _checked, (_pairs_block, b.where(gx), *_args(grids, r), float(cutoff), delrinv,
                       nbins, ntypes, *halos[r]), b.node)
    return Rdf(gx.reduce(stats._sum, parts), typecount, float(cutoff), tuple(prd))


# ---- velocity distribution


def _speed_block(v, spec):
    w = flat_view(v).reshape(-1, 3)
    return stats._hist_counts(np.sqrt(np.einsum("ij,ij->i", w, w)), spec)


def speeds(v, bins=50, range=None):
    """The distribution of the atoms' speeds |v| over every rank's atoms
    (v: float64, 3 per atom) as a stats.Histogram, made where each rank's
    atoms lie; `range` (lo, hi) is required, so that steps compare bin by
    bin. Speeds past it are counted in `above`."""
    g = as_grid(v, "v")
    _require(g, np.float64, "speeds")
    if range is None:
        raise KernelError("speeds: %s: give the range of the bins, the same every step"
                          % g.describe())
    spec, edges, nbins = stats._bins(g, bins, range, "speeds")
    counts = g.map_reduce(_speed_block, stats._sum, spec)
    if counts is None:
        counts = np.zeros(nbins + 3, dtype=np.int64)
    return stats._histogram(counts, edges, nbins)
