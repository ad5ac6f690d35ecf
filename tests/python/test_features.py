"""caudal.extract (coarsening, slices) and caudal.features (connected
components across block borders) against NumPy and scipy.ndimage."""

import itertools

import numpy as np
import pytest
import scipy.ndimage
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import caudal
from caudal.blocks import KernelError
from kernel_arrays import REAL_DTYPES, decompositions, distribute, values

SETTINGS = settings(max_examples=30, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def coarsen_reference(g, f, op):
    g = g.astype(np.float64)
    shape = tuple(-(-n // v) for n, v in zip(g.shape, f))
    out = np.empty(shape)
    red = {"mean": np.mean, "max": np.max, "min": np.min}[op]
    for cell in itertools.product(*[range(n) for n in shape]):
        out[cell] = red(g[tuple(slice(c * v, (c + 1) * v) for c, v in zip(cell, f))])
    return out


@SETTINGS
@given(decompositions(), st.sampled_from(REAL_DTYPES), st.sampled_from(["mean", "max", "min"]),
       st.lists(st.integers(1, 4), min_size=3, max_size=3))
def test_coarsening_equals_numpy_over_each_cell(local_ray, dec, dtype, op, f):
    shape, cuts, order, seed, empty = dec
    g = values(shape, dtype, seed)
    f = tuple(f[:len(shape)])
    got = caudal.extract.coarsen(distribute(local_ray, g, cuts, order, seed, empty), f, op)
    assert np.allclose(got, coarsen_reference(g, f, op), rtol=1e-12, atol=0)


def test_coarsening_propagates_nan_like_numpy(local_ray):
    g = values((8, 8), "float64", 3)
    g[1, 6] = np.nan
    got = caudal.extract.coarsen(distribute(local_ray, g, ((3,), (5,))), 4)
    want = coarsen_reference(g, (4, 4), "mean")
    assert np.isnan(got[0, 1]) and np.isnan(want[0, 1])
    assert np.allclose(got, want, equal_nan=True)


@SETTINGS
@given(decompositions(), st.sampled_from(REAL_DTYPES), st.data())
def test_slices_equal_numpy(local_ray, dec, dtype, data):
    shape, cuts, order, seed, empty = dec
    g = values(shape, dtype, seed)
    axis = data.draw(st.integers(0, len(shape) - 1))
    index = data.draw(st.integers(-shape[axis], shape[axis] - 1))
    got = caudal.extract.slice(distribute(local_ray, g, cuts, order, seed, empty), axis, index)
    assert got.dtype == g.dtype and np.array_equal(got, np.take(g, index, axis=axis))


def scipy_components(mask):
    lab, n = scipy.ndimage.label(mask)
    sizes = np.bincount(lab.ravel(), minlength=n + 1)[1:]
    cents = np.array(scipy.ndimage.center_of_mass(mask, lab, range(1, n + 1))).reshape(n, mask.ndim)
    order = np.lexsort(tuple(cents[:, d] for d in reversed(range(mask.ndim))) + (-sizes,))
    return n, sizes[order], cents[order], lab


@SETTINGS
@given(decompositions(max_side=12), st.sampled_from(REAL_DTYPES),
       st.sampled_from([">", ">=", "<", "<="]))
def test_components_equal_scipy_label_across_blocks(local_ray, dec, dtype, op):
    shape, cuts, order, seed, empty = dec
    g = values(shape, dtype, seed)
    t = float(np.median(g.astype(np.float64)))
    mask = {">": g > t, ">=": g >= t, "<": g < t, "<=": g <= t}[op]
    sa = distribute(local_ray, g, cuts, order, seed, empty)
    c = caudal.features.components(sa, t, op, labels=True)
    n, sizes, cents, lab = scipy_components(mask)
    assert c.count == n
    assert np.array_equal(c.sizes, sizes)
    assert np.allclose(c.centroids, cents, rtol=1e-12, atol=1e-9)
    from ray.util.dask import ray_dask_get

    mine = c.labels.data.compute(scheduler=ray_dask_get)
    assert np.array_equal(mine > 0, mask)
    # The same partition: each of our labels is one of scipy's, one to one.
    pairs = np.unique(np.stack([mine[mask], lab[mask]]), axis=1)
    assert len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1] == n
    # Label i + 1 is component i: its size.
    assert np.array_equal(np.bincount(mine.ravel(), minlength=n + 1)[1:], c.sizes)


def test_a_feature_spread_over_every_block_is_one_component(local_ray):
    g = np.zeros((30, 40))
    g[15, :] = 1  # a line through all blocks of a row
    g[:, 20] = 1  # crossing a column of blocks
    g[2:4, 2:4] = 1
    sa = distribute(local_ray, g, ((5, 10, 16, 25), (7, 20, 21, 33)))
    c = caudal.features.components(sa, 0.5)
    assert c.count == 2 and list(c.sizes) == [30 + 40 - 1, 4]
    assert np.allclose(c.centroids[1], [2.5, 2.5])


def test_bad_input_is_a_clear_error(local_ray):
    sa = distribute(local_ray, values((6, 5), "int16", 1), ((3,), ()), name="rho", step=2)
    with pytest.raises(KernelError, match="array 'rho', step 2: coarsen op must be one of"):
        caudal.extract.coarsen(sa, 2, "median")
    with pytest.raises(KernelError, match="positive integer factor"):
        caudal.extract.coarsen(sa, (2, 0))
    with pytest.raises(KernelError, match="index 6 is outside 0..5 along axis 0"):
        caudal.extract.slice(sa, 0, 6)
    with pytest.raises(KernelError, match="components op must be one of"):
        caudal.features.components(sa, 1, "==")
    with pytest.raises(KernelError, match="not complex128"):
        caudal.features.components(np.zeros((2, 2), complex), 0)
