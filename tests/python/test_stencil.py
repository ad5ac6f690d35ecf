"""caudal.stencil across block borders, against numpy.gradient and
scipy.ndimage on the gathered array."""

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


def gathered(x):
    """A kernel's result as NumPy: StepArray -> its Dask array computed on Ray."""
    from ray.util.dask import ray_dask_get

    return x.data.compute(scheduler=ray_dask_get)


def laplace_reference(f, h):
    f = f.astype(np.float64)
    out = np.zeros_like(f)
    for d in range(f.ndim):
        p = np.pad(f, [(1, 1) if e == d else (0, 0) for e in range(f.ndim)], mode="edge")
        n = f.shape[d]
        hi = np.take(p, np.arange(2, n + 2), axis=d)
        lo = np.take(p, np.arange(0, n), axis=d)
        out += (hi - 2 * f + lo) / h[d] ** 2
    return out


spacings = st.lists(st.floats(0.1, 4.0), min_size=3, max_size=3)


@SETTINGS
@given(decompositions(min_side=2), st.sampled_from(REAL_DTYPES), spacings)
def test_gradient_equals_numpy_gradient(local_ray, dec, dtype, h):
    shape, cuts, order, seed, empty = dec
    g = values(shape, dtype, seed)
    h = h[:g.ndim]
    sa = distribute(local_ray, g, cuts, order, seed, empty)
    got = caudal.stencil.gradient(sa, spacing=h)
    want = np.gradient(g.astype(np.float64), *h)
    want = list(want) if isinstance(want, (list, tuple)) else [want]
    got = got if isinstance(got, list) else [got]  # one array for 1-D, as NumPy
    assert len(got) == g.ndim
    for a, (x, w) in enumerate(zip(got, want)):
        assert x.step == sa.step and x.data.chunks == sa.data.chunks
        assert np.allclose(gathered(x), w, rtol=1e-12, atol=1e-9), a
    one = caudal.stencil.gradient(sa, axis=g.ndim - 1, spacing=h)
    assert np.allclose(gathered(one), want[-1], rtol=1e-12, atol=1e-9)


@SETTINGS
@given(decompositions(), st.sampled_from(REAL_DTYPES), spacings)
def test_laplacian_equals_second_differences_with_zero_flux(local_ray, dec, dtype, h):
    shape, cuts, order, seed, empty = dec
    g = values(shape, dtype, seed)
    h = h[:g.ndim]
    got = caudal.stencil.laplacian(distribute(local_ray, g, cuts, order, seed, empty), h)
    assert np.allclose(gathered(got), laplace_reference(g, h), rtol=1e-12, atol=1e-9)


def test_laplacian_is_scipys_for_unit_spacing(local_ray):
    g = values((30, 20, 10), "float64", 8)
    got = caudal.stencil.laplacian(distribute(local_ray, g, ((4, 17), (10,), (3, 4, 9)), "F"))
    assert np.allclose(gathered(got), scipy.ndimage.laplace(g, mode="nearest"), atol=1e-12)


@SETTINGS
@given(decompositions(min_dims=2, max_dims=3, min_side=2), st.sampled_from(REAL_DTYPES),
       spacings)
def test_divergence_and_curl_equal_their_numpy_formulas(local_ray, dec, dtype, h):
    shape, cuts, order, seed, empty = dec
    nd = len(shape)
    h = h[:nd]
    comps = [values(shape, dtype, seed + i) for i in range(nd)]
    arrays = [distribute(local_ray, c, cuts, order, seed, empty, name="v%d" % i)
              for i, c in enumerate(comps)]
    d = [np.gradient(c.astype(np.float64), *h) for c in comps]  # d[i][a] = dv_i/dx_a
    div = caudal.stencil.divergence(*arrays, spacing=h)
    assert np.allclose(gathered(div), sum(d[i][i] for i in range(nd)), atol=1e-9)
    curl = caudal.stencil.curl(*arrays, spacing=h)
    if nd == 2:
        assert np.allclose(gathered(curl), d[1][0] - d[0][1], atol=1e-9)
    else:
        want = (d[2][1] - d[1][2], d[0][2] - d[2][0], d[1][0] - d[0][1])
        for c, w in zip(curl, want):
            assert np.allclose(gathered(c), w, atol=1e-9)


def test_results_are_global_arrays_that_other_kernels_take(local_ray):
    g = values((40, 30), "float64", 2)
    sa = distribute(local_ray, g, ((13, 27), (11,)))
    lap = caudal.stencil.laplacian(sa)
    m = caudal.stats.moments(lap)
    assert np.isclose(m.mean, laplace_reference(g, (1, 1)).mean())
    # Dask in, Dask out (its chunks are ObjectRefs: Dask-on-Ray computes it).
    from ray.util.dask import ray_dask_get

    dx = caudal.stencil.gradient(sa.data, axis=0)
    assert np.allclose(dx.compute(scheduler=ray_dask_get), np.gradient(g, axis=0))
    # NumPy in, NumPy out.
    assert np.allclose(caudal.stencil.gradient(g, axis=1), np.gradient(g, axis=1))


def test_bad_input_is_a_clear_error(local_ray):
    sa = distribute(local_ray, values((6, 1), "float64", 1), ((3,), ()), name="t", step=4)
    with pytest.raises(KernelError, match="array 't', step 4: gradient along axis 1 needs at "
                       "least 2 points; the array has 1"):
        caudal.stencil.gradient(sa)
    with pytest.raises(KernelError, match="axis 2 is not one of the array's 2 axes"):
        caudal.stencil.gradient(sa, axis=2)
    with pytest.raises(KernelError, match="one positive spacing or one per axis"):
        caudal.stencil.laplacian(sa, spacing=(1.0, -1.0))
    u = distribute(local_ray, values((6, 5), "float64", 1), ((3,), ()), name="u")
    v = distribute(local_ray, values((6, 5), "float64", 2), ((2,), ()), name="v")
    with pytest.raises(KernelError, match="array 'u', step 7 and array 'v', step 7 differ in "
                       "shape or blocks"):
        caudal.stencil.divergence(u, v)
    with pytest.raises(ValueError, match="one component per axis"):
        caudal.stencil.divergence(u)
    with pytest.raises(KernelError, match="not complex64"):
        caudal.stencil.laplacian(np.zeros((3, 3), np.complex64))
