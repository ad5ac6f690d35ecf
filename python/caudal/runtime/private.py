"""The run's private directory, and what cleans it up whatever ends the run.

`caudal run` keeps everything of a run that others must not reach in one
directory only its user can enter (0700 whatever the umask), named without
any part of the job token: the ranks' socket, Ray's temp dir and Ray's token.
Removing it removes the run. A run that is SIGKILLed cannot do that itself:
a guardian process does, and a later run removes what is left of dead ones.
"""

import os
import re
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile

# The run's private directory: /tmp/caudal-<pid of caudal run>-<random>. The
# pid lets a later run tell a directory whose run was SIGKILLed (and so could
# not clean up) from one of a run still going. /tmp, not $TMPDIR: a unix
# socket path must fit in 107 bytes, and Ray's sockets live under it too.
PRIVATE_BASE = "/tmp"
PRIVATE_RE = re.compile(r"caudal-(\d+)-[a-z0-9_]+$")


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_dirs(base=PRIVATE_BASE):
    """Remove the private directories of earlier runs of this user whose
    `caudal run` is dead (SIGKILLed runs cannot clean up after themselves).
    Only directories (not links) owned by this user, named as ours, whose
    pid no longer runs; a reused pid only keeps a directory a while longer."""
    removed = []
    try:
        names = os.listdir(base)
    except OSError:
        return removed
    for name in names:
        m = PRIVATE_RE.match(name)
        if not m or int(m.group(1)) == os.getpid():
            continue
        path = os.path.join(base, name)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            continue
        if _pid_alive(int(m.group(1))):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def private_dir(base=PRIVATE_BASE):
    """A fresh directory only this user can enter (0700 whatever the
    umask), named without any part of the job token."""
    path = tempfile.mkdtemp(prefix="caudal-%d-" % os.getpid(), dir=base)
    os.chmod(path, 0o700)
    return path


# A guardian process, in a session of its own, that waits for `caudal run`
# to end or to close its stdin (EOF comes however caudal run died: the write
# end is in caudal run alone), then kills every process of this user but
# caudal run that names the directory in its command line or environment or
# holds a file in it, and removes the directory. After a SIGKILLed caudal
# run that is mpiexec, the ranks and Ray's processes; after any other end,
# the Ray agents that ray.shutdown() does not stop (a DashboardAgent started
# while a Ctrl-C stopped ray.init lived on for a minute). Only the standard
# library, so that it starts at once.
GUARD = r"""
import os, shutil, signal, sys, time
priv = sys.argv[1]
# Not stopped by what stops the run (a Ctrl-C to the group, a batch system's
# SIGTERM to every process of the job): its work begins when caudal run ends.
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
try:
    while os.read(0, 4096):
        pass
except OSError:
    pass
if not os.path.isdir(priv):
    sys.exit(0)
key, uid = priv.encode(), os.getuid()
spare = {os.getpid(), int(sys.argv[2])}  # itself, and caudal run if it still runs
def holders():
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) in spare:
            continue
        base = "/proc/" + d
        try:
            if os.stat(base).st_uid != uid:
                continue
            hit = any(key in open(base + f, "rb").read() for f in ("/cmdline", "/environ"))
            for fd in [] if hit else os.listdir(base + "/fd"):
                try:
                    if os.readlink(base + "/fd/" + fd).startswith(priv):
                        hit = True
                        break
                except OSError:
                    pass
        except OSError:
            continue
        if hit:
            out.append(int(d))
    return out
for _ in range(5):
    pids = holders()
    if not pids:
        break
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    time.sleep(0.5)
shutil.rmtree(priv, ignore_errors=True)
"""


def start_guard(priv):
    return subprocess.Popen([sys.executable, "-I", "-c", GUARD, priv, str(os.getpid())],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            start_new_session=True)


def ray_token(priv):
    """Token authentication for the embedded Ray, with a token of this run's
    own that only this user can read. Left to itself Ray 2.60 uses (and
    creates) ~/.ray/auth_token with the umask's mode, often world-readable,
    and whoever reads it can run code in the cluster that holds the
    simulation's data. Set before ray.init, inherited by Ray's processes.
    Returns the token (under Slurm, the other nodes' Ray get it too)."""
    path = os.path.join(priv, "ray_token")
    token = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ.pop("RAY_AUTH_TOKEN", None)  # it would take precedence over the file
    os.environ["RAY_AUTH_TOKEN_PATH"] = path
    # This process may have read a token already (importing Ray does): make
    # it read the configuration and the token again, as Ray's own tests do.
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()
    return token
