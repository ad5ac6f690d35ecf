"""bench_peers - Caudal side by side with the systems a user would use
otherwise, on the same work, on this machine; ratios against baselines from
the same run.

    .venv/bin/python bench/bench_peers.py --quick      # a few minutes
    .venv/bin/python bench/bench_peers.py              # the full suite
    .venv/bin/python bench/bench_peers.py --systems caudal,adios2-sst --out /tmp/p

The work (bench/peers/common.py): the mpi4py heat simulation
(bench/peers/heat.py) publishes its field every step; each system computes
the global field's mean, min, max and 64-bin histogram per step. Systems:
caudal, deisa-dask, deisa-ray, adios2-sst, hdf5-posthoc (bench/peers/
systems/; their environments come from bench/peers/setup_peers*.sh, run
first unless --no-setup). Every run is checked against NumPy on the gathered
field ("results equal").

Measures, each against a baseline of the same run:
- wall: the simulation's wall time with the system / the simulation alone;
- drain: from the simulation's last publish to the last result;
- latency: a step's last publish to its result, median and p99, small
  blocks, several rank counts (past 2 ranks the 2 cores are oversubscribed),
  the simulation paced at 10 steps per second so that a step's latency is
  its own and not the queue of earlier steps behind a slow system;
- analysed steps per second while the simulation publishes flat out;
- peak memory: summed PSS of every process a run started, and /dev/shm;
- scaling: wall / alone at 1, 2, 4, 8 ranks (weak: a block per rank);
- Caudal alone: time in the publishing calls per step against a memcpy of the
  block, and the ingest's ray.put GB/s against a memcpy;
- Caudal's own CPU per published step, by process, less the analysis'
  kernels (their CPU as the ingest timed it in the run), against 3 memcpys
  of the step plus 1 ms, 8 KiB to 64 MiB.

Writes OUT/peers.json (every number), OUT/peers.md (the tables) and
OUT/peers.png; OUT defaults to a new folder under /tmp. Nothing goes into
the repository.
"""

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.path.join(HERE, "peers")
sys.path[:0] = [PEERS]

import common  # noqa: E402
import measure  # noqa: E402

PARTS = ["check", "scaling", "latency", "cpu"]
SYSTEMS = ["caudal", "deisa-dask", "deisa-ray", "adios2-sst", "hdf5-posthoc"]

PLANS = {
    "quick": {"check": (2, 32, 10), "scaling": ([1, 2, 4], 256, 40),
              "latency": ([1, 4], 32, 40, 0.1), "overhead_ranks": 2,
              "cpu": [32, 362, 2896]},
    "full": {"check": (4, 64, 20), "scaling": ([1, 2, 4, 8], 512, 100),
             "latency": ([1, 8, 32], 32, 100, 0.1), "overhead_ranks": 2,
             "cpu": [32, 128, 362, 1024, 2896]},
}
# Caudal's CPU per step (plan "cpu", block sides): 8 KiB to 64 MiB of
# float64 on one rank, as many steps as 8 GB of blocks, 20 to 4000 (2 GB
# gave 64 MiB steps 30 steps, a few seconds whose figure moved 0.5-1.15
# of the line between runs).
CPU_BYTES, CPU_STEPS = 8e9, (20, 4000)


def module(system):
    return importlib.import_module("systems." + system.replace("-", "_"))


def run(system, ranks, block, steps, root, reference=False, interval=0.0):
    """One run of one system; its summary (or its error, in one line)."""
    out = os.path.join(root, "%s-r%d-b%d-s%d%s%s" % (system, ranks, block, steps,
                                                     "-ref" if reference else "",
                                                     "-paced" if interval else ""))
    os.makedirs(out, exist_ok=True)
    cmd = [sys.executable, os.path.join(PEERS, "heat.py"), "--system", system, "--block",
           str(block), str(block), "--steps", str(steps), "--out", out]
    if reference:
        cmd.append("--reference")
    if interval:
        cmd += ["--interval", str(interval)]
    before = measure._pids()
    t0 = time.time()
    try:
        with measure.MemorySampler() as mem:
            notes = module(system).launch({"ranks": ranks}, out, cmd) or {}
    except Exception as e:
        line = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
        print("  %s, %d ranks: failed: %s" % (system, ranks, line), file=sys.stderr)
        (open(os.path.join(out, "error.txt"), "w")).write(traceback.format_exc())
        return {"system": system, "ranks": ranks, "error": line, "out": out}
    finally:
        measure.wait_quiet(before)
    s = measure.summarise(out, steps)
    s.update(system=system, ranks=ranks, block=block, steps=steps, out=out,
             seconds_total=time.time() - t0, peak_pss_mib=mem.peak_kib / 1024,
             peak_shm_mib=mem.peak_shm_kib / 1024, notes=notes,
             cpu_by_role=mem.cpu_by_role(), pss_mib_by_role=mem.pss_by_role())
    # The steady state: CPU between two samples while the ranks publish,
    # and the steps published between them (none of Ray's start or end).
    pubs = sorted(t for r in common.read_ranks(out) for t in r.get("published", []))
    if len(pubs) > 2:
        window = mem.cpu_between(pubs[0], pubs[-1] - 0.25)
        if window:
            roles, ta, tb = window
            s["steady"] = {"cpu_by_role": roles, "seconds": tb - ta,
                           "rank_steps": sum(ta < t <= tb for t in pubs)}
    print("  %s, %d ranks, %dx%d x %d steps: wall %.2f s, latency median %s ms"
          % (system, ranks, block, block, steps, s["wall_s"],
             "%.1f" % s["latency_ms_median"] if "latency_ms_median" in s else "-"),
          file=sys.stderr)
    return s


def caudal_costs(runs):
    """Caudal's own costs from a run's summary.json: publishing per step
    against a memcpy of the rank's block, ingest (ray.put) GB/s against a
    memcpy, measured here."""
    out = []
    for r in runs:
        path = os.path.join(r["out"], "caudal-run", "summary.json")
        if r.get("error") or not os.path.exists(path):
            continue
        with open(path) as f:
            summ = json.load(f)
        nbytes = r["block"] * r["block"] * 8
        memcpy_s = memcpy_seconds(nbytes)
        ingest = summ.get("ingest") or [{}]
        put_s = sum(i.get("put_seconds", 0) for i in ingest)
        put_b = sum(i.get("bytes", 0) for i in ingest)
        out.append({"ranks": r["ranks"], "block_bytes": nbytes,
                    "publish_us": 1e6 * r["publish_s_per_step"], "memcpy_us": 1e6 * memcpy_s,
                    "publish_over_memcpy": r["publish_s_per_step"] / memcpy_s,
                    "ingest_gbps": put_b / put_s / 1e9 if put_s else float("nan"),
                    "memcpy_gbps": nbytes / memcpy_s / 1e9})
    return out


def best_per_call(call, reps, clock=time.perf_counter, rounds=5):
    """Seconds per call(), by `clock`, in the best of `rounds` rounds of
    `reps` calls."""
    call()
    best = float("inf")
    for _ in range(rounds):
        t0 = clock()
        for _ in range(reps):
            call()
        best = min(best, (clock() - t0) / reps)
    return best


def memcpy_seconds(nbytes):
    """One numpy.copyto of nbytes between two warm arrays."""
    a, b = np.random.default_rng(0).random(max(1, nbytes // 8)), np.empty(max(1, nbytes // 8))
    return best_per_call(lambda: np.copyto(b, a), max(3, int(2e8 // nbytes)))


def kernel_cpu_seconds(side):
    """CPU seconds of the analysis' own kernels on one step's block (the
    common analysis: caudal.stats.describe on a NumPy array, in this
    process)."""
    import caudal

    x = np.random.default_rng(1).random((side, side)) * common.HIST_MAX
    return best_per_call(
        lambda: caudal.stats.describe(x, bins=common.HIST_BINS, range=(0.0, common.HIST_MAX)),
        max(3, int(5e7 // x.nbytes)), clock=time.process_time)


def in_run_kernel_seconds(r, steps):
    """The analysis' kernels' CPU per step as the ingests timed them in the
    run (summary.json: kernel_cpu_seconds, their threads' CPU inside the
    kernels), None without it. The same kernel on the same block costs more
    there than warm here: the block is fresh from the rank's core, and the
    rank keeps the memory busy."""
    path = os.path.join(r["out"], "caudal-run", "summary.json")
    try:
        with open(path) as f:
            ingest = json.load(f).get("ingest") or []
    except OSError:
        return None
    cpu = [i["kernel_cpu_seconds"] for i in ingest if "kernel_cpu_seconds" in i]
    return sum(cpu) / steps if cpu else None


def caudal_cpu(sides, root):
    """Caudal's own CPU per published node-step (1 rank: a node-step is a
    step), in the steady state (between two samples while the rank
    publishes: Ray's start and end are a fixed cost apart): every process
    the run started but the rank and mpiexec, less the analysis' kernels
    (measured here on the same block), against the issue's line: 3 memcpys
    of the step's bytes plus 1 ms."""
    out = []
    for side in sides:
        nbytes = side * side * 8
        steps = int(min(max(CPU_BYTES // nbytes, CPU_STEPS[0]), CPU_STEPS[1]))
        r = run("caudal", 1, side, steps, root)
        if "error" in r or not r.get("steady", {}).get("rank_steps"):
            out.append({"block_bytes": nbytes, "error": r.get("error", "too short to see")})
            continue
        steady = r["steady"]
        n = steady["rank_steps"]
        roles = steady["cpu_by_role"]
        total = sum(roles.values())
        warm = kernel_cpu_seconds(side)
        kernel = in_run_kernel_seconds(r, steps)
        copy = memcpy_seconds(nbytes)
        per_step = total / n - (warm if kernel is None else kernel)
        line = 3 * copy + 1e-3
        out.append({"block_bytes": nbytes, "steps": steps, "steady_steps": n,
                    "steady_s": steady["seconds"], "cpu_total_s": total,
                    "kernel_ms": 1e3 * (warm if kernel is None else kernel),
                    "kernel_warm_ms": 1e3 * warm, "kernel_in_run": kernel is not None,
                    "memcpy_ms": 1e3 * copy,
                    "per_step_ms": 1e3 * per_step, "line_ms": 1e3 * line,
                    "over_line": per_step / line,
                    "whole_run_ms": 1e3 * sum(r["cpu_by_role"].values()) / steps,
                    "by_role_ms": {k: 1e3 * v / n for k, v in sorted(roles.items())}})
    return out


def fmt(v, spec="%.2f"):
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else spec % v


def tables(data):
    lines = ["# bench_peers (%s mode), %s" % (data["mode"], data["date"]), "",
             "Machine: %s. Ranks past 2 oversubscribe the cores." % data["machine"], ""]
    lines += ["## Systems", "", "| system | versions | configuration | results equal NumPy |",
              "|---|---|---|---|"]
    for s in data["systems"]:
        c = data["check"].get(s, {})
        eq = "yes" if c.get("equal") else "no: " + c.get("why", "")
        lines.append("| %s | %s | %s | %s |" % (s, data["versions"].get(s, "-"),
                                              c.get("notes", {}).get("config", "-"), eq))
    alone = {r["ranks"]: r for r in data["scaling"] if r["system"] == "none" and "wall_s" in r}
    n = data["plan"]["overhead_ranks"]
    lines += ["", "## Overhead (%d ranks, %s cells per rank, %d steps)"
              % (n, "x".join([str(data["plan"]["scaling"][1])] * 2), data["plan"]["scaling"][2]),
              "", "| system | wall s | wall / alone | drain s | latency median ms | p99 ms | "
              "analysed steps/s | peak PSS MiB | peak /dev/shm MiB |", "|---|---|---|---|---|---|---|---|---|"]
    for r in data["scaling"]:
        if r["ranks"] != n:
            continue
        if "error" in r:
            lines.append("| %s | %s |||||||| " % (r["system"], "failed: " + r["error"]))
            continue
        base = alone.get(n, {}).get("wall_s")
        lines.append("| %s | %.2f | %s | %s | %s | %s | %s | %.0f | %.0f |" % (
            r["system"], r["wall_s"], fmt(r["wall_s"] / base if base else None),
            fmt(r.get("drain_s"), "%.3f"), fmt(r.get("latency_ms_median"), "%.1f"),
            fmt(r.get("latency_ms_p99"), "%.1f"), fmt(r.get("analysed_steps_per_s"), "%.0f"),
            r["peak_pss_mib"], r["peak_shm_mib"]))
    for r in data["scaling"]:
        if r["ranks"] == n and r["system"] == "caudal" and r.get("pss_mib_by_role"):
            lines += ["", "Caudal's peak PSS by process, MiB (each process's own peak): " +
                      ", ".join("%s %.0f" % kv for kv in sorted(r["pss_mib_by_role"].items(),
                                                                key=lambda kv: -kv[1]))]
    ranks = data["plan"]["latency"][0]
    lines += ["", "## Latency, %dx%d cells per rank, a step every %.0f ms, median / p99 ms "
              "(Doreisa reports about 72 ms per iteration, 40 ranks; target 10 ms)"
              % (data["plan"]["latency"][1], data["plan"]["latency"][1],
                 1e3 * data["plan"]["latency"][3]),
              "", "| system | " + " | ".join("%d ranks" % k for k in ranks) + " |",
              "|---|" + "---|" * len(ranks)]
    for s in data["systems"]:
        cells = []
        for k in ranks:
            r = next((x for x in data["latency"] if x["system"] == s and x["ranks"] == k), {})
            cells.append("failed" if "error" in r else "%s / %s" % (
                fmt(r.get("latency_ms_median"), "%.1f"), fmt(r.get("latency_ms_p99"), "%.1f")))
        lines.append("| %s | %s |" % (s, " | ".join(cells)))
    ranks = data["plan"]["scaling"][0]
    lines += ["", "## Scaling: wall / alone (weak, a block per rank)", "",
              "| system | " + " | ".join("%d ranks" % k for k in ranks) + " |",
              "|---|" + "---|" * len(ranks)]
    for s in ["none"] + data["systems"]:
        cells = []
        for k in ranks:
            r = next((x for x in data["scaling"] if x["system"] == s and x["ranks"] == k), {})
            base = alone.get(k, {}).get("wall_s")
            cells.append("failed" if "error" in r else (
                "%.2f s" % r["wall_s"] if s == "none" and "wall_s" in r else
                fmt(r["wall_s"] / base if base and "wall_s" in r else None)))
        lines.append("| %s | %s |" % ("alone (wall)" if s == "none" else s, " | ".join(cells)))
    if data["caudal_costs"]:
        lines += ["", "## Caudal's own costs", "",
                  "| ranks | block KiB | publish µs/step | memcpy µs | publish / memcpy | "
                  "ingest ray.put GB/s | memcpy GB/s |", "|---|---|---|---|---|---|---|"]
        for c in data["caudal_costs"]:
            lines.append("| %d | %d | %.1f | %.1f | %.2f | %.2f | %.2f |" % (
                c["ranks"], c["block_bytes"] // 1024, c["publish_us"], c["memcpy_us"],
                c["publish_over_memcpy"], c["ingest_gbps"], c["memcpy_gbps"]))
    if data.get("caudal_cpu"):
        lines += ["", "## Caudal's own CPU per published node-step (1 rank, flat out)", "",
                  "Steady state (while the rank publishes, without Ray's start and end; "
                  "the whole run's average beside it): every process the run started but "
                  "the rank and mpiexec, less the analysis' kernels (caudal.stats.describe: "
                  "their CPU as the ingest timed it in the run, per step; the same kernel on "
                  "the same block warm here beside it). The line: 3 memcpys of the step "
                  "plus 1 ms.",
                  "", "| block KiB | steps seen | CPU ms/step | kernels ms (in run) | "
                  "kernels ms (warm) | line ms | CPU / line | whole run ms/step | "
                  "by process, ms/step |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for c in data["caudal_cpu"]:
            if "error" in c:
                lines.append("| %d | failed: %s ||||||||" % (c["block_bytes"] // 1024, c["error"]))
                continue
            lines.append("| %d | %d | %.2f | %s | %.2f | %.2f | %.2f | %.1f | %s |" % (
                c["block_bytes"] // 1024, c["steady_steps"], c["per_step_ms"],
                "%.2f" % c["kernel_ms"] if c.get("kernel_in_run") else "-",
                c.get("kernel_warm_ms", c["kernel_ms"]), c["line_ms"], c["over_line"], c["whole_run_ms"],
                ", ".join("%s %.2f" % kv for kv in
                          sorted(c["by_role_ms"].items(), key=lambda kv: -kv[1]))))
    return "\n".join(lines) + "\n"


def plot(data, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench_peers: matplotlib missing, no plot (pip install matplotlib)",
              file=sys.stderr)
        return
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for s in data["systems"]:
        rows = sorted((r["ranks"], r["latency_ms_median"]) for r in data["latency"]
                      if r["system"] == s and "latency_ms_median" in r)
        if rows:
            a.plot(*zip(*rows), marker="o", label=s)
        alone = {r["ranks"]: r["wall_s"] for r in data["scaling"]
                 if r["system"] == "none" and "wall_s" in r}
        rows = sorted((r["ranks"], r["wall_s"] / alone[r["ranks"]]) for r in data["scaling"]
                      if r["system"] == s and "wall_s" in r and r["ranks"] in alone)
        if rows:
            b.plot(*zip(*rows), marker="o", label=s)
    a.set(xlabel="ranks", ylabel="latency, median ms", yscale="log", title="step to result")
    b.set(xlabel="ranks", ylabel="wall / simulation alone", title="simulation slowdown")
    for ax in (a, b):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--out")
    ap.add_argument("--no-setup", action="store_true")
    ap.add_argument("--parts", default=",".join(PARTS),
                    help="which measures to run, of %s (default all)" % ",".join(PARTS))
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    if parts - set(PARTS):
        sys.exit("bench_peers: unknown parts %s (known: %s)"
                 % (sorted(parts - set(PARTS)), ", ".join(PARTS)))
    mode = "quick" if args.quick else "full"
    plan = PLANS[mode]
    systems = [s for s in args.systems.split(",") if s]
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        sys.exit("bench_peers: unknown systems %s (known: %s)" % (unknown, ", ".join(SYSTEMS)))
    root = args.out or tempfile.mkdtemp(prefix="bench-peers-", dir="/tmp")
    os.makedirs(root, exist_ok=True)
    if not args.no_setup:
        try:
            import matplotlib  # noqa: F401
        except ImportError:  # only the plot needs it: not a dependency of caudal
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", "matplotlib"],
                           check=True)
        for script in sorted(os.listdir(PEERS)):
            if script.startswith("setup_peers") and script.endswith(".sh"):
                subprocess.run(["bash", os.path.join(PEERS, script)], check=True)
    data = {"mode": mode, "plan": plan, "systems": systems, "date": time.strftime("%Y-%m-%d %H:%M"),
            "machine": "%d cores, %.0f GiB" % (os.cpu_count(), os.sysconf("SC_PAGE_SIZE") *
                                               os.sysconf("SC_PHYS_PAGES") / 2**30),
            "versions": {}, "check": {}, "scaling": [], "latency": [], "caudal_cpu": []}
    for s in systems:
        try:
            data["versions"][s] = module(s).version()
        except Exception as e:
            data["versions"][s] = "not importable: %s" % e

    print("== results against NumPy", file=sys.stderr)
    ranks, block, steps = plan["check"]
    ref = run("none", ranks, block, steps, root, reference=True) if "check" in parts else None
    for s in systems if ref else ():
        r = run(s, ranks, block, steps, root)
        if "error" in r:
            data["check"][s] = {"equal": False, "why": r["error"]}
        else:
            eq, why = measure.same_results(r["out"], ref["out"])
            data["check"][s] = {"equal": eq, "why": why, "notes": r["notes"]}

    print("== wall time and scaling", file=sys.stderr)
    ranks_list, block, steps = plan["scaling"]
    for k in ranks_list if "scaling" in parts else ():
        for s in ["none"] + systems:
            data["scaling"].append(run(s, k, block, steps, root))

    print("== latency with small blocks", file=sys.stderr)
    ranks_list, block, steps, interval = plan["latency"]
    for k in ranks_list if "latency" in parts else ():
        for s in systems:
            data["latency"].append(run(s, k, block, steps, root, interval=interval))

    data["caudal_costs"] = caudal_costs([r for r in data["scaling"] + data["latency"]
                                         if r["system"] == "caudal"])
    if "caudal" in systems and "cpu" in parts:
        print("== Caudal's own CPU per step", file=sys.stderr)
        data["caudal_cpu"] = caudal_cpu(plan["cpu"], root)
    with open(os.path.join(root, "peers.json"), "w") as f:
        json.dump(data, f, indent=2, default=str)
    md = tables(data)
    with open(os.path.join(root, "peers.md"), "w") as f:
        f.write(md)
    plot(data, os.path.join(root, "peers.png"))
    print(md)
    print("bench_peers: %s/peers.json, peers.md, peers.png" % root, file=sys.stderr)


if __name__ == "__main__":
    main()
