"""The daemons a system's launch() starts (schedulers, workers, Ray heads,
analytics processes), each in a session of its own so that stopping it
stops everything it started and nothing else."""

import os
import signal
import subprocess


def start(cwd, cmd, log, env):
    """cmd, run in cwd in its own session, output appended to the file `log`."""
    with open(log, "ab") as f:
        return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True, cwd=cwd)


def stop(p, grace=30.0):
    """SIGTERM the process (a daemon then stops what it started), then
    SIGKILL what is left of its process group."""
    if p is None:
        return
    if p.poll() is None:
        try:
            p.send_signal(signal.SIGTERM)
            p.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    p.wait()
