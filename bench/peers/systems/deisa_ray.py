"""deisa-ray (PyPI deisa-ray): Dask-on-Ray in situ analytics.

Set up as its Quick Start ("How to run") says: start a Ray cluster
(`ray start --head`; one machine here, so no worker nodes join), run the
analytics script on the head node (a Deisa() with a callback registered with
the window API, then execute_callbacks()), then the MPI simulation with one
deisa.ray.Bridge per rank. Each Bridge connects to the cluster, gets or
creates its node's scheduling actor ("node actor", detached, num_cpus=0) and
sends every step's block through Ray's object store; the head actor assembles
a step's chunks into one Dask array for the analytics, whose Dask graphs run
as Ray tasks (ray_dask_get, deisa-ray's default; its experimental distributed
scheduling stays off). Deisa's defaults are kept (max_simulation_ahead=1,
which 0.1.8's head actor stores but does not enforce: no backpressure).

deisa-ray 0.1.8 declares Requires-Python >= 3.12 and this machine has 3.11:
bench/peers/setup_peers.sh installs it with --ignore-requires-python and
rewrites its five PEP 695 `type X = Y` aliases (annotations only) as
`X: TypeAlias = Y`, which changes no behaviour. Everything runs in
.venv-peers/deisa-ray: the ranks' python (rank_cmd[0]) is replaced by its.
"""

import atexit
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
VENV = os.path.join(ROOT, ".venv-peers", "deisa-ray")
PYTHON = os.path.join(VENV, "bin", "python")
SETUP = "bench/peers/setup_peers.sh"

sys.path.insert(0, os.path.join(HERE, ".."))
import common  # noqa: E402
import processes  # noqa: E402


def version():
    if not os.path.exists(PYTHON):
        return "deisa-ray (not installed: run %s)" % SETUP
    code = ("import importlib.metadata as m, sys; "
            "print('deisa-ray %s, deisa-core %s, ray %s, dask %s, python %d.%d' % "
            "(m.version('deisa-ray'), m.version('deisa-core'), m.version('ray'), "
            "m.version('dask'), *sys.version_info[:2]))")
    r = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else "deisa-ray (broken: %s)" % (
        r.stderr.strip().splitlines() or ["?"])[-1]


class Bridge:
    """One deisa.ray.Bridge per rank, declaring the rank's block of the
    global "temperature" array (connects to Ray through RAY_ADDRESS)."""

    def __init__(self, comm, shape, start, count, out_dir):
        from deisa.ray import Bridge as DeisaBridge

        position = tuple(s // c for s, c in zip(start, count))
        self.b = DeisaBridge(comm, {"temperature": {"global_shape": tuple(shape),
                                                    "chunk_shape": tuple(count),
                                                    "chunk_position": position}})
        self.next_step = 0

    def publish(self, step, block):
        self.b.send("temperature", block, timestep=step)
        self.next_step = step + 1

    def close(self):
        self.b.close(timestep=self.next_step)
        self.b = None  # its __del__ now, not at interpreter teardown
        # deisa-ray 0.1.8's Bridge.send() ray.put()s the block from the rank
        # process, so the rank owns it: had the rank exit now, the analytics
        # would lose every step it has not computed yet (OwnerDiedError). The
        # rank therefore lives on, after heat.py's timed part (t_end, its
        # rank file), until the analytics say they are done.
        done = os.environ.get("DEISA_PEERS_DONE")
        if done:
            atexit.register(_wait_for, done)


def _wait_for(path, timeout=900.0):
    deadline = time.time() + timeout
    while not os.path.exists(path) and time.time() < deadline:
        time.sleep(0.05)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill_leftovers(mark):
    """SIGKILL any process whose command line names this run's own Ray temp
    dir (unique to this launch): only Ray processes this launch started."""
    me = os.getpid()
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == me:
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if mark.encode() in cmd:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass


def launch(cfg, out_dir, rank_cmd):
    if not os.path.exists(PYTHON):
        raise RuntimeError("deisa-ray: %s missing; run %s first" % (VENV, SETUP))
    check = subprocess.run([PYTHON, "-c", "from deisa.ray import Bridge, Deisa"],
                           capture_output=True, text=True)
    if check.returncode != 0:
        raise RuntimeError("deisa-ray cannot run on Python %d.%d here: %s" % (
            sys.version_info[0], sys.version_info[1],
            (check.stderr.strip().splitlines() or ["import failed"])[-1]))
    out_dir = os.path.abspath(out_dir)
    run_dir = os.path.join(out_dir, "deisa-ray-run")
    os.makedirs(run_dir, exist_ok=True)
    ready = os.path.join(run_dir, "analytics.ready")
    done = os.path.join(run_dir, "analytics.done")
    for path in (ready, done):
        if os.path.exists(path):
            os.remove(path)
    temp_dir = tempfile.mkdtemp(prefix="dr", dir="/tmp")  # short: unix socket paths
    port = _free_port()
    address = "127.0.0.1:%d" % port
    env = dict(os.environ, DEISA_PEERS_OUT=out_dir, DEISA_PEERS_READY=ready,
               DEISA_PEERS_DONE=done,
               PYTHONUNBUFFERED="1", RAY_ADDRESS=address, DEISA_RAY_ADDRESS=address,
               RAY_USAGE_STATS_ENABLED="0",
               # Ray >= 2.5x enables token authentication for `ray start --head`:
               # one token for this run, handed to the head, analytics and ranks
               RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32),
               # SIGTERM to `ray start --block` tears the node down at once (as
               # `ray stop` would), without Ray's drain wait, which is there for
               # Ray Serve replicas and would wait its full 30 s for deisa-ray's
               # detached actors
               RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0")
    env.pop("RAY_AUTH_TOKEN_PATH", None)
    for k in ("PYTHONPATH", "VIRTUAL_ENV"):
        env.pop(k, None)
    env["PATH"] = os.path.join(VENV, "bin") + os.pathsep + env.get("PATH", "")
    head = analytics = None
    try:
        # 1. the Ray cluster: a head node (`ray start --head`), held by --block
        ray_cli = os.path.join(VENV, "bin", "ray")
        head = processes.start(ROOT, [ray_cli, "start", "--head", "--block", "--port", str(port),
                                      "--temp-dir", temp_dir, "--include-dashboard", "false",
                                      "--disable-usage-stats"],
                               os.path.join(run_dir, "ray-head.log"), env)
        # 2. the analytics on the head node (Deisa retries ray.init until the
        # head answers); it marks `ready` once connected and registered
        analytics = processes.start(ROOT, [PYTHON, os.path.join(HERE, "deisa_ray_analytics.py")],
                                    os.path.join(run_dir, "analytics.log"), env)
        deadline = time.time() + 180
        while not os.path.exists(ready):
            for p, what in ((head, "ray start --head"), (analytics, "the analytics")):
                if p.poll() is not None:
                    raise RuntimeError("deisa-ray: %s exited with %d (see %s)"
                                       % (what, p.returncode, run_dir))
            if time.time() > deadline:
                raise RuntimeError("deisa-ray: the analytics did not connect within 180 s")
            time.sleep(0.1)
        # 3. the simulation, with this environment's python
        # (ranks outlive their loop until `done`: see Bridge.close; should the
        # analytics end early, `done` is written here so that no rank waits)
        sim = subprocess.Popen(common.mpiexec(cfg) + [PYTHON] + list(rank_cmd[1:]), env=env)
        try:
            while sim.poll() is None:
                if analytics.poll() is not None and not os.path.exists(done):
                    open(done, "w").close()
                time.sleep(0.1)
        finally:
            if sim.poll() is None:
                sim.terminate()
                sim.wait()
        if sim.returncode != 0:
            raise RuntimeError("deisa-ray: the simulation exited with %d" % sim.returncode)
        try:
            rc = analytics.wait(600)
        except subprocess.TimeoutExpired:
            raise RuntimeError("deisa-ray: the analytics did not finish within 600 s")
        if rc != 0:
            raise RuntimeError("deisa-ray: the analytics exited with %d (see %s)"
                               % (rc, os.path.join(run_dir, "analytics.log")))
    finally:
        processes.stop(analytics)
        processes.stop(head)
        _kill_leftovers(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
    return {"config": "deisa-ray Quick Start layout: `ray start --head --block` (one node, "
                      "default resources, free GCS port, no dashboard) + analytics script "
                      "Deisa() (defaults: ray_dask_get scheduler, max_simulation_ahead=1 not "
                      "enforced by 0.1.8) with "
                      "register(Window('temperature')) (window 1) and execute_callbacks(); "
                      "ranks: deisa.ray.Bridge(comm, arrays_metadata) with chunk_position = "
                      "block coordinates (one node actor for the node), send() every step, "
                      "close(timestep=steps); analysis = dask.compute(mean, min, max, "
                      "da.histogram) of the step's array on Ray; installed with "
                      "--ignore-requires-python, PEP 695 aliases rewritten for 3.11",
            "versions": version(),
            "caveat": "deisa-ray 0.1.8's Bridge.send() ray.put()s blocks owned by the rank "
                      "process, so ranks stay alive after their timed part (t_end) until the "
                      "analytics have computed every step; Ray token auth on (one token per "
                      "run), node drain-on-SIGTERM off for teardown"}
