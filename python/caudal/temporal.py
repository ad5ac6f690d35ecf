"""Statistics of every grid point over time, without keeping any step.

    point = caudal.temporal.PointStats()

    @caudal.analysis("temperature")
    def follow(t, ctx):
        point.update(t[-1])

    @caudal.at_end
    def save(ctx):
        r = point.result()          # NumPy arrays of the global shape
        numpy.savez(ctx.run_dir / "temperature_stats.npz", **r)

The running state of a block (count, mean, sum of squared deviations, min
and max per point, updated with Welford's formulas in C) lives in an actor on
the node that holds the block, so a step's data never leaves its node; the
state is gathered only by result(). NaN values are skipped point by point:
``count`` says how many steps each point's statistics cover.
"""

import numbers

import numpy as np

from . import _kernels
from .blocks import (KernelError, ReceivedStep, as_grid, as_reducible, c_view, flat_view,
                     require_alike, resolve)

__all__ = ["PointStats", "change"]


def _change_block(new, old, dt):
    a, b = flat_view(new), flat_view(old)
    if a.dtype == b.dtype:  # fused in C: no array of the differences
        return _kernels.moments_change(a, b, dt)
    d = np.subtract(a, b, dtype=np.float64)
    d /= dt
    return _kernels.moments(d)


# A pair reduction (runtime/receipt.py): computed at receipt on each block
# against its rank's block of the array's step before, dt None meaning the
# two steps' difference.
_change_block.paired = True


def change(old, new, dt=None):
    """The per-point rate of change between two steps of an array, (new -
    old) / dt, as stats.Moments (count, mean, var, min, max, ...; NaN points
    skipped): max(abs(m.min), abs(m.max)) is the largest rate. dt defaults
    to new.step - old.step (StepArrays, for instance a window of two).
    Each rank's two blocks lie on one node: the difference is made and
    reduced there, block by block, and only the moments come back (no Dask
    graph, no copy of a block)."""
    from .stats import Moments, _moments_merge

    given = dt
    if dt is None:
        if getattr(new, "step", None) is None or getattr(old, "step", None) is None:
            raise KernelError("change: give dt, or two steps of an array (StepArrays)")
        dt = new.step - old.step
    r = as_reducible(new, "new")
    if not isinstance(dt, numbers.Real) or isinstance(dt, bool) or not dt or dt != dt:
        raise KernelError("change: %s against %s: dt must be a nonzero number, not %r"
                          % (r.describe(), as_reducible(old, "old").describe(), dt))
    if isinstance(r, ReceivedStep):  # caudal run: each rank's pair computed as it arrived
        state = r.pair_reduce(_change_block, _moments_merge, old,
                              (None if given is None else float(dt),), "change")
        if state is not None:
            return Moments.from_state(state)
    g, h = as_grid(new, "new"), as_grid(old, "old")
    require_alike([g, h], "change")
    parts = g.map_each(_change_block, lambda b: (*b.args(), *h.blocks[b.pos].args(), float(dt)))
    return Moments.from_state(g.reduce(_moments_merge, parts))


class _State:
    """The running state of one block, in its C view's layout."""

    def __init__(self, shape, flipped):
        self.shape, self.flipped = shape, flipped
        n = int(np.prod(shape))
        self.num = np.zeros(n, dtype=np.int64)
        self.mean = np.zeros(n)
        self.m2 = np.zeros(n)
        self.min = np.full(n, np.inf)
        self.max = np.full(n, -np.inf)

    def add(self, block, order):
        v, flipped = c_view(block, order)
        if v.shape != self.shape or flipped != self.flipped:
            raise ValueError("the block is %s, earlier steps' were %s"
                             % (v.shape, self.shape))
        _kernels.pointstats_add(v, self.num, self.mean, self.m2, self.min, self.max)

    def arrays(self):
        """Per-point arrays in the block's own shape."""
        out = {}
        for k in ("num", "mean", "m2", "min", "max"):
            a = getattr(self, k).reshape(self.shape)
            out[k] = a.T if self.flipped else a
        return out


def _new_state(block, order):
    v, flipped = c_view(block, order)
    return _State(v.shape, flipped)


class _Store:
    """The states of the blocks on one node (a Ray actor there)."""

    def __init__(self):
        self.states = {}

    def add(self, pos, where, order, *block):
        """block: Block.args(), the block or its list object and At(index)."""
        (block,) = resolve(block)
        try:
            if pos not in self.states:
                self.states[pos] = _new_state(block, order)
            self.states[pos].add(block, order)
        except ValueError as e:
            raise KernelError("%s: %s" % (where, e)) from None

    def arrays(self):
        return {pos: s.arrays() for pos, s in self.states.items()}


class PointStats:
    """Per-point count, mean, variance, min and max over every step passed
    to update(); var is NumPy's (ddof=0) over the steps."""

    def __init__(self):
        self.steps = 0
        self._geometry = None  # (name, shape, chunks) of the first step
        # backend.keeper_key(node) -> (backend, _Store): an actor on each
        # Ray node, one _Store here for Dask and NumPy input.
        self._stores = {}
        self._pending = (None, [])  # (backend, its unfinished calls) of the last step

    def update(self, x):
        g = as_grid(x)
        g.require_real("PointStats")
        g.require_fixed("PointStats")
        geometry = (g.shape, g.chunks)
        if self._geometry is None:
            self._geometry = geometry
            self._name = g.name
        elif geometry != self._geometry:
            g.fail("PointStats: shape %s in blocks %s, while earlier steps were %s in %s"
                   % (g.shape, g.chunks, self._geometry[0], self._geometry[1]))
        # One step in flight: the blocks it holds are freed before the next.
        self._wait()
        self._pending = (g.backend, g.backend.send(
            g, lambda node: self._store(g.backend, node), "add", g.order))
        self.steps += 1

    def _store(self, backend, node):
        key = backend.keeper_key(node)
        if key not in self._stores:
            self._stores[key] = (backend, backend.new_keeper(_Store, node))
        return self._stores[key][1]

    def _wait(self):
        backend, calls = self._pending
        if backend is not None:
            backend.wait(calls)

    def result(self):
        """The statistics gathered as NumPy arrays of the global shape:
        count, mean, var, std, min, max (NaN where a point had no value)."""
        if self._geometry is None:
            raise KernelError("PointStats: no step was given to update()")
        shape, chunks = self._geometry
        self._wait()
        parts = {}
        by_backend = {}
        for backend, store in self._stores.values():
            by_backend.setdefault(backend, []).append(store)
        for backend, stores in by_backend.items():
            for arrays in backend.ask(stores, "arrays"):
                parts.update(arrays)
        offs = [np.cumsum((0,) + tuple(c))[:-1] for c in chunks]
        out = {"count": np.zeros(shape, dtype=np.int64), "mean": np.full(shape, np.nan),
               "m2": np.full(shape, np.nan), "min": np.full(shape, np.nan),
               "max": np.full(shape, np.nan)}
        for pos, a in parts.items():
            where = tuple(slice(int(offs[d][i]), int(offs[d][i]) + chunks[d][i])
                          for d, i in enumerate(pos))
            seen = a["num"] > 0
            out["count"][where] = a["num"]
            for k in ("mean", "m2", "min", "max"):
                out[k][where] = np.where(seen, a[k], np.nan)
        m2 = out.pop("m2")
        with np.errstate(invalid="ignore", divide="ignore"):
            out["var"] = m2 / out["count"]
        out["std"] = np.sqrt(out["var"])
        return out
