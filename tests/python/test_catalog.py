"""The catalog: declarations -> global layout -> Dask array of one step.

Random rectilinear decompositions must round-trip exactly (bytes compared,
so NaNs and signed zeros count); every broken decomposition must be refused
with a CatalogError naming the array and the ranks concerned. One test runs
a real local Ray to check that inlined ObjectRefs compute with
ray_dask_get. No MPI, no sockets."""

import itertools
import re
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import caudal
from caudal.catalog import (BlockRef, CatalogError, Declaration, Layout, build_layout,
                            global_array)

DTYPES = ["int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
          "float32", "float64", "complex64", "complex128"]

FAST = settings(deadline=None, max_examples=120,
                suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------- helpers


def decl(rank, start, count, shape, dtype="float64", order="C"):
    return Declaration(rank=rank, dtype=dtype, order=order, variable=False,
                       shape=tuple(shape), start=tuple(start), count=tuple(count))


def decls_of(shape, blocks, **kw):
    """blocks: list of (start, count), rank = position in the list."""
    return {r: decl(r, s, c, shape, **kw) for r, (s, c) in enumerate(blocks)}


def refused(name, shape, blocks, **kw):
    with pytest.raises(CatalogError) as ei:
        build_layout(name, decls_of(shape, blocks, **kw), len(blocks))
    msg = str(ei.value)
    assert ("array %r" % name) in msg, msg
    return msg


def index_in(msg):
    m = re.search(r"index \(([0-9, ]*)\)", msg)
    assert m, msg
    return tuple(int(x) for x in m.group(1).split(","))


def uint8(a):
    return np.ascontiguousarray(a).view(np.uint8)


def same(a, b):
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(uint8(a), uint8(b))


# ---------------------------------------------------------------- random tilings


@st.composite
def tilings(draw):
    """A random rectilinear grid (cells of size 0 allowed), cells dealt to
    ranks by a permutation, plus ranks with empty blocks."""
    ndim = draw(st.integers(1, 4))
    sizes = [draw(st.lists(st.integers(0, 3), min_size=1, max_size=3)) for _ in range(ndim)]
    offsets = [list(itertools.accumulate([0] + s[:-1])) for s in sizes]
    shape = tuple(sum(s) for s in sizes)
    cells = list(itertools.product(*(range(len(s)) for s in sizes)))
    nextra = draw(st.integers(0, 3))
    nranks = len(cells) + nextra
    perm = draw(st.permutations(range(nranks)))
    blocks = {}
    for rank, cell in zip(perm, cells):
        blocks[rank] = (tuple(offsets[d][i] for d, i in enumerate(cell)),
                        tuple(sizes[d][i] for d, i in enumerate(cell)), cell)
    for rank in perm[len(cells):]:
        zero = draw(st.integers(0, ndim - 1))
        start, count = [], []
        for d in range(ndim):
            s = draw(st.integers(0, shape[d]))
            start.append(s)
            count.append(0 if d == zero else draw(st.integers(0, shape[d] - s)))
        blocks[rank] = (tuple(start), tuple(count), None)
    dtype = draw(st.sampled_from(DTYPES))
    order = draw(st.sampled_from("CF"))
    seed = draw(st.integers(0, 2**32 - 1))
    return dict(sizes=sizes, shape=shape, blocks=blocks, nranks=nranks, dtype=dtype,
                order=order, seed=seed)


def tiling_decls(t, name="field"):
    return {r: decl(r, s, c, t["shape"], t["dtype"], t["order"])
            for r, (s, c, _) in t["blocks"].items()}


def random_global(t):
    dtype = np.dtype(t["dtype"])
    rng = np.random.default_rng(t["seed"])
    n = int(np.prod(t["shape"], dtype=np.int64))
    raw = rng.integers(0, 256, size=n * dtype.itemsize, dtype=np.uint8)
    return raw.view(dtype).reshape(t["shape"])


def block_of(g, start, count, order):
    view = g[tuple(slice(s, s + c) for s, c in zip(start, count))]
    return view.copy(order=order)


def nonempty(count):
    return all(count)


@given(tilings(), st.booleans())
@FAST
def test_random_rectilinear_tiling_round_trips(t, send_empty):
    layout = build_layout("field", tiling_decls(t), t["nranks"])
    shape, sizes = t["shape"], t["sizes"]
    total = int(np.prod(shape))
    assert layout.shape == shape and layout.nranks == t["nranks"]
    assert layout.dtype == np.dtype(t["dtype"]) and layout.order == t["order"]
    assert not layout.variable

    if total == 0:
        want_chunks = tuple((n,) for n in shape)
        want_pos = {}
    else:
        want_chunks = tuple(tuple(x for x in s if x) for s in sizes)
        skip = [[sum(1 for x in s[:i] if x) for i in range(len(s))] for s in sizes]
        want_pos = {r: tuple(skip[d][i] for d, i in enumerate(cell))
                    for r, (_, c, cell) in t["blocks"].items() if nonempty(c)}
    assert layout.chunks == want_chunks
    assert layout.positions == want_pos
    assert layout.blocks_needed() == frozenset(want_pos)

    g = random_global(t)
    chunks = {}
    for r, (s, c, _) in t["blocks"].items():
        if nonempty(c) or send_empty:
            chunks[r] = block_of(g, s, c, t["order"])
            if nonempty(c) and t["order"] == "F":
                assert chunks[r].flags.f_contiguous
    a = global_array(layout, chunks, 7)
    assert a.chunks == want_chunks
    assert a.dtype == g.dtype and type(a._meta) is np.ndarray
    assert "field" in a.name and "7" in a.name
    out = a.compute()
    assert same(out, g)


@given(tilings(), st.data())
@FAST
def test_hole_is_found_with_an_uncovered_index(t, data):
    full = [r for r, (_, c, _) in t["blocks"].items() if nonempty(c)]
    if not full:
        return
    victim = data.draw(st.sampled_from(sorted(full)))
    start, count, _ = t["blocks"][victim]
    shrink = data.draw(st.booleans()) and max(count) > 1
    decls = tiling_decls(t)
    if shrink:
        # Give up the last slab along one dimension: off the grid, general path.
        d = data.draw(st.sampled_from([d for d in range(len(count)) if count[d] > 1]))
        new = list(count)
        new[d] -= 1
        hole = (start[:d] + (start[d] + new[d],) + start[d + 1:],
                count[:d] + (1,) + count[d + 1:])
        decls[victim] = decl(victim, start, new, t["shape"], t["dtype"], t["order"])
    else:
        hole = (start, count)
        decls[victim] = decl(victim, start, (0,) * len(count), t["shape"], t["dtype"],
                             t["order"])
    with pytest.raises(CatalogError) as ei:
        build_layout("field", decls, t["nranks"])
    msg = str(ei.value)
    assert "'field'" in msg and "uncovered" in msg, msg
    n = int(np.prod(hole[1]))
    assert re.search(r"leaves? %d elements? uncovered" % n, msg), msg
    assert ("ranks 0..%d" % (t["nranks"] - 1) in msg or t["nranks"] <= 2), msg
    idx = index_in(msg)
    assert all(s <= i < s + c for i, s, c in zip(idx, *hole)), (msg, hole)


@given(tilings(), st.data())
@FAST
def test_overlap_names_both_ranks_and_the_region(t, data):
    full = sorted(r for r, (_, c, _) in t["blocks"].items() if nonempty(c))
    if not full:
        return
    r = data.draw(st.sampled_from(full))
    start, count, cell = t["blocks"][r]
    decls = tiling_decls(t)
    # Either a new rank declares the same block, or r grows into a neighbour.
    neighbours = []
    for d, sz in enumerate(t["sizes"]):
        nxt = [i for i in range(cell[d] + 1, len(sz)) if sz[i]]
        if nxt:
            neighbours.append((d, nxt[0]))
    if neighbours and data.draw(st.booleans()):
        d, i = data.draw(st.sampled_from(neighbours))
        other_cell = cell[:d] + (i,) + cell[d + 1:]
        other = next(q for q, (_, _, c) in t["blocks"].items() if c == other_cell)
        grown = count[:d] + (count[d] + 1,) + count[d + 1:]
        decls[r] = decl(r, start, grown, t["shape"], t["dtype"], t["order"])
        o_start = t["blocks"][other][0]
        region = [(start[k], start[k] + count[k]) for k in range(len(count))]
        region[d] = (o_start[d], o_start[d] + 1)
        nranks = t["nranks"]
    else:
        other = t["nranks"]
        decls[other] = decl(other, start, count, t["shape"], t["dtype"], t["order"])
        region = [(s, s + c) for s, c in zip(start, count)]
        nranks = t["nranks"] + 1
    with pytest.raises(CatalogError) as ei:
        build_layout("field", decls, nranks)
    msg = str(ei.value)
    a, b = sorted((r, other))
    assert msg == "array 'field': ranks %d and %d overlap in [%s]" % (
        a, b, ", ".join("%d:%d" % x for x in region)), msg


@st.composite
def arbitrary_blocks(draw):
    """Guillotine tilings (exact, often not a grid), then maybe one block
    grown, shrunk or moved: every verdict occurs."""
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.integers(1, 5)) for _ in range(ndim))
    boxes = [((0,) * ndim, shape)]
    for _ in range(draw(st.integers(0, 6))):
        k = draw(st.integers(0, len(boxes) - 1))
        start, count = boxes[k]
        d = draw(st.integers(0, ndim - 1))
        if count[d] < 2:
            continue
        cut = draw(st.integers(1, count[d] - 1))
        boxes[k] = (start, count[:d] + (cut,) + count[d + 1:])
        boxes.append((start[:d] + (start[d] + cut,) + start[d + 1:],
                      count[:d] + (count[d] - cut,) + count[d + 1:]))
    boxes = draw(st.permutations(boxes))
    if draw(st.booleans()):
        k = draw(st.integers(0, len(boxes) - 1))
        start = tuple(draw(st.integers(0, n - 1)) for n in shape)
        count = tuple(draw(st.integers(1, n - s)) for s, n in zip(start, shape))
        boxes[k] = (start, count)
    return shape, boxes


@given(arbitrary_blocks())
@FAST
def test_verdicts_match_brute_force(case):
    shape, boxes = case
    cover = np.zeros(shape, dtype=np.int64)
    for s, c in boxes:
        cover[tuple(slice(a, a + b) for a, b in zip(s, c))] += 1
    cells = np.prod([len({s[d] for s, _ in boxes}) for d in range(len(shape))])
    decls = decls_of(shape, boxes)
    try:
        layout = build_layout("b", decls, len(boxes))
    except CatalogError as e:
        msg = str(e)
    else:
        assert (cover == 1).all() and cells == len(boxes)
        g = np.arange(cover.size, dtype=np.float64).reshape(shape)
        a = global_array(layout, {r: block_of(g, s, c, "C") for r, (s, c) in enumerate(boxes)}, 0)
        assert same(a.compute(), g)
        event("accepted")
        return
    event("overlap" if "overlap" in msg else "gap" if "uncovered" in msg else "not a grid")
    if (cover > 1).any():
        m = re.fullmatch(r"array 'b': ranks (\d+) and (\d+) overlap in \[(.*)\]", msg)
        assert m, msg
        ra, rb = int(m.group(1)), int(m.group(2))
        region = [tuple(map(int, x.split(":"))) for x in m.group(3).split(", ")]
        for r in (ra, rb):
            s, c = boxes[r]
            assert all(a <= lo < hi <= a + b for (lo, hi), a, b in zip(region, s, c)), msg
        assert ra < rb
    elif (cover == 0).any():
        assert "leave %d element" % (cover == 0).sum() in msg or len(boxes) == 1, msg
        assert cover[index_in(msg)] == 0, msg
    else:
        assert cells > len(boxes)
        m = re.search(r"rank (\d+)'s block .* crosses the cut at (\d+) in dimension (\d+) "
                      r"where rank (\d+)'s block", msg)
        assert m, msg
        r, cut, d, by = map(int, m.groups())
        assert boxes[r][0][d] < cut < boxes[r][0][d] + boxes[r][1][d], msg
        assert boxes[by][0][d] == cut, msg


# ---------------------------------------------------------------- fixed examples


def test_layout_of_a_2d_decomposition_with_empty_ranks():
    shape = (8, 6)
    blocks = [((4, 0), (4, 3)), ((0, 0), (4, 3)), ((2, 6), (3, 0)), ((0, 3), (4, 3)),
              ((4, 3), (4, 3)), ((8, 0), (0, 0))]
    layout = build_layout("t", decls_of(shape, blocks, order="F"), 6)
    assert isinstance(layout, Layout)
    assert layout.chunks == ((4, 4), (3, 3))
    assert layout.positions == {0: (1, 0), 1: (0, 0), 3: (0, 1), 4: (1, 1)}
    assert layout.blocks_needed() == frozenset({0, 1, 3, 4})
    g = np.arange(48.0).reshape(shape)
    chunks = {r: np.asfortranarray(g[s[0]:s[0] + c[0], s[1]:s[1] + c[1]])
              for r, (s, c) in enumerate(blocks) if all(c)}
    a = global_array(layout, chunks, 3)
    assert same(a.compute(), g)
    assert a.mean().compute() == g.mean()
    assert same((a[3:6, 2:5] * 2).sum(axis=0).compute(), (g[3:6, 2:5] * 2).sum(axis=0))


def test_zero_size_array_needs_no_block():
    layout = build_layout("z", decls_of((0, 5), [((0, 0), (0, 5)), ((0, 2), (0, 3))]), 2)
    assert layout.blocks_needed() == frozenset()
    assert layout.chunks == ((0,), (5,))
    a = global_array(layout, {}, 0)
    assert a.shape == (0, 5) and a.compute().shape == (0, 5)


def test_graph_names_are_unique_per_step_and_chunks():
    layout = build_layout("t", decls_of((4,), [((0,), (2,)), ((2,), (2,))]), 2)
    x = {0: np.arange(2.0), 1: np.arange(2.0, 4.0)}
    y = {0: np.arange(2.0) * 10, 1: np.arange(2.0, 4.0) * 10}
    a0, a1, b0 = global_array(layout, x, 0), global_array(layout, x, 1), global_array(layout, y, 0)
    assert len({a0.name, a1.name, b0.name}) == 3
    assert a0.name.startswith("t-step0-") and a1.name.startswith("t-step1-")
    assert global_array(layout, x, 0).name == a0.name  # deterministic
    assert same((b0 - a0).compute(), np.arange(4.0) * 9)


def test_building_the_array_touches_no_chunk():
    """The dtype and meta come from the layout, so chunks that are not
    arrays at all (like ObjectRefs) are never looked into before compute."""
    layout = build_layout("t", decls_of((4,), [((0,), (2,)), ((2,), (2,))], dtype="int16"), 2)
    a = global_array(layout, {0: object(), 1: object()}, 5)
    assert a.dtype == np.int16 and a.shape == (4,) and a._meta.dtype == np.int16
    assert (a + 1).dtype == np.int16


def test_declaration_from_array_info():
    info = caudal.ArrayInfo(("t", "float32", "F", False, (8, 6), (4, 0), (4, 6)))
    d = Declaration.from_info(2, info)
    assert d == Declaration(2, "float32", "F", False, (8, 6), (4, 0), (4, 6), name="t")


# ---------------------------------------------------------------- variable arrays


@given(st.lists(st.integers(0, 5), min_size=1, max_size=7), st.sampled_from(DTYPES),
       st.booleans(), st.integers(0, 2**32 - 1))
@FAST
def test_variable_array_concatenates_in_rank_order(counts, dtype, pass_counts, seed):
    n = len(counts)
    decls = {r: Declaration(r, dtype, "C", True, (0,), (0,), (r * 3,)) for r in range(n)}
    layout = build_layout("particles", decls, n)
    assert layout.variable and layout.chunks is None and layout.shape is None
    assert layout.blocks_needed() == frozenset(range(n))
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    blocks = [rng.integers(0, 256, size=c * dt.itemsize, dtype=np.uint8).view(dt)
              for c in counts]
    chunks = {r: b for r, b in enumerate(blocks)}
    a = global_array(layout, chunks, 4, dict(enumerate(counts)) if pass_counts else None)
    want_chunks = tuple(c for c in counts if c) or (0,)
    assert a.chunks == (want_chunks,)
    assert a.dtype == dt
    assert same(a.compute(), np.concatenate(blocks))


def test_variable_array_rank_without_a_count_has_no_elements():
    decls = {r: Declaration(r, "float32", "C", True, (0,), (0,), (10,)) for r in range(3)}
    layout = build_layout("p", decls, 3)
    a = global_array(layout, {0: np.ones(3, np.float32), 2: np.zeros(2, np.float32)}, 1,
                      {0: 3, 2: 2})
    assert a.chunks == ((3, 2),)
    assert same(a.compute(), np.array([1, 1, 1, 0, 0], np.float32))


def test_variable_array_errors():
    decls = {r: Declaration(r, "float32", "C", True, (0,), (0,), (10,)) for r in range(3)}
    layout = build_layout("p", decls, 3)
    with pytest.raises(CatalogError, match=r"array 'p': step 2: no block from rank 1, "):
        global_array(layout, {0: np.ones(3, np.float32)}, 2, {0: 3, 1: 4, 2: 0})
    with pytest.raises(CatalogError, match=r"array 'p': step 2: rank 0's block has no length"):
        global_array(layout, {0: object()}, 2)
    with pytest.raises(CatalogError, match=r"array 'p': step 2: rank 1's block is float32 "):
        global_array(layout, {1: np.ones(3, np.float32)}, 2, {1: 4})
    bad = dict(decls)
    bad[1] = Declaration(1, "float32", "C", True, (0, 0), (0, 0), (10, 1))
    with pytest.raises(CatalogError, match=r"array 'p': rank 1 declares global shape"):
        build_layout("p", bad, 3)


@pytest.mark.parametrize("start,count", [((3,), (10,)), ((0,), (-1,)), ((0,), (10, 2)),
                                         ((0, 0), (10,)), ((0,), ()), (("x",), (10,))])
def test_variable_declaration_fields_are_checked(start, count):
    """A variable array's start and capacity carry no data, but a peer can
    send anything there: only start (0,) and one capacity >= 0 pass."""
    decls = {r: Declaration(r, "float32", "C", True, (0,), (0,), (r,)) for r in range(3)}
    assert build_layout("p", decls, 3).variable  # capacities may differ between ranks
    decls[2] = Declaration(2, "float32", "C", True, (0,), start, count)
    with pytest.raises(CatalogError, match=r"^array 'p': rank 2 declares a "):
        build_layout("p", decls, 3)


# ---------------------------------------------------------------- errors


def test_overlap():
    msg = refused("temperature", (4, 6), [((0, 0), (4, 4)), ((0, 3), (4, 3))])
    assert msg == "array 'temperature': ranks 0 and 1 overlap in [0:4, 3:4]"
    # Identical cells of the grid (fast path).
    msg = refused("t", (4,), [((0,), (2,)), ((2,), (2,)), ((2,), (2,))])
    assert msg == "array 't': ranks 1 and 2 overlap in [2:4]"


def test_gap():
    msg = refused("t", (2, 2), [((0, 0), (2, 1)), ((0, 1), (1, 1))])
    assert msg == "array 't': ranks 0 and 1 leave 1 element uncovered, e.g. index (1, 1)"
    msg = refused("t", (4, 4), [((1, 0), (1, 2)), ((2, 0), (2, 2)), ((0, 2), (2, 2)),
                                ((2, 2), (2, 2))])
    assert msg == "array 't': ranks 0..3 leave 2 elements uncovered, e.g. index (0, 0)"
    msg = refused("t", (10,), [((0,), (3,)), ((5,), (5,))])
    assert msg == "array 't': ranks 0 and 1 leave 2 elements uncovered, e.g. index (3)"


def test_exact_but_not_rectilinear():
    msg = refused("t", (2, 3), [((0, 0), (1, 2)), ((0, 2), (1, 1)), ((1, 0), (1, 1)),
                                ((1, 1), (1, 2))])
    assert "tile the array exactly but not as a grid" in msg, msg
    assert "rank 0's block [0:1, 0:2] crosses the cut at 1 in dimension 1" in msg, msg
    assert "rank 3's block [1:2, 1:3]" in msg, msg
    # A block spanning two rows of a grid that the others cut.
    msg = refused("t", (2, 2), [((0, 0), (2, 1)), ((0, 1), (1, 1)), ((1, 1), (1, 1))])
    assert "not as a grid" in msg and "rank 0's block [0:2, 0:1]" in msg, msg
    assert "rank 2's block [1:2, 1:2]" in msg, msg


def test_dtype_order_shape_and_kind_must_agree():
    blocks = [((0,), (2,)), ((2,), (2,)), ((4,), (2,)), ((6,), (2,))]
    d = decls_of((8,), blocks)
    d[3] = decl(3, (6,), (2,), (8,), dtype="float32")
    with pytest.raises(CatalogError) as ei:
        build_layout("t", d, 4)
    assert str(ei.value) == "array 't': rank 3 declares dtype float32, ranks 0..2 float64"
    d = decls_of((8,), blocks)
    d[1] = decl(1, (2,), (2,), (8,), order="F")
    with pytest.raises(CatalogError,
                       match=r"^array 't': rank 1 declares order F, ranks 0, 2, 3 C$"):
        build_layout("t", d, 4)
    d = decls_of((8,), blocks)
    d[0] = decl(0, (0,), (2,), (9,))
    d[2] = decl(2, (4,), (2,), (9,))
    with pytest.raises(CatalogError, match=r"^array 't': ranks 0 and 2 declare global shape "
                                           r"\(9,\), ranks 1 and 3 \(8,\)$"):
        build_layout("t", d, 4)
    d = decls_of((8,), blocks)
    d[2] = Declaration(2, "float64", "C", True, (0,), (0,), (5,))
    with pytest.raises(CatalogError, match=r"^array 't': rank 2 declares a variable-length "
                                           r"array, ranks 0, 1, 3 a fixed array$"):
        build_layout("t", d, 4)
    d = decls_of((8,), blocks, dtype="float7")
    with pytest.raises(CatalogError, match=r"array 't': ranks 0..3 declare dtype 'float7'"):
        build_layout("t", d, 4)


def test_missing_and_unknown_ranks():
    blocks = [((0,), (2,)), ((2,), (2,)), ((4,), (2,)), ((6,), (2,))]
    d = decls_of((8,), blocks)
    del d[1], d[2]
    with pytest.raises(CatalogError, match=r"^array 't': ranks 1 and 2 did not declare it "
                                           r"\(2 of 4 ranks did\)$"):
        build_layout("t", d, 4)
    d = decls_of((8,), blocks)
    with pytest.raises(CatalogError, match=r"^array 't': declarations from rank 3, which "
                                           r"are not in 0..2$"):
        build_layout("t", d, 3)
    d = decls_of((8,), blocks)
    d[2] = decl(1, (4,), (2,), (8,))
    with pytest.raises(CatalogError, match=r"filed under rank 2 says rank 1"):
        build_layout("t", d, 4)


def test_block_outside_the_shape():
    msg = refused("t", (4, 4), [((0, 0), (2, 4)), ((2, 0), (3, 4))])
    assert msg == ("array 't': rank 1's block [2:5, 0:4] is outside the global shape "
                   "(4, 4) in dimension 0")
    msg = refused("t", (4,), [((0,), (4,)), ((5,), (0,))])
    assert "rank 1's block [5:5] is outside" in msg, msg
    msg = refused("t", (4, 4), [((0, 0), (4, 4)), ((0,), (4,))])
    assert "rank 1 declares start (0,) and count (4,) for a 2-dimensional shape" in msg, msg


def test_missing_block_and_wrong_chunk_at_a_step():
    layout = build_layout("t", decls_of((4,), [((0,), (2,)), ((2,), (2,))]), 2)
    with pytest.raises(CatalogError, match=r"^array 't': step 9: no block from rank 1$"):
        global_array(layout, {0: np.zeros(2)}, 9)
    with pytest.raises(CatalogError, match=r"array 't': step 9: rank 1's block is float64 "
                                           r"\(3,\), the layout expects float64 \(2,\)"):
        global_array(layout, {0: np.zeros(2), 1: np.zeros(3)}, 9)


def test_rank_lists_stay_short():
    from caudal.catalog import _ranks

    assert _ranks([3]) == "rank 3"
    assert _ranks([2, 1]) == "ranks 1 and 2"
    assert _ranks(range(4096)) == "ranks 0..4095"
    assert _ranks([0, 1, 2, 3, 5, 7, 8, 10, 11, 12]) == "ranks 0..3, 5, 7, 8, 10..12"
    many = _ranks(range(0, 200, 2))
    assert many.startswith("ranks 0, 2, 4, ") and many.endswith("... (100 ranks in all)")


def test_other_declaration_errors():
    decls = {r: Declaration(r, "float32", "C", True, (0, 0), (0, 0), (10, 1)) for r in range(2)}
    with pytest.raises(CatalogError, match=r"^array 'p': ranks 0 and 1 declare a variable "
                                           r"array of 2 dimensions; it must be 1-D$"):
        build_layout("p", decls, 2)
    with pytest.raises(CatalogError, match=r"^array 't': rank 1's block \[2:1\] is outside"):
        build_layout("t", decls_of((4,), [((0,), (2,)), ((2,), (-1,))]), 2)
    with pytest.raises(CatalogError, match=r"^array 't': rank 0 declares a start that is not"):
        build_layout("t", decls_of((4,), [(("a",), (2,))]), 1)
    with pytest.raises(CatalogError, match=r"^array 't': ranks 0 and 1 declare order 'X'"):
        build_layout("t", decls_of((4,), [((0,), (2,)), ((2,), (2,))], order="X"), 2)
    with pytest.raises(CatalogError, match=r"^array 't': rank 0 leaves 4 elements uncovered, "
                                           r"e.g. index \(0\)$"):
        build_layout("t", decls_of((4,), [((1,), (0,))]), 1)


# ---------------------------------------------------------------- scale


def grid_blocks(p, q, h, w):
    return [((i * h, j * w), (h, w)) for i in range(p) for j in range(q)]


def test_thousands_of_ranks_are_fast():
    blocks = grid_blocks(64, 64, 3, 5)
    t0 = time.perf_counter()
    layout = build_layout("big", decls_of((192, 320), blocks), len(blocks))
    assert time.perf_counter() - t0 < 2.0
    assert layout.chunks == ((3,) * 64, (5,) * 64)
    assert len(layout.blocks_needed()) == 4096

    # A brick wall: exact, not a grid; every check goes the general way.
    bricks = []
    for i in range(64):
        cuts = sorted({0, 256} | {(i % 2) * 2 + 4 * k for k in range(64)})
        bricks += [((i, a), (1, b - a)) for a, b in zip(cuts, cuts[1:])]
    t0 = time.perf_counter()
    msg = refused("wall", (64, 256), bricks)
    assert time.perf_counter() - t0 < 5.0
    assert "not as a grid" in msg, msg
    # One brick too long: an overlap between neighbours in a row.
    s, c = bricks[70]
    long = list(bricks)
    long[70] = (s, (1, c[1] + 1))
    msg = refused("wall", (64, 256), long)
    assert msg.startswith("array 'wall': ranks 70 and 71 overlap in [1:2, "), msg
    # One brick too short: a hole.
    short = list(bricks)
    short[70] = (s, (1, c[1] - 1))
    msg = refused("wall", (64, 256), short)
    assert "leave 1 element uncovered, e.g. index (1, %d)" % (s[1] + c[1] - 1) in msg, msg


# ---------------------------------------------------------------- Ray


@pytest.fixture(scope="module")
def ray_local():
    import ray  # a missing Ray fails this test, it does not skip it

    ray.init(num_cpus=1, include_dashboard=False, _temp_dir="/tmp/ray-cat")
    try:
        yield ray
    finally:
        ray.shutdown()


def test_object_refs_compute_on_ray(ray_local):
    ray = ray_local
    from ray.util.dask import ray_dask_get

    shape = (6, 5)
    blocks = [((0, 0), (4, 2)), ((0, 2), (4, 3)), ((4, 0), (2, 2)), ((4, 2), (2, 3)),
              ((6, 0), (0, 5))]
    layout = build_layout("t", decls_of(shape, blocks, order="F"), 5)
    g = np.random.default_rng(1).standard_normal(shape)
    refs = {r: ray.put(np.asfortranarray(g[s[0]:s[0] + c[0], s[1]:s[1] + c[1]]))
            for r, (s, c) in enumerate(blocks) if all(c)}
    a = global_array(layout, refs, 11)
    assert same(a.compute(scheduler=ray_dask_get), g)
    assert np.isclose(a.mean().compute(scheduler=ray_dask_get), g.mean())
    assert same(a.blocks[1, 0].compute(scheduler=ray_dask_get), g[4:6, 0:2])
    # Blocks as items of one list object (BlockRef.index), as the ingest puts them.
    order = sorted(refs)
    one = ray.put([np.asfortranarray(g[s[0]:s[0] + c[0], s[1]:s[1] + c[1]])
                   for r, (s, c) in enumerate(blocks) if r in refs])
    b = global_array(layout, {r: BlockRef("t", 11, r, int(np.prod(blocks[r][1])), one, i)
                              for i, r in enumerate(order)}, 11)
    assert same(b.compute(scheduler=ray_dask_get), g)
    assert same(b.blocks[1, 1].compute(scheduler=ray_dask_get), g[4:6, 2:5])
    # A persisted array has ObjectRefs as graph values too.
    p = a.persist(scheduler=ray_dask_get, ray_persist=True)
    assert np.isclose(p.sum().compute(scheduler=ray_dask_get), g.sum())

    decls = {r: Declaration(r, "int32", "C", True, (0,), (0,), (8,)) for r in range(3)}
    vlayout = build_layout("p", decls, 3)
    parts = [np.arange(3, dtype=np.int32), np.arange(0, dtype=np.int32),
             np.arange(4, dtype=np.int32) + 10]
    v = global_array(vlayout, {r: ray.put(x) for r, x in enumerate(parts)}, 11,
                     {r: len(x) for r, x in enumerate(parts)})
    assert v.chunks == ((3, 4),)
    assert same(v.compute(scheduler=ray_dask_get), np.concatenate(parts))
