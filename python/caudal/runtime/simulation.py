"""The simulation's processes: mpiexec in a session of its own that dies
with `caudal run`, and stopped in order (SIGTERM, then SIGKILL)."""

import ctypes
import os
import signal
import subprocess

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
