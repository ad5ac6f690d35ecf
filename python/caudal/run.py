"""``caudal run``: a simulation with online analytics, in one command.

    caudal run -n 4 --analytics my_analytics.py -- ./heat2d 1024 1024 100

Starts an embedded local Ray (or joins --address), the head actor and one
ingest actor per Ray node, launches the simulation with mpiexec pointing its
ranks at their node's ingest actor (the same unix socket path on every node),
runs the analyses while the simulation computes, drains every complete step
once all ranks said goodbye, writes the run folder and prints a summary.
Exits non-zero, with the reason, when the simulation or an analysis failed.
"""

import json
import os
import pathlib
import runpy
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import warnings

from .analytics import analyses_in, finishers_in


def add_parser(sub):
    r = sub.add_parser("run", help="run a simulation with online analytics",
                       description=__doc__.split("\n\n")[1].strip())
    r.add_argument("-n", "--ranks", type=int, required=True, help="MPI ranks")
    r.add_argument("--analytics", required=True, help="the analytics script (Python)")
    r.add_argument("--address", help="join this Ray cluster instead of starting one")
    r.add_argument("--run-dir", help="where results go (default runs/<time>)")
    r.add_argument("--policy", choices=["block", "drop"], default="block",
                   help="when a rank's ring is full (default block)")
    r.add_argument("--ring-depth", type=int, default=0, help="slots per rank (default 4)")
    r.add_argument("--max-pending", type=int, default=8,
                   help="complete steps waiting for the analyses before ranks wait")
    r.add_argument("--mpiexec", default="mpiexec", help="the MPI launcher")
    r.add_argument("command", nargs="+", help="the simulation, after --")
    r.set_defaults(func=main)


def _load(path):
    if not os.path.isfile(path):
        raise SystemExit("caudal run: analytics script %s not found" % path)
    namespace = runpy.run_path(path)
    analyses = analyses_in(namespace)
    if not analyses:
        raise SystemExit("caudal run: %s registers no analysis (use @caudal.analysis)" % path)
    return analyses, finishers_in(namespace)


def _start_ray(address):
    import ray

    if address:
        ray.init(address=address, log_to_driver=False)
        return None
    # Ray's unix socket paths must stay under 107 bytes: a short temp dir.
    tmp = tempfile.mkdtemp(prefix="cdlray-", dir="/tmp")
    ray.init(include_dashboard=False, _temp_dir=tmp, log_to_driver=False,
             configure_logging=False)
    return tmp


def _warm_up():
    """Start Ray's workers and import Dask in them before the simulation
    runs, so that the first steps do not wait for that (and fill the rings)."""
    import dask.array as da
    import ray

    n = max(1, int(ray.cluster_resources().get("CPU", 1)))
    da.ones((n, 1), chunks=(1, 1)).sum().compute()


def main(args):
    import ray
    from ray.util.dask import enable_dask_on_ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from .driver import Driver
    from .head import HeadActor
    from .ingest import IngestActor

    analyses, finishers = _load(args.analytics)
    if args.ranks < 1:
        raise SystemExit("caudal run: -n must be at least 1")
    run_dir = pathlib.Path(args.run_dir or "runs/%s" % time.strftime("%Y%m%d-%H%M%S"))
    run_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(16)
    endpoint = "unix:/tmp/cdl-%s.sock" % token[:12]
    t_start = time.time()
    ray_tmp = _start_ray(args.address)
    sim = None
    try:
        with warnings.catch_warnings():  # Ray sets a Dask key Dask has renamed
            warnings.simplefilter("ignore", FutureWarning)
            enable_dask_on_ray()
        head = HeadActor.remote(args.ranks, args.max_pending)
        nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
        ingests = [IngestActor.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
                       node, soft=False)).remote(endpoint, token, head, node) for node in nodes]
        ray.get([i.endpoint.remote() for i in ingests])  # listening before ranks start
        _warm_up()
        env = dict(os.environ, CAUDAL_ENDPOINT=endpoint, CAUDAL_TOKEN=token,
                   CAUDAL_POLICY=args.policy)
        if args.ring_depth:
            env["CAUDAL_RING_DEPTH"] = str(args.ring_depth)
        command = [args.mpiexec, "-n", str(args.ranks)] + args.command
        if not shutil.which(args.mpiexec):
            raise SystemExit("caudal run: %s not found" % args.mpiexec)
        print("caudal run: %d ranks, %d Ray node(s), %d analyses, results in %s"
              % (args.ranks, len(nodes), len(analyses), run_dir), file=sys.stderr)
        sim = subprocess.Popen(command, env=env)
        driver = Driver(analyses, head, ingests, run_dir, finishers)
        last_print = 0.0
        while True:
            over = driver.poll(0.2)
            if driver.head_errors:
                break
            if over:
                break
            if sim.poll() not in (None, 0):
                # Ranks that died leave without goodbye; drain what came.
                deadline = time.time() + 3
                while not driver.poll(0.2) and time.time() < deadline:
                    pass
                break
            if sys.stderr.isatty() and time.time() - last_print > 1:
                print("\rcaudal run: step %s analysed, %d calls, %d failures"
                      % (driver.last_step, driver.counts["calls"], driver.counts["failures"]),
                      end="", file=sys.stderr)
                last_print = time.time()
        if not driver.head_errors:
            driver.finish()
        rc = sim.wait(timeout=60) if not driver.head_errors else None
        if rc is None:
            sim.terminate()
            rc = sim.wait()
        summary = {"command": command, "returncode": rc,
                   "seconds": time.time() - t_start}
        summary.update(ray.get(head.summary.remote()))
        summary.update(driver.summary())
        summary["ingest"] = ray.get([i.shutdown.remote() for i in ingests])
        driver.close()
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        _print_summary(summary, run_dir)
        for e in summary["errors"]:
            print("caudal run: error: %s" % e, file=sys.stderr)
        if driver.head_errors:
            return 3  # the run was stopped for them, the simulation with it
        if rc != 0:
            print("caudal run: the simulation failed (exit code %s)" % rc, file=sys.stderr)
            return 2
        if summary["errors"]:
            return 3
        if summary["failures"]:
            print("caudal run: %d analysis call(s) failed, see %s"
                  % (summary["failures"], run_dir / "errors.jsonl"), file=sys.stderr)
            return 1
        return 0
    finally:
        if sim is not None and sim.poll() is None:
            sim.kill()
        ray.shutdown()
        if ray_tmp:
            shutil.rmtree(ray_tmp, ignore_errors=True)


def _print_summary(s, run_dir):
    ingest = s.get("ingest") or []
    blocks = sum(i.get("blocks", 0) for i in ingest)
    nbytes = sum(i.get("bytes", 0) for i in ingest)
    print("caudal run: %d steps analysed, %d blocks (%.1f MiB) received, %d steps dropped "
          "by ranks, %d calls, %d failed, lag median %.3f s, p99 %.3f s, %.1f s in all; %s"
          % (s["steps_analysed"], blocks, nbytes / 2**20, s["steps_dropped_by_ranks"],
             s["calls"], s["failures"], s["lag_seconds_median"], s["lag_seconds_p99"],
             s["seconds"], run_dir), file=sys.stderr)
