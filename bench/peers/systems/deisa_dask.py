"""deisa-dask (PyPI deisa-dask): Dask-distributed in situ analytics.

Set up as its documentation's getting-started example (docs/getting-started,
example/getting-started/launch.sh): a `dask scheduler` with a scheduler file,
one `dask worker` on it, the analysis process (a Deisa() with a callback, then
execute_callbacks()), then the MPI simulation with one deisa.dask.Bridge per
rank, all finding the scheduler through DEISA_DASK_SCHEDULER_ADDRESS. Each
rank's Bridge.send() scatters its block to a worker (round robin) and rank 0
registers the step's chunks with the scheduler; the analysis receives the
step as one Dask array tiled from the chunks (chunk_position = the rank's
block coordinates, as in the example).

Everything runs in .venv-peers/deisa-dask (bench/peers/setup_peers.sh), not in
.venv: the ranks' python (rank_cmd[0]) is replaced by that environment's.
"""

import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
VENV = os.path.join(ROOT, ".venv-peers", "deisa-dask")
PYTHON = os.path.join(VENV, "bin", "python")
SETUP = "bench/peers/setup_peers.sh"

sys.path.insert(0, os.path.join(HERE, ".."))
import common  # noqa: E402
import processes  # noqa: E402


def version():
    if not os.path.exists(PYTHON):
        return "deisa-dask (not installed: run %s)" % SETUP
    code = ("import deisa.dask, deisa.core, dask, distributed, sys; "
            "print('deisa-dask %s, deisa-core %s, dask %s, distributed %s, python %d.%d' % "
            "(deisa.dask.__version__, deisa.core.__version__, dask.__version__, "
            "distributed.__version__, *sys.version_info[:2]))")
    r = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else "deisa-dask (broken: %s)" % (
        r.stderr.strip().splitlines() or ["?"])[-1]


class Bridge:
    """One deisa.dask.Bridge per rank, declaring the rank's block of the
    global "temperature" array."""

    def __init__(self, comm, shape, start, count, out_dir):
        from deisa.dask import Bridge as DeisaBridge

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


def launch(cfg, out_dir, rank_cmd):
    if not os.path.exists(PYTHON):
        raise RuntimeError("deisa-dask: %s missing; run %s first" % (VENV, SETUP))
    out_dir = os.path.abspath(out_dir)
    run_dir = os.path.join(out_dir, "deisa-dask-run")
    os.makedirs(run_dir, exist_ok=True)
    sched_file = os.path.join(run_dir, "scheduler.json")
    if os.path.exists(sched_file):
        os.remove(sched_file)
    dask_cli = os.path.join(VENV, "bin", "dask")
    env = dict(os.environ, DEISA_PEERS_OUT=out_dir, PYTHONUNBUFFERED="1")
    for k in ("PYTHONPATH", "VIRTUAL_ENV", "RAY_ADDRESS"):
        env.pop(k, None)
    env["PATH"] = os.path.join(VENV, "bin") + os.pathsep + env.get("PATH", "")
    procs = []
    try:
        # 1. the scheduler (free port instead of the example's fixed 8786)
        procs.append(processes.start(ROOT, [dask_cli, "scheduler", "--scheduler-file",
                                            sched_file, "--protocol", "tcp", "--host",
                                            "127.0.0.1", "--port", "0", "--no-dashboard"],
                                     os.path.join(run_dir, "scheduler.log"), env))
        deadline = time.time() + 60
        while not os.path.exists(sched_file):
            if procs[0].poll() is not None or time.time() > deadline:
                raise RuntimeError("deisa-dask: the dask scheduler did not start (see %s)"
                                   % os.path.join(run_dir, "scheduler.log"))
            time.sleep(0.1)
        time.sleep(0.2)
        with open(sched_file) as f:
            address = json.load(f)["address"]
        env["DEISA_DASK_SCHEDULER_ADDRESS"] = address
        # 2. one worker, default settings (one process, a thread per core)
        procs.append(processes.start(ROOT, [dask_cli, "worker", "--scheduler-file",
                                            sched_file, "--no-dashboard", "--local-directory",
                                            run_dir],
                                     os.path.join(run_dir, "worker.log"), env))
        # the bridges read the worker list once, at their start: wait for it
        subprocess.run([PYTHON, "-c", "from distributed import Client; "
                        "c = Client(%r, timeout=60); c.wait_for_workers(1, timeout=60); "
                        "c.close()" % address], check=True, env=env, cwd=ROOT,
                       stdout=subprocess.DEVNULL)
        # 3. the analysis
        analytics = processes.start(ROOT, [PYTHON, os.path.join(HERE, "deisa_dask_analytics.py")],
                                    os.path.join(run_dir, "analytics.log"), env)
        procs.append(analytics)
        # 4. the simulation, with this environment's python
        sim = subprocess.Popen(common.mpiexec(cfg) + [PYTHON] + list(rank_cmd[1:]), env=env)
        try:
            while sim.poll() is None:
                if analytics.poll() not in (None, 0):  # the bridges would wait forever
                    raise RuntimeError("deisa-dask: the analysis exited with %d during the "
                                       "simulation (see %s)" % (analytics.returncode, run_dir))
                time.sleep(0.1)
        finally:
            if sim.poll() is None:
                sim.terminate()
                sim.wait()
        if sim.returncode != 0:
            raise RuntimeError("deisa-dask: the simulation exited with %d" % sim.returncode)
        try:
            rc = analytics.wait(600)
        except subprocess.TimeoutExpired:
            raise RuntimeError("deisa-dask: the analysis did not finish within 600 s")
        if rc != 0:
            raise RuntimeError("deisa-dask: the analysis exited with %d (see %s)"
                               % (rc, os.path.join(run_dir, "analytics.log")))
    finally:
        for p in reversed(procs):  # analysis, worker, scheduler
            processes.stop(p)
    return {"config": "deisa-dask getting-started layout: `dask scheduler` (tcp, 127.0.0.1, "
                      "free port, scheduler file) + one `dask worker` (defaults: 1 process, "
                      "1 thread per core, nanny) + analysis process Deisa() with "
                      "register('temperature') (window 1) and execute_callbacks(); "
                      "ranks: deisa.dask.Bridge(comm, arrays_metadata) with chunk_position "
                      "= block coordinates, send() every step, close(timestep=steps); "
                      "DEISA_DASK_SCHEDULER_ADDRESS from the scheduler file; analysis "
                      "= dask.compute(mean, min, max, da.histogram) of the step's array",
            "versions": version()}
