"""Receiver(gather=True) from Python: a node's steps as 'steps' events whose
blocks are zero-copy Blocks that know their array, rank, step and count."""

import pickle

import numpy as np
import pytest

import caudal
from caudal.catalog import Packed
from _client_worker import block_of, make_global, make_var
from conftest import endpoint_for, run_jobs

NRANKS = 4
STEPS = [0, 1, 3, 4, 7]
N = 12  # elements per rank of the fixed array


def jobs_for(endpoint):
    """Four ranks: a fixed array split along its axis and a variable one
    (sometimes empty); rank 3 sleeps between steps, so the others get
    ahead of it and their steps wait for its."""
    jobs = []
    for rank in range(NRANKS):
        arrays = [dict(name="f", dtype="float32", order="C", shape=[NRANKS * N],
                       start=[rank * N], count=[N], seed=10),
                  dict(name="p", dtype="int64", variable=True, capacity=8,
                       lengths=[(rank + k) % 3 for k in range(len(STEPS))], seed=100 + rank)]
        jobs.append(dict(kind="publish", endpoint=endpoint, rank=rank, size=NRANKS,
                         steps=STEPS, arrays=arrays, step_sleep=0.02 if rank == 3 else 0))
    return jobs


def expected(name, rank, step):
    if name == "f":
        return block_of(make_global(10 + step, "float32", [NRANKS * N]), [rank * N], [N], "C")
    k = STEPS.index(step)
    return make_var(100 + rank + step, "int64", (rank + k) % 3)


def test_steps_events(pool, transport):
    got = {}
    highs = {}
    kinds = []

    def handle(ev):
        kinds.append(ev.type)
        if ev.type != "steps":
            return
        assert ev.rank == -1 and ev.step is None
        assert isinstance(ev.progress, dict) and ev.drops == []
        assert ev.ncomplete == len(ev.blocks)  # nothing is held past max_held_bytes here
        for rank, high in ev.progress.items():
            assert high >= highs.get(rank, -1)  # a rank's progress never goes back
            highs[rank] = high
        floor = min(ev.progress.values()) if ev.progress else None
        order = [(b.step, b.rank) for b in ev.blocks]
        assert order == sorted(order)
        for b in ev.blocks:
            assert isinstance(b, caudal.Block) and b.in_shared_memory == (transport == "unix")
            # A complete step: every rank still connected has finished it.
            assert floor is None or b.step <= floor
            key = (b.name, b.rank, b.step)
            assert key not in got
            view = np.asarray(b)
            want = expected(b.name, b.rank, b.step)
            assert b.count == len(want) and view.dtype == want.dtype
            np.testing.assert_array_equal(view, want)
            got[key] = True
            del view
            b.release()
            assert b.released

    with caudal.Receiver(endpoint_for(transport), gather=True) as r:
        results, _ = run_jobs(pool, r, jobs_for(r.endpoint), handle)
    assert all(res["ok"] for res in results), results
    assert got.keys() == {(name, rank, step) for name in "fp" for rank in range(NRANKS)
                          for step in STEPS}
    assert not {"block", "step_end", "drop"} & set(kinds)
    assert kinds.count("connect") == kinds.count("bye") == NRANKS
    # An event when the node's floor rises: at most once per step, once per
    # rank that connects late and once per rank that leaves; not one per
    # rank and frame (3 frames per rank and step here).
    assert kinds.count("steps") <= len(STEPS) + 2 * NRANKS


def test_block_events_say_whose(pool):
    """Without gathering, blocks say their array, rank, step and count too."""
    seen = []

    def handle(ev):
        if ev.type == "block":
            b = ev.block
            seen.append((b.name, b.rank, b.step, b.count) == (ev.name, ev.rank, ev.step, ev.count))

    with caudal.Receiver(endpoint_for("unix")) as r:
        results, _ = run_jobs(pool, r, jobs_for(r.endpoint)[:1], handle)
    assert results[0]["ok"] and seen and all(seen)


def test_pack_blocks(pool, transport):
    """pack_blocks copies a step's blocks into one buffer at 64-byte aligned
    offsets and gives every slot back; catalog.Packed reads each block back
    as it was, after pickling (as Ray stores it), in C and Fortran order,
    and a variable array's empty parts included."""
    got = {}
    refused = []

    def handle(ev):
        if ev.type != "steps" or not ev.blocks:
            return
        blocks = ev.blocks
        # A block with a view exported: refused, and nothing packed or released.
        view = np.asarray(blocks[-1])
        try:
            caudal._caudal.pack_blocks(blocks)
        except BufferError as e:
            refused.append(str(e))
        assert not any(b.released for b in blocks)
        del view
        buf, layout = caudal._caudal.pack_blocks(blocks)
        assert all(b.released for b in blocks) and len(layout) == len(blocks)
        assert all(offset % 64 == 0 for offset, *_ in layout)
        packed = pickle.loads(pickle.dumps(Packed(np.frombuffer(buf, np.uint8), layout),
                                           protocol=5))
        for i, b in enumerate(blocks):
            a = packed[i]
            if b.name == "g":
                want = block_of(make_global(50 + b.step, "float64", [3, NRANKS * 2]),
                                [0, b.rank * 2], [3, 2], "F")
                assert a.flags.f_contiguous
            else:
                want = expected(b.name, b.rank, b.step)
            assert a.dtype == want.dtype and not a.flags.writeable
            np.testing.assert_array_equal(a, want)
            got[(b.name, b.rank, b.step)] = True
        # Released blocks cannot be packed again, nor what is not a Block.
        with pytest.raises(caudal.CaudalError, match="was released"):
            caudal._caudal.pack_blocks(blocks[:1])
        with pytest.raises(TypeError, match="item 0 is a bytes, not a caudal.Block"):
            caudal._caudal.pack_blocks([b"data"])

    with caudal.Receiver(endpoint_for(transport), gather=True) as r:
        jobs = jobs_for(r.endpoint)
        for rank, job in enumerate(jobs):
            job["arrays"].append(dict(name="g", dtype="float64", order="F",
                                      shape=[3, NRANKS * 2], start=[0, rank * 2], count=[3, 2],
                                      seed=50))
        results, _ = run_jobs(pool, r, jobs, handle)
    assert all(res["ok"] for res in results), results
    assert got.keys() == {(name, rank, step) for name in "fpg" for rank in range(NRANKS)
                          for step in STEPS}
    assert refused and "exported buffer" in refused[0] and "step" in refused[0]
