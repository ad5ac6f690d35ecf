"""caudal.md on NumPy arrays (one block, computed here) against NumPy, and
its refusals; test_lammps.py runs the same on LAMMPS's atoms under caudal
run, against LAMMPS's own answers."""

import numpy as np
import pytest

import caudal
from caudal.blocks import KernelError

RNG = np.random.default_rng(7)


def atoms(n, ntypes):
    v = RNG.normal(size=3 * n)
    types = RNG.integers(1, ntypes + 1, n).astype(np.int32)
    mass = np.concatenate([[0.0], RNG.uniform(1, 4, ntypes)])
    return v, types, mass


def test_kinetic_sums_per_type_and_the_temperature_equal_numpy():
    v, types, mass = atoms(2000, 3)
    k = caudal.md.kinetic(v, types, mass)
    per_atom = (v.reshape(-1, 3) ** 2).sum(axis=1) * mass[types]
    for t in (1, 2, 3):
        assert k.mv2[t] == pytest.approx(per_atom[types == t].sum(), rel=1e-13)
        assert k.count[t] == np.count_nonzero(types == t)
    assert k.mv2[0] == 0 and k.count[0] == 0 and k.natoms == 2000
    assert k.energy() == pytest.approx(0.5 * per_atom.sum(), rel=1e-13)
    # LAMMPS's compute temp: dof = 3N - 3 by default
    assert k.temperature(boltz=2.0, mvv2e=3.0) == pytest.approx(
        per_atom.sum() * 3.0 / ((3 * 2000 - 3) * 2.0), rel=1e-13)
    assert k.temperature(extra_dof=0) == pytest.approx(per_atom.sum() / 6000, rel=1e-13)


@pytest.mark.parametrize("case, message", [
    ("type past the masses", "atom 5 has type 4, outside 1..3"),
    ("type 0", "atom 5 has type 0, outside 1..3"),
    ("float types", "must be int32"),
    ("float32 velocities", "must be float64"),
    ("velocities of 2 per atom", "velocities for"),
])
def test_kinetic_refuses_bad_atoms_naming_them(case, message):
    v, types, mass = atoms(10, 3)
    if case == "type past the masses":
        types[5] = 4
    elif case == "type 0":
        types[5] = 0
    elif case == "float types":
        types = types.astype(np.float64)
    elif case == "float32 velocities":
        v = v.astype(np.float32)
    else:
        v = v[:20]
    with pytest.raises(KernelError, match=message):
        caudal.md.kinetic(v, types, mass)


def test_no_atoms_leave_no_temperature():
    k = caudal.md.kinetic(np.zeros(0), np.zeros(0, np.int32), [0.0, 1.0])
    assert k.natoms == 0
    with pytest.raises(KernelError, match="no degrees of freedom"):
        k.temperature()


def unwrapped(x, image, prd):
    return x.reshape(-1, 3) + image.reshape(-1, 3) * prd


def test_msd_follows_atoms_by_id_across_orders_and_box_crossings():
    """The atoms come in a new order every step (as they do from ranks
    whose atoms migrate), cross the periodic box (image flags change), and
    the MSD equals NumPy's on the unwrapped positions matched by id."""
    n, box = 300, np.array([-1.0, 0.0, 2.0, 9.0, 12.5, 9.0])
    prd = box[3:] - box[:3]
    ids = RNG.permutation(np.arange(1, n + 1)).astype(np.int64)
    true0 = RNG.uniform(box[:3], box[3:], (n, 3))  # by position in ids
    msd = caudal.md.MSD()
    x, image = true0.ravel().copy(), np.zeros(3 * n, np.int32)
    assert msd.update(x, image, ids, box).tolist() == [0.0] * 4
    true = true0.copy()
    for step in range(1, 6):
        true += RNG.normal(scale=2.0, size=(n, 3))  # far enough to cross the box
        order = RNG.permutation(n)
        wrapped = box[:3] + np.mod(true - box[:3], prd)
        img = np.rint((true - wrapped) / prd).astype(np.int32)
        x, image, these = wrapped[order].ravel(), img[order].ravel(), ids[order]
        got = msd.update(x, image, these, box)
        d = unwrapped(x, image, prd) - true0[order]
        assert got[:3] == pytest.approx((d ** 2).mean(axis=0), rel=1e-12), step
        assert got[3] == pytest.approx((d ** 2).sum(axis=1).mean(), rel=1e-12), step
    assert np.count_nonzero(image) > n  # the box was crossed


def test_msd_refuses_what_it_cannot_follow():
    n, box = 20, np.array([0, 0, 0, 5.0, 5.0, 5.0])
    x, image = RNG.uniform(0, 5, 3 * n), np.zeros(3 * n, np.int32)
    ids = np.arange(1, n + 1, dtype=np.int64)
    twice = ids.copy()
    twice[3] = 7
    with pytest.raises(KernelError, match="holds id 7 twice"):
        caudal.md.MSD().update(x, image, twice, box)
    msd = caudal.md.MSD()
    msd.update(x, image, ids, box)
    with pytest.raises(KernelError, match="holds 19 atoms, the first step .* held 20"):
        msd.update(x[:-3], image[:-3], ids[:-1], box)
    stranger = ids.copy()
    stranger[4] = 99
    with pytest.raises(KernelError, match="atom 4 has id 99, which the first step did not "
                                          "have"):
        msd.update(x, image, stranger, box)
    with pytest.raises(KernelError, match="box must hold lo x y z, hi x y z"):
        msd.update(x, image, ids, box[:3])
    # sparse, large ids (LAMMPS tags need not be 1..N): followed as well
    big = ids * 10 ** 12 + 7
    sparse = caudal.md.MSD()
    sparse.update(x, image, big, box)
    moved = x + 0.5
    assert sparse.update(moved, image, big, box)[3] == pytest.approx(0.75)
    assert sparse.ref.nbytes == 3 * 8 * n  # the reference is the atoms, not the largest id
    with pytest.raises(KernelError, match="must be int32"):
        msd.update(x, image.astype(np.int64), ids, box)


def brute_pairs(p, t, prd, cutoff, nbins, periodic=(True, True, True)):
    """Every pair's distance (the minimum image along periodic
    dimensions), binned as LAMMPS bins it: counts[ti, tj, bin], ti <= tj."""
    d = p[:, None, :] - p[None, :, :]
    d -= np.rint(d / prd) * prd * np.array(periodic)
    iu = np.triu_indices(len(p), 1)
    r = np.sqrt((d ** 2).sum(-1))[iu]
    b = (r * (1.0 / (cutoff / nbins))).astype(np.int64)
    keep = b < nbins
    ti, tj = t[iu[0]][keep], t[iu[1]][keep]
    counts = np.zeros((t.max() + 1, t.max() + 1, nbins), np.int64)
    np.add.at(counts, (np.minimum(ti, tj), np.maximum(ti, tj), b[keep]), 1)
    return counts


def test_rdf_counts_every_pair_once_across_the_periodic_box():
    """One block (a rank alone): the pairs across the box's faces come from
    its own periodic images; the counts equal all pairs' minimum-image
    distances binned, per pair of types, and g and the coordination number
    follow LAMMPS's normalisation (an ideal gas: coord(cutoff) near the
    density times the sphere's volume)."""
    n, lo = 900, np.array([-1.0, 0.0, 2.0])
    prd = np.array([9.0, 10.0, 11.0])
    p = lo + RNG.random((n, 3)) * prd
    t = RNG.integers(1, 3, n).astype(np.int32)
    ids = RNG.permutation(n).astype(np.int64) + 1
    r = caudal.md.rdf(p.ravel(), t, ids, np.concatenate([lo, lo + prd]), 3.0, 30)
    assert np.array_equal(r.counts, brute_pairs(p, t, prd, 3.0, 30))
    assert r.typecount.tolist() == [0, np.count_nonzero(t == 1), np.count_nonzero(t == 2)]
    assert np.array_equal(r.hist(), 2 * r.counts.sum(axis=(0, 1)))
    assert np.array_equal(r.hist(1, 2), r.counts[1, 2]) and np.array_equal(r.hist(2, 1),
                                                                          r.counts[1, 2])
    assert np.array_equal(r.hist(2, 2), 2 * r.counts[2, 2])
    density = n / prd.prod()
    assert r.coord()[-1] == pytest.approx(density * 4 / 3 * np.pi * 27, rel=0.05)
    assert r.r[0] == pytest.approx(0.05) and r.r[-1] == pytest.approx(2.95)
    mean = caudal.md.Rdf.mean([r, r])
    assert mean.steps == 2 and np.array_equal(mean.g(), r.g())


def test_rdf_refuses_what_it_cannot_count():
    p, t, ids = RNG.random(30), np.ones(10, np.int32), np.arange(1, 11, dtype=np.int64)
    box = np.array([0, 0, 0, 5.0, 5.0, 5.0])
    with pytest.raises(KernelError, match="shorter than twice the cutoff"):
        caudal.md.rdf(p, t, ids, box, 3.0)
    with pytest.raises(KernelError, match="cutoff must be a positive number"):
        caudal.md.rdf(p, t, ids, box, -1.0)
    bad = t.copy()
    bad[4] = 0
    with pytest.raises(KernelError, match="atom 4 has type 0, outside 1..ntypes"):
        caudal.md.rdf(p, bad, ids, box, 1.0)
    with pytest.raises(KernelError, match="atom 9 has type 1, outside 1..0|ntypes must be"):
        caudal.md.rdf(p, t, ids, box, 1.0, ntypes=0)
    two = t.copy()
    two[9] = 2
    with pytest.raises(KernelError, match="atom 9 has type 2, outside 1..1"):
        caudal.md.rdf(p, two, ids, box, 1.0, ntypes=1)
    nan = p.copy()
    nan[7] = np.nan  # atom 2's y
    with pytest.raises(KernelError, match="atom 2's position is not finite"):
        caudal.md.rdf(nan, t, ids, box, 1.0)
    with pytest.raises(KernelError, match="an id appears twice"):
        caudal.md.rdf(p, t, np.zeros(10, np.int64), box, 1.0)  # LAMMPS's atom_modify id no
    far = p.copy()
    far[3] = 5.0 + 0.6  # atom 1's x, 0.6 past the box; a quarter of (5 - 2 * 1) is 0.75
    caudal.md.rdf(far, t, ids, box, 1.0)
    far[3] = 5.0 + 0.8
    with pytest.raises(KernelError, match="atoms lie 0.8 outside the box along x"):
        caudal.md.rdf(far, t, ids, box, 1.0)
    with pytest.raises(KernelError, match="must be int64"):
        caudal.md.rdf(p, t, ids.astype(np.int32), box, 1.0)
    r = caudal.md.rdf(p, t, ids, box, 1.0, 10)
    with pytest.raises(KernelError, match="the atoms have types 1..1"):
        r.g(1, 2)
    other = caudal.md.rdf(p, t, ids, box, 1.0, 20)
    with pytest.raises(KernelError, match="differ in their bins"):
        caudal.md.Rdf.mean([r, other])
    # with ntypes, a step without the highest type still compares
    assert caudal.md.rdf(p, t, ids, box, 1.0, 10, ntypes=3).counts.shape == (4, 4, 10)


def test_speeds_histogram_equals_numpy():
    v = RNG.normal(size=3 * 5000)
    h = caudal.md.speeds(v, bins=40, range=(0.0, 4.0))
    s = np.sqrt((v.reshape(-1, 3) ** 2).sum(axis=1))
    counts, edges = np.histogram(s, 40, (0.0, 4.0))
    assert h.counts.tolist() == counts.tolist() and np.array_equal(h.edges, edges)
    assert h.above == np.count_nonzero(s > 4.0) and h.below == 0
    with pytest.raises(KernelError, match="give the range"):
        caudal.md.speeds(v)


def test_rdf_takes_images_only_across_periodic_faces():
    """A box periodic in x and y only (LAMMPS's `boundary p p f`, as
    examples/lammps publishes it: 9 values): no pair across the z faces;
    the z length may then be shorter than twice the cutoff."""
    n, lo = 700, np.array([0.0, 0.0, 0.0])
    prd = np.array([8.0, 9.0, 5.0])
    p = lo + RNG.random((n, 3)) * prd
    t = np.ones(n, np.int32)
    ids = np.arange(1, n + 1, dtype=np.int64)
    box = np.concatenate([lo, lo + prd, [1, 1, 0]])
    r = caudal.md.rdf(p.ravel(), t, ids, box, 3.0, 30)
    assert np.array_equal(r.counts, brute_pairs(p, t, prd, 3.0, 30, (True, True, False)))
    periodic = caudal.md.rdf(p.ravel(), t, ids, np.concatenate([lo, lo + prd, [1, 1, 1]]), 2.5,
                             25)
    assert np.array_equal(periodic.counts, brute_pairs(p, t, prd, 2.5, 25))
    with pytest.raises(KernelError, match="shorter than twice the cutoff"):
        caudal.md.rdf(p.ravel(), t, ids, np.concatenate([lo, lo + prd, [1, 1, 1]]), 3.0, 30)
    with pytest.raises(KernelError, match="each above lo"):
        caudal.md.rdf(p.ravel(), t, ids, np.concatenate([lo + prd, lo]), 1.0)
