"""bench_kernels - each analysis kernel's throughput against NumPy/SciPy on
the same data, measured in the same run.

    .venv/bin/python bench/bench_kernels.py            # 128 MiB field, 5 repetitions
    .venv/bin/python bench/bench_kernels.py --quick    # 32 MiB, 3 repetitions

A float64 field is cut into a grid of blocks, each put in a local Ray's
object store by an actor (as the ingest actors do). For each kernel three
timings, each the median of the repetitions, as GB/s of field read:

- numpy: the NumPy/SciPy equivalent on the gathered field, in this process
  (one core);
- caudal, 1 core: the same caudal call on the gathered field as a NumPy
  array (one block, computed in this process): the C kernel against NumPy
  core for core;
- caudal on Ray: the call on the StepArray, per-block tasks next to the
  blocks and a tree of merges, on every core Ray has.

The ratios (caudal / numpy) are the table; --json PATH writes the numbers.
Nothing is written into the repository.
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np
import scipy.ndimage

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "python"))

import caudal  # noqa: E402
from kernel_arrays import distribute  # noqa: E402


def numpy_moments(x):
    m = x.mean()
    d = x - m
    d2 = d * d
    return m, d2.mean(), (d2 * d).mean(), (d2 * d2).mean(), x.min(), x.max()


def numpy_components(x, t):
    lab, n = scipy.ndimage.label(x > t)
    sizes = np.bincount(lab.ravel())
    return n, sizes, scipy.ndimage.center_of_mass(x > t, lab, range(1, min(n, 64) + 1))


def numpy_pointstats_update(state, x):
    num, mean, m2, lo, hi = state
    num += 1
    d = x - mean
    mean += d / num
    m2 += d * (x - mean)
    np.minimum(lo, x, out=lo)
    np.maximum(hi, x, out=hi)


def kernels(field_max):
    """name -> (numpy(x), caudal(x)); x is a NumPy array or a StepArray."""
    t = 0.5 * field_max
    return {
        "moments": (numpy_moments, caudal.stats.moments),
        "histogram 64 bins": (lambda x: np.histogram(x, 64, (0.0, field_max)),
                              lambda x: caudal.stats.histogram(x, 64, (0.0, field_max))),
        "quantiles (sketch)": (lambda x: np.quantile(x, [0.5, 0.99]),
                               lambda x: caudal.stats.quantile(x, [0.5, 0.99])),
        "gradient (all axes)": (np.gradient, caudal.stencil.gradient),
        "laplacian": (lambda x: scipy.ndimage.laplace(x, mode="nearest"),
                      caudal.stencil.laplacian),
        "coarsen 8x8 mean": (lambda x: x.reshape(x.shape[0] // 8, 8, x.shape[1] // 8, 8)
                             .mean(axis=(1, 3)),
                             lambda x: caudal.extract.coarsen(x, 8)),
        "components": (lambda x: numpy_components(x, t),
                       lambda x: caudal.features.components(x, t)),
    }


def done(result):
    """Wait for every block of a result: kernels that return a global array
    return as soon as its tasks are submitted."""
    import ray

    for r in result if isinstance(result, (list, tuple)) else [result]:
        if isinstance(r, caudal.StepArray):
            refs = [b.stored.ref for b in r.blocks.blocks.values()]
            ray.wait(refs, num_returns=len(refs), fetch_local=False)
    return result


def timed(fn, reps):
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        done(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", type=int, help="side of the square field (default 4096, quick 2048)")
    ap.add_argument("--blocks", type=int, default=2, help="blocks per side (default 2)")
    ap.add_argument("--reps", type=int, help="repetitions (default 5, quick 3)")
    ap.add_argument("--json", help="also write the numbers here")
    args = ap.parse_args()
    n = args.n or (2048 if args.quick else 4096)
    reps = args.reps or (3 if args.quick else 5)

    import ray

    tmp = tempfile.mkdtemp(prefix="cdlbk-", dir="/tmp")
    ray.init(include_dashboard=False, _temp_dir=tmp, log_to_driver=False,
             configure_logging=False, object_store_memory=4 * n * n * 8 + 2**30)
    try:
        rng = np.random.default_rng(1)
        # A smooth field with features: a few Gaussian bumps plus noise.
        yy, xx = np.mgrid[0:n, 0:n] / n
        field = sum(np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.002)
                    for cx, cy in rng.random((12, 2)))
        field += 0.05 * rng.standard_normal((n, n))
        fmax = float(field.max())
        cut = tuple(n * i // args.blocks for i in range(1, args.blocks))
        sa = distribute(ray, field, (cut, cut), seed=0, name="field")
        ncpu = int(ray.cluster_resources().get("CPU", 1))
        gb = field.nbytes / 1e9
        rows = []
        for name, (ref, ours) in kernels(fmax).items():
            for f, x in ((ref, field), (ours, field), (ours, sa)):
                done(f(x))  # warm: pages, workers, code paths
            t_np = timed(lambda: ref(field), reps)
            t_one = timed(lambda: ours(field), reps)
            t_ray = timed(lambda: ours(sa), reps)
            rows.append({"kernel": name, "numpy_gbps": gb / t_np, "caudal_1core_gbps": gb / t_one,
                         "caudal_ray_gbps": gb / t_ray})
        # Per-point statistics: one step's update.
        state = [np.zeros((n, n)), np.zeros((n, n)), np.zeros((n, n)),
                 np.full((n, n), np.inf), np.full((n, n), -np.inf)]
        p_one, p_ray = caudal.temporal.PointStats(), caudal.temporal.PointStats()
        p_ray.update(sa)
        p_ray.result()
        numpy_pointstats_update(state, field)
        p_one.update(field)
        t_np = timed(lambda: numpy_pointstats_update(state, field), reps)
        t_one = timed(lambda: p_one.update(field), reps)

        def ray_update():
            p_ray.update(sa)
            p_ray._wait()  # the step's calls, on the blocks' nodes

        t_ray = timed(ray_update, reps)
        rows.append({"kernel": "per-point stats (1 step)", "numpy_gbps": gb / t_np,
                     "caudal_1core_gbps": gb / t_one, "caudal_ray_gbps": gb / t_ray})
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)

    print("\nbench_kernels: %d x %d float64 (%.0f MiB) in %d blocks, %d Ray CPUs, median of %d"
          % (n, n, field.nbytes / 2**20, args.blocks ** 2, ncpu, reps))
    print("\n| kernel | NumPy GB/s | caudal 1 core GB/s | 1 core / NumPy | caudal on Ray GB/s "
          "| Ray / NumPy |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print("| %s | %.2f | %.2f | %.2f | %.2f | %.2f |"
              % (r["kernel"], r["numpy_gbps"], r["caudal_1core_gbps"],
                 r["caudal_1core_gbps"] / r["numpy_gbps"], r["caudal_ray_gbps"],
                 r["caudal_ray_gbps"] / r["numpy_gbps"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"n": n, "blocks": args.blocks ** 2, "cpus": ncpu, "reps": reps,
                       "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
