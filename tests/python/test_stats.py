"""caudal.stats on random decompositions in a real Ray, against NumPy and
SciPy on the gathered array."""

import math
import warnings

import numpy as np
import pytest
import scipy.stats
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import caudal
from caudal.blocks import KernelError
from kernel_arrays import REAL_DTYPES, decompositions, distribute, distribute_variable, values

SETTINGS = settings(max_examples=30, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def close(a, b, rtol=1e-9, atol=1e-9):
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=rtol, abs_tol=atol)


def reference_moments(g):
    x = g.astype(np.float64).ravel()
    x = x[~np.isnan(x)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dict(count=x.size, mean=x.mean(), var=x.var(), min=x.min(), max=x.max(),
                    skewness=scipy.stats.skew(x, bias=True) if x.var() > 0 else math.nan,
                    kurtosis=scipy.stats.kurtosis(x, bias=True) if x.var() > 0 else math.nan)


@SETTINGS
@given(decompositions(), st.sampled_from(REAL_DTYPES), st.sampled_from([0.0, 0.2]))
def test_moments_equal_numpy_and_scipy(local_ray, dec, dtype, nan_fraction):
    shape, cuts, order, seed, empty = dec
    g = values(shape, dtype, seed, nan_fraction)
    if np.isnan(g.astype(np.float64)).all():
        g.flat[0] = 1
    m = caudal.stats.moments(distribute(local_ray, g, cuts, order, seed, empty))
    ref = reference_moments(g)
    assert m.count == ref["count"]
    assert m.nans == g.size - ref["count"]
    assert m.min == ref["min"] and m.max == ref["max"]
    for k in ("mean", "var", "skewness", "kurtosis"):
        assert close(getattr(m, k), ref[k], 1e-8, 1e-8), (k, getattr(m, k), ref[k])


def test_moments_stay_accurate_where_sums_of_powers_cancel(local_ray):
    # 1e9 + noise: naive sums of squares lose every digit of the variance.
    rng = np.random.default_rng(4)
    g = 1e9 + rng.standard_normal((300, 200))
    m = caudal.stats.moments(distribute(local_ray, g, ((70, 150, 151), (33,))))
    ref = reference_moments(g)
    assert math.isclose(m.var, ref["var"], rel_tol=1e-7)
    assert math.isclose(m.sample_var(), np.var(g, ddof=1), rel_tol=1e-7)
    d = m.as_dict()
    assert d["count"] == g.size and d["std"] == m.std and d["kurtosis"] == m.kurtosis
    assert math.isclose(m.skewness, ref["skewness"], rel_tol=1e-5, abs_tol=1e-6)
    assert math.isclose(m.kurtosis, ref["kurtosis"], rel_tol=1e-5, abs_tol=1e-6)


def test_the_same_kernels_take_dask_and_numpy_arrays(local_ray):
    g = values((40, 30), "float64", 5)
    sa = distribute(local_ray, g, ((10, 25), (7,)))
    want = reference_moments(g)
    for x in (sa, sa.data, sa.data * 1.0, g):
        m = caudal.stats.moments(x)
        assert m.count == g.size and close(m.mean, want["mean"]) and close(m.var, want["var"])
    # A slice of the global array is a Dask array with its own chunks.
    sub = caudal.stats.moments(sa.data[5:33, 3:])
    assert close(sub.mean, g[5:33, 3:].mean()) and sub.count == g[5:33, 3:].size
    counts, edges = caudal.stats.histogram(sa.data[::2], bins=9)
    want_c, want_e = np.histogram(g[::2], bins=9)
    assert np.array_equal(counts, want_c) and np.array_equal(edges, want_e)


def test_moments_of_a_variable_length_array(local_ray):
    parts = [np.arange(5, dtype=np.float32), np.zeros(0, dtype=np.float32),
             np.linspace(-3, 8, 17).astype(np.float32)]
    m = caudal.stats.moments(distribute_variable(local_ray, parts))
    ref = reference_moments(np.concatenate(parts))
    assert m.count == 22 and close(m.mean, ref["mean"]) and close(m.var, ref["var"])


@SETTINGS
@given(decompositions(), st.sampled_from(REAL_DTYPES), st.integers(1, 70), st.booleans())
def test_histograms_equal_numpy(local_ray, dec, dtype, nbins, given_range):
    shape, cuts, order, seed, empty = dec
    g = values(shape, dtype, seed)
    sa = distribute(local_ray, g, cuts, order, seed, empty)
    x = g.astype(np.float64)
    rng = (float(x.min()) + 3.25, float(x.max()) - 2.5) if given_range else None
    if rng and rng[0] > rng[1]:
        rng = (rng[1], rng[0])
    h = caudal.stats.histogram(sa, bins=nbins, range=rng)
    want, want_edges = np.histogram(x, bins=nbins, range=rng)
    assert np.array_equal(h.counts, want) and np.allclose(h.edges, want_edges, rtol=0, atol=0)
    inside = (x >= want_edges[0]) & (x <= want_edges[-1])
    assert h.below == int((x < want_edges[0]).sum()) and h.above == int((x > want_edges[-1]).sum())
    assert h.counts.sum() == inside.sum() and h.nans == 0
    # describe: the same histogram and the moments from one pass.
    m, hd = caudal.stats.describe(sa, bins=nbins, range=rng)
    assert np.array_equal(hd.counts, want) and (hd.below, hd.above) == (h.below, h.above)
    assert m == caudal.stats.moments(sa)
    edges = np.unique(np.random.default_rng(seed).uniform(-40, 120, size=nbins + 1))
    if len(edges) >= 2:
        he = caudal.stats.histogram(sa, bins=edges)
        assert np.array_equal(he.counts, np.histogram(x, bins=edges)[0])


def test_histogram_counts_nan_apart(local_ray):
    g = values((50, 20), "float32", 3, nan_fraction=0.3)
    h = caudal.stats.histogram(distribute(local_ray, g, ((20,), (5, 9))), bins=16)
    x = g.astype(np.float64)
    ok = ~np.isnan(x)
    want, edges = np.histogram(x[ok], bins=16)
    assert np.array_equal(h.counts, want) and np.allclose(h.edges, edges)
    assert h.nans == int((~ok).sum()) and h.below == h.above == 0


@SETTINGS
@given(decompositions(max_side=40), st.sampled_from(REAL_DTYPES),
       st.sampled_from([8, 16, 64, 2048]),
       st.lists(st.floats(0, 1), min_size=1, max_size=5))
def test_quantiles_are_within_the_sketchs_stated_bound(local_ray, dec, dtype, k, qs):
    shape, cuts, order, seed, empty = dec
    g = values(shape, dtype, seed, 0.05)
    x = np.sort(g.astype(np.float64).ravel())
    x = x[~np.isnan(x)]
    if x.size == 0:
        return
    sa = distribute(local_ray, g, cuts, order, seed, empty)
    s = caudal.stats.sketch(sa, k=k)
    assert s.n == x.size and s.nan == g.size - x.size
    assert s.rank_error <= x.size * (math.log2(max(1, x.size / k)) + 1) / k
    got = caudal.stats.quantile(s, qs)
    for q, v in zip(qs, got):
        r = q * (x.size - 1)
        lo = x[max(0, math.floor(r) - s.rank_error)]
        hi = x[min(x.size - 1, math.ceil(r) + s.rank_error)]
        assert lo <= v <= hi, (q, v, lo, hi, s.rank_error)
        if s.rank_error == 0:
            assert np.quantile(x, q, method="lower") <= v <= np.quantile(x, q, method="higher")


def test_a_sketch_follows_quantiles_over_many_steps(local_ray):
    total = caudal.stats.Sketch(256)
    seen = []
    for step in range(6):
        g = values((60, 50), "float64", 100 + step) + step
        seen.append(g.ravel())
        total.merge(caudal.stats.sketch(distribute(local_ray, g, ((17, 40), (25,)), step=step),
                                        k=256))
    x = np.sort(np.concatenate(seen))
    assert total.n == x.size and total.rank_error > 0
    for q in (0.0, 0.01, 0.25, 0.5, 0.9, 1.0):
        v = caudal.stats.quantile(total, q)
        r = q * (x.size - 1)
        assert x[max(0, math.floor(r) - total.rank_error)] <= v <= \
            x[min(x.size - 1, math.ceil(r) + total.rank_error)]
    # The bound is worth having: well under 5% of the ranks here.
    assert total.rank_error < 0.05 * x.size


def test_a_sketch_survives_pickling():
    import pickle

    s = caudal.stats.Sketch(16)
    s.add(np.arange(1000, dtype=np.int32))
    t = pickle.loads(pickle.dumps(s))
    assert (t.n, t.nan, t.rank_error, t.k) == (s.n, s.nan, s.rank_error, s.k)
    assert t.quantile(0.5) == s.quantile(0.5)


# ---------------------------------------------------------------- bad input


def test_bad_input_is_a_clear_error(local_ray):
    c = np.ones((4, 5), dtype=np.complex128)
    with pytest.raises(KernelError, match="moments takes integer and floating-point arrays, "
                       "not complex128"):
        caudal.stats.moments(c)
    sa = distribute(local_ray, np.ones((4, 5)), ((2,), ()), name="temperature", step=12)
    with pytest.raises(KernelError, match="array 'temperature', step 12: histogram needs a "
                       "positive number of bins"):
        caudal.stats.histogram(sa, bins=0)
    with pytest.raises(KernelError, match="edges must be at least 2 finite, increasing"):
        caudal.stats.histogram(sa, bins=[3.0, 1.0])
    with pytest.raises(KernelError, match="range .* must be finite and ordered"):
        caudal.stats.histogram(sa, bins=4, range=(2, 1))
    with pytest.raises(KernelError, match="array 'temperature', step 12: describe needs a "
                       "positive number of bins"):
        caudal.stats.describe(sa, bins=-1)
    with pytest.raises(KernelError, match="moments needs elements"):
        caudal.stats.moments(np.zeros((3, 0)))
    with pytest.raises(KernelError, match="k must be an even integer"):
        caudal.stats.sketch(sa, k=7)
    with pytest.raises(ValueError, match="quantiles must be in"):
        caudal.stats.quantile(sa, 1.5)
    with pytest.raises(KernelError, match="array 'temperature', step 12: quantile needs values"):
        caudal.stats.quantile(distribute(local_ray, np.full((3, 3), np.nan), ((1,), ()),
                                         name="temperature", step=12), 0.5)
    with pytest.raises(KernelError, match="scalar"):
        caudal.stats.moments(np.float64(3))


def test_a_blocks_refusal_names_the_block_here_and_in_a_task(local_ray):
    """A per-block function that refuses its block: the error names the
    array, step, rank and region, whether it ran here (blocks small enough
    for the driver's node) or in a task next to the block."""
    sa = distribute(local_ray, np.ones((4, 5)), ((2,), ()), name="temperature", step=12)
    g = sa.blocks

    def refuse(block):
        raise ValueError("no thanks")

    for small_here in (True, False):
        with pytest.raises(KernelError, match=r"array 'temperature', step 12, rank \d+'s block "
                                              r"\[[02]:[24], 0:5\]: no thanks"):
            g.fetch(list(g.map(refuse, small_here=small_here).values()))
