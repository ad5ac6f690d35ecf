"""The catalog: from the ranks' declarations of an array to its global layout.

Every rank declares its own block (start and count in a global shape), and no
rank knows the others'. The head gathers the declarations and, before the
first step is analysed, has to know that the blocks tile the global array
exactly, or else an analysis would silently read holes or double-counted
cells. Dask needs more than an exact tiling: its chunks are rectilinear (one
list of chunk sizes per dimension), so the blocks must be the cells of the
grid cut by the distinct block starts. A declaration that breaks any of this
is refused once, with a message that names the array and the ranks, instead
of failing later inside a Dask computation.

`global_array` then turns the blocks of one step (`BlockRef` in production,
``ray.ObjectRef`` or NumPy arrays in tests) into a Dask array whose chunks
are those blocks, without copying or computing anything. With ObjectRefs as graph
values the array must be computed with ``ray.util.dask.ray_dask_get``, which
resolves them inside the Ray tasks next to the data; Dask's own schedulers
would hand the references themselves to NumPy.

Pure Python, NumPy and Dask: Ray is only looked at (never imported) to tell
an ObjectRef from other chunk objects.
"""

import hashlib
import itertools
import math
import numbers
import operator
import pickle
import sys
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Optional

import numpy as np

__all__ = ["BlockRef", "CatalogError", "Declaration", "Layout", "Packed", "build_layout",
           "global_array"]


class CatalogError(ValueError):
    """Raised instead of building an array the analytics would misread; the
    message names the array and the ranks, so the simulation can be fixed."""


@dataclass(frozen=True)
class Declaration:
    """One rank's declaration of an array, as the extension's
    ``caudal.ArrayInfo`` reports it, so the catalog needs no extension."""

    rank: int
    dtype: str
    order: str
    variable: bool
    shape: tuple
    start: tuple
    count: tuple
    name: str = ""  # the array's; build_layout is given it apart

    @classmethod
    def from_info(cls, rank, info):
        """From a ``caudal.ArrayInfo`` (or a declare event), so callers need
        not know the field order."""
        return cls(rank=int(rank), dtype=str(info.dtype), order=str(info.order),
                   variable=bool(info.variable), shape=tuple(info.shape),
                   start=tuple(info.start), count=tuple(info.count), name=str(info.name))


class BlockRef(NamedTuple):
    """One rank's block of one step of an array, where it is stored: made
    by the ingest from the receiver's event once the block is in Ray's
    object store, and carried as it is through the head and the driver to
    the grid of blocks the kernels run on (caudal.blocks).

    A tuple, so that the head's reports, a list of these per node and step,
    pickle as cheaply as plain tuples; immutable like one."""

    array: str
    step: int
    rank: int
    count: int  # elements in the block (a variable array's length this step)
    # The ingest puts a node's blocks of a step as one object (a Packed, or
    # a list of arrays when they are large), since a put costs far more than
    # the bytes of a small block: `ref` is then that object and the block its
    # item `index`; index None: ref is the block.
    ref: Any  # ray.ObjectRef (the result of a task on the block: any object)
    index: Optional[int] = None
    node: Optional[str] = None  # the Ray node whose store holds it (or held it)
    # The reductions computed on it at receipt (runtime/receipt.py):
    # ((id, state), ...). ref None: the block was not put, only these exist.
    states: tuple = ()

    @classmethod
    def from_event(cls, event, ref, index=None, node=None, states=()):
        """From a block event of ``caudal.Receiver``, once its data is in
        the store as `ref` (item `index` of it, when ref is a list)."""
        return cls(array=str(event.name), step=int(event.step), rank=int(event.rank),
                   count=int(event.count), ref=ref, index=index, node=node, states=states)

    def holding(self, ref, array):
        """The same rank's block, for `array`, held whole by another object
        on the same node: the result of a task run on this block."""
        return self._replace(array=array, ref=ref, index=None, states=())


class Packed:
    """A node's small blocks of one step in one buffer, as the ingest puts
    them (caudal.pack_blocks): item i is block i, a read-only view. One
    NumPy buffer pickles out of band, so putting it costs one copy and a
    fixed cost (0.65 ms for 128 blocks of 8 KiB here, against 1.6 ms for the
    list of 128 arrays), and getting it maps the store's memory."""

    __slots__ = ("buf", "layout")

    def __init__(self, buf, layout):
        self.buf = buf  # uint8 NumPy array
        self.layout = layout  # ((offset, dtype, shape, order), ...), one per block

    def __len__(self):
        return len(self.layout)

    def __getitem__(self, i):
        offset, dtype, shape, order = self.layout[i]
        a = np.ndarray(shape, dtype, buffer=self.buf, offset=offset, order=order)
        a.flags.writeable = False  # as Ray's store gives it, wherever it was unpickled
        return a

    def __reduce__(self):
        return Packed, (self.buf, self.layout)


@dataclass(frozen=True)
class Layout:
    """What every step of an array looks like, decided once from the
    declarations so that each step only has to look up its blocks.

    For a variable array ``shape`` and ``chunks`` are None and ``positions``
    is empty: its size and chunks change each step (see `global_array`)."""

    name: str
    dtype: np.dtype
    order: str
    variable: bool
    shape: tuple
    nranks: int
    chunks: tuple
    positions: dict = field(hash=False)

    def blocks_needed(self) -> frozenset:
        """Ranks whose block must arrive before a step is complete: ranks
        with an empty block send nothing worth waiting for, while a variable
        array's count is only known from the block itself, so all of them."""
        if self.variable:
            return frozenset(range(self.nranks))
        return frozenset(self.positions)


# ---------------------------------------------------------------- messages


def _ranks(ranks):
    """'rank 3', 'ranks 1 and 2', 'ranks 0..3, 7': compact even for thousands."""
    rs = sorted(set(ranks))
    if len(rs) == 1:
        return "rank %d" % rs[0]
    if len(rs) == 2:
        return "ranks %d and %d" % tuple(rs)
    runs = []
    for r in rs:
        if runs and r == runs[-1][1] + 1:
            runs[-1][1] = r
        else:
            runs.append([r, r])
    parts = []
    for a, b in runs:
        if a == b:
            parts.append("%d" % a)
        elif b == a + 1:
            parts.append("%d, %d" % (a, b))
        else:
            parts.append("%d..%d" % (a, b))
    if len(parts) > 8:
        parts = parts[:8] + ["... (%d ranks in all)" % len(rs)]
    return "ranks " + ", ".join(parts)


def _region(start, stop):
    return "[" + ", ".join("%d:%d" % (a, b) for a, b in zip(start, stop)) + "]"


def _index(idx):
    return "(" + ", ".join("%d" % i for i in idx) + ")"


def _fail(name, text):
    raise CatalogError("array %r: %s" % (name, text))


def _disagree(name, what, values):
    """Every group of ranks with its value, the largest group last, so that
    the odd ones out come first."""
    groups = {}
    for rank, v in values.items():
        groups.setdefault(v, []).append(rank)
    if len(groups) < 2:
        return
    order = sorted(groups.items(), key=lambda kv: (len(kv[1]), min(kv[1])))
    show = lambda v: v if isinstance(v, str) else repr(v)  # noqa: E731
    first_ranks, first_v = order[0][1], order[0][0]
    verb = "declares" if len(first_ranks) == 1 else "declare"
    parts = ["%s %s %s%s" % (_ranks(first_ranks), verb, what + " " if what else "", show(first_v))]
    parts += ["%s %s" % (_ranks(rs), show(v)) for v, rs in order[1:]]
    _fail(name, ", ".join(parts))


# ---------------------------------------------------------------- layout


def _as_ints(name, rank, what, values):
    try:
        out = tuple(int(v) for v in values)
    except (TypeError, ValueError):
        _fail(name, "rank %d declares a %s that is not a tuple of integers: %r"
              % (rank, what, values))
    return out


def build_layout(name, decls, nranks):
    """Check the declarations of every rank against each other once, so that
    no step has to, and fix the chunk grid that every step of the array uses.

    decls: rank -> Declaration for ranks 0 .. nranks-1."""
    nranks = int(nranks)
    if nranks < 1:
        _fail(name, "a run needs at least one rank, not %d" % nranks)
    extra = [r for r in decls if not (isinstance(r, numbers.Integral) and 0 <= r < nranks)]
    if extra:
        known = all(isinstance(r, numbers.Integral) for r in extra)
        _fail(name, "declarations from %s, which are not in 0..%d"
              % (_ranks(extra) if known else repr(extra), nranks - 1))
    missing = [r for r in range(nranks) if r not in decls]
    if missing:
        _fail(name, "%s did not declare it (%d of %d ranks did)"
              % (_ranks(missing), nranks - len(missing), nranks))
    wrong = [r for r in range(nranks) if decls[r].rank != r]
    if wrong:
        r = wrong[0]
        _fail(name, "the declaration filed under rank %d says rank %d" % (r, decls[r].rank))

    _disagree(name, "", {r: "a variable-length array" if d.variable else "a fixed array"
                         for r, d in decls.items()})
    dtypes = {r: str(d.dtype) for r, d in decls.items()}
    _disagree(name, "dtype", dtypes)
    try:
        dtype = np.dtype(decls[0].dtype)
    except TypeError:
        _fail(name, "%s declare dtype %r, which NumPy does not know"
              % (_ranks(range(nranks)), decls[0].dtype))
    _disagree(name, "order", {r: str(d.order) for r, d in decls.items()})
    order = str(decls[0].order)
    if order not in ("C", "F"):
        _fail(name, "%s declare order %r, neither 'C' nor 'F'" % (_ranks(range(nranks)), order))
    shapes = {r: _as_ints(name, r, "shape", d.shape) for r, d in decls.items()}
    _disagree(name, "global shape", shapes)
    variable = bool(decls[0].variable)

    if variable:
        if len(shapes[0]) != 1:
            _fail(name, "%s declare a variable array of %d dimensions; it must be 1-D"
                  % (_ranks(range(nranks)), len(shapes[0])))
        # The other fields say nothing of the data (its count comes with each
        # block) but a peer can send anything in them: the one form clients
        # send (start (0,), count (capacity,)) and nothing else.
        for r in range(nranks):
            s = _as_ints(name, r, "start", decls[r].start)
            c = _as_ints(name, r, "count", decls[r].count)
            if shapes[r][0] < 0 or s != (0,) or len(c) != 1 or c[0] < 0:
                _fail(name, "rank %d declares a variable array with global shape %r, start %r "
                      "and capacity %r; a variable array has start (0,) and one capacity "
                      ">= 0" % (r, shapes[r], s, c))
        return Layout(name=name, dtype=dtype, order=order, variable=True, shape=None,
                      nranks=nranks, chunks=None, positions={})
    return _fixed_layout(name, decls, nranks, dtype, order, shapes[0])


def _fixed_layout(name, decls, nranks, dtype, order, shape):
    ndim = len(shape)
    if ndim < 1:
        _fail(name, "%s declare a global shape of no dimensions" % _ranks(range(nranks)))
    if any(n < 0 for n in shape):
        _fail(name, "%s declare a negative global shape %r" % (_ranks(range(nranks)), shape))
    starts, counts = {}, {}
    for r in range(nranks):
        s = _as_ints(name, r, "start", decls[r].start)
        c = _as_ints(name, r, "count", decls[r].count)
        if len(s) != ndim or len(c) != ndim:
            _fail(name, "rank %d declares start %r and count %r for a %d-dimensional shape %r"
                  % (r, s, c, ndim, shape))
        for d in range(ndim):
            if s[d] < 0 or c[d] < 0 or s[d] > shape[d] or c[d] > shape[d] - s[d]:
                _fail(name, "rank %d's block %s is outside the global shape %s in dimension %d"
                      % (r, _region(s, [a + b for a, b in zip(s, c)]), _index(shape), d))
        starts[r], counts[r] = s, c
    total = math.prod(shape)
    if total == 0:
        # Nothing to send: one empty chunk stands for the whole array.
        return Layout(name=name, dtype=dtype, order=order, variable=False, shape=shape,
                      nranks=nranks, chunks=tuple((n,) for n in shape), positions={})
    ranks = [r for r in range(nranks) if all(counts[r])]
    if not ranks:
        _gap(name, nranks, total, (0,) * ndim)
    stops = {r: tuple(a + b for a, b in zip(starts[r], counts[r])) for r in ranks}

    # The grid: cut at every distinct start of a non-empty block.
    cuts = [sorted({starts[r][d] for r in ranks}) for d in range(ndim)]
    where = [{c: i for i, c in enumerate(cs)} for cs in cuts]
    ends = [cs[1:] + [shape[d]] for d, cs in enumerate(cuts)]
    positions, owner, offgrid = {}, {}, None
    for r in ranks:
        pos = tuple(where[d][starts[r][d]] for d in range(ndim))
        bad = [d for d in range(ndim) if stops[r][d] != ends[d][pos[d]]]
        if bad:
            offgrid = offgrid or (r, bad[0], pos[bad[0]])
            continue
        if pos in owner:
            q = owner[pos]
            _fail(name, "ranks %d and %d overlap in %s" % (q, r, _region(starts[r], stops[r])))
        owner[pos] = r
        positions[r] = pos

    if offgrid is None:
        # Every block is one cell, owned once: only holes are left to find.
        ncells = math.prod(len(cs) for cs in cuts)
        if len(owner) < ncells or any(cs[0] for cs in cuts):
            covered = sum(math.prod(counts[r]) for r in ranks)
            if any(cs[0] for cs in cuts):
                example = (0,) * ndim
            else:
                # Among the first len(owner)+1 cells, one is not owned.
                cell = next(p for p in itertools.product(*(range(len(cs)) for cs in cuts))
                            if p not in owner)
                example = tuple(cuts[d][i] for d, i in enumerate(cell))
            _gap(name, nranks, total - covered, example)
        chunks = tuple(tuple(e - c for c, e in zip(cs, es)) for cs, es in zip(cuts, ends))
        return Layout(name=name, dtype=dtype, order=order, variable=False, shape=shape,
                      nranks=nranks, chunks=chunks, positions=positions)

    # Some block spans other than one cell: find out whether the blocks
    # overlap, leave a hole, or tile exactly but not as a grid.
    S = np.array([starts[r] for r in ranks], dtype=np.int64)
    E = np.array([stops[r] for r in ranks], dtype=np.int64)
    _overlaps(name, ranks, S, E)
    covered = sum(math.prod(counts[r]) for r in ranks)
    if covered < total:
        _gap(name, nranks, total - covered, _uncovered(S, E, shape, ranks, counts))
    r, d, i = offgrid
    cut = ends[d][i]
    by = min(q for q in ranks if starts[q][d] == cut)
    _fail(name, "the blocks tile the array exactly but not as a grid, which Dask chunks "
          "must be: rank %d's block %s crosses the cut at %d in dimension %d where rank "
          "%d's block %s starts"
          % (r, _region(starts[r], stops[r]), cut, d, by, _region(starts[by], stops[by])))


def _gap(name, nranks, uncovered, example):
    _fail(name, "%s %s %d element%s uncovered, e.g. index %s"
          % (_ranks(range(nranks)), "leaves" if nranks == 1 else "leave", uncovered,
             "" if uncovered == 1 else "s", _index(example)))


def _overlaps(name, ranks, S, E):
    """Sweep along dimension 0: a block is compared only with the blocks
    still open where it starts (about one slab of the decomposition)."""
    order = np.argsort(S[:, 0], kind="stable")
    active = np.empty(0, dtype=np.int64)
    for i in order:
        active = active[E[active, 0] > S[i, 0]]
        if active.size:
            hit = np.all((S[active] < E[i]) & (S[i] < E[active]), axis=1)
            if hit.any():
                j = int(active[np.argmax(hit)])
                a, b = sorted((i, j))
                lo = np.maximum(S[a], S[b])
                hi = np.minimum(E[a], E[b])
                _fail(name, "ranks %d and %d overlap in %s"
                      % (ranks[a], ranks[b], _region(lo, hi)))
        active = np.append(active, i)


def _uncovered(S, E, shape, ranks, counts):
    """An element no block holds, for blocks that do not overlap but hold
    fewer elements than the shape. Some such element has, in each dimension,
    the coordinate 0 or the stop of a block (walk down from any hole until a
    block is hit), so try those, keeping the slice that still lacks elements."""
    ndim = len(shape)
    idx = np.arange(len(ranks))
    # Volumes of the blocks' trailing dimensions, as Python integers.
    tail = [np.array([math.prod(counts[r][d + 1:]) for r in ranks] + [0], dtype=object)[:-1]
            for d in range(ndim)]
    point = []
    for d in range(ndim):
        need = math.prod(shape[d + 1:])
        cands = sorted({0} | {int(e) for e in E[idx, d] if e < shape[d]})
        for c in cands:
            sel = idx[(S[idx, d] <= c) & (c < E[idx, d])]
            if sum(tail[d][sel]) < need:
                point.append(c)
                idx = sel
                break
        else:  # pragma: no cover - cannot happen for non-overlapping blocks
            raise AssertionError("no uncovered element found")
    return tuple(point)


# ---------------------------------------------------------------- arrays


def _identity(chunk):
    """What makes a chunk itself, for the graph's name: an ObjectRef's id
    (never pickled, never reused), or what Dask's tokenize says of others."""
    if isinstance(chunk, BlockRef):
        return ("block", _identity(chunk.ref), chunk.index)
    ray = sys.modules.get("ray")
    if ray is not None and isinstance(chunk, ray.ObjectRef):
        return ("ray.ObjectRef", chunk.binary())
    return chunk


def _value(chunk):
    """The graph value of a chunk: its object, or the item of its list."""
    if isinstance(chunk, BlockRef):
        return chunk.ref if chunk.index is None else (operator.getitem, chunk.ref, chunk.index)
    return chunk


def _digest(idents):
    """The chunks' identities as one short value for tokenize, which walks
    every nested tuple in Python: at 2,048 blocks that was 40% of building
    the array. Identities of stored blocks are ints and bytes, which pickle
    hashes exactly and fast; anything else (a NumPy chunk) is left to
    tokenize, which hashes an array's data rather than pickling it."""
    if all(_stored(i) or (_kind(i) == "block" and _stored(i[1])) for _, i in idents):
        return hashlib.blake2b(pickle.dumps(idents, protocol=5), digest_size=16).hexdigest()
    return idents


def _kind(ident):
    return ident[0] if isinstance(ident, tuple) and ident and isinstance(ident[0], str) else None


def _stored(ident):
    return _kind(ident) == "ray.ObjectRef"


def _array(name, layout, step, dsk, chunks, ndim, ident):
    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    token = tokenize(layout.name, step, layout.dtype.str, chunks, ident)
    gname = "%s-step%d-%s" % (layout.name, step, token)
    graph = {(gname,) + key: value for key, value in dsk.items()}
    hlg = HighLevelGraph.from_collections(gname, graph, dependencies=())
    meta = np.empty((0,) * ndim, dtype=layout.dtype)
    return da.Array(hlg, gname, chunks, dtype=layout.dtype, meta=meta)


def _check_chunk(layout, step, rank, chunk, shape):
    """A NumPy chunk of the wrong shape or dtype would only fail (or worse,
    broadcast) deep inside a computation; an ObjectRef cannot be checked
    without fetching it."""
    if isinstance(chunk, np.ndarray):
        if chunk.shape != tuple(shape) or chunk.dtype != layout.dtype:
            _fail(layout.name, "step %d: rank %d's block is %s %r, the layout expects %s %r"
                  % (step, rank, chunk.dtype, chunk.shape, layout.dtype, tuple(shape)))


def global_array(layout, chunks, step, counts=None, token=None):
    """A Dask array of one step whose chunks are the ranks' blocks as they
    are (nothing copied, nothing computed), so work runs next to the data.

    chunks: rank -> block (BlockRef, ray.ObjectRef or NumPy array); blocks
    of ranks that the layout does not need (empty ones) are ignored.
    counts: rank -> elements of the rank's block this step, for a variable
    array whose chunks are ObjectRefs (a BlockRef has its count, a NumPy
    chunk its length); a rank absent from counts has no elements this step.
    token: a string that names these blocks, unique to them, for the
    graph's name (the driver has one per step); without it each chunk's
    identity is hashed."""
    step = int(step)
    if layout.variable:
        return _variable_array(layout, chunks, step, counts, token)
    ndim = len(layout.shape)
    missing = [r for r in layout.positions if r not in chunks]
    if missing:
        _fail(layout.name, "step %d: no block from %s" % (step, _ranks(missing)))
    dsk = {}
    idents = []
    if not layout.positions:
        dsk[(0,) * ndim] = np.empty(layout.shape, dtype=layout.dtype, order=layout.order)
    for r in sorted(layout.positions):
        pos = layout.positions[r]
        chunk = chunks[r]
        if isinstance(chunk, np.ndarray):  # a stored block cannot be checked here
            _check_chunk(layout, step, r, chunk, [layout.chunks[d][i] for d, i in enumerate(pos)])
        dsk[pos] = _value(chunk)
        if token is None:
            idents.append((r, _identity(chunk)))
    ident = token if token is not None else _digest(idents)
    return _array(layout.name, layout, step, dsk, layout.chunks, ndim, ident)


def _variable_array(layout, chunks, step, counts, token=None):
    if counts is None:
        counts = {}
        for r, c in chunks.items():
            if isinstance(c, BlockRef):  # before len(): a BlockRef is a tuple
                counts[r] = c.count
                continue
            if not hasattr(c, "__len__"):
                _fail(layout.name, "step %d: rank %d's block has no length (an ObjectRef?); "
                      "pass counts for a variable array" % (step, r))
            counts[r] = len(c)
    negative = [r for r, n in counts.items() if int(n) < 0]
    if negative:
        _fail(layout.name, "step %d: negative element counts from %s" % (step, _ranks(negative)))
    ranks = [r for r in range(layout.nranks) if int(counts.get(r, 0)) > 0]
    missing = [r for r in ranks if r not in chunks]
    if missing:
        _fail(layout.name, "step %d: no block from %s, which count elements"
              % (step, _ranks(missing)))
    dsk = {}
    idents = []
    for i, r in enumerate(ranks):
        _check_chunk(layout, step, r, chunks[r], [int(counts[r])])
        dsk[(i,)] = _value(chunks[r])
        if token is None:
            idents.append((r, _identity(chunks[r])))
    if ranks:
        sizes = (tuple(int(counts[r]) for r in ranks),)
    else:
        sizes = ((0,),)
        dsk[(0,)] = np.empty(0, dtype=layout.dtype)
    ident = token if token is not None else _digest(idents)
    return _array(layout.name, layout, step, dsk, sizes, 1, ident)
