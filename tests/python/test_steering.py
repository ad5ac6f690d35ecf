"""Steering values both ways: the receiver sets values for every rank or for
one, the ranks read them; the ranks report values, the receiver gets events."""

import pytest

import caudal
from conftest import run_jobs


def test_steering_both_ways(pool, transport, receiver):
    size = 3
    receiver.steer(-1, "early", 1.5)  # set before any rank connects
    jobs = [dict(kind="steer", endpoint=receiver.endpoint, rank=rank, size=size)
            for rank in range(size)]
    ready = set()
    reported = {}

    def handle(ev):
        if ev.type != "steer":
            return
        reported[(ev.rank, ev.key)] = ev.value
        if ev.key == "ready":
            ready.add(ev.rank)
            if len(ready) == size:
                receiver.steer(-1, "dt", 0.25)
                receiver.steer(-1, "iters", 7)
                receiver.steer(-1, "mode", "fast")
                receiver.steer(1, "mode", "slow")  # rank 1's own value wins
                receiver.steer(0, "only0", -3)
                receiver.steer(-1, "big", -(2**63))
                receiver.steer(2, "text", "\u00e9t\u00e9 \u2192 hiver")
                receiver.steer(-1, "go", 1)

    results, events = run_jobs(pool, receiver, jobs, handle)
    for res in results:
        assert res["ok"], res
        # Nothing was set under these keys when the ranks first looked.
        assert res["before"] == {"dt": None, "iters": None, "mode": None, "only0": None}
    for rank, res in enumerate(results):
        after = res["after"]
        assert after["dt"] == 0.25 and isinstance(after["dt"], float)
        assert after["iters"] == 7 and isinstance(after["iters"], int)
        assert after["mode"] == ("slow" if rank == 1 else "fast")
        assert after["only0"] == (-3 if rank == 0 else None)
        assert after["early"] == 1.5
        assert after["big"] == -(2**63)
        assert after["text"] == ("\u00e9t\u00e9 \u2192 hiver" if rank == 2 else None)
    for rank in range(size):
        assert reported[(rank, "residual")] == 0.5 + rank
        assert isinstance(reported[(rank, "residual")], float)
        assert reported[(rank, "iteration")] == 1000 + rank
        assert isinstance(reported[(rank, "iteration")], int)
        assert reported[(rank, "state")] == "rank %d: ok \u2713" % rank
        assert reported[(rank, "ready")] == rank
    steer_events = [e for e in events if e.type == "steer"]
    assert len(steer_events) == 4 * size
    assert all(e.step is None for e in steer_events)


def test_client_reads_receiver_values(sink):
    with caudal.Client(0, 1, endpoint=sink.endpoint) as c:
        assert c.steer_get("source") is None
        sink.steer(-1, "source", 2.5)
        sink.steer(0, "n", 12)
        sink.steer(0, "label", "hot")
        sink.events_until(lambda e: e.get("key") == "label")
        import time

        deadline = time.monotonic() + 10
        while c.steer_get("label") is None and time.monotonic() < deadline:
            time.sleep(0.002)
        assert c.steer_get("source") == 2.5
        assert c.steer_get("n") == 12
        assert c.steer_get("label") == "hot"
        c.steer_set("seen", "yes")
    events = sink.stop()
    assert {"type": "steer", "rank": 0, "step": None, "key": "seen", "value": "yes"} in events


def test_steering_bad_values(sink):
    with caudal.Client(0, 1, endpoint=sink.endpoint) as c:
        with pytest.raises(TypeError):
            c.steer_set("k", [1, 2])
        with pytest.raises(caudal.CaudalError) as ei:
            c.steer_set("k", 2**64)
        assert ei.value.status == caudal.ERR_INVALID
        with pytest.raises(caudal.CaudalError) as ei:
            c.steer_set("k", "a\0b")
        assert ei.value.status == caudal.ERR_INVALID
        with pytest.raises(caudal.CaudalError) as ei:
            c.steer_set("", 1.0)
        assert ei.value.status == caudal.ERR_INVALID
        with pytest.raises(caudal.CaudalError) as ei:
            c.steer_get("x" * 300)
        assert ei.value.status == caudal.ERR_INVALID
        c.steer_set("flag", True)  # a bool is an int
    events = sink.stop()
    assert {"type": "steer", "rank": 0, "step": None, "key": "flag", "value": 1} in events


def test_receiver_steer_bad_values(receiver):
    with pytest.raises(caudal.CaudalError) as ei:
        receiver.steer(-2, "k", 1.0)
    assert ei.value.status == caudal.ERR_INVALID
    with pytest.raises(caudal.CaudalError) as ei:
        receiver.steer(-1, "", 1.0)
    assert ei.value.status == caudal.ERR_INVALID
    with pytest.raises(TypeError):
        receiver.steer(-1, "k", None)


def test_client_reads_any_type_whole(sink):
    """One read gives whatever type the key holds now, even when it changed
    type since the last read, and a string as long as the protocol carries
    (65536 bytes) comes back whole."""
    import time

    longest = "\u00e9" * 32768  # 2 bytes each in UTF-8
    with caudal.Client(0, 1, endpoint=sink.endpoint) as c:
        for value in (1.5, "text", -(2**63), longest, 0.0, "", 7):
            sink.steer(0, "k", value)
            deadline = time.monotonic() + 10
            got = c.steer_get("k")
            while (got != value or type(got) is not type(value)) and time.monotonic() < deadline:
                time.sleep(0.002)
                got = c.steer_get("k")
            assert got == value and type(got) is type(value), (value if value != longest
                                                              else "the longest string", got)
    sink.stop()
