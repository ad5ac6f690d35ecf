"""Light extracts of a global array, small enough to gather in the driver:
coarsened copies (block mean, max or min) and slices.

Each block reduces or cuts its own part on its node; only the extract moves.
Coarse cells need not line up with the blocks: a cell that straddles a block
border gets a partial value from each side (sums and counts, or max/min),
merged here. Cells cut by the global border cover what is left of them, so
the shape is ceil(n / factor) per axis.
"""

import builtins

import numpy as np

from . import _kernels
from .blocks import as_grid, c_view

__all__ = ["coarsen", "slice"]

_OPS = ("mean", "max", "min")


def _coarsen_block(block, start, factor, op, order):
    v, flipped = c_view(block, order)
    rev = (lambda t: tuple(t)[::-1]) if flipped else tuple
    vstart, vfactor = rev(start), rev(factor)
    first, ncells = _kernels.coarsen_cells(vstart, v.shape, vfactor)
    acc = np.empty(ncells, dtype=np.float64)
    num = np.empty(ncells, dtype=np.int64)
    _kernels.coarsen(v, vstart, vfactor, op, acc, num)
    if flipped:
        return rev(first), acc.T, num.T
    return tuple(first), acc, num


def coarsen(x, factor, op="mean"):
    """x reduced by `factor` (one integer or one per axis) with `op`
    ("mean", "max" or "min"), as a NumPy array of shape ceil(n / factor).
    NaN propagates, as in numpy.mean and numpy.max."""
    g = as_grid(x)
    g.require_real("coarsen")
    g.require_fixed("coarsen")
    if op not in _OPS:
        g.fail("coarsen op must be one of %s, not %r" % (", ".join(_OPS), op))
    f = (int(factor),) * g.ndim if np.ndim(factor) == 0 else tuple(int(v) for v in factor)
    if len(f) != g.ndim or any(v < 1 for v in f) or np.any(np.asarray(factor) != f):
        g.fail("coarsen needs a positive integer factor or one per axis (%d), not %r"
               % (g.ndim, factor))
    shape = tuple(-(-n // v) for n, v in zip(g.shape, f))
    parts = g.map_each(_coarsen_block, lambda b: (*b.args(), b.start, f, op, g.order))
    keys = sorted(parts)
    if op == "mean":
        acc = np.zeros(shape, dtype=np.float64)
    else:
        acc = np.full(shape, -np.inf if op == "max" else np.inf)
    num = np.zeros(shape, dtype=np.int64)
    merge = {"mean": np.add, "max": np.maximum, "min": np.minimum}[op]
    for first, a, n in g.fetch([parts[k] for k in keys]):
        where = tuple(builtins.slice(s, s + c) for s, c in zip(first, a.shape))
        acc[where] = merge(acc[where], a)
        num[where] += n
    if op == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            return acc / num
    return acc


def _slice_block(block, axis, index):
    return np.take(np.asarray(block), index, axis=axis)


def slice(x, axis, index):
    """The (ndim - 1)-dimensional plane of x at `index` along `axis`, as a
    NumPy array; only the blocks that hold it do any work."""
    g = as_grid(x)
    g.require_fixed("slice")
    axis = int(axis)
    if not 0 <= axis < g.ndim:
        g.fail("slice: axis %d is not one of the array's %d axes" % (axis, g.ndim))
    n = g.shape[axis]
    index = int(index) + (n if int(index) < 0 else 0)
    if not 0 <= index < n:
        g.fail("slice: index %d is outside 0..%d along axis %d" % (index, n - 1, axis))
    out = np.empty(g.shape[:axis] + g.shape[axis + 1:], dtype=g.dtype)
    hit = {p: b for p, b in g.blocks.items()
           if b.start[axis] <= index < b.start[axis] + b.count[axis]}
    refs = {p: g.run_on(b, _slice_block, axis, index - b.start[axis]) for p, b in hit.items()}
    keys = sorted(refs)
    for p, piece in zip(keys, g.fetch([refs[k] for k in keys])):
        b = hit[p]
        where = tuple(builtins.slice(s, s + c) for d, (s, c) in enumerate(zip(b.start, b.count))
                      if d != axis)
        out[where] = piece
    return out

