"""Blocks published by client processes reach a Python receiver intact, as
zero-copy views, over shared memory (unix:) and TCP."""

import hashlib
import itertools
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import caudal
from _client_worker import WORKER_FILE, make_global, make_var
from conftest import endpoint_for, run_jobs

TRANSPORTS = ["unix", "tcp"]


def same_bits(a, b):
    """Equal bit for bit (NaNs included), shapes and dtypes too."""
    a, b = np.asarray(a), np.asarray(b)
    return (a.shape == b.shape and a.dtype == b.dtype and
            np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes())


# --------------------------------------------------------------- layouts


@st.composite
def layouts(draw):
    """A global array (dtype, shape, order) and its decomposition over 1-4
    processes along one axis or two (a grid); blocks may be empty."""
    ndim = draw(st.integers(1, 4))
    shape = draw(st.lists(st.integers(1, 9 if ndim == 1 else 5), min_size=ndim,
                          max_size=ndim))
    dtype = draw(st.sampled_from(caudal.DTYPES))
    order = draw(st.sampled_from("CF"))
    nprocs = draw(st.integers(1, 4))
    if ndim >= 2 and draw(st.booleans()):
        axes = draw(st.lists(st.integers(0, ndim - 1), min_size=2, max_size=2, unique=True))
        p0 = draw(st.sampled_from([d for d in range(1, nprocs + 1) if nprocs % d == 0]))
        grid = {axes[0]: p0, axes[1]: nprocs // p0}
    else:
        grid = {draw(st.integers(0, ndim - 1)): nprocs}
    cuts = {}
    for ax, parts in grid.items():
        inner = draw(st.lists(st.integers(0, shape[ax]), min_size=parts - 1,
                              max_size=parts - 1))
        cuts[ax] = [0] + sorted(inner) + [shape[ax]]
    blocks = []
    for idx in itertools.product(*[range(grid.get(ax, 1)) for ax in range(ndim)]):
        start = [cuts[ax][i] if ax in cuts else 0 for ax, i in enumerate(idx)]
        count = [cuts[ax][i + 1] - cuts[ax][i] if ax in cuts else shape[ax]
                 for ax, i in enumerate(idx)]
        blocks.append((start, count))
    seed = draw(st.integers(0, 2**31))
    return {"dtype": dtype, "shape": shape, "order": order, "blocks": blocks, "seed": seed}


def reassemble(pool, transport, layout, steps, **job_extra):
    """Publish layout over len(blocks) client processes; put every block
    received into a global array per step, straight from np.asarray(block)."""
    dtype, shape = np.dtype(layout["dtype"]), tuple(layout["shape"])
    got = {s: np.zeros(shape, dtype) for s in steps}
    filled = {s: np.zeros(shape, np.int32) for s in steps}
    nblocks = {s: 0 for s in steps}
    seen = []

    def handle(ev):
        if ev.type != "block":
            return
        assert ev.name == "field" and ev.dtype == layout["dtype"]
        assert ev.order == layout["order"] and not ev.variable
        view = np.asarray(ev.block)
        assert view.dtype == dtype
        assert view.shape == tuple(ev.array.count)
        assert not view.flags.writeable
        if layout["order"] == "F":
            assert view.flags.f_contiguous
        else:
            assert view.flags.c_contiguous
        assert ev.nbytes == view.nbytes and ev.count == view.size
        assert ev.in_shared_memory == (transport == "unix")
        sl = tuple(slice(a, a + c) for a, c in zip(ev.start, ev.array.count))
        got[ev.step][sl] = view
        filled[ev.step][sl] += 1
        nblocks[ev.step] += 1
        seen.append(ev.rank)

    with caudal.Receiver(endpoint_for(transport)) as r:
        jobs = []
        for rank, (start, count) in enumerate(layout["blocks"]):
            jobs.append(dict(
                kind="publish", endpoint=r.endpoint, rank=rank, size=len(layout["blocks"]),
                steps=list(steps),
                arrays=[dict(name="field", dtype=layout["dtype"], order=layout["order"],
                             shape=layout["shape"], start=start, count=count,
                             seed=layout["seed"])],
                **job_extra))
        results, events = run_jobs(pool, r, jobs, handle)
    for res in results:
        assert res["ok"], res
    assert sorted(set(seen)) == list(range(len(layout["blocks"])))
    for s in steps:
        assert nblocks[s] == len(layout["blocks"])
        assert (filled[s] == 1).all(), "blocks must tile the global array once"
        want = make_global(layout["seed"] + s, dtype, shape)
        # Bit for bit, so that NaNs compare too.
        assert np.array_equal(got[s].view(np.uint8), want.view(np.uint8)), (s, layout)
    return events


@pytest.mark.parametrize("transport", TRANSPORTS)
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(layout=layouts())
def test_reassembled_global_array_is_bit_exact(pool, transport, layout):
    reassemble(pool, transport, layout, steps=[0, 3])


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("dtype", caudal.DTYPES)
def test_every_dtype_2x2_fortran(pool, transport, dtype):
    layout = {"dtype": dtype, "shape": [6, 5], "order": "F", "seed": 7,
              "blocks": [([0, 0], [3, 2]), ([3, 0], [3, 2]), ([0, 2], [3, 3]),
                         ([3, 2], [3, 3])]}
    events = reassemble(pool, transport, layout, steps=[1])
    types = [e.type for e in events]
    assert types.count("connect") == types.count("bye") == 4
    assert types.count("declare") == 4 and types.count("step_end") == 4


def test_large_blocks(pool, transport):
    """Blocks of 1 MiB (the put copies them without the GIL)."""
    layout = {"dtype": "float64", "shape": [512, 512], "order": "C", "seed": 3,
              "blocks": [([0, 0], [256, 512]), ([256, 0], [256, 512])]}
    reassemble(pool, transport, layout, steps=[0, 1, 2])


def test_event_attributes(pool, transport, receiver):
    layout = {"dtype": "int16", "shape": [4, 3], "order": "C", "seed": 1,
              "blocks": [([0, 0], [4, 3])]}
    jobs = [dict(kind="publish", endpoint=receiver.endpoint, rank=0, size=1, steps=[5, 9],
                 arrays=[dict(name="a", dtype="int16", order="C", shape=[4, 3],
                              start=[0, 0], count=[4, 3], seed=1),
                         dict(name="p", dtype="float32", variable=True, capacity=4,
                              lengths=[2, 0], seed=3)])]
    blocks = []
    results, events = run_jobs(pool, receiver, jobs,
                               lambda ev: ev.type == "block" and blocks.append(ev.block))
    assert results[0]["ok"], results
    del layout
    by_type = {}
    for e in events:
        by_type.setdefault(e.type, []).append(e)
        assert e.type in caudal.EVENT_TYPES
        assert e.rank == 0 and e.size == 1 and e.connection >= 1
    conn = by_type["connect"][0]
    assert conn.step is None
    d0, d1 = by_type["declare"]
    assert (d0.name, d0.dtype, d0.order, d0.variable) == ("a", "int16", "C", False)
    assert d0.shape == (4, 3) and d0.start == (0, 0) and d0.count == (4, 3)
    assert d0.array == caudal.ArrayInfo(("a", "int16", "C", False, (4, 3), (0, 0), (4, 3)))
    assert (d1.name, d1.dtype, d1.variable, d1.count) == ("p", "float32", True, (4,))
    bl = by_type["block"]
    assert [(b.name, b.step, b.count) for b in bl] == [("a", 5, 12), ("p", 5, 2),
                                                        ("a", 9, 12), ("p", 9, 0)]
    assert bl[0].nbytes == 24 and bl[1].nbytes == 8 and bl[3].nbytes == 0
    assert [(e.step, e.nblocks) for e in by_type["step_end"]] == [(5, 2), (9, 2)]
    bye = by_type["bye"][0]
    assert bye.counters["steps_sent"] == 2 and bye.counters["blocks_sent"] == 4
    assert bye.counters["bytes_sent"] == 2 * 24 + 8
    assert results[0]["counters"]["steps_sent"] == 2
    assert "disconnect" not in by_type
    assert "block" in repr(bl[0]) and isinstance(bl[0].asdict(), dict)
    assert vars(bl[0])["type"] == "block"
    # The held blocks are still valid after the client is gone.
    want = make_global(1 + 9, "int16", (4, 3))
    assert same_bits(blocks[2], want)
    assert same_bits(blocks[1], make_var(3 + 5, "float32", 2))
    assert np.asarray(blocks[3]).shape == (0,)


def test_variable_length_arrays(pool, transport, receiver):
    lengths = {"particles": [0, 5, 8, 100, 3], "ids": [4, 0, 1, 0, 2]}
    dtypes = {"particles": "complex128", "ids": "int64"}
    steps = [0, 1, 2, 10, 11]
    jobs = [dict(kind="publish", endpoint=receiver.endpoint, rank=rank, size=2, steps=steps,
                 arrays=[dict(name="particles", dtype="complex128", variable=True,
                              capacity=8, lengths=lengths["particles"], seed=100 * rank),
                         dict(name="ids", dtype="int64", variable=True, capacity=0,
                              lengths=lengths["ids"], seed=100 * rank + 50)])
            for rank in range(2)]
    checked = []
    inline = []

    def handle(ev):
        if ev.type != "block":
            return
        assert ev.variable and ev.array.variable
        view = np.asarray(ev.block)
        k = steps.index(ev.step)
        n = lengths[ev.name][k]
        assert view.shape == (n,) and ev.count == n
        seed = 100 * ev.rank + (50 if ev.name == "ids" else 0)
        want = make_var(seed + ev.step, dtypes[ev.name], n)
        assert np.array_equal(view.view(np.uint8), want.view(np.uint8))
        checked.append((ev.rank, ev.name, ev.step))
        if not ev.in_shared_memory:
            inline.append((ev.name, n))

    results, _ = run_jobs(pool, receiver, jobs, handle)
    assert all(r["ok"] for r in results), results
    assert len(checked) == 2 * 2 * len(steps)
    if transport == "unix":
        # Beyond the ring's room the block goes inline through the socket.
        assert ("particles", 100) in inline
        assert results[0]["counters"]["bytes_inline"] > 0


# ------------------------------------------------------------- zero copy


def test_blocks_are_zero_copy_readonly_views(pool, transport, receiver):
    jobs = [dict(kind="publish", endpoint=receiver.endpoint, rank=0, size=1, steps=[0, 1],
                 arrays=[dict(name="t", dtype="float64", order="C", shape=[64, 32],
                              start=[0, 0], count=[64, 32], seed=5)])]
    held = []
    results, _ = run_jobs(pool, receiver, jobs,
                          lambda ev: ev.type == "block" and held.append(ev.block))
    assert results[0]["ok"]
    block = held[0]
    assert isinstance(block, caudal.Block)
    assert block.shape == (64, 32) and block.dtype == "float64" and block.format == "d"
    assert block.strides == (256, 8) and block.nbytes == 64 * 32 * 8
    assert block.order == "C" and not block.released
    assert block.in_shared_memory == (transport == "unix")

    a = np.asarray(block)
    b = np.asarray(block)
    assert same_bits(a, make_global(5, "float64", (64, 32)))
    # The base chain of the view ends at the Block: no copy was made.
    base = a
    while isinstance(base, np.ndarray):
        base = base.base
    if isinstance(base, memoryview):
        base = base.obj
    assert base is block
    assert np.shares_memory(a, b)
    assert a.ctypes.data == b.ctypes.data
    assert not a.flags.writeable and not a.flags.owndata
    with pytest.raises(ValueError):
        a[0, 0] = 1.0
    with pytest.raises(ValueError):
        a.setflags(write=True)
    m = memoryview(block)
    assert m.readonly and m.format == "d" and m.shape == (64, 32)
    with pytest.raises(BufferError):
        block.release()  # views exist: giving the memory back would be a crash
    m.release()
    del a, b, base
    block.release()
    assert block.released
    block.release()  # a second release does nothing
    with pytest.raises(caudal.CaudalError) as ei:
        memoryview(block)
    assert ei.value.status == caudal.ERR_CLOSED
    # NumPy swallows the error and wraps the object: no view of freed memory.
    assert np.asarray(block).dtype == object
    with held[1] as blk:  # a Block is a context manager that releases it
        assert same_bits(blk, make_global(6, "float64", (64, 32)))
    assert held[1].released


def test_fortran_block_view(pool, transport, receiver):
    jobs = [dict(kind="publish", endpoint=receiver.endpoint, rank=0, size=1, steps=[0],
                 arrays=[dict(name="t", dtype="complex64", order="F", shape=[3, 4, 2],
                              start=[0, 0, 0], count=[3, 4, 2], seed=9)])]
    held = []
    run_jobs(pool, receiver, jobs, lambda ev: ev.type == "block" and held.append(ev.block))
    block = held[0]
    assert block.format == "Zf" and block.strides == (8, 24, 96)
    a = np.asarray(block)
    assert a.dtype == np.complex64 and a.flags.f_contiguous and not a.flags.c_contiguous
    assert same_bits(a, make_global(9, "complex64", (3, 4, 2)))
    m = memoryview(block)
    assert m.f_contiguous and not m.c_contiguous and m.format == "Zf"
    m.release()
    assert bytes(memoryview(block)) == a.tobytes(order="C")  # logical order
    # A plain-bytes request gets the memory as it lies: Fortran order.
    assert hashlib.sha256(block).digest() == hashlib.sha256(a.tobytes(order="F")).digest()


# ----------------------------------------------- the ring and its slots


def test_blocks_go_back_on_gc_and_release(pool, transport, receiver):
    """A ring of 2 slots carries 40 steps only if every block is given back:
    half by garbage collection, half by an explicit release()."""
    steps = list(range(40))
    jobs = [dict(kind="publish", endpoint=receiver.endpoint, rank=0, size=1, steps=steps,
                 ring_depth=2, policy="block", block_timeout_ms=20000,
                 arrays=[dict(name="x", dtype="uint8", order="C", shape=[1000],
                              start=[0], count=[1000], seed=2)])]
    got = []

    def handle(ev):
        if ev.type == "block":
            got.append(ev.step)
            if ev.step % 2:
                ev.block.release()

    results, events = run_jobs(pool, receiver, jobs, handle)
    assert results[0]["ok"], results
    assert got == steps
    assert results[0]["counters"]["steps_dropped"] == 0


def test_blocks_released_from_another_thread(pool, transport, receiver):
    """Blocks may be given back from any thread (an analysis thread here)."""
    import queue

    todo = queue.Queue()
    sums = []

    def consume():
        while True:
            blk = todo.get()
            if blk is None:
                return
            sums.append(int(np.asarray(blk).sum()))
            if len(sums) % 2:
                blk.release()
            del blk  # the others go back when the Block is collected, here

    t = threading.Thread(target=consume)
    t.start()
    steps = list(range(30))
    jobs = [dict(kind="publish", endpoint=receiver.endpoint, rank=0, size=1, steps=steps,
                 ring_depth=2, policy="block",
                 arrays=[dict(name="x", dtype="uint8", order="C", shape=[64], start=[0],
                              count=[64], seed=4)])]
    try:
        results, _ = run_jobs(pool, receiver, jobs,
                              lambda ev: ev.type == "block" and todo.put(ev.block))
    finally:
        todo.put(None)
        t.join()
    assert results[0]["ok"], results
    assert sums == [int(make_global(4 + s, "uint8", (64,)).astype(int).sum()) for s in steps]


def test_held_blocks_outlive_the_receiver(pool, transport):
    import gc

    r = caudal.Receiver(endpoint_for(transport))
    jobs = [dict(kind="publish", endpoint=r.endpoint, rank=0, size=1, steps=[0, 1, 2],
                 arrays=[dict(name="x", dtype="int32", order="C", shape=[5, 7],
                              start=[0, 0], count=[5, 7], seed=11)])]
    held = []
    results, _ = run_jobs(pool, r, jobs,
                          lambda ev: ev.type == "block" and held.append(ev.block))
    assert results[0]["ok"]
    views = [np.asarray(b) for b in held]
    r.close()
    del r
    gc.collect()
    for s, v in enumerate(views):
        assert same_bits(v, make_global(11 + s, "int32", (5, 7)))
    del views
    held[0].release()
    del held  # the rest go back on collection, after the receiver is gone
    gc.collect()


def test_drop_policy_when_the_analytics_hold_every_slot(pool):
    with caudal.Receiver(endpoint_for("unix")) as r:
        jobs = [dict(kind="publish", endpoint=r.endpoint, rank=0, size=1,
                     steps=list(range(10)), ring_depth=2, policy="drop",
                     arrays=[dict(name="x", dtype="float32", order="C", shape=[16],
                                  start=[0], count=[16], seed=0)])]
        held = []
        results, events = run_jobs(pool, r, jobs,
                                   lambda ev: ev.type == "block" and held.append(ev.block))
    assert results[0]["ok"], results
    assert [b for b in held if b is not None] and len(held) == 2
    drops = [e for e in events if e.type == "drop"]
    assert len(drops) == 1
    assert (drops[0].first_step, drops[0].step, drops[0].ndropped) == (2, 9, 8)
    bye = [e for e in events if e.type == "bye"][0]
    assert bye.counters["steps_dropped"] == 8 and bye.counters["steps_sent"] == 2
    for b in held:
        b.release()


def test_tcp_backpressure_when_the_analytics_hold_blocks(pool):
    # Over tcp the slots are private and free once sent; what bounds memory
    # is the receiver, which stops reading a rank whose held inline blocks
    # pass max_held_bytes. TCP flow control then keeps the rank's slots busy
    # and its drop policy applies: nothing piles up, every step is accounted.
    nsteps, n = 60, 1 << 17  # 1 MiB of float64 a step
    with caudal.Receiver("tcp:127.0.0.1:0", max_held_bytes=1 << 20) as r:
        jobs = [dict(kind="publish", endpoint=r.endpoint, rank=0, size=1,
                     steps=list(range(nsteps)), ring_depth=2, policy="drop",
                     arrays=[dict(name="x", dtype="float64", order="C", shape=[n],
                                  start=[0], count=[n], seed=0)])]
        held, timer, lock = [], [], threading.Lock()
        holding = [True]

        def give_back():
            with lock:
                holding[0] = False
                while held:
                    held.pop().release()

        def hold(ev):
            with lock:
                if ev.type == "block" and holding[0]:
                    held.append(ev.block)
                    if not timer:
                        # Give the blocks back later, from another thread, so
                        # that the rank can finish and say goodbye.
                        timer.append(threading.Timer(3.0, give_back))
                        timer[0].start()

        results, events = run_jobs(pool, r, jobs, hold)
    assert results[0]["ok"], results
    k = results[0]["counters"]
    assert k["steps_dropped"] > 0
    assert k["steps_sent"] + k["steps_dropped"] == nsteps
    assert sum(e.type == "block" for e in events) == k["steps_sent"]
    assert sum(e.ndropped for e in events if e.type == "drop") == k["steps_dropped"]


def test_block_policy_times_out(pool):
    with caudal.Receiver(endpoint_for("unix")) as r:
        jobs = [dict(kind="publish", endpoint=r.endpoint, rank=0, size=1, steps=[0, 1],
                     ring_depth=1, policy="block", block_timeout_ms=200,
                     arrays=[dict(name="x", dtype="float32", order="C", shape=[16],
                                  start=[0], count=[16], seed=0)])]
        held = []
        results, _ = run_jobs(pool, r, jobs,
                              lambda ev: ev.type == "block" and held.append(ev.block))
    assert not results[0]["ok"]
    assert results[0]["status"] == caudal.ERR_TIMEOUT
    assert "rank 0" in results[0]["error"] and "step 1" in results[0]["error"]
    del held


# ------------------------------------------------------ receiver events


def test_disconnect_without_goodbye(transport, receiver):
    job = dict(kind="abort", endpoint=receiver.endpoint, rank=3, size=4)
    import json

    p = subprocess.Popen([sys.executable, WORKER_FILE, json.dumps(job)],
                         stdout=subprocess.DEVNULL)
    seen = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ev = receiver.next(50)
        if ev is None:
            continue
        seen.append(ev.type)
        if ev.type == "connect":
            assert receiver.connections() == 1
        if ev.type == "disconnect":
            assert ev.rank == 3 and ev.status == caudal.ERR_IO
            assert "rank 3" in ev.message
            break
    p.wait(30)
    assert seen[:2] == ["connect", "declare"] and seen[-1] == "disconnect"
    assert "step_end" in seen
    assert receiver.connections() == 0


def test_next_times_out_and_releases_the_gil(receiver):
    ticks = []
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.001)

    t = threading.Thread(target=spin)
    t.start()
    t0 = time.monotonic()
    assert receiver.next(300) is None
    elapsed = time.monotonic() - t0
    stop.set()
    t.join()
    assert 0.25 < elapsed < 5
    assert len(ticks) > 5  # the other thread ran while next() waited
    assert receiver.next(0) is None


def test_waiting_forever_can_be_interrupted(receiver):
    import signal

    class Alarm(Exception):
        pass

    def on_alarm(signum, frame):
        raise Alarm()

    old = signal.signal(signal.SIGALRM, on_alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        t0 = time.monotonic()
        with pytest.raises(Alarm):
            receiver.next()  # no timeout: only the signal ends the wait
        assert time.monotonic() - t0 < 5
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert receiver.next(0) is None  # still usable


def test_receiver_endpoint_and_close(transport):
    r = caudal.Receiver(endpoint_for(transport))
    ep = r.endpoint
    if transport == "tcp":
        assert ep.startswith("tcp:127.0.0.1:") and not ep.endswith(":0")
    assert repr(r).startswith("<caudal.Receiver")
    assert r.connections() == 0
    r.close()
    assert r.closed and r.endpoint == ep
    for call in (lambda: r.next(0), lambda: r.steer(-1, "k", 1.0), r.connections, r.close):
        with pytest.raises(caudal.CaudalError) as ei:
            call()
        assert ei.value.status == caudal.ERR_CLOSED
    with caudal.Receiver(endpoint_for(transport)) as r2:
        assert not r2.closed
    assert r2.closed


def test_receiver_bad_endpoint():
    with pytest.raises(caudal.CaudalError) as ei:
        caudal.Receiver("pigeon:somewhere")
    assert ei.value.status == caudal.ERR_INVALID and "pigeon" in str(ei.value)
