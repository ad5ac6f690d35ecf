"""bench_lammps - LAMMPS with Caudal's analytics against LAMMPS alone, and
the g(r) kernel against freud on the same frames, measured in the same run.

    .venv/bin/python bench/bench_lammps.py            # 1000 steps, N = 10 50 100, 2 repetitions
    .venv/bin/python bench/bench_lammps.py --quick    # 300 steps, N = 50, 1 repetition

1. examples/lammps/lammps_caudal on in.lj (32,000 Lennard-Jones atoms) on 2
   Open MPI ranks: alone (without CAUDAL_ENDPOINT: nothing published), and
   under `caudal run` with examples/lammps/md_analysis.py (temperature, MSD,
   g(r), speeds) publishing every N steps. The figure is the driver's own
   time for its steps (its line "lammps_caudal: S steps in T s"), not Ray's
   start and end around them. Runs alternate alone, N1, N2, ...; medians.
   On a 2-core machine both ranks and Caudal share the cores: the ratio is
   the analytics' whole cost, not only the publishing (the driver prints
   its time inside the publishing calls too).
2. g(r) of the same frames (saved by a caudal run): caudal.md.rdf on one
   block in this process (the C cell lists, one core) against freud's
   density.RDF with one thread and with all; pairs per second.

Prints a table of ratios; --json PATH writes the numbers. Nothing is
written into the repository.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "lammps")
DRIVER = os.path.join(ROOT, "build", "release", "examples", "lammps_caudal")
LINE = re.compile(r"lammps_caudal: (\d+) steps in ([0-9.]+) s \(([0-9.]+) steps/s\), "
                  r"([0-9.]+) s publishing")
RANKS = 2

FRAMES = """
import os
import numpy as np
import caudal

@caudal.analysis("x", "type", "id", "box")
def frames(x, types, ids, box, ctx):
    np.savez(os.path.join(%r, "%%d.npz" %% x[-1].step), x=np.asarray(x[-1].data.compute()),
             type=np.asarray(types[-1].data.compute()), id=np.asarray(ids[-1].data.compute()),
             box=box[-1].data.compute())
"""


def mpirun():
    run = shutil.which("mpirun.openmpi")
    if not run:
        sys.exit("bench_lammps: mpirun.openmpi missing (scripts/setup.sh installs liblammps-dev)")
    return [run] + (["--allow-run-as-root"] if os.geteuid() == 0 else [])


def parse(text, what):
    m = LINE.search(text)
    if not m:
        sys.exit("bench_lammps: %s printed no timing line:\n%s" % (what, text[-3000:]))
    return {"steps": int(m.group(1)), "seconds": float(m.group(2)),
            "steps_per_s": float(m.group(3)), "publish_s": float(m.group(4))}


def alone(steps, every, out):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAUDAL_")}
    p = subprocess.run(mpirun() + ["-n", str(RANKS), DRIVER, os.path.join(EXAMPLE, "in.lj"),
                                   str(steps), "--every", str(every), "--", "-var", "out", out],
                       capture_output=True, text=True, env=env, timeout=1200)
    if p.returncode:
        sys.exit("bench_lammps: LAMMPS alone failed:\n%s" % (p.stdout + p.stderr)[-3000:])
    return parse(p.stdout, "LAMMPS alone")


def with_caudal(steps, every, out, analytics):
    run_dir = os.path.join(out, "run")
    p = subprocess.run([sys.executable, "-m", "caudal", "run", "-n", str(RANKS), "--mpiexec",
                        " ".join(mpirun()), "--analytics", analytics, "--run-dir", run_dir,
                        "--", DRIVER, os.path.join(EXAMPLE, "in.lj"), str(steps),
                        "--every", str(every), "--", "-var", "out", out],
                       capture_output=True, text=True, timeout=1200)
    if p.returncode:
        sys.exit("bench_lammps: caudal run failed:\n%s" % (p.stdout + p.stderr)[-3000:])
    r = parse(p.stdout, "caudal run")
    with open(os.path.join(run_dir, "summary.json")) as f:
        s = json.load(f)
    r.update(steps_analysed=s["steps_analysed"], lag_median_s=s.get("lag_seconds_median"))
    return r


def best_of(fn, reps=3):
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def rdf_throughput(frames_dir):
    """Seconds per frame of caudal.md.rdf (one block, here) and freud's
    RDF (1 thread, all threads) on the saved frames; pairs per frame."""
    import freud

    import caudal

    out = []
    for name in sorted(os.listdir(frames_dir), key=lambda n: int(n.split(".")[0])):
        f = np.load(os.path.join(frames_dir, name))
        lo, hi = f["box"][:3], f["box"][3:6]
        r = caudal.md.rdf(f["x"], f["type"], f["id"], f["box"], 2.5, 100)
        mine = best_of(lambda: caudal.md.rdf(f["x"], f["type"], f["id"], f["box"], 2.5, 100))
        fbox = freud.box.Box(*(hi - lo))
        pos = fbox.wrap(f["x"].reshape(-1, 3) - (lo + hi) / 2)
        timings = {}
        for threads in (1, 0):
            freud.parallel.set_num_threads(threads or os.cpu_count())
            timings[threads] = best_of(
                lambda: freud.density.RDF(bins=100, r_max=2.5).compute(system=(fbox, pos)))
        out.append({"step": int(name.split(".")[0]), "pairs": int(r.counts.sum()),
                    "caudal_s": mine, "freud_1_s": timings[1], "freud_all_s": timings[0]})
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--every", type=int, nargs="+")
    ap.add_argument("--reps", type=int)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    steps = args.steps or (300 if args.quick else 1000)
    everies = args.every or ([50] if args.quick else [10, 50, 100])
    reps = args.reps or (1 if args.quick else 2)
    if not os.path.exists(DRIVER):
        sys.exit("bench_lammps: %s missing: cmake --build build/release" % DRIVER)
    root = tempfile.mkdtemp(prefix="caudal-bench-lammps-")
    analytics = os.path.join(EXAMPLE, "md_analysis.py")
    runs = {"alone": [], **{n: [] for n in everies}}
    for rep in range(reps):
        for case in ["alone"] + everies:
            out = os.path.join(root, "%s-%d" % (case, rep))
            os.makedirs(out)
            # alone publishes nothing; its --every only sets LAMMPS's own outputs
            r = (alone(steps, everies[0], out) if case == "alone"
                 else with_caudal(steps, case, out, analytics))
            runs[case].append(r)
            print("  %s, rep %d: %.1f steps/s" % (case, rep, r["steps_per_s"]), file=sys.stderr)
    frames_dir = os.path.join(root, "frames")
    os.makedirs(frames_dir)
    script = os.path.join(root, "frames.py")
    with open(script, "w") as f:
        f.write(FRAMES % frames_dir)
    with_caudal(200, 100, os.path.join(root, "frames-run"), script)
    rdf = rdf_throughput(frames_dir)

    base = statistics.median(r["steps_per_s"] for r in runs["alone"])
    print("# bench_lammps: %d atoms, %d steps, %d Open MPI ranks, %d cores, medians of %d"
          % (32000, steps, RANKS, os.cpu_count(), reps))
    print()
    print("| case | LAMMPS steps/s | / alone | publishing s | steps analysed |")
    print("|---|---|---|---|---|")
    print("| alone | %.1f | 1.00 | - | - |" % base)
    for n in everies:
        med = statistics.median(r["steps_per_s"] for r in runs[n])
        pub = statistics.median(r["publish_s"] for r in runs[n])
        print("| analytics every %d steps | %.1f | %.2f | %.3f | %d |"
              % (n, med, med / base, pub, runs[n][0]["steps_analysed"]))
    print()
    print("g(r), 100 bins to 2.5, on the frames of a LAMMPS run (best of 3 each):")
    print()
    print("| step | pairs | caudal ms (1 core) | freud ms (1 thread) | freud ms (%d threads) | "
          "caudal / freud, 1 core each |" % os.cpu_count())
    print("|---|---|---|---|---|---|")
    for r in rdf:
        print("| %d | %d | %.1f | %.1f | %.1f | %.2f |"
              % (r["step"], r["pairs"], 1e3 * r["caudal_s"], 1e3 * r["freud_1_s"],
                 1e3 * r["freud_all_s"], r["freud_1_s"] / r["caudal_s"]))
    print("(last column: freud's time over Caudal's, above 1 when Caudal is faster)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"steps": steps, "runs": {str(k): v for k, v in runs.items()},
                       "rdf": rdf}, f, indent=1)
    print("runs: %s" % root)


if __name__ == "__main__":
    main()
