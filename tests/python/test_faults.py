"""Faults injected into real `caudal run`s: real mpiexec ranks (examples/heat2d
and _faulty_sim.py, an mpi4py simulation whose rank 0 writes the mean of
every step, flushed, as its own oracle), a real local Ray, real signals.

Each test checks the exit code and the "end" record of summary.json, that
every step analysed has the simulation's own mean, and that nothing of the
run is left: no process (ranks, mpiexec, Ray's processes), no private
directory (socket, Ray's temp dir), no new file in /dev/shm that no process
holds.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import HERE

SIM = os.path.join(HERE, "_faulty_sim.py")
MEAN = """
import caudal

@caudal.analysis("%s")
def mean(t, ctx):
    ctx.record("mean", float(t[0].data.mean().compute()))
"""


# ---- processes and leftovers ----------------------------------------------


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def process_table():
    """pid -> (ppid, start time, cmdline) of this user's processes."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        stat = _read("/proc/%s/stat" % d).decode(errors="replace")
        if not stat:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        out[int(d)] = (int(fields[1]), fields[19], _read("/proc/%s/cmdline" % d))
    return out


def descendants(root):
    table = process_table()
    kids = {}
    for pid, (ppid, _, _) in table.items():
        kids.setdefault(ppid, []).append(pid)
    out, todo = {}, [root]
    while todo:
        for k in kids.get(todo.pop(), []):
            out[k] = table[k]
            todo.append(k)
    return out


def alive(snapshot):
    """Those of the snapshot's processes that still run (same start time)."""
    now = process_table()
    return {pid: v[2][:120] for pid, v in snapshot.items()
            if pid in now and now[pid][1] == v[1]}


def holders(path):
    """Processes naming path in their command line or environment, or
    holding a file under it."""
    key, out = path.encode(), []
    for pid in process_table():
        base = "/proc/%d" % pid
        if key in _read(base + "/cmdline") or key in _read(base + "/environ"):
            out.append(pid)
            continue
        try:
            fds = os.listdir(base + "/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink("%s/fd/%s" % (base, fd)).startswith(path):
                    out.append(pid)
                    break
            except OSError:
                pass
    return out


def shm_in_use():
    used = set()
    for pid in process_table():
        base = "/proc/%d" % pid
        for line in _read(base + "/maps").decode(errors="replace").splitlines():
            if "/dev/shm/" in line:
                used.add(line.split("/dev/shm/", 1)[1].split(" ")[0])
        try:
            for fd in os.listdir(base + "/fd"):
                try:
                    t = os.readlink("%s/fd/%s" % (base, fd))
                except OSError:
                    continue
                if t.startswith("/dev/shm/"):
                    used.add(t[len("/dev/shm/"):].split(" ")[0])
        except OSError:
            pass
    return used


class Run:
    """A `caudal run` in the background, in a session of its own (as at a
    terminal: a Ctrl-C reaches its whole process group)."""

    def __init__(self, tmp_path, sim, ranks=3, extra=(), array="field", name="run"):
        self.run_dir = tmp_path / name
        script = tmp_path / ("%s-mean.py" % name)
        script.write_text(MEAN % array)
        self.out = open(tmp_path / ("%s.out" % name), "w+")
        self.err = open(tmp_path / ("%s.err" % name), "w+")
        self.shm_before = set(os.listdir("/dev/shm"))
        self.p = subprocess.Popen(
            # Its analysis is Dask's mean: workers started up front, so
            # that the first steps do not wait for them (under drop, they
            # would be dropped while the ranks wait).
            [sys.executable, "-m", "caudal", "run", "-n", str(ranks), "--analytics",
             str(script), "--run-dir", str(self.run_dir), "--workers", "2", *extra, "--",
             *sim],
            stdout=self.out, stderr=self.err, start_new_session=True)
        self.procs = {}

    def private_dir(self, timeout=120):
        d = wait_for(lambda: [x for x in os.listdir("/tmp")
                              if x.startswith("caudal-%d-" % self.p.pid)], timeout, self)
        return "/tmp/" + d[0]

    def means(self):
        out = {}
        path = self.run_dir / "results.jsonl"
        if path.exists():
            for line in path.read_text().splitlines():
                if line.endswith("}"):
                    r = json.loads(line)
                    out[r["step"]] = r["value"]
        return out

    def wait_steps(self, n, timeout=180):
        wait_for(lambda: len(self.means()) >= n, timeout, self)
        self.procs.update(descendants(self.p.pid))

    def rank_pid(self, rank):
        for pid in descendants(self.p.pid):
            if b"PMI_RANK=%d\0" % rank in _read("/proc/%d/environ" % pid) and \
                    b"hydra" not in _read("/proc/%d/cmdline" % pid):
                return pid
        raise AssertionError("no process of rank %d" % rank)

    def ended(self, code, reason, timeout=180):
        """Wait for the end; the exit code and summary.json's end record must
        say `code` and `reason`, with no traceback. Returns (stderr, summary)."""
        rc = self.wait(timeout)
        err = self.stderr()
        assert rc == code, err
        assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
        s = self.summary()
        assert s["end"]["reason"] == reason and s["end"]["exit_code"] == code, s["end"]
        return err, s

    def wait(self, timeout=180):
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            raise AssertionError("caudal run did not end within %ss:\n%s" % (timeout,
                                                                             self.stderr()))
        return rc

    def stderr(self):
        self.err.seek(0)
        return self.err.read()

    def stdout(self):
        self.out.seek(0)
        return self.out.read()

    def summary(self):
        return json.loads((self.run_dir / "summary.json").read_text())

    def assert_nothing_left(self, priv, timeout=60):
        """No process of the run, no private directory (the socket and Ray's
        temp dir are in it), no new file in /dev/shm that nobody holds."""
        def clean():
            return not alive(self.procs) and not os.path.exists(priv) and not holders(priv)
        try:
            wait_for(clean, timeout, None)
        except AssertionError:
            raise AssertionError("left behind: processes %r, directory %s exists: %s, "
                                 "holders %r" % (alive(self.procs), priv,
                                                 os.path.exists(priv), holders(priv)))
        new = set(os.listdir("/dev/shm")) - self.shm_before
        assert not (new - shm_in_use()), "left in /dev/shm: %r" % sorted(new - shm_in_use())


def wait_for(pred, timeout, run):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        if run is not None and run.p.poll() is not None:
            v = pred()
            if v:
                return v
            raise AssertionError("caudal run ended (%s) first:\n%s" % (run.p.returncode,
                                                                      run.stderr()))
        time.sleep(0.2)
    raise AssertionError("not within %ss%s" % (timeout, ":\n" + run.stderr() if run else ""))


def oracle(path):
    return {int(s): float(m) for s, m in (l.split() for l in path.read_text().splitlines()
                                          if l.count(" ") == 1)}


def assert_means_are_the_simulations(means, want):
    assert means, "nothing analysed"
    assert sorted(means) == list(range(len(means))), "analysed steps not 0..n: %r" % sorted(means)
    for step, m in means.items():
        assert step in want, "step %d analysed but not in the simulation's oracle" % step
        assert abs(m - want[step]) <= 1e-12 * max(1.0, abs(want[step])), (step, m, want[step])


def covered(ranges):
    return [s for a, b in ranges for s in range(a, b + 1)]


# ---- a normal run ---------------------------------------------------------


def test_a_normal_run_is_private_and_leaves_nothing(tmp_path):
    # A directory of a killed run (dead pid) goes; one of a live run stays.
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = "/tmp/caudal-%d-zz%d" % (dead.pid, os.getpid())
    live = "/tmp/caudal-%d-zz%d" % (os.getpid(), os.getpid())
    for d in (stale, live):
        os.makedirs(d + "/ray", exist_ok=True)
        open(d + "/ingest.sock", "w").close()
    try:
        env, orc = tmp_path / "env.json", tmp_path / "oracle.txt"
        old = os.umask(0)  # the directory is private whatever the umask
        try:
            run = Run(tmp_path, [sys.executable, SIM, "12", "--sleep", "0.3", "--oracle", str(orc),
                                 "--env", str(env)])
        finally:
            os.umask(old)
        priv = run.private_dir()
        wait_for(env.exists, 120, run)
        ep = json.loads(env.read_text())
        path, token = ep["CAUDAL_ENDPOINT"].split(":", 1)[1], ep["CAUDAL_TOKEN"]
        assert os.path.dirname(path) == priv
        st = os.stat(priv)
        assert st.st_mode & 0o777 == 0o700 and st.st_uid == os.getuid()
        assert len(token) == 32
        assert not any(token[i:i + 4] in path for i in range(len(token) - 3)), (path, token)
        # Ray's own token: this run's, in a file only this user can read,
        # not the umask-mode ~/.ray/auth_token Ray would make by itself.
        assert ep["RAY_AUTH_MODE"] == "token"
        ray_token = ep["RAY_AUTH_TOKEN_PATH"]
        assert os.path.dirname(ray_token) == priv
        assert os.stat(ray_token).st_mode & 0o777 == 0o600
        assert len(open(ray_token).read()) == 64
        run.procs.update(descendants(run.p.pid))
        # A stranger on the socket is refused and logged; the run goes on.
        import socket

        for junk in (b"\x00" * 16, b"GET / HTTP/1.0\r\n\r\n"):
            with socket.socket(socket.AF_UNIX) as sk:
                sk.connect(path)
                sk.sendall(junk)
                sk.settimeout(30)
                try:
                    sk.recv(1024)
                except OSError:
                    pass
        assert run.wait() == 0, run.stderr()
        assert sum(i.get("connections_refused", 0) for i in run.summary()["ingest"]) == 2
        assert "refused a connection" in run.stderr()
        assert not os.path.exists(stale), "the stale directory was not removed"
        assert os.path.isdir(live), "a live run's directory was removed"
        assert "removed %s" % stale in run.stderr()
        assert_means_are_the_simulations(run.means(), oracle(orc))
        assert sorted(run.means()) == list(range(12))
        end = run.summary()["end"]
        assert end == {"reason": "completed", "message": end["message"], "exit_code": 0}
        run.assert_nothing_left(priv)
    finally:
        import shutil

        for d in (stale, live):
            shutil.rmtree(d, ignore_errors=True)


# ---- the simulation fails ------------------------------------------------------


def test_a_rank_killed_mid_run(tmp_path):
    orc = tmp_path / "oracle.txt"
    run = Run(tmp_path, [sys.executable, SIM, "100000", "--sleep", "0.05", "--oracle", str(orc)],
              ranks=4, extra=("--timeout", "240"))
    priv = run.private_dir()
    run.wait_steps(5)
    os.kill(run.rank_pid(2), signal.SIGKILL)
    err, s = run.ended(2, "simulation_failed")
    last = err.strip().splitlines()[-1]
    assert "simulation failed" in last and "rank 2 was the first to leave" in last, last
    assert "2" in s["ranks_lost"]
    means = run.means()
    assert len(means) >= 5
    assert_means_are_the_simulations(means, oracle(orc))
    # Every step the head had is analysed, skipped or left, by range: no
    # gap, no step twice.
    steps = sorted(means) + covered(s["steps_skipped"].get("field", [])) + \
        covered(s.get("steps_left_at_end", {}).get("field", []))
    assert sorted(steps) == list(range(len(steps))), s
    run.assert_nothing_left(priv)


def test_mpi_abort_is_a_simulation_failure(tmp_path):
    orc = tmp_path / "oracle.txt"
    run = Run(tmp_path, [sys.executable, SIM, "40", "--sleep", "0.05", "--oracle", str(orc),
                         "--abort-at", "12"])
    priv = run.private_dir()
    run.procs.update(descendants(run.p.pid))
    run.ended(2, "simulation_failed")  # not 3: no declaration was wrong
    means = run.means()
    assert_means_are_the_simulations(means, oracle(orc))
    assert max(means) <= 12
    run.assert_nothing_left(priv)


# ---- Caudal's runtime fails ---------------------------------------------------


def ingest_pid(run):
    for pid, (_, _, cmd) in descendants(run.p.pid).items():
        if b"IngestActor" in cmd:
            return pid
    raise AssertionError("no IngestActor process")


@pytest.mark.parametrize("policy", ["block", "drop"])
def test_the_ingest_actor_killed(tmp_path, policy):
    orc = tmp_path / "oracle.txt"
    # Under block the simulation stops at its first failing call; under drop
    # it carries on to its last step, as that policy allows.
    sim = [sys.executable, SIM, "150", "--sleep", "0.04", "--oracle", str(orc)]
    if policy == "drop":
        sim.append("--carry-on")
    run = Run(tmp_path, sim, extra=("--policy", policy, "--timeout", "240"))
    priv = run.private_dir()
    run.wait_steps(5)
    os.kill(ingest_pid(run), signal.SIGKILL)
    err, s = run.ended(4, "runtime_failed")  # no hang
    assert "ingest actor" in err.strip().splitlines()[-1]
    means = run.means()
    assert len(means) >= 5
    assert_means_are_the_simulations(means, oracle(orc))
    assert s["steps_lost"] == [[max(means) + 1, None]]
    if policy == "drop":
        # The call that met the loss failed; every later step was dropped
        # and counted by the client, and the simulation went to its end.
        m = re.search(r"faulty_sim: finished 150 steps; first error at step (\d+): .*; "
                      r"dropped (\d+)", run.stdout())
        assert m, run.stdout() + err
        assert int(m.group(2)) == 149 - int(m.group(1))
    else:
        assert "faulty_sim: finished" not in run.stdout()
        assert re.search(r"faulty_sim: rank \d: step \d+: .*receiver", err), err
    run.assert_nothing_left(priv)


# ---- the run is stopped -----------------------------------------------------


def test_ctrl_c_stops_the_run_in_order(tmp_path):
    orc = tmp_path / "oracle.txt"
    run = Run(tmp_path, [sys.executable, SIM, "100000", "--sleep", "0.05", "--oracle", str(orc)])
    priv = run.private_dir()
    run.wait_steps(3)
    os.killpg(run.p.pid, signal.SIGINT)  # as a Ctrl-C at the terminal
    err, _ = run.ended(130, "interrupted", timeout=120)
    # While the complete steps are analysed, the user is told how to skip it.
    assert "stopping: analysing the steps complete before the stop (Ctrl-C again" in err, err
    assert_means_are_the_simulations(run.means(), oracle(orc))
    run.assert_nothing_left(priv)


@pytest.mark.parametrize("delay", [0.5, 2.0])
def test_ctrl_c_while_ray_starts(tmp_path, delay):
    """A Ctrl-C while Ray is starting once crashed caudal run (SIGSEGV in
    Ray's IO thread, exit 139) or left a Ray agent alive for a minute."""
    run = Run(tmp_path, [sys.executable, SIM, "100000", "--sleep", "0.05"])
    priv = run.private_dir()  # caudal run is starting Ray now
    time.sleep(delay)
    os.killpg(run.p.pid, signal.SIGINT)
    run.ended(130, "interrupted", timeout=120)
    json.loads((run.run_dir / "summary.json").read_text(),
               parse_constant=lambda c: pytest.fail("%s in summary.json" % c))
    run.assert_nothing_left(priv, timeout=5)  # not a minute later: at once


def test_the_whole_run_timeout(tmp_path):
    run = Run(tmp_path, [sys.executable, SIM, "100000", "--sleep", "0.05"],
              extra=("--timeout", "30"))
    priv = run.private_dir()
    run.procs.update(descendants(run.p.pid))
    t0 = time.monotonic()
    err, _ = run.ended(5, "timeout", timeout=150)
    assert time.monotonic() - t0 < 120
    assert "--timeout 30" in err.strip().splitlines()[-1]
    run.assert_nothing_left(priv)


def test_caudal_run_killed(tmp_path):
    run = Run(tmp_path, [sys.executable, SIM, "100000", "--sleep", "0.05"])
    priv = run.private_dir()
    run.wait_steps(3)
    ranks = [p for p, (_, _, cmd) in run.procs.items() if SIM.encode() in cmd]
    rays = [p for p, (_, _, cmd) in run.procs.items() if priv.encode() in cmd]
    assert len(ranks) >= 3 and rays, run.procs  # the snapshot holds what must go
    os.kill(run.p.pid, signal.SIGKILL)
    run.p.wait()
    run.assert_nothing_left(priv, timeout=90)
