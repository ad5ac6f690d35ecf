"""The simulation's processes: mpiexec in a session of its own that dies
with `caudal run`, and stopped in order (SIGTERM, then SIGKILL); and
killing what a finder names until it names nothing (Ray's agents ignore
SIGTERM, and a process may fork while the first ones die)."""

import ctypes
import os
import signal
import subprocess
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
