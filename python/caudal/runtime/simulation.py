"""The simulation's processes: mpiexec in a session of its own that dies
with `caudal run`, and stopped in order (SIGTERM, then SIGKILL); its
output passed through (Output); and killing what a finder names until it
names nothing (Ray's agents ignore SIGTERM, and a process may fork while the
first ones die)."""

import ctypes
import os
import signal
import subprocess
import threading
import time

GRACE_SECONDS = 5  # between SIGTERM and SIGKILL of the simulation

_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent):
    """In the child before exec: SIGKILL when `caudal run` dies, even by
    SIGKILL, so that mpiexec (and with it the ranks) never outlives it."""
    def preexec():
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # died before the prctl took effect
            os._exit(1)
    return preexec


def _signal_group(proc, sig):
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_simulation(proc, grace=GRACE_SECONDS):
    """SIGTERM to mpiexec's process group (it has its own session), SIGKILL
    after the grace period; returns mpiexec's exit status."""
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    _signal_group(proc, signal.SIGKILL)  # stragglers of the group too
    return proc.wait()


def kill_until_gone(find, rounds=10, pause=0.2):
    """SIGKILL every pid that find() returns until it returns none, at most
    `rounds` times, `pause` seconds apart; returns what find() still names
    after that (nothing, unless unkillable)."""
    for _ in range(rounds):
        pids = find()
        if not pids:
            return []
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(pause)
    return list(find())


class Output:
    """The simulation's stdout and stderr (pipes), passed through to caudal
    run's own as they come, until caudal run stops the simulation itself:
    from then on they go to `tail_path` instead. What comes then is the MPI
    launcher's report of the signal caudal run sent (MPICH's "BAD
    TERMINATION OF ONE OF YOUR APPLICATION PROCESSES" banner, Open MPI's
    "mpirun noticed that process rank 0 ... exited on signal 15"), which
    reads as the cause of a stop whose cause Caudal prints: kept in the run
    folder, not lost, and off the console."""

    def __init__(self, proc, tail_path):
        self.tail_path = tail_path
        self.lock = threading.Lock()
        self.diverted = False
        self.closed = False  # close() returned: what comes later is dropped
        self.tail = None  # the file, opened at its first bytes
        self.threads = [threading.Thread(target=self._pump, args=(pipe, fd), daemon=True,
                                         name="caudal-sim-output")
                        for pipe, fd in ((proc.stdout, 1), (proc.stderr, 2))]
        for t in self.threads:
            t.start()

    def divert(self):
        """From now on, into tail_path."""
        with self.lock:
            self.diverted = True

    def close(self, timeout=2.0):
        """Wait for both pipes to end (at most timeout: a rank that outlived
        mpiexec may hold them); the tail's path if anything went there."""
        end = time.monotonic() + timeout  # for both: caudal run may be under Slurm's KillWait
        for t in self.threads:
            t.join(max(0.0, end - time.monotonic()))
        with self.lock:
            self.closed = True
            if self.tail is None:
                return None
            self.tail.close()
            return self.tail_path

    def _pump(self, pipe, fd):
        src = pipe.fileno()
        while True:
            try:
                data = os.read(src, 1 << 16)
            except OSError:
                break
            if not data:
                break
            with self.lock:
                if self.closed:  # a rank that outlived mpiexec: drained, not kept
                    continue
                if self.diverted:
                    if self.tail is None:
                        self.tail = open(self.tail_path, "ab")
                    self.tail.write(data)
                    self.tail.flush()
                    continue
            try:
                while data:
                    data = data[os.write(fd, data):]
            except OSError:  # caudal run's own output is gone: keep draining the pipe
                pass
        pipe.close()
