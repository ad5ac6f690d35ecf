"""Receiver(gather=True) from Python: a node's steps as 'steps' events whose
blocks are zero-copy Blocks that know their array, rank, step and count."""

import numpy as np

import caudal
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
