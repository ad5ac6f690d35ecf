"""Shared fixtures: endpoints, client worker processes, a receiver sink.

Every test runs the clients and the receiver in separate processes: either
the receiver here and the clients in worker processes (_client_worker.py),
or the client here and the receiver in a sink process (_sink.py).
"""

import itertools
import json
import os
import select
import subprocess
import sys
import time

import pytest

import caudal

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "_client_worker.py")
SINK = os.path.join(HERE, "_sink.py")
NWORKERS = 4

_ids = itertools.count()


def unix_endpoint():
    """A fresh, short unix socket path (sun_path holds 107 bytes)."""
    return "unix:/tmp/cdl-%d-%d.sock" % (os.getpid(), next(_ids))


def endpoint_for(transport):
    return unix_endpoint() if transport == "unix" else "tcp:127.0.0.1:0"


@pytest.fixture(params=["unix", "tcp"])
def transport(request):
    return request.param


# ---------------------------------------------------------------- workers


class LineReader:
    """Lines from a child's stdout with a timeout (no hidden buffering)."""

    def __init__(self, pipe):
        self.fd = pipe.fileno()
        self.buf = b""
        self.eof = False

    def readline(self, timeout):
        """A line (str, without the newline); None on timeout; raises on EOF."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            if self.eof:
                raise EOFError("the process closed its output")
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.fd], [], [], max(left, 0))
            if not ready:
                return None
            chunk = os.read(self.fd, 65536)
            if not chunk:
                self.eof = True
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def rest(self):
        while not self.eof:
            chunk = os.read(self.fd, 65536)
            if not chunk:
                self.eof = True
            self.buf += chunk
        out, self.buf = self.buf.decode(), b""
        return out


class Worker:
    """A long-lived client process that runs one job at a time."""

    def __init__(self):
        self.p = subprocess.Popen(
            [sys.executable, WORKER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.out = LineReader(self.p.stdout)
        self.busy = False
        first = self._readline(120)
        assert json.loads(first).get("ready"), first

    def _readline(self, timeout):
        try:
            line = self.out.readline(timeout)
        except EOFError:
            raise RuntimeError("worker %d died (exit %s)" % (self.p.pid, self.p.wait()))
        if line is None:
            raise TimeoutError("worker %d gave no answer in %ss" % (self.p.pid, timeout))
        return line

    def submit(self, job):
        assert not self.busy
        self.p.stdin.write(json.dumps(job) + "\n")
        self.p.stdin.flush()
        self.busy = True

    def poll(self, timeout=0.0):
        """The job's result if it is ready within timeout, else None."""
        if not self.busy:
            return None
        try:
            line = self.out.readline(timeout)
        except EOFError:
            raise RuntimeError("worker %d died (exit %s)" % (self.p.pid, self.p.wait()))
        if line is None:
            return None
        self.busy = False
        return json.loads(line)

    def alive(self):
        return self.p.poll() is None

    def close(self):
        try:
            self.p.stdin.close()
            self.p.wait(5)
        except Exception:
            self.p.kill()
            self.p.wait()


class Pool:
    def __init__(self):
        self.workers = []

    def get(self, n):
        self.workers = [w for w in self.workers if w.alive() and not w.busy]
        while len(self.workers) < n:
            self.workers.append(Worker())
        return self.workers[:n]

    def discard(self, ws):
        for w in ws:
            w.p.kill()
            w.p.wait()
        self.workers = [w for w in self.workers if w not in ws]

    def close(self):
        for w in self.workers:
            w.close()


@pytest.fixture(scope="session")
def pool():
    p = Pool()
    yield p
    p.close()


def run_jobs(pool, receiver, jobs, handle=None, timeout=60):
    """Run each job in its own worker process while this process serves the
    receiver; call handle(event) for every event. Returns (results, events):
    the jobs' results in order and every event, block events without their
    Block (so that the blocks are given back as soon as handle is done)."""
    ws = pool.get(len(jobs))
    for w, job in zip(ws, jobs):
        w.submit(job)
    results = [None] * len(jobs)
    events = []
    connects = ends = 0
    deadline = time.monotonic() + timeout
    try:
        while True:
            ev = receiver.next(20)
            if ev is not None:
                if handle:
                    handle(ev)
                if ev.type == "block":
                    ev.block = None
                events.append(ev)
                connects += ev.type == "connect"
                ends += ev.type in ("bye", "disconnect")
            for k, w in enumerate(ws):
                if results[k] is None:
                    res = w.poll()
                    if res is not None:
                        results[k] = res
            if all(r is not None for r in results) and ends >= connects:
                return results, events
            if time.monotonic() > deadline:
                raise TimeoutError(
                    "jobs not done in %ss: results %r, last events %r"
                    % (timeout, results, events[-5:]))
    except BaseException:
        pool.discard([w for k, w in enumerate(ws) if results[k] is None])
        raise


def run_one(job, timeout=60):
    """Run one job in a fresh process (python _client_worker.py JOB)."""
    p = subprocess.run([sys.executable, WORKER, json.dumps(job)], capture_output=True,
                       text=True, timeout=timeout)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------- sink


class Sink:
    """A receiver in its own process that takes and gives back everything."""

    def __init__(self, endpoint, token=None):
        args = [sys.executable, SINK, endpoint] + ([token] if token is not None else [])
        self.p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True, bufsize=1)
        self.out = LineReader(self.p.stdout)
        try:
            line = self.out.readline(60)
        except EOFError:
            line = None
        if not line:
            self.p.kill()
            self.p.wait()
            raise RuntimeError("the sink did not start")
        self.endpoint = json.loads(line)["endpoint"]
        self._events = None

    def steer(self, rank, key, value):
        self.p.stdin.write(json.dumps({"steer": [rank, key, value]}) + "\n")
        self.p.stdin.flush()

    def events_until(self, pred, timeout=20):
        """Read logged events until pred(event) holds; returns those read."""
        got = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.out.readline(0.1)
            except EOFError:
                break
            if line:
                got.append(json.loads(line))
                if pred(got[-1]):
                    return got
        raise TimeoutError("the sink logged no matching event; got %r" % got[-10:])

    def stop(self):
        """Stop the sink; returns every event it logged that was not read."""
        if self._events is None:
            try:
                self.p.stdin.close()
            except BrokenPipeError:
                pass
            out = self.out.rest()
            self.p.wait(30)
            self._events = [json.loads(x) for x in out.splitlines() if x.strip()]
        return self._events


@pytest.fixture
def start_sink():
    sinks = []

    def start(transport, token=None):
        s = Sink(endpoint_for(transport), token)
        sinks.append(s)
        return s

    yield start
    for s in sinks:
        if s.p.poll() is None:
            try:
                s.stop()
            except Exception:
                s.p.kill()
                s.p.wait()


@pytest.fixture
def sink(start_sink, transport):
    return start_sink(transport)


@pytest.fixture
def receiver(transport):
    r = caudal.Receiver(endpoint_for(transport))
    yield r
    if not r.closed:
        r.close()


# ------------------------------------------------------------ examples

ROOT = os.path.dirname(os.path.dirname(HERE))


@pytest.fixture(scope="session")
def heat2d(tmp_path_factory):
    """examples/heat2d built as a user would: mpicc and `caudal config`."""
    import shutil

    mpicc = shutil.which("mpicc")
    assert mpicc, "mpicc not found: scripts/setup.sh installs MPICH"
    flags = subprocess.run([sys.executable, "-m", "caudal", "config", "--cflags", "--libs"],
                           check=True, capture_output=True, text=True).stdout.split()
    exe = str(tmp_path_factory.mktemp("heat2d") / "heat2d")
    subprocess.run([mpicc, "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror",
                    os.path.join(ROOT, "examples", "heat2d", "heat2d.c"), "-o", exe, *flags,
                    "-lm"], check=True)
    return exe


# ------------------------------------------------------------------- Ray


@pytest.fixture(scope="module")
def local_ray():
    """A real local Ray for the kernel tests (blocks in its object store,
    kernels as its tasks). Ray's socket paths must stay under 107 bytes."""
    import tempfile

    import ray

    tmp = tempfile.mkdtemp(prefix="cdlk-", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=tmp, log_to_driver=False,
             configure_logging=False)
    try:
        yield ray
    finally:
        ray.shutdown()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def new_private_dirs(before):
    """Private directories (/tmp/caudal-PID-*) that appeared since `before`
    (a listing of /tmp) and whose caudal run is gone: left behind. Those of
    runs still alive are other runs' (a machine shared with other tests)."""
    out = []
    for d in set(os.listdir("/tmp")) - before:
        parts = d.split("-")
        if d.startswith("caudal-") and len(parts) > 2 and parts[1].isdigit() \
                and not os.path.exists("/proc/%s" % parts[1]):
            out.append(d)
    return out
