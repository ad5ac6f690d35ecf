"""A hostile local peer against a real `caudal run` (4 MPI ranks of
examples/heat2d, the analytics of examples/analytics): connections that never
authenticate (junk, a wrong token, a frame before HELLO, a huge HELLO header,
half a HELLO, a probe, more idle connections than the receiver keeps) are
refused and closed, and the run does not notice: exit 0, every step's mean
equal to the simulation's own. The run's socket is found through each rank's
CAUDAL_ENDPOINT, written out by a wrapper that then waits for the attack
before it becomes the simulation."""

import glob
import os
import socket
import stat
import struct
import threading
import time

from test_run import STATS, caudal_run, oracle

MAGIC, VERSION = 0xCAD1, 1
HELLO, DECLARE, ERROR = 1, 3, 12
ERR_PROTOCOL, ERR_AUTH = -13, -14

WRAPPER = """#!/bin/sh
# A rank: say where the run's receiver listens, wait (at most a minute) until
# the test has attacked it, then become the simulation.
printf '%s' "$CAUDAL_ENDPOINT" > "{dir}/endpoint.$$"
i=0
while [ ! -e "{dir}/go" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done
exec "$@"
"""


class HeldRun:
    """`caudal run` (test_run.caudal_run) in a thread, its ranks held by
    WRAPPER until release(): the time a test needs to go at the run's
    endpoints before any rank connects. On entry, once `started` ranks are
    waiting, .endpoint is what they were handed (the same on every rank);
    after the block, .result is caudal_run's (process, results, run dir)."""

    def __init__(self, tmp_path, analytics, sim, started=1, **kwargs):
        self.dir = tmp_path
        wrapper = tmp_path / "rank.sh"
        wrapper.write_text(WRAPPER.format(dir=tmp_path))
        wrapper.chmod(0o755)
        self.done = {}
        self.runner = threading.Thread(target=lambda: self.done.setdefault(
            "run", caudal_run(tmp_path, analytics, [str(wrapper), *sim], **kwargs)))
        self.started = started
        self.endpoint = self.result = None

    def __enter__(self):
        self.runner.start()
        try:
            deadline = time.monotonic() + 300
            while (len(glob.glob(str(self.dir / "endpoint.*"))) < self.started
                   and self.runner.is_alive()):
                assert time.monotonic() < deadline, "the ranks did not start"
                time.sleep(0.1)
            assert self.runner.is_alive(), self.done["run"][0].stderr
            time.sleep(0.2)  # the files are written whole
            (self.endpoint,) = {open(f).read()
                                for f in glob.glob(str(self.dir / "endpoint.*"))}
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def release(self):
        (self.dir / "go").touch()

    def __exit__(self, *exc):
        self.release()
        self.runner.join(600)
        self.result = self.done.get("run")
        return False


def header(ftype, body_len):
    return struct.pack("<HBBIQ", MAGIC, VERSION, ftype, 0, body_len)


def hello(rank, size, token):
    body = struct.pack("<IIIHH", rank, size, os.getpid(), 1, len(token)) + token
    return header(HELLO, len(body)) + body


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(60)
    s.connect(path)
    return s


def answer(s):
    """Everything the receiver sent until it hung up: the (status, text) of
    its ERROR frame, or None. Waits at most the socket's timeout."""
    data = b""
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    s.close()
    while len(data) >= 16:
        magic, _, ftype, _, n = struct.unpack("<HBBIQ", data[:16])
        assert magic == MAGIC
        body, data = data[16:16 + n], data[16 + n:]
        if ftype == ERROR:
            status, tlen = struct.unpack("<iI", body[:8])
            return status, body[8:8 + tlen].decode()
    return None


def attack(path):
    """Each kind of stranger once; every one is answered and hung up on."""
    s = connect(path)
    s.sendall(b"\x5a" * 16)
    status, text = answer(s)
    assert status == ERR_PROTOCOL and "bad frame header" in text

    s = connect(path)
    s.sendall(hello(0, 4, b"not-the-job-token"))  # claims rank 0, a real rank
    status, text = answer(s)
    assert status == ERR_AUTH and "wrong job token" in text

    s = connect(path)
    s.sendall(header(DECLARE, 40))
    status, text = answer(s)
    assert status == ERR_PROTOCOL and "before hello" in text

    s = connect(path)
    s.sendall(header(HELLO, 1 << 16))  # judged by the header: no body sent
    status, text = answer(s)
    assert status == ERR_PROTOCOL and "a hello of 65536 bytes" in text

    s = connect(path)
    s.sendall(hello(1, 4, b"x" * 40)[:30])
    s.shutdown(socket.SHUT_WR)
    answer(s)  # the receiver hangs up on it (were it to hang on, recv times out)

    connect(path).close()  # a probe


def pester(path, stop):
    """Junk and wrong tokens while the ranks run, until the run is over."""
    while not stop.is_set():
        try:
            s = connect(path)
            s.sendall(hello(2, 4, b"guess") if int(time.time() * 20) % 2 else b"junk" * 8)
            answer(s)
        except OSError:
            pass  # the run ended and took its socket along
        stop.wait(0.05)


def test_strangers_on_the_socket_change_nothing(tmp_path, heat2d):
    means = tmp_path / "mean.txt"
    stop = threading.Event()
    idle = []
    pesterer = None
    held = HeldRun(tmp_path, STATS, [heat2d, "64", "48", "40", "--mean", str(means)],
                   env={"CAUDAL_DEMO_THRESHOLD": "1e9"})
    try:
        with held:
            assert held.endpoint.startswith("unix:")
            path = held.endpoint[5:]
            # Private to the user whatever the umask.
            assert stat.S_ISSOCK(os.stat(path).st_mode)
            assert os.stat(path).st_mode & 0o777 == 0o600

            attack(path)
            # More idle connections than the receiver keeps waiting, each with
            # half a hello, held while the ranks connect and run.
            for _ in range(70):
                s = connect(path)
                s.sendall(hello(3, 4, b"y" * 20)[:10])
                idle.append(s)
            pesterer = threading.Thread(target=pester, args=(path, stop))
            pesterer.start()
            held.release()
            # The receiver hangs up on every idle one (room for newer ones, or
            # the handshake deadline), whatever the ranks do meanwhile.
            for s in idle:
                answer(s)
    finally:
        stop.set()
        for s in idle:
            s.close()
    if pesterer:
        pesterer.join(60)

    p, results, run_dir = held.result
    assert p.returncode == 0, p.stdout + p.stderr
    want = oracle(means)
    assert sorted(want) == list(range(40))
    assert sorted(results["mean"]) == sorted(want)  # every step, none missing
    for step, m in want.items():
        assert abs(results["mean"][step] - m) <= 1e-12 * abs(m)
    assert not os.path.exists(path)
