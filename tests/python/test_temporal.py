"""Per-point statistics over time (caudal.temporal.PointStats) against NumPy
over the stacked steps."""

import warnings

import numpy as np
import pytest

import caudal
from caudal.blocks import KernelError
from kernel_arrays import distribute, values


def reference(steps):
    s = np.stack([x.astype(np.float64) for x in steps])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {"count": (~np.isnan(s)).sum(0), "mean": np.nanmean(s, 0), "var": np.nanvar(s, 0),
                "min": np.nanmin(s, 0), "max": np.nanmax(s, 0)}


@pytest.mark.parametrize("dtype,order", [("float64", "C"), ("float32", "F"), ("int32", "C"),
                                         ("uint8", "F")])
def test_point_statistics_equal_numpy_over_the_stacked_steps(local_ray, dtype, order):
    shape, cuts = (17, 9, 5), ((4, 11), (3,), ())
    steps = [values(shape, dtype, 40 + s, nan_fraction=0.3) + (s % 3) for s in range(12)]
    if dtype.startswith("float"):
        for x in steps:
            x[0, 0, 0] = np.nan  # a point that never has a value
    p = caudal.temporal.PointStats()
    for s, x in enumerate(steps):
        p.update(distribute(local_ray, x, cuts, order, step=s, name="t",
                            batched=dtype in ("float32", "int32")))
    r = p.result()
    want = reference(steps)
    assert p.steps == 12
    assert np.array_equal(r["count"], want["count"])
    for k in ("mean", "var", "min", "max"):
        assert np.allclose(r[k], want[k], rtol=1e-10, atol=1e-10, equal_nan=True), k
    assert np.allclose(r["std"], np.sqrt(want["var"]), equal_nan=True)


def test_numpy_steps_too(local_ray):
    steps = [values((6, 4), "float64", s) for s in range(5)]
    p = caudal.temporal.PointStats()
    for x in steps:
        p.update(x)
    assert np.allclose(p.result()["var"], np.var(np.stack(steps), 0))


def test_a_change_of_decomposition_is_a_clear_error(local_ray):
    p = caudal.temporal.PointStats()
    with pytest.raises(KernelError, match="no step was given"):
        p.result()
    p.update(distribute(local_ray, values((6, 4), "float64", 1), ((3,), ()), step=1, name="t"))
    with pytest.raises(KernelError, match=r"array 't', step 2: PointStats: shape \(6, 4\) in "
                       r"blocks \(\(2, 4\), \(4,\)\), while earlier steps were \(6, 4\) in "
                       r"\(\(3, 3\), \(4,\)\)"):
        p.update(distribute(local_ray, values((6, 4), "float64", 2), ((2,), ()), step=2, name="t"))


@pytest.mark.parametrize("dtype,order", [("float64", "C"), ("float32", "F"), ("int32", "C")])
def test_change_between_two_steps_equals_numpy(local_ray, dtype, order):
    """temporal.change: the moments of (new - old) / dt, each rank's pair of
    blocks reduced where they lie, equal NumPy's on the global arrays
    (NaN points skipped); dt from the steps."""
    shape, cuts = (13, 8, 3), ((5, 9), (3,), ())
    old_x = values(shape, dtype, 3, nan_fraction=0.2)
    new_x = values(shape, dtype, 4, nan_fraction=0.2)
    old = distribute(local_ray, old_x, cuts, order, seed=1, step=10, name="t")
    new = distribute(local_ray, new_x, cuts, order, seed=2, step=14, name="t")
    m = caudal.temporal.change(old, new)
    d = (new_x.astype(np.float64) - old_x.astype(np.float64)) / 4
    ok = d[~np.isnan(d)]
    assert m.count == ok.size and m.nans == d.size - ok.size
    assert (m.min, m.max) == (ok.min(), ok.max())
    assert m.mean == pytest.approx(ok.mean(), rel=1e-12)
    assert m.var == pytest.approx(ok.var(), rel=1e-12)
    # On NumPy arrays with dt given: one block, the moments of d to the bit.
    assert repr(caudal.temporal.change(old_x, new_x, dt=4)) == repr(caudal.stats.moments(d))


def test_change_refuses_what_it_cannot_compare(local_ray):
    a = distribute(local_ray, values((6, 4), "float64", 1), ((3,), ()), step=1, name="t")
    b = distribute(local_ray, values((6, 4), "float64", 2), ((2,), ()), step=2, name="t")
    with pytest.raises(KernelError, match=r"change: array 't', step 2 and array 't', step 1 "
                       r"differ in shape or blocks"):
        caudal.temporal.change(a, b)
    c = distribute(local_ray, values((6, 4), "float64", 2), ((3,), ()), step=1, name="t")
    with pytest.raises(KernelError, match=r"dt must be a nonzero number, not 0"):
        caudal.temporal.change(a, c)
    f = distribute(local_ray, values((6, 4), "float64", 2), ((3,), ()), "F", step=2, name="t")
    with pytest.raises(KernelError, match=r"^change: the components mix C and Fortran order$"):
        caudal.temporal.change(a, f)
    with pytest.raises(KernelError, match=r"give dt, or two steps"):
        caudal.temporal.change(np.zeros(3), np.ones(3))
    with pytest.raises(KernelError, match=r"takes integer and floating-point arrays"):
        caudal.temporal.change(np.zeros(3, dtype=complex), np.zeros(3, dtype=complex), dt=1)
