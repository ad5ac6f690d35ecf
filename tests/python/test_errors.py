"""Bad input gets a CaudalError with a status and a message naming the rank,
the step and the array; never a crash. The client runs here, the receiver in
a sink process."""

import socket

import numpy as np
import pytest

import caudal


def raises(status, fn, *args, **kw):
    with pytest.raises(caudal.CaudalError) as ei:
        fn(*args, **kw)
    e = ei.value
    assert e.status == status, (e.status, str(e))
    assert e.message == str(e)
    assert e.description == caudal.strerror(status)
    return str(e)


@pytest.fixture
def client(sink):
    c = caudal.Client(2, 4, endpoint=sink.endpoint)
    c.declare("t", "float64", (8, 6), (4, 0), (4, 6))
    c.declare("f", np.dtype("int32"), (8, 6), (0, 2), (8, 2), order="F")
    c.declare_var("p", "float32", 10)
    yield c
    if not c.closed:
        c.close()


def test_status_constants():
    assert caudal.OK == 0 and caudal.NO_VALUE == 1
    assert caudal.ERR_DTYPE == -5 and caudal.ERR_SYSTEM == -18
    assert caudal.strerror(caudal.ERR_AUTH) == "job token rejected"
    assert caudal.strerror(12345) == "unknown status"
    assert issubclass(caudal.CaudalError, Exception)


def test_wrong_dtype_names_array_rank_and_step(client):
    client.begin_step(3)
    msg = raises(caudal.ERR_DTYPE, client.put, "t", np.zeros((4, 6), np.float32))
    assert "rank 2" in msg and "step 3" in msg and "'t'" in msg
    assert "float64" in msg and "float32" in msg
    # Types caudal does not carry at all.
    msg = raises(caudal.ERR_DTYPE, client.put, "t", np.zeros((4, 6), np.float16))
    assert "'t'" in msg and "format 'e'" in msg
    raises(caudal.ERR_DTYPE, client.put, "t", np.zeros((4, 6), bool))
    raises(caudal.ERR_DTYPE, client.put, "t", np.zeros((4, 6), ">f8"))
    raises(caudal.ERR_DTYPE, client.put_var, "p", np.zeros(3, np.float64))
    # The step goes on: the right put still works.
    client.put("t", np.ones((4, 6)))
    client.end_step()


def test_wrong_number_of_bytes(client):
    client.begin_step(0)
    msg = raises(caudal.ERR_SHAPE, client.put, "t", np.zeros(20))
    assert "rank 2" in msg and "step 0" in msg and "'t'" in msg
    assert "160 bytes" in msg and "192" in msg and "(4, 6)" in msg
    raises(caudal.ERR_SHAPE, client.put, "t", np.zeros(0))
    raises(caudal.ERR_SHAPE, client.put, "t", np.zeros(25))
    msg = raises(caudal.ERR_SHAPE, client.put, "t", np.zeros((4, 5)))
    assert "shape (4, 5)" in msg and "shape (4, 6)" in msg and "step 0" in msg
    # A flat buffer of the block's elements is fine (C and Fortran codes hold
    # blocks that way).
    client.put("t", np.zeros(24))
    raises(caudal.ERR_SHAPE, client.put_var, "p", np.zeros((2, 2), np.float32))
    client.end_step()


def test_the_same_bytes_in_another_shape_are_refused(client):
    """An (8, 4) array has the bytes of a (4, 8) block, each element in the
    wrong place: only the declared shape or a flat buffer goes in."""
    c = client
    c.declare("w", "float64", (8, 8), (0, 0), (4, 8))
    c.declare("v", "int32", (8, 6, 4), (0, 0, 0), (2, 3, 4))
    c.declare("one", "float32", (8,), (3,), (1,))
    c.begin_step(7)
    for name, bad, good in [
            ("w", (8, 4), (4, 8)), ("w", (2, 16), (4, 8)), ("w", (4, 8, 1), (4, 8)),
            ("w", (1, 4, 8), (4, 8)), ("w", (32, 1), (4, 8)), ("t", (6, 4), (4, 6)),
            ("t", (2, 12), (4, 6)), ("t", (2, 2, 6), (4, 6)), ("t", (24, 1), (4, 6)),
            ("v", (4, 3, 2), (2, 3, 4)), ("v", (6, 4), (2, 3, 4)), ("v", (2, 12), (2, 3, 4)),
            ("one", (1, 1), (1,))]:
        dtype = {"v": np.int32, "one": np.float32}.get(name, np.float64)
        msg = raises(caudal.ERR_SHAPE, c.put, name, np.zeros(bad, dtype))
        assert "rank 2, step 7, array '%s'" % name in msg, msg
        assert "shape %s" % (bad,) in msg and "shape %s" % (good,) in msg, msg
    # A 0-d array is neither the block's shape nor a flat buffer.
    raises(caudal.ERR_SHAPE, c.put, "one", np.float32(1.0))
    raises(caudal.ERR_SHAPE, c.put, "one", np.zeros((), np.float32))
    # Declared in Fortran order: the block's shape, Fortran-contiguous, and
    # not its transpose (which is Fortran-contiguous too).
    f = np.asfortranarray(np.arange(16, dtype=np.int32).reshape(8, 2))
    msg = raises(caudal.ERR_SHAPE, c.put, "f", f.T.copy(order="F"))
    assert "shape (2, 8)" in msg and "shape (8, 2)" in msg and "Fortran order" in msg
    raises(caudal.ERR_SHAPE, c.put, "f", np.asfortranarray(np.zeros((4, 4), np.int32)))
    # The C transpose of a Fortran block is C-contiguous: still the order error.
    raises(caudal.ERR_INVALID, c.put, "f", np.ascontiguousarray(f))
    # put_var: 1-D only, of any length.
    raises(caudal.ERR_SHAPE, c.put_var, "p", np.zeros((3, 1), np.float32))
    raises(caudal.ERR_SHAPE, c.put_var, "p", np.zeros((1, 3), np.float32))
    raises(caudal.ERR_SHAPE, c.put_var, "p", np.float32(2.0))
    # After all the refusals, the right shapes (and flat buffers) go in.
    c.put("w", np.zeros((4, 8)))
    c.put("v", np.zeros(24, np.int32))
    c.put("t", np.zeros((4, 6)))
    c.put("one", np.zeros(1, np.float32))
    c.put("f", f)
    c.put_var("p", np.zeros(0, np.float32))
    c.end_step()


def test_non_contiguous(client):
    client.begin_step(0)
    big = np.zeros((4, 12))
    msg = raises(caudal.ERR_INVALID, client.put, "t", big[:, ::2])
    assert "contiguous" in msg and "'t'" in msg and "step 0" in msg
    # C data for a Fortran-declared array, and the other way round.
    msg = raises(caudal.ERR_INVALID, client.put, "f", np.zeros((8, 2), np.int32))
    assert "Fortran" in msg and "'f'" in msg
    raises(caudal.ERR_INVALID, client.put, "t", np.asfortranarray(np.zeros((4, 6))))
    raises(caudal.ERR_INVALID, client.put_var, "p", np.zeros(8, np.float32)[::2])
    client.put("f", np.asfortranarray(np.zeros((8, 2), np.int32)))
    client.put("t", np.ascontiguousarray(big[:, ::2]))
    client.put_var("p", np.zeros(8, np.float32)[::2].copy())
    client.end_step()


def test_unknown_array_and_put_kind(client):
    client.begin_step(0)
    msg = raises(caudal.ERR_UNKNOWN_ARRAY, client.put, "nope", np.zeros(3))
    assert "'nope'" in msg and "rank 2" in msg and "step 0" in msg
    raises(caudal.ERR_UNKNOWN_ARRAY, client.put_var, "nope", np.zeros(3))
    msg = raises(caudal.ERR_INVALID, client.put, "p", np.zeros(10, np.float32))
    assert "put_var" in msg
    raises(caudal.ERR_INVALID, client.put_var, "t", np.zeros(24))
    client.end_step()


def test_not_a_buffer(client):
    client.begin_step(0)
    with pytest.raises(TypeError):
        client.put("t", [0.0] * 24)
    client.end_step()


def test_put_twice_and_outside_a_step(client):
    msg = raises(caudal.ERR_STATE, client.put, "t", np.zeros((4, 6)))
    assert "'t'" in msg and "rank 2" in msg and "before the first step" in msg
    raises(caudal.ERR_STATE, client.end_step)
    client.begin_step(1)
    raises(caudal.ERR_STATE, client.begin_step, 2)
    client.put("t", np.zeros((4, 6)))
    msg = raises(caudal.ERR_DUPLICATE, client.put, "t", np.zeros((4, 6)))
    assert "twice" in msg
    client.end_step()
    msg = raises(caudal.ERR_STATE, client.put, "t", np.zeros((4, 6)))
    assert "after step 1" in msg


def test_steps_going_backwards(client):
    client.begin_step(5)
    client.end_step()
    msg = raises(caudal.ERR_STEP_ORDER, client.begin_step, 4)
    assert "step 4" in msg and "step 5" in msg and "rank 2" in msg
    raises(caudal.ERR_STEP_ORDER, client.begin_step, 5)
    raises(caudal.ERR_INVALID, client.begin_step, -1)
    raises(caudal.ERR_INVALID, client.begin_step, 2**64)
    client.begin_step(np.uint64(6))  # any integer type
    client.end_step()


def test_bad_declarations(client):
    raises(caudal.ERR_DUPLICATE, client.declare, "t", "float64", (8,), (0,), (8,))
    msg = raises(caudal.ERR_SHAPE, client.declare, "u", "float64", (8,), (4,), (5,))
    assert "'u'" in msg
    raises(caudal.ERR_SHAPE, client.declare, "u", "float64", (8, 2), (0,), (8,))
    raises(caudal.ERR_SHAPE, client.declare, "u", "float64", (), (), ())
    raises(caudal.ERR_SHAPE, client.declare, "u", "float64", (1,) * 9, (0,) * 9, (1,) * 9)
    raises(caudal.ERR_SHAPE, client.declare, "u", "float64", (8,), (-1,), (8,))
    raises(caudal.ERR_DTYPE, client.declare, "u", "float16", (8,), (0,), (8,))
    raises(caudal.ERR_DTYPE, client.declare, "u", "bogus", (8,), (0,), (8,))
    raises(caudal.ERR_DTYPE, client.declare_var, "u", object)
    raises(caudal.ERR_INVALID, client.declare, "u", "float64", (8,), (0,), (8,), order="K")
    raises(caudal.ERR_INVALID, client.declare_var, "u", "float64", -1)
    raises(caudal.ERR_INVALID, client.declare, "", "float64", (8,), (0,), (8,))
    # Every spelling of a dtype that the binding accepts.
    for k, spelling in enumerate(["uint16", "<u2", "u2", np.uint16, np.dtype("uint16"),
                                  caudal.DTYPES.index("uint16") + 1]):
        client.declare("ok%d" % k, spelling, (4,), (0,), (4,))
    client.begin_step(0)
    client.put("ok3", np.arange(4, dtype=np.uint16))
    client.end_step()


def test_every_method_after_close(client):
    client.close()
    assert client.closed
    calls = [
        lambda: client.declare("x", "float64", (1,), (0,), (1,)),
        lambda: client.declare_var("x", "float64"),
        lambda: client.begin_step(9),
        lambda: client.put("t", np.zeros((4, 6))),
        lambda: client.put_var("p", np.zeros(1, np.float32)),
        client.end_step,
        lambda: client.steer_get("k"),
        lambda: client.steer_set("k", 1.0),
        client.counters,
        client.close,
        client.__enter__,
    ]
    for call in calls:
        msg = raises(caudal.ERR_CLOSED, call)
        assert "closed" in msg
    assert "closed" in repr(client)


def test_context_manager_closes(sink):
    with caudal.Client(0, 1, endpoint=sink.endpoint) as c:
        assert not c.closed and c.rank == 0 and c.size == 1
        c.declare("x", "float64", (2,), (0,), (2,))
        c.begin_step(0)
        c.put("x", np.array([1.0, 2.0]))
        c.end_step()
        counters = c.counters()
    assert c.closed
    assert counters["steps_sent"] == 1 and counters["blocks_sent"] == 1
    assert counters["bytes_sent"] == 16
    assert set(counters) == {"steps_sent", "steps_dropped", "blocks_sent", "bytes_sent",
                             "bytes_inline", "ns_in_calls", "ns_waiting"}
    # An exception inside the block propagates; the client is closed anyway.
    with pytest.raises(KeyError):
        with caudal.Client(0, 1, endpoint=sink.endpoint) as c2:
            raise KeyError("boom")
    assert c2.closed
    events = sink.stop()
    blocks = [e for e in events if e["type"] == "block"]
    assert blocks == [{"type": "block", "rank": 0, "step": 0, "name": "x", "count": 2,
                       "nbytes": 16, "sum": 3.0}]
    assert sum(e["type"] == "bye" for e in events) == 2


def test_errors_leave_the_stream_intact(sink):
    """After every kind of refused call the receiver still gets exactly the
    steps that were published, and a goodbye."""
    c = caudal.Client(1, 2, endpoint=sink.endpoint)
    c.declare("x", "int64", (4,), (0,), (4,))
    for step in range(3):
        c.begin_step(step)
        with pytest.raises(caudal.CaudalError):
            c.put("x", np.zeros(4, np.int32))
        with pytest.raises(caudal.CaudalError):
            c.put("x", np.zeros(5, np.int64))
        c.put("x", np.full(4, step, np.int64))
        with pytest.raises(caudal.CaudalError):
            c.put("x", np.zeros(4, np.int64))
        c.end_step()
    c.close()
    events = sink.stop()
    assert [(e["step"], e["sum"]) for e in events if e["type"] == "block"] == [
        (0, 0.0), (1, 4.0), (2, 8.0)]
    assert [e["nblocks"] for e in events if e["type"] == "step_end"] == [1, 1, 1]
    assert [e["type"] for e in events if e["type"] in ("bye", "disconnect")] == ["bye"]


def test_bad_token(start_sink, transport):
    s = start_sink(transport, token="s3cret")
    msg = raises(caudal.ERR_AUTH, caudal.Client, 1, 2, endpoint=s.endpoint, token="guess",
                 connect_timeout_ms=10000)
    assert "rank 1" in msg and "token" in msg
    with caudal.Client(1, 2, endpoint=s.endpoint, token="s3cret"):
        pass
    events = s.stop()
    # It never was a rank: refused (to be logged), no disconnect of any rank.
    assert not [e for e in events if e["type"] == "disconnect"]
    refused = [e for e in events if e["type"] == "refused"]
    assert len(refused) == 1 and refused[0]["status"] == caudal.ERR_AUTH
    assert refused[0]["rank"] == 1 and "wrong job token" in refused[0]["message"]


def test_unreachable_endpoint():
    msg = raises(caudal.ERR_CONNECT, caudal.Client, 0, 1,
                 endpoint="unix:/tmp/cdl-nobody-listens-here.sock")
    assert "cdl-nobody-listens-here" in msg
    with socket.socket() as s:  # a port that was free a moment ago
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    msg = raises(caudal.ERR_CONNECT, caudal.Client, 0, 1, endpoint="tcp:127.0.0.1:%d" % port,
                 connect_timeout_ms=5000)
    assert str(port) in msg


def test_bad_client_options(sink, monkeypatch):
    raises(caudal.ERR_INVALID, caudal.Client, 4, 4, endpoint=sink.endpoint)
    raises(caudal.ERR_INVALID, caudal.Client, -1, 4, endpoint=sink.endpoint)
    raises(caudal.ERR_INVALID, caudal.Client, 0, 1, endpoint="nowhere")
    raises(caudal.ERR_INVALID, caudal.Client, 0, 1, endpoint=sink.endpoint, policy="maybe")
    raises(caudal.ERR_INVALID, caudal.Client, 0, 1, endpoint=sink.endpoint, ring_depth=-1)
    raises(caudal.ERR_INVALID, caudal.Client, 0, 1, endpoint=sink.endpoint,
           block_timeout_ms=-5)
    monkeypatch.delenv("CAUDAL_ENDPOINT", raising=False)
    msg = raises(caudal.ERR_INVALID, caudal.Client, 0, 1)
    assert "CAUDAL_ENDPOINT" in msg
    # The endpoint and token may come from the environment.
    monkeypatch.setenv("CAUDAL_ENDPOINT", sink.endpoint)
    with caudal.Client(0, 1, policy="drop", ring_depth=3, slot_bytes=4096) as c:
        assert c.counters()["steps_sent"] == 0


def test_dtype_name_helper():
    assert caudal.dtype_name(np.float32) == "float32"
    assert caudal.dtype_name("f8") == "float64"
    assert caudal.dtype_name(np.dtype("c16")) == "complex128"
    assert caudal.dtype_name(float) == "float64"
    assert caudal.dtype_name("uint8") == "uint8"
    assert caudal.dtype_name(np.zeros(1, np.int16).dtype) == "int16"
    for bad in (np.float16, ">f8", bool, "U4", object):
        with pytest.raises(caudal.CaudalError) as ei:
            caudal.dtype_name(bad)
        assert ei.value.status == caudal.ERR_DTYPE
    assert caudal.dtype_size("complex64") == 8
    assert len(caudal.DTYPES) == 12


def test_which_error_a_put_gets_first(client):
    """A put wrong in several ways reports the first of: the library's state
    checks (in a step, declared, put or put_var, dtype, put once), the
    buffer's contiguity in the declared order, its shape."""
    c = client
    bad_all_ways = np.zeros((6, 4), np.float32)[:, ::2]  # strided, shape, dtype
    raises(caudal.ERR_STATE, c.put, "t", bad_all_ways)
    c.begin_step(3)
    raises(caudal.ERR_UNKNOWN_ARRAY, c.put, "nope", bad_all_ways)
    raises(caudal.ERR_INVALID, c.put_var, "t", bad_all_ways)  # put_var of a fixed array
    msg = raises(caudal.ERR_DTYPE, c.put, "t", bad_all_ways)
    assert "float32" in msg
    # C data of the transposed shape for a Fortran array: the order is named,
    # not the shape.
    msg = raises(caudal.ERR_INVALID, c.put, "f", np.zeros((2, 8), np.int32))
    assert "rank 2, step 3, array 'f'" in msg and "Fortran-contiguous" in msg, msg
    assert "shape" not in msg, msg
    msg = raises(caudal.ERR_INVALID, c.put, "t", np.zeros((6, 8))[:, ::2])
    assert "C-contiguous" in msg and "ascontiguousarray" in msg, msg
    raises(caudal.ERR_INVALID, c.put_var, "p", np.zeros((4, 4), np.float32)[:, ::2])
    # Contiguous but of the wrong shape: now the shape.
    msg = raises(caudal.ERR_SHAPE, c.put, "f", np.asfortranarray(np.zeros((2, 8), np.int32)))
    assert "shape (2, 8)" in msg and "shape (8, 2)" in msg, msg
    c.put("t", np.zeros((4, 6)))
    raises(caudal.ERR_DUPLICATE, c.put, "t", np.zeros((6, 8))[:, ::2])
    c.end_step()


def test_versions_and_status_codes():
    """The library loaded is the one the package was built with, and every
    status code the header lists reaches Python."""
    built = (caudal._caudal.VERSION_MAJOR, caudal._caudal.VERSION_MINOR,
             caudal._caudal.VERSION_PATCH)
    assert caudal._caudal.library_version() == built
    assert ".".join(map(str, caudal._caudal.library_version())) == caudal.__version__
    codes = {n: getattr(caudal._caudal, n) for n in dir(caudal._caudal) if n.startswith("ERR_")}
    assert sorted(codes.values()) == list(range(-18, 0)), codes
    assert all(caudal.strerror(v) not in ("unknown status", "success") for v in codes.values())
    assert caudal._caudal.EVENT_TYPES[:2] == ("connect", "declare")
    assert "refused" in caudal._caudal.EVENT_TYPES
