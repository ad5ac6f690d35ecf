"""bench_ranks - many ranks on one node: the latency from a step's last
end_step to its global mean, and the ingest's CPU time per node-step, with
the ingest's gathering (one event per node-step, gathered in C) against the
per-rank path (one Python event per block, step end and drop), in the same
run.

    .venv/bin/python bench/bench_ranks.py                 # 1, 8, 32, 128 ranks
    .venv/bin/python bench/bench_ranks.py --ranks 1 8 --steps 30

The simulation is bench/bench_ranks_pub.c (built here with mpicc and
`caudal config`, as a user would): each rank publishes a small block per
step and sleeps between steps, noting the wall time its end_step returned.
The analysis (bench/bench_ranks_analysis.py) computes each step's mean with
caudal.stats and records the time it had it. Latency of a step = that time
- the latest end_step of the step over the ranks; the first --warmup steps
(Ray warming up) are left out. Each mean is checked against the value the
publisher wrote ((ranks - 1) / 2 + step). The ingest's CPU time is its
process's (Ray's threads in it included) over the run, from the run's
summary.json, divided by the steps published; the receiving thread's own
is shown beside it.

A second table leaves Ray out: this process receives the same publisher's
ranks itself (mpiexec, no `caudal run`) with caudal.Receiver, gathered or
not, and takes each block as the ingest would (a NumPy view, then released);
the CPU time of that loop (time.thread_time around Receiver.next and the
handling; waiting costs none) per node-step is the receiver's and the
binding's own cost, without the object store and the head.

Runs alternate gathered, per-rank, gathered, ... for each rank count. The
run folders stay under --run-dir (a new folder in /tmp unless given);
nothing is written into the repository; --json PATH also writes the numbers.
The issue's target: median latency at most 10 ms at 128 ranks per node.
"""

import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
MODES = ("gathered", "per-rank")


def build_publisher(folder):
    mpicc = shutil.which("mpicc")
    if not mpicc:
        sys.exit("bench_ranks: mpicc not found")
    flags = subprocess.run([sys.executable, "-m", "caudal", "config", "--cflags", "--libs"],
                           check=True, capture_output=True, text=True).stdout.split()
    exe = folder / "bench_ranks_pub"
    subprocess.run([mpicc, "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror",
                    str(HERE / "bench_ranks_pub.c"), "-o", str(exe), *flags], check=True)
    return exe


def percentile(xs, q):
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def run_one(args, exe, ranks, mode, folder):
    ends_file = folder.with_name(folder.name + "-ends.txt")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAUDAL_")}
    if mode == "per-rank":
        env["CAUDAL_INGEST_PER_RANK"] = "1"
    cmd = [sys.executable, "-m", "caudal", "run", "-n", str(ranks), "--run-dir", str(folder),
           "--analytics", str(HERE / "bench_ranks_analysis.py"), "--mpiexec", args.mpiexec,
           "--timeout", str(args.timeout), "--",
           str(exe), str(args.steps), str(args.sleep_ms), str(args.elems), str(ends_file)]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit("bench_ranks: caudal run failed (%d): %s\n%s%s"
                 % (p.returncode, " ".join(cmd), p.stdout[-1000:], p.stderr[-3000:]))
    ends = {}
    for line in ends_file.read_text().split("\n"):
        if line.strip():
            s, t = line.split()
            ends[int(s)] = float(t)
    means, times = {}, {}
    with open(folder / "results.jsonl") as f:
        for line in f:
            r = json.loads(line)
            if r.get("analysis") != "mean":
                continue
            (means if r["name"] == "mean" else times)[r["step"]] = r["value"]
    for s, m in means.items():
        want = (ranks - 1) / 2 + s
        if abs(m - want) > 1e-9 * max(1.0, abs(want)):
            sys.exit("bench_ranks: step %d's mean is %r, the publisher wrote %r (%s)"
                     % (s, m, want, folder))
    lat = [times[s] - ends[s] for s in sorted(times) if s >= args.warmup and s in ends]
    summary = json.loads((folder / "summary.json").read_text())
    ingest = summary["ingest"]
    cpu = sum(i.get("cpu_seconds", 0.0) for i in ingest)
    thread_cpu = sum(i.get("thread_cpu_seconds", 0.0) for i in ingest)
    return {
        "ranks": ranks, "mode": mode, "run_dir": str(folder), "caudal_run_s": wall,
        "steps_analysed": len(times), "latencies_s": lat,
        "latency_median_s": statistics.median(lat) if lat else float("nan"),
        "latency_p90_s": percentile(lat, 0.9) if lat else float("nan"),
        "ingest_cpu_s": cpu, "ingest_thread_cpu_s": thread_cpu,
        "ingest_reports": sum(i.get("reports", 0) for i in ingest),
        "cpu_ms_per_node_step": 1e3 * cpu / args.steps,
        "thread_cpu_ms_per_node_step": 1e3 * thread_cpu / args.steps,
    }


def receive_only(args, exe, ranks, gather, folder):
    """This process receives `ranks` publishers: CPU seconds of the loop
    per node-step, and the events it took."""
    import numpy as np

    import caudal

    folder.mkdir(parents=True, exist_ok=True)
    endpoint = "unix:%s/r.sock" % folder
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAUDAL_")}
    env.update(CAUDAL_ENDPOINT=endpoint, CAUDAL_TOKEN="bench")
    r = caudal.Receiver(endpoint, token="bench", gather=gather)
    cmd = [args.mpiexec, "-n", str(ranks), str(exe), str(args.steps), str(args.sleep_ms),
           str(args.elems), str(folder / "ends.txt")]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    cpu = 0.0
    events = blocks = gone = 0
    try:
        while gone < ranks:
            t0 = time.thread_time()
            ev = r.next(100)
            got = ev is not None
            if got:
                events += 1
                taken = ev.blocks if ev.type == "steps" else [ev.block] if ev.type == "block" \
                    else []
                for b in taken:
                    np.asarray(b)
                    b.release()
                    blocks += 1
                gone += ev.type in ("bye", "disconnect")
                del ev, taken
            cpu += time.thread_time() - t0
            if not got and p.poll() is not None:
                break
    finally:
        err = p.communicate(timeout=60)[1]
        r.close()
    if p.returncode != 0 or blocks != ranks * args.steps:
        sys.exit("bench_ranks: the receive-only run failed (%s, %d of %d blocks): %s"
                 % (p.returncode, blocks, ranks * args.steps, err.decode()[-2000:]))
    return {"ranks": ranks, "mode": MODES[0] if gather else MODES[1], "events": events,
            "cpu_s": cpu, "us_per_node_step": 1e6 * cpu / args.steps,
            "events_per_node_step": events / args.steps}


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 8, 32, 128])
    p.add_argument("--steps", type=int, default=60, help="steps per run (60)")
    p.add_argument("--warmup", type=int, default=5, help="first steps left out (5)")
    p.add_argument("--sleep-ms", type=int, default=100, help="sleep between steps (100)")
    p.add_argument("--elems", type=int, default=1024, help="float64 per rank and step (1024)")
    p.add_argument("--reps", type=int, default=1, help="runs of each case (1)")
    p.add_argument("--timeout", type=int, default=600, help="per run, seconds (600)")
    p.add_argument("--run-dir", help="folder for the runs (default: a new one in /tmp)")
    p.add_argument("--json", help="also write the numbers to this file")
    p.add_argument("--no-receive-only", action="store_true",
                   help="leave out the table without Ray")
    p.add_argument("--mpiexec", default="mpiexec")
    a = p.parse_args(argv)
    if a.steps <= a.warmup:
        p.error("--steps must be more than --warmup")
    return a


def main(argv):
    args = parse(argv)
    root = pathlib.Path(args.run_dir or tempfile.mkdtemp(prefix="caudal-bench-ranks-",
                                                         dir="/tmp"))
    root.mkdir(parents=True, exist_ok=True)
    exe = build_publisher(root)
    print("bench_ranks: %s ranks, %d steps (first %d left out), %d ms sleep, %d float64 per "
          "rank and step, %d repetition(s); runs in %s"
          % (" ".join(map(str, args.ranks)), args.steps, args.warmup, args.sleep_ms,
             args.elems, args.reps, root), file=sys.stderr)
    runs = []
    for n in args.ranks:
        for rep in range(args.reps):
            for mode in MODES:
                r = run_one(args, exe, n, mode, root / ("%d-%s-%d" % (n, mode, rep)))
                runs.append(r)
                print("  %3d ranks %-8s: latency median %.1f ms, p90 %.1f ms, ingest %.2f ms "
                      "CPU per node-step (%.1f s run)"
                      % (n, mode, 1e3 * r["latency_median_s"], 1e3 * r["latency_p90_s"],
                         r["cpu_ms_per_node_step"], r["caudal_run_s"]), file=sys.stderr)

    def pooled(n, mode):
        rs = [r for r in runs if r["ranks"] == n and r["mode"] == mode]
        lat = [x for r in rs for x in r["latencies_s"]]
        return {
            "median": statistics.median(lat) if lat else float("nan"),
            "p90": percentile(lat, 0.9) if lat else float("nan"),
            "cpu": statistics.median(r["cpu_ms_per_node_step"] for r in rs),
            "thread": statistics.median(r["thread_cpu_ms_per_node_step"] for r in rs),
        }

    print("## Ranks per node: step latency and ingest CPU, gathered against per-rank\n")
    print("%d steps per run (the first %d left out), %d ms sleep between steps, %d float64 "
          "per rank and step, %d run(s) per case; latency = when the analysis had the "
          "step's mean - the step's latest end_step; ingest CPU = its process's CPU time "
          "/ steps (the receiving thread's alone in brackets)\n"
          % (args.steps, args.warmup, args.sleep_ms, args.elems, args.reps))
    print("| ranks | path | latency median ms | latency p90 ms | ingest CPU ms per node-step |")
    print("|---:|---|---:|---:|---:|")
    for n in args.ranks:
        for mode in MODES:
            q = pooled(n, mode)
            print("| %d | %s | %.1f | %.1f | %.2f (%.2f) |"
                  % (n, mode, 1e3 * q["median"], 1e3 * q["p90"], q["cpu"], q["thread"]))
    print("\n| ranks | per-rank / gathered: latency median | latency p90 | ingest CPU |")
    print("|---:|---:|---:|---:|")
    for n in args.ranks:
        g, o = pooled(n, "gathered"), pooled(n, "per-rank")
        print("| %d | %.2f | %.2f | %.2f |" % (n, o["median"] / g["median"], o["p90"] / g["p90"],
                                              o["cpu"] / g["cpu"]))
    recv = []
    if not args.no_receive_only:
        for n in args.ranks:
            for rep in range(args.reps):
                for mode in MODES:
                    recv.append(receive_only(args, exe, n, mode == MODES[0],
                                             root / ("recv-%d-%s-%d" % (n, mode, rep))))
        print("\n## The receiver and its binding alone (no Ray): CPU per node-step\n")
        print("| ranks | path | events per node-step | CPU us per node-step | per-rank / "
              "gathered |")
        print("|---:|---|---:|---:|---:|")
        for n in args.ranks:
            us = {}
            for mode in MODES:
                rs = [r for r in recv if r["ranks"] == n and r["mode"] == mode]
                us[mode] = statistics.median(r["us_per_node_step"] for r in rs)
                ev = statistics.median(r["events_per_node_step"] for r in rs)
                print("| %d | %s | %.1f | %.0f | %s |"
                      % (n, mode, ev, us[mode], "" if mode == MODES[0]
                         else "%.2f" % (us[mode] / us[MODES[0]])))
    if 128 in args.ranks:
        m = pooled(128, "gathered")["median"]
        print("\n- Target (issue): median latency at most 10 ms at 128 ranks: %s (%.1f ms)."
              % ("met" if m <= 0.010 else "NOT met", 1e3 * m))
    print("- caudal run folders: %s" % root)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({"config": vars(args), "runs": runs,
                                                       "receive_only": recv}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
