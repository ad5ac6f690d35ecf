"""caudal.blocks without a Ray cluster: the block descriptor the ingest
makes (catalog.BlockRef) reaches the grid the kernels run on as it was made,
and work is pinned strictly to a block's node.

A BlockRef's `ref` is any object here (a NumPy array, a list of them): the
graph and the grid treat it as they treat an ObjectRef, and Dask's own
scheduler can compute what they build."""

import numpy as np
import pytest

from caudal.blocks import LOCAL, RAY, At, as_grid, on_node, step_array
from caudal.catalog import BlockRef, Declaration, build_layout


def _layout(name="f"):
    """A 4 x 6 array in 2 x 2 blocks of 2 x 3, ranks 2 and 3 on top, 0 and 1
    below, and rank 4 with an empty block."""
    blocks = {2: ((0, 0), (2, 3)), 3: ((0, 3), (2, 3)), 0: ((2, 0), (2, 3)),
              1: ((2, 3), (2, 3)), 4: ((0, 0), (0, 0))}
    decls = {r: Declaration(r, "float64", "C", False, (4, 6), s, c) for r, (s, c) in blocks.items()}
    return build_layout(name, decls, 5)


def test_a_block_ref_is_immutable():
    b = BlockRef("f", 3, 1, 6, "ref", 2, "node")
    with pytest.raises(AttributeError):
        b.ref = "other"
    with pytest.raises(AttributeError):
        b.node = "elsewhere"
    assert (b.array, b.step, b.rank, b.count, b.ref, b.index, b.node) == \
        ("f", 3, 1, 6, "ref", 2, "node")


def test_a_block_ref_from_an_event_and_what_a_task_made_of_it():
    class Event:  # the attributes of a block event of caudal.Receiver
        name, step, rank, count = "t", 7, 5, 12

    b = BlockRef.from_event(Event(), "list", 4, "node-a")
    assert b == BlockRef("t", 7, 5, 12, "list", 4, "node-a")
    d = b.holding("result", "laplacian(t)")
    # The same rank's block, on the same node, now a whole object.
    assert d == BlockRef("laplacian(t)", 7, 5, 12, "result", None, "node-a")
    assert b.ref == "list" and b.index == 4  # the original is untouched


def test_the_grid_holds_the_ingests_block_refs_as_they_are():
    layout = _layout()
    g = np.arange(24, dtype=np.float64).reshape(4, 6)
    one = [np.ascontiguousarray(g[2:4, 0:3]), np.ascontiguousarray(g[2:4, 3:6])]
    refs = {0: BlockRef("f", 9, 0, 6, one, 0, "node-a"),  # a node's list of blocks
            1: BlockRef("f", 9, 1, 6, one, 1, "node-a"),
            2: BlockRef("f", 9, 2, 6, g[0:2, 0:3].copy(), None, "node-b"),  # put alone
            3: BlockRef("f", 9, 3, 6, [g[0:2, 3:6].copy()], 0, "node-b")}
    sa = step_array(layout, refs, 9)
    grid = sa.blocks
    assert grid.backend is RAY and sa.step == 9
    by_rank = {b.rank: b for b in grid.blocks.values()}
    assert sorted(by_rank) == [0, 1, 2, 3]  # rank 4's empty block is no block of the grid
    for r, b in by_rank.items():
        assert b.stored is refs[r]  # the very object the ingest made
        assert b.node == refs[r].node
    assert by_rank[1].args() == (one, At(1))
    assert by_rank[2].args() == (refs[2].ref,)
    assert by_rank[1].start == (2, 3) and by_rank[1].count == (2, 3)
    assert np.array_equal(sa.data.compute(scheduler="sync"), g)
    # A result made block by block keeps each block's rank and node.
    derived = grid.derive({p: "r%d" % b.rank for p, b in grid.blocks.items()}, np.int8, "d")
    for p, b in derived.blocks.items():
        assert b.stored == refs[b.rank].holding("r%d" % b.rank, "d")


def test_a_step_array_makes_its_grid_and_graph_when_first_asked():
    """The driver hands every analysis the same StepArray of a step: its
    blocks are fetched (the function called) once, by the first of its grid
    and its Dask array asked for, and not at all if neither is."""
    layout = _layout()
    g = np.arange(24, dtype=np.float64).reshape(4, 6)
    blocks = {2: (0, 0), 3: (0, 3), 0: (2, 0), 1: (2, 3)}
    refs = {r: BlockRef("f", 4, r, 6, g[i:i + 2, j:j + 3].copy(), None, "n")
            for r, (i, j) in blocks.items()}
    calls = []

    def fetch():
        calls.append(1)
        return refs

    sa = step_array(layout, fetch, 4, token="step-4")
    assert sa.shape == (4, 6) and sa.dtype == np.float64 and sa.step == 4
    assert calls == []  # a fixed array's shape is its layout's
    grid = sa.blocks
    assert calls == [1] and sa.blocks is grid
    assert sorted(b.rank for b in grid.blocks.values()) == [0, 1, 2, 3]
    assert np.array_equal(sa.data.compute(scheduler="sync"), g)
    assert calls == [1] and "step-4" not in repr(sa)
    # The token names the blocks in the graph: another token, another name.
    other = step_array(layout, refs, 4, token="other")
    assert other.data.name != sa.data.name and other.data.name.startswith("f-step4-")


def test_a_variable_arrays_chunks_are_the_block_refs_counts():
    decls = {r: Declaration(r, "int32", "C", True, (0,), (0,), (8,)) for r in range(3)}
    layout = build_layout("p", decls, 3)
    parts = [np.arange(3, dtype=np.int32), np.arange(0, dtype=np.int32),
             np.arange(4, dtype=np.int32) + 10]
    # A BlockRef is a tuple of 7: its length must not pass for its count.
    refs = {r: BlockRef("p", 2, r, len(x), x, None, "n") for r, x in enumerate(parts)}
    sa = step_array(layout, refs, 2)
    assert sa.data.chunks == ((3, 4),)
    assert [b.rank for _, b in sorted(sa.blocks.blocks.items())] == [0, 2]
    assert np.array_equal(sa.data.compute(scheduler="sync"), np.concatenate(parts))


def test_declarations_round_trip():
    import pickle

    import caudal

    info = caudal.ArrayInfo(("t", "float32", "F", False, (8, 6), (4, 0), (4, 6)))
    d = Declaration.from_info(2, info)
    assert d.name == "t" and d.shape == (8, 6) and d.count == (4, 6)
    assert pickle.loads(pickle.dumps(d)) == d  # it travels to the head actor
    assert Declaration.from_info(d.rank, d) == d  # a Declaration has an info's fields


def test_work_is_pinned_strictly_to_a_node():
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    assert on_node(None) == {}
    assert on_node(None, num_cpus=0) == {"num_cpus": 0}
    node = "ab" * 28  # a node id is 28 bytes in hex
    opts = on_node(node, num_returns=2)
    s = opts["scheduling_strategy"]
    assert isinstance(s, NodeAffinitySchedulingStrategy)
    # Soft would let Ray run a task elsewhere and pull the block across.
    assert s.node_id == node and s.soft is False and opts["num_returns"] == 2


def test_numpy_input_runs_here():
    grid = as_grid(np.ones((3, 2)))
    assert grid.backend is LOCAL and LOCAL.blocks_here(grid) == []
    assert grid.map(lambda b: b.sum())[(0, 0)] == 6.0
