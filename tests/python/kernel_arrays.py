"""Global arrays cut into random decompositions and put in a real Ray, as
`caudal run` hands them to the analytics, for the kernel tests."""

import itertools

import numpy as np
from hypothesis import strategies as st

from caudal.blocks import step_array
from caudal.catalog import BlockRef, Declaration, build_layout

REAL_DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
               "float32", "float64"]


@st.composite
def decompositions(draw, min_dims=1, max_dims=3, min_side=1, max_side=9):
    """(shape, cuts per axis, order, rank permutation seed, empty ranks)."""
    ndim = draw(st.integers(min_dims, max_dims))
    shape = tuple(draw(st.integers(min_side, max_side)) for _ in range(ndim))
    cuts = tuple(tuple(sorted(draw(st.sets(st.integers(1, n - 1), max_size=3)) if n > 1 else ()))
                 for n in shape)
    order = draw(st.sampled_from("CF"))
    seed = draw(st.integers(0, 2**32 - 1))
    empty = draw(st.integers(0, 1))
    return shape, cuts, order, seed, empty


def values(shape, dtype, seed, nan_fraction=0.0):
    """Random values of dtype that stay in every dtype's range."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        a = (rng.standard_normal(shape) * 10).astype(dt)
        if nan_fraction:
            a[rng.random(shape) < nan_fraction] = np.nan
        return a
    lo = -50 if dt.kind == "i" else 0
    return rng.integers(lo, lo + 100, size=shape).astype(dt)


def blocks_of(shape, cuts):
    edges = [(0,) + c + (n,) for n, c in zip(shape, cuts)]
    for cell in itertools.product(*[range(len(e) - 1) for e in edges]):
        start = tuple(edges[d][i] for d, i in enumerate(cell))
        stop = tuple(edges[d][i + 1] for d, i in enumerate(cell))
        yield start, tuple(b - a for a, b in zip(start, stop))


def distribute(ray, g, cuts, order="C", seed=0, empty=0, step=7, name="f", node_of=None,
               put=None, batched=None):
    """g cut at `cuts` into blocks, each put in Ray by a rank (ranks in a
    random order, plus `empty` ranks with no elements): the StepArray the
    driver would make. node_of(rank) -> node id; put(rank, block) -> ref.
    batched: all blocks in one list object (a BlockRef's index), as the
    ingest puts a node's step; None: for odd seeds, so that property tests
    see both."""
    if batched is None:
        batched = put is None and seed % 2 == 1
    parts = []
    blocks = list(blocks_of(g.shape, cuts))
    rng = np.random.default_rng(seed)
    ranks = rng.permutation(len(blocks) + empty).tolist()
    here = ray.get_runtime_context().get_node_id()
    node_of = node_of or (lambda r: here)
    put = put or (lambda r, b: ray.put(b))
    decls, refs, counts = {}, {}, {}
    for i, r in enumerate(ranks):
        if i < len(blocks):
            start, count = blocks[i]
        else:
            start, count = (0,) * g.ndim, (0,) * g.ndim
        decls[r] = Declaration(r, g.dtype.name, order, False, g.shape, start, count)
        if all(count):
            region = tuple(slice(s, s + c) for s, c in zip(start, count))
            b = np.asfortranarray(g[region]) if order == "F" else np.ascontiguousarray(g[region])
            if batched:
                refs[r] = len(parts)
                parts.append(b)
            else:
                refs[r] = put(r, b)
            counts[r] = b.size
    if batched:
        one = ray.put(parts)
        blocks = {r: BlockRef(name, step, r, counts[r], one, i, node_of(r))
                  for r, i in refs.items()}
    else:
        blocks = {r: BlockRef(name, step, r, counts[r], ref, None, node_of(r))
                  for r, ref in refs.items()}
    layout = build_layout(name, decls, len(ranks))
    return step_array(layout, blocks, step)


def distribute_variable(ray, parts, step=3, name="p"):
    """A variable-length 1-D array: rank r holds parts[r]."""
    decls = {r: Declaration(r, parts[0].dtype.name, "C", True, (0,), (0,), (64,))
             for r in range(len(parts))}
    layout = build_layout(name, decls, len(parts))
    here = ray.get_runtime_context().get_node_id()
    blocks = {r: BlockRef(name, step, r, len(p), ray.put(p), None, here)
              for r, p in enumerate(parts) if len(p)}
    return step_array(layout, blocks, step)
