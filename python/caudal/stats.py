"""Statistics of a global array: moments, histograms, quantiles.

Each is one call over a StepArray (per-block work next to the blocks, in
the ingest actor of their node, or sent down caudal run's relays past a few
nodes: caudal.blocks.TreeStep; partial states merged in a tree), a Dask
array or a NumPy array:

    m = caudal.stats.moments(temperature[-1])
    m.mean, m.var, m.skewness, m.kurtosis, m.min, m.max, m.count, m.nans
    counts, edges = caudal.stats.histogram(temperature[-1], bins=64)
    m, h = caudal.stats.describe(temperature[-1], bins=64, range=(0, 1))  # one pass
    caudal.stats.quantile(temperature[-1], [0.01, 0.5, 0.99])

NaN values are left out of every statistic and counted (``nans``), where
NumPy's non-nan functions would return NaN: a user who wants that sees
``nans > 0``. The C kernels behind them are in kernels/ (caudal_kernels.h).
"""

import math
from dataclasses import dataclass

import numpy as np

from . import _kernels
from .blocks import KernelError, as_reducible, flat_view

__all__ = ["Histogram", "Moments", "Sketch", "describe", "histogram", "moments", "quantile",
           "sketch"]

Sketch = _kernels.Sketch
DEFAULT_K = 2048


@dataclass(frozen=True)
class Moments:
    """The moments of the non-NaN values. var is NumPy's (ddof=0); skewness
    and kurtosis (excess, Fisher) are scipy.stats' with bias=True."""

    count: int
    nans: int
    mean: float
    m2: float  # sums of powers of deviations from the mean
    m3: float
    m4: float
    min: float
    max: float

    @classmethod
    def from_state(cls, s):
        n, nan, mean, m2, m3, m4, lo, hi = s
        if n == 0:
            mean = lo = hi = math.nan
        return cls(int(n), int(nan), mean, m2, m3, m4, lo, hi)

    @property
    def var(self):
        return self.m2 / self.count if self.count else math.nan

    @property
    def std(self):
        return math.sqrt(self.var)

    def sample_var(self):
        """The unbiased variance (ddof=1)."""
        return self.m2 / (self.count - 1) if self.count > 1 else math.nan

    @property
    def skewness(self):
        if not self.count or self.m2 == 0:
            return math.nan
        return math.sqrt(self.count) * self.m3 / self.m2 ** 1.5

    @property
    def kurtosis(self):
        if not self.count or self.m2 == 0:
            return math.nan
        return self.count * self.m4 / self.m2 ** 2 - 3.0

    def as_dict(self):
        return {"count": self.count, "nans": self.nans, "mean": self.mean, "var": self.var,
                "std": self.std, "skewness": self.skewness, "kurtosis": self.kurtosis,
                "min": self.min, "max": self.max}


@dataclass(frozen=True)
class Histogram:
    """np.histogram's (counts, edges), plus what fell outside: values below
    the first edge, above the last, and NaN values. Unpacks as
    ``counts, edges = h``."""

    counts: np.ndarray
    edges: np.ndarray
    below: int
    above: int
    nans: int

    def __iter__(self):
        return iter((self.counts, self.edges))


# ---------------------------------------------------------------- per block


def _moments_block(block):
    return _kernels.moments(flat_view(block))


def _moments_merge(*states):
    s = states[0]
    for t in states[1:]:
        s = _kernels.moments_merge(s, t)
    return s


def _hist_counts(v, spec):
    """The block's counts (bins, below, above, NaN) for a bins spec:
    ("uniform", lo, hi, nbins) or ("edges", edges)."""
    if spec[0] == "uniform":
        _, lo, hi, nbins = spec
        counts = np.zeros(nbins + 3, dtype=np.int64)
        _kernels.histogram(v, lo, hi, nbins, counts)
    else:
        counts = np.zeros(len(spec[1]) + 2, dtype=np.int64)
        _kernels.histogram_edges(v, spec[1], counts)
    return counts


def _hist_block(block, spec):
    return _hist_counts(flat_view(block), spec)


def _describe_block(block, spec):
    v = flat_view(block)
    return _kernels.moments(v), _hist_counts(v, spec)


def _describe_merge(*parts):
    return _moments_merge(*[p[0] for p in parts]), _sum(*[p[1] for p in parts])


def _sum(*arrays):
    return np.sum(arrays, axis=0)


def _sketch_block(block, k):
    s = Sketch(k)
    s.add(flat_view(block))
    return s


def _sketch_merge(*sketches):
    s = sketches[0]
    for t in sketches[1:]:
        s.merge(t)
    return s


# ---------------------------------------------------------------- kernels


def moments(x):
    """Count, mean, variance, skewness, kurtosis, min and max of x (a
    StepArray, Dask or NumPy array), merged with Pébay's stable formulas."""
    g = as_reducible(x)
    g.require_real("moments")
    g.require_elements("moments")
    return Moments.from_state(g.map_reduce(_moments_block, _moments_merge))


def _bins(g, bins, range, kernel):
    """The bins spec, edges and number of bins; a range left out is the
    data's min and max (one more pass over the blocks)."""
    if np.ndim(bins) == 0:
        nbins = int(bins)
        if nbins != bins or nbins < 1:
            g.fail("%s needs a positive number of bins, not %r" % (kernel, bins))
        if range is None:
            g.require_elements("%s without a range" % kernel)
            m = moments(g)
            if m.count == 0:
                g.fail("%s without a range needs values that are not NaN" % kernel)
            lo, hi = m.min, m.max
        else:
            lo, hi = (float(v) for v in range)
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
            g.fail("%s range [%r, %r] must be finite and ordered" % (kernel, lo, hi))
        if lo == hi:  # as NumPy does for a constant array
            lo, hi = lo - 0.5, hi + 0.5
        return ("uniform", lo, hi, nbins), np.linspace(lo, hi, nbins + 1), nbins
    edges = np.ascontiguousarray(bins, dtype=np.float64)
    if edges.ndim != 1 or len(edges) < 2 or not np.all(np.isfinite(edges)) \
            or np.any(np.diff(edges) <= 0):
        g.fail("%s edges must be at least 2 finite, increasing values" % kernel)
    return ("edges", edges), edges, len(edges) - 1


def _histogram(counts, edges, nbins):
    return Histogram(counts[:nbins], edges, int(counts[nbins]), int(counts[nbins + 1]),
                     int(counts[nbins + 2]))


def histogram(x, bins=10, range=None):
    """Counts of x in `bins` (a number of equal bins over `range`, by default
    the data's min and max, or the edges themselves), as numpy.histogram
    counts the values as float64; NaN values are counted apart."""
    g = as_reducible(x)
    g.require_real("histogram")
    spec, edges, nbins = _bins(g, bins, range, "histogram")
    counts = g.map_reduce(_hist_block, _sum, spec)
    if counts is None:  # no blocks
        counts = np.zeros(nbins + 3, dtype=np.int64)
    return _histogram(counts, edges, nbins)


def describe(x, bins=10, range=None):
    """moments(x) and histogram(x, bins, range) from one pass over each
    block (two when the range is left out): (Moments, Histogram)."""
    g = as_reducible(x)
    g.require_real("describe")
    g.require_elements("describe")
    spec, edges, nbins = _bins(g, bins, range, "describe")
    state, counts = g.map_reduce(_describe_block, _describe_merge, spec)
    return Moments.from_state(state), _histogram(counts, edges, nbins)


def sketch(x, k=DEFAULT_K):
    """A quantile sketch of x's values: merge it with other steps' sketches
    to follow quantiles over a whole run without keeping any step.
    ``s.rank_error`` bounds how far (in ranks) an answer can be."""
    g = as_reducible(x)
    g.require_real("sketch")
    if not isinstance(k, int) or k < 8 or k % 2:
        g.fail("a sketch's k must be an even integer of at least 8, not %r" % (k,))
    s = g.map_reduce(_sketch_block, _sketch_merge, k)
    return Sketch(k) if s is None else s


def quantile(x, q, k=DEFAULT_K):
    """Quantiles q (a number or a sequence in [0, 1]) of x's non-NaN values,
    from a sketch: each answer is a value of x whose rank is within the
    sketch's rank_error of q (n - 1) (exact while x has at most k values
    per block and the merges compact nothing)."""
    qs = np.atleast_1d(np.asarray(q, dtype=np.float64))
    if qs.ndim != 1 or np.any(~(qs >= 0) | (qs > 1)):
        raise ValueError("quantiles must be in [0, 1], not %r" % (q,))
    if isinstance(x, Sketch):
        s, where = x, "the sketch"
    else:
        g = as_reducible(x)
        s, where = sketch(g, k), g.describe()
    if s.n == 0:
        raise KernelError("%s: quantile needs values that are not NaN" % where)
    out = np.array([s.quantile(float(v)) for v in qs])
    return out if np.ndim(q) else float(out[0])
