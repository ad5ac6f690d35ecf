"""`caudal run` end to end: a real local Ray started by the command, 4 real
MPI ranks of examples/heat2d, the analytics of examples/analytics."""

import collections
import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

import caudal
from conftest import ROOT

STATS = os.path.join(ROOT, "examples", "analytics", "heat_stats.py")
HEAT_PY = os.path.join(ROOT, "examples", "heat2d", "heat2d.py")


def caudal_run(tmp_path, analytics, sim, ranks=4, extra=(), env=None):
    run_dir = tmp_path / "run"
    p = subprocess.run([sys.executable, "-m", "caudal", "run", "-n", str(ranks),
                        "--analytics", str(analytics), "--run-dir", str(run_dir), *extra,
                        "--", *sim], capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, **(env or {})))
    results = collections.defaultdict(dict)
    path = run_dir / "results.jsonl"
    if path.exists():
        for line in path.read_text().splitlines():
            r = json.loads(line)
            results[r["name"]][r["step"]] = r["value"]
    return p, results, run_dir


def oracle(path):
    return {int(s): float(m) for s, m in (l.split() for l in path.read_text().splitlines())}


def test_every_step_mean_equals_the_simulation_mean(tmp_path, heat2d):
    import numpy as np

    means, dump = tmp_path / "mean.txt", tmp_path / "dump"
    p, results, run_dir = caudal_run(
        tmp_path, STATS, [heat2d, "64", "48", "40", "--mean", str(means), "--dump-every", "1",
                          "--dump", str(dump)],
        env={"CAUDAL_DEMO_THRESHOLD": "1e9"})
    assert p.returncode == 0, p.stdout + p.stderr
    want = oracle(means)
    assert sorted(results["mean"]) == sorted(want)  # every step, none missing
    for step, m in want.items():
        assert abs(results["mean"][step] - m) <= 1e-12 * abs(m)
    # The window of two: steps 1.. have a rate, computed from consecutive
    # steps (temporal.change), equal to NumPy's on the simulation's dumps.
    assert sorted(results["max_rate"]) == list(range(1, 40))
    field = [np.fromfile("%s-%d.bin" % (dump, s), dtype=np.float64) for s in range(40)]
    for s in range(1, 40):
        assert results["max_rate"][s] == np.abs(field[s] - field[s - 1]).max(), s
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps_analysed"] == 40 and summary["failures"] == 0
    assert summary["steps_dropped_by_ranks"] == 0


SLOW_MEAN = """
import time
import caudal

@caudal.analysis("temperature")
def mean(t, ctx):
    ctx.record("mean", caudal.stats.moments(t[-1]).mean)
    time.sleep(0.03)
"""


def test_steps_that_wait_behind_each_other_go_into_the_store_together(tmp_path, heat2d):
    """Ranks ahead of their ingest (a tiny grid, 2 ranks: a step's blocks
    may come in two events, one rank's early; an analysis slower than the
    simulation and --max-pending 4, so the head holds the ingest's reports
    back and the ranks fill their deep rings): the steps waiting in the
    receiver are taken together, their small blocks put as one object and
    reported in one call (IngestActor._ahead), and every step's mean is
    still the simulation's own. No more than --max-pending are taken
    together, so the steps complete and not analysed yet stay under 4 times
    it (the head's P, one report's P, and as many taken by the driver),
    however small the steps."""
    script = tmp_path / "mean.py"
    script.write_text(SLOW_MEAN)
    means = tmp_path / "mean.txt"
    p, results, run_dir = caudal_run(tmp_path, script,
                                     [heat2d, "16", "8", "60", "--mean", str(means)], ranks=2,
                                     extra=("--ring-depth", "64", "--max-pending", "4"),
                                     env={"CAUDAL_DEMO_THRESHOLD": "1e9"})
    assert p.returncode == 0, p.stdout + p.stderr
    want = oracle(means)
    assert sorted(results["mean"]) == sorted(want) == list(range(60))
    for step, m in want.items():
        assert abs(results["mean"][step] - m) <= 1e-12 * abs(m)
    (ingest,) = json.loads((run_dir / "summary.json").read_text())["ingest"]
    assert ingest["blocks"] == 120
    assert ingest.get("steps_put_together", 0) > 1, ingest
    pipeline = caudal.open_run(run_dir).pipeline
    waiting = max(int(((pipeline["complete"] <= t) & (pipeline["analysed"] > t)).sum())
                  for t in pipeline["complete"])
    assert waiting <= 4 * 4, waiting


def test_steering_reaches_the_simulation(tmp_path, heat2d):
    means = tmp_path / "mean.txt"
    p, results, _ = caudal_run(
        tmp_path, STATS, [heat2d, "64", "48", "120", "--mean", str(means)],
        env={"CAUDAL_DEMO_THRESHOLD": "0.5"})
    assert p.returncode == 0, p.stdout + p.stderr
    want = oracle(means)
    passed = min(s for s, m in results["mean"].items() if m > 0.5)
    rise = {s: want[s] - want[s - 1] for s in want if s - 1 in want}
    # Heated the mean rises; once the source is off it only falls.
    assert all(rise[s] > 0 for s in rise if s <= passed)
    cooled = [s for s in rise if rise[s] <= 0]
    assert cooled and all(rise[s] <= 0 for s in rise if s >= min(cooled))


def test_a_failing_analysis_is_reported_and_the_others_go_on(tmp_path, heat2d):
    script = tmp_path / "failing.py"
    script.write_text(
        "import caudal\n"
        "@caudal.analysis('temperature')\n"
        "def bad(t, ctx):\n"
        "    if t[0].step % 2:\n"
        "        raise RuntimeError('odd step %d' % t[0].step)\n"
        "    ctx.record('even', t[0].step)\n"
        "@caudal.analysis('temperature')\n"
        "def good(t, ctx):\n"
        "    ctx.record('seen', t[0].step)\n"
        "@caudal.analysis('temperature')\n"
        "def wrong_axis(t, ctx):\n"
        "    if t[0].step == 4:\n"
        "        caudal.stencil.gradient(t[0], axis=5)\n"
        "@caudal.at_end\n"
        "def final(ctx):\n"
        "    ctx.record('last', ctx.step)\n"
        "@caudal.at_end\n"
        "def broken(ctx):\n"
        "    raise RuntimeError('at the end')\n")
    p, results, run_dir = caudal_run(tmp_path, script, [heat2d, "32", "16", "10"])
    assert p.returncode == 1, p.stdout + p.stderr
    assert "7 analysis call(s) failed" in p.stderr
    assert sorted(results["seen"]) == list(range(10))
    assert sorted(results["even"]) == [0, 2, 4, 6, 8]
    assert results["last"] == {9: 9}  # @caudal.at_end ran once, after the last step
    errors = [json.loads(l) for l in (run_dir / "errors.jsonl").read_text().splitlines()]
    by = collections.defaultdict(list)
    for e in errors:
        by[e["analysis"]].append(e)
    assert sorted(e["step"] for e in by["bad"]) == [1, 3, 5, 7, 9]
    assert all("odd step" in e["error"] for e in by["bad"])
    (kernel,) = by["wrong_axis"]  # a kernel's refusal names the array and the step
    assert kernel["step"] == 4 and "array 'temperature', step 4: gradient: axis 5 is not one " \
        "of the array's 2 axes" in kernel["error"]
    (end,) = by["broken"]
    assert end["step"] == 9 and "at the end" in end["error"]


def test_a_failing_simulation_fails_the_run(tmp_path, heat2d):
    p, _, _ = caudal_run(tmp_path, STATS, [heat2d, "0", "0", "5"])
    assert p.returncode != 0
    assert "simulation failed" in p.stderr or "without goodbye" in p.stderr


def test_the_python_simulation_publishes_through_the_same_path(tmp_path):
    means = tmp_path / "mean.txt"
    p, results, _ = caudal_run(
        tmp_path, STATS, [sys.executable, HEAT_PY, "48", "32", "15", "--mean", str(means)],
        env={"CAUDAL_DEMO_THRESHOLD": "1e9"})
    assert p.returncode == 0, p.stdout + p.stderr
    want = oracle(means)
    assert sorted(results["mean"]) == list(range(15))
    for step, m in want.items():
        assert abs(results["mean"][step] - m) <= 1e-12 * abs(m)


TWO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_two_arrays.py")

WINDOWS_AND_TRIGGERS = """
import numpy as np
import caudal

def expected(step, shape):
    return step * 1000.0 + np.arange(np.prod(shape), dtype=np.float64).reshape(shape)

@caudal.analysis("a", "b")                       # trigger "and"
def both(a, b, ctx):
    (a,), (b,) = a, b
    assert a.step == b.step == ctx.step
    ctx.record("and", [a.step, b.step])
    ctx.record("b_ok", bool((b.data.compute() == -expected(b.step, b.data.shape)).all()))

@caudal.analysis("a", "b", trigger="or")
def either(a, b, ctx):
    ctx.record("or", [[x.step for x in a], [x.step for x in b]])

@caudal.analysis("a", window=3)
def history(a, ctx):
    ctx.record("window", [x.step for x in a])
    ctx.record("a_ok", all(bool((x.data.compute() == expected(x.step, x.data.shape)).all())
                           for x in a))
"""


def test_windows_hold_the_right_steps_in_order_and_triggers_follow_and_or(tmp_path):
    script = tmp_path / "wt.py"
    script.write_text(WINDOWS_AND_TRIGGERS)
    p, results, _ = caudal_run(tmp_path, script, [sys.executable, TWO, "7"], ranks=3)
    assert p.returncode == 0, p.stdout + p.stderr
    # "and": only at steps where both arrays are new (b comes every second step).
    assert results["and"] == {s: [s, s] for s in (0, 2, 4, 6)}
    assert all(results["b_ok"].values()) and len(results["b_ok"]) == 4
    # "or": at every step; b's window is its latest step, not necessarily this one.
    assert results["or"] == {s: [[s], [s - s % 2]] for s in range(7)}
    # A window of 3: called once 3 steps exist, oldest first, consecutive.
    assert results["window"] == {s: [s - 2, s - 1, s] for s in range(2, 7)}
    assert all(results["a_ok"].values()) and len(results["a_ok"]) == 5


def test_blocks_that_do_not_tile_are_a_clear_error(tmp_path):
    script = tmp_path / "noop.py"
    script.write_text("import caudal\n@caudal.analysis('a')\ndef f(a, ctx):\n    pass\n")
    p, _, _ = caudal_run(tmp_path, script, [sys.executable, TWO, "3", "--overlap"], ranks=3)
    assert p.returncode == 3, p.stdout + p.stderr
    assert "array 'a'" in p.stderr and "overlap" in p.stderr and "ranks 0 and 1" in p.stderr
    # caudal run stopped the ranks: what MPICH says of the SIGTERM it sent
    # ("BAD TERMINATION ...") goes to the run folder, not the console.
    assert "BAD TERMINATION" not in p.stdout + p.stderr
    tail = tmp_path / "run" / "simulation-after-stop.log"
    assert tail.exists() == (str(tail) in p.stderr), p.stderr


def test_the_simulations_output_passes_through_until_caudal_run_stops_it(tmp_path, capfd):
    """simulation.Output: both streams as they come, then (once caudal run
    stops the simulation) into the run folder's tail file, nothing lost."""
    import subprocess

    from caudal.runtime.simulation import Output

    go = tmp_path / "go"
    proc = subprocess.Popen(
        ["sh", "-c", "echo before; echo warn >&2; while [ ! -e %s ]; do sleep 0.05; done; "
                     "echo after; echo BANNER >&2" % go],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out = Output(proc, tmp_path / "tail.log")
        time.sleep(0.5)
        out.divert()
        go.touch()
        proc.wait(10)
    finally:  # no shell left waiting if a step above failed
        proc.kill()
        proc.wait()
    assert out.close() == tmp_path / "tail.log"
    seen = capfd.readouterr()
    assert seen.out == "before\n" and seen.err == "warn\n"
    assert sorted((tmp_path / "tail.log").read_text().split()) == ["BANNER", "after"]


GRAB = """
import sys
import caudal

def whole(x):  # the analysis itself names no `data`: Dask-on-Ray comes late
    return x.data.compute()

@caudal.analysis('temperature')
def grab(t, ctx):
    if t[0].step %% 3 == 0:
        ctx.record('ready', 'ray.util.dask' in sys.modules)
        ctx.record('field', %s)
"""


@pytest.mark.parametrize("how", ["t[0].data.compute()", "whole(t[0])"])
def test_the_global_array_equals_the_simulations_dump_bit_for_bit(tmp_path, heat2d, how):
    """The step's Dask array, computed by the analysis: Dask-on-Ray set up at
    start when the analysis names `data` (launcher.uses_dask), else at its
    first graph (launcher.dask_on_ray); the same values either way."""
    import numpy as np

    script = tmp_path / "grab.py"
    script.write_text(GRAB % how)
    dump = tmp_path / "dump"
    p, results, _ = caudal_run(tmp_path, script, [heat2d, "32", "16", "10", "--dump-every",
                                                  "3", "--dump", str(dump)])
    assert p.returncode == 0, p.stdout + p.stderr
    assert sorted(results["field"]) == [0, 3, 6, 9]
    eager = how.startswith("t[0].data")
    assert results["ready"] == {0: eager, 3: True, 6: True, 9: True}
    for step, field in results["field"].items():
        ours = np.array(field, dtype=np.float64)
        theirs = np.fromfile("%s-%d.bin" % (dump, step), dtype=np.float64).reshape(32, 16)
        assert ours.shape == theirs.shape
        assert np.array_equal(ours.view(np.uint64), theirs.view(np.uint64))


def test_caudal_run_joins_a_running_ray_cluster(tmp_path, heat2d):
    import secrets
    import socket
    import tempfile

    ray = os.path.join(os.path.dirname(sys.executable), "ray")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmp = tempfile.mkdtemp(prefix="cdlray-", dir="/tmp")  # socket paths < 107 bytes
    # A cluster of its own token, as a user's would be; caudal run gets it too.
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    subprocess.run([ray, "start", "--head", "--node-ip-address", "127.0.0.1", "--port",
                    str(port), "--num-cpus", "2", "--include-dashboard", "false",
                    "--temp-dir", tmp], check=True, capture_output=True, timeout=120,
                   env=dict(os.environ, **auth))
    try:
        means = tmp_path / "mean.txt"
        p, results, _ = caudal_run(
            tmp_path, STATS, [heat2d, "32", "16", "8", "--mean", str(means)],
            extra=("--address", "127.0.0.1:%d" % port),
            env=dict(auth, CAUDAL_DEMO_THRESHOLD="1e9"))
        assert p.returncode == 0, p.stdout + p.stderr
        assert sorted(results["mean"]) == list(range(8))
        # The cluster outlives the run: caudal run only disconnected from it.
        st = subprocess.run([ray, "status", "--address", "127.0.0.1:%d" % port],
                            capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, **auth))
        assert st.returncode == 0, st.stdout + st.stderr
    finally:
        # Only this cluster's processes (their command lines name its temp dir),
        # not every Ray on the machine as `ray stop` would.
        subprocess.run(["pkill", "-KILL", "-f", tmp], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


def test_the_kernels_under_caudal_run_equal_numpy_on_the_simulations_dumps(tmp_path, heat2d):
    import math

    import numpy as np
    import scipy.ndimage
    import scipy.stats

    script = os.path.join(ROOT, "examples", "analytics", "heat_features.py")
    dump = tmp_path / "dump"
    steps, shape = 12, (32, 24)
    p, results, run_dir = caudal_run(tmp_path, script, [
        heat2d, str(shape[0]), str(shape[1]), str(steps), "--dump-every", "1", "--dump",
        str(dump)], env={"CAUDAL_HOT_THRESHOLD": "0.3"})
    assert p.returncode == 0, p.stdout + p.stderr
    fields = [np.fromfile("%s-%d.bin" % (dump, s), dtype=np.float64).reshape(shape)
              for s in range(steps)]
    for s, f in enumerate(fields):
        x = f.ravel()
        if x.var() > 0:
            assert math.isclose(results["skewness"][s], scipy.stats.skew(x), rel_tol=1e-8)
            assert math.isclose(results["kurtosis"][s], scipy.stats.kurtosis(x), rel_tol=1e-8)
        assert results["histogram"][s] == np.histogram(x, 64, (0.0, 2.0))[0].tolist()
        xs = np.sort(x)  # fewer values than the sketch holds: exact order statistics
        for q, v in zip((0.5, 0.99), results["quantiles"][s]):
            assert np.quantile(xs, q, method="lower") <= v <= np.quantile(xs, q, method="higher")
        lap = sum(np.diff(np.pad(f, [(1, 1) if e == d else (0, 0) for e in range(2)],
                                 mode="edge"), 2, axis=d) for d in range(2))
        assert math.isclose(results["max_abs_laplacian"][s], np.abs(lap).max(), rel_tol=1e-12)
        lab, n = scipy.ndimage.label(f > 0.3)
        assert results["hot_spots"][s] == n
        if n:
            sizes = np.bincount(lab.ravel())[1:]
            big = int(np.argmax(sizes)) + 1
            size, *centroid = results["largest_hot_spot"][s]
            assert size == sizes.max()
            assert np.allclose(centroid, scipy.ndimage.center_of_mass(f > 0.3, lab, big))
        if s % 10 == 0:
            want = f.reshape(4, 8, 3, 8).mean(axis=(1, 3))
            assert np.allclose(results["coarse"][s], want, rtol=1e-13, atol=0)
    assert max(results["hot_spots"].values()) > 0  # the threshold is crossed
    stats = np.load(run_dir / "point_stats.npz")
    stack = np.stack(fields)
    assert np.array_equal(stats["count"], np.full(shape, steps))
    assert np.allclose(stats["mean"], stack.mean(0), rtol=1e-12, atol=1e-15)
    assert np.allclose(stats["var"], stack.var(0), rtol=1e-9, atol=1e-15)
    assert np.array_equal(stats["min"], stack.min(0)) and np.array_equal(stats["max"],
                                                                         stack.max(0))


def test_an_analysis_of_an_array_no_rank_declared_fails_the_run(tmp_path, heat2d):
    """A typo in an array's name is not a run that analysed nothing."""
    script = tmp_path / "typo.py"
    script.write_text("import caudal\n\n@caudal.analysis('temprature')\n"
                      "def f(t, ctx):\n    ctx.record('x', 1)\n")
    p, results, run_dir = caudal_run(tmp_path, script, [heat2d, "32", "32", "5"])
    assert p.returncode == 1, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert "'temprature'" in last or "temprature" in last, last
    assert "declared: temperature" in last, last
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["end"]["reason"] == "analysis_failed"
    assert summary["arrays_never_declared"] == [["f", "temprature"]]
    assert not results


def test_every_array_no_rank_declared_is_named_beside_failed_calls(tmp_path, heat2d):
    """Two typos and an analysis that fails: the last line names both
    (analysis, array) pairs and the failed calls, not only the first."""
    script = tmp_path / "typos.py"
    script.write_text("import caudal\n\n@caudal.analysis('temprature')\n"
                      "def f(t, ctx):\n    pass\n\n@caudal.analysis('temp')\n"
                      "def g(t, ctx):\n    pass\n\n@caudal.analysis('temperature')\n"
                      "def h(t, ctx):\n    raise ValueError('no')\n")
    p, results, run_dir = caudal_run(tmp_path, script, [heat2d, "32", "32", "3"])
    assert p.returncode == 1, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert re.search(r"\d+ analysis call\(s\) failed, see ", last), last
    assert "analysis f reads array temprature, analysis g reads array temp, " in last, last
    assert "declared: temperature" in last, last
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["arrays_never_declared"] == [["f", "temprature"], ["g", "temp"]]


WHERE_KERNELS_RUN = '''
import os

import numpy as np

import caudal


def _title(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        return f.read().split(b"\\0")[0].decode(errors="replace")


def _descendants():
    """Command lines of caudal run's descendants (this is caudal run)."""
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = open("/proc/%s/stat" % d).read()
                children.setdefault(int(stat[stat.rindex(")") + 2:].split()[1]), []).append(int(d))
            except OSError:
                pass
    out, todo = set(), [os.getpid()]
    while todo:
        for k in children.get(todo.pop(), []):
            todo.append(k)
            try:
                with open("/proc/%d/cmdline" % k, "rb") as f:
                    out.add(f.read().replace(b"\\0", b" ").decode(errors="replace"))
            except OSError:
                pass
    return out


def _ray_processes():
    """Titles of this run's Ray processes."""
    return sorted(t.split(" ")[0] for t in _descendants() if t.startswith("ray::"))


@caudal.analysis("temperature")
def where(temperature, ctx):
    t = temperature[-1]
    ran = caudal.blocks.map_blocks(
        lambda b: (os.getpid(), _title(os.getpid()), float(np.asarray(b).sum())), t)
    ctx.record("ran", ran)
    ctx.record("processes", _ray_processes())
    ctx.record("monitors", sorted(t for t in _descendants()
                                  if "monitor.py" in t or "dashboard/dashboard.py" in t))
    import sys
    ctx.record("imported", sorted(m for m in ("pandas", "ray.util.dask")
                                  if m in sys.modules))
'''


def test_kernels_run_in_the_ingest_actor_and_no_ray_worker_starts(tmp_path, heat2d):
    """Per-block work runs in the ingest actor of the block's node (the
    process that put the block), so with --workers 0 no Ray worker process
    starts;
    each block's sum equals the simulation's dump."""
    import numpy as np

    script = tmp_path / "where.py"
    script.write_text(WHERE_KERNELS_RUN)
    dump = tmp_path / "dump"
    p, results, _ = caudal_run(tmp_path, script, [heat2d, "32", "16", "6", "--dump-every", "1",
                                                  "--dump", str(dump)], extra=("--workers", "0"))
    assert p.returncode == 0, p.stdout + p.stderr
    assert sorted(results["ran"]) == list(range(6))
    for step, ran in results["ran"].items():
        field = np.fromfile("%s-%d.bin" % (dump, step), dtype=np.float64)
        assert len(ran) == 4 and len({pid for pid, _, _ in ran}) == 1  # one node, one ingest
        assert all(title.startswith("ray::IngestActor") for _, title, _ in ran), ran
        assert np.isclose(sum(s for _, _, s in ran), field.sum(), rtol=1e-12)
    seen = {t for titles in results["processes"].values() for t in titles}
    assert any(t.startswith("ray::IngestActor") for t in seen), seen
    assert not [t for t in seen if t.startswith("ray::IDLE") or "_checked" in t], seen
    # The run's own Ray has no autoscaler monitor, no log monitor and no API
    # server (launcher.lean_ray_head), and an analysis that computes no Dask graph
    # leaves Dask-on-Ray (and pandas) unimported (launcher.dask_on_ray).
    assert all(m == [] for m in results["monitors"].values()), results["monitors"]
    assert all(i == [] for i in results["imported"].values()), results["imported"]
