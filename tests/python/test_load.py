"""`caudal run` under load, with real ranks (mpi4py), a real local Ray and
real analytics, measured from outside while it runs:

- an analysis that hangs: it times out, the others and the simulation go on;
- analytics slower than the simulation for 1,200 steps (block) or 3,000
  (drop), with an object store that their window nearly fills: the store
  stays within the budget the design implies, no memory grows, and the
  policy (block: back-pressure, drop: steps dropped) decides what is
  analysed;
- a 10,000-step soak with small arrays: no growth of file descriptors, RSS
  or objects in the store.

The test samples, every 0.2 s, the RSS (all of it, and the private part
without the store's shared pages) and open descriptors of every process
of the run (caudal run and its descendants: Ray's GCS and raylet, the
ingest and head actors, Ray's workers, mpiexec and the ranks) and the
raylet's own account of the object store (its debug_state.txt, which
RAY_debug_dump_period_milliseconds makes it rewrite 5 times a second).
Growth is judged between an early and a late part of the run, by the
analysis' progress (results.jsonl), so that start-up does not count.
"""

import collections
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SIM = os.path.join(HERE, "_load_sim.py")
ANALYTICS = os.path.join(HERE, "_load_analytics.py")
PAGE = os.sysconf("SC_PAGE_SIZE")
MiB = 2**20


# ---------------------------------------------------------------- sampling


def _children():
    """pid -> parent pid of every process we can see."""
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    stat = f.read()
            except OSError:
                continue
            parent[int(d)] = int(stat[stat.rindex(")") + 2:].split()[1])
    return parent


def _descendants(root):
    parent = _children()
    kids = collections.defaultdict(list)
    for pid, ppid in parent.items():
        kids[ppid].append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids[pid])
    return out


def _proc(pid):
    """(role, cmdline, rss bytes, open fds, private rss bytes) of a process,
    None once gone. The private part leaves out the pages it shares, as
    those of the object store that it mapped (the store is measured apart)."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        with open("/proc/%d/statm" % pid) as f:
            _, resident, shared = (int(x) for x in f.read().split()[:3])
        fds = len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return None
    return _role(cmd), cmd, resident * PAGE, fds, (resident - shared) * PAGE


def _role(cmd):
    exe = os.path.basename(cmd.split(" ", 1)[0])
    if exe in ("raylet", "gcs_server"):
        return {"raylet": "raylet", "gcs_server": "gcs"}[exe]
    # The run's own command line names the simulation, and so does mpiexec's;
    # Ray's workers name the raylet.
    for key, role in (("-m caudal run", "caudal"), ("ray::IngestActor", "ingest"),
                      ("ray::HeadActor", "head"), ("ray::", "ray worker"),
                      ("default_worker.py", "ray worker"), ("hydra_pmi_proxy", "mpi"),
                      ("mpiexec", "mpi"), ("_load_sim.py", "rank")):
        if key in cmd:
            return role
    return "other"


STORE_KEYS = {"- num pinned objects": "objects", "- pinned objects size": "bytes",
              "- num local plasma objects": "plasma_objects",
              "- num bytes currently spilled": "spilled_bytes",
              "- cumulative spill requests": "spill_requests"}


def _store(session):
    """The raylet's latest account of its object store."""
    try:
        with open(os.path.join(session, "logs", "debug_state.txt")) as f:
            text = f.read()
    except OSError:
        return None
    got = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in STORE_KEYS and value.strip().isdigit():
            got.setdefault(STORE_KEYS[key], int(value))
    return got if len(got) == len(STORE_KEYS) else None


class Monitor(threading.Thread):
    """Samples a running `caudal run` until it exits: per process RSS and
    descriptors, the store, and the analysis' progress (results written)."""

    def __init__(self, popen, results, period=0.2):
        super().__init__(daemon=True)
        self.p, self.results, self.period = popen, results, period
        self.samples = []  # (progress, {pid: (role, rss, fds)}, store or None)
        self.session = None
        self.roles = {}

    def run(self):
        while self.p.poll() is None:
            procs = {}
            for pid in _descendants(self.p.pid):
                info = _proc(pid)
                if info is None:
                    continue
                role, cmd, rss, fds, private = info
                procs[pid] = (role, rss, fds, private)
                # The first specific role: an actor's title changes when it
                # idles, a process that exits loses its command line. A rank
                # caught between hydra's fork and its exec still reads as
                # mpi, and a Ray worker becomes an actor: those may move on.
                # So may Ray's GCS or raylet caught between caudal run's fork
                # and their exec, which read as caudal run, and a Ray worker
                # caught between the raylet's fork and its exec, which reads
                # as the raylet (a CI run counted the head so, and 2 raylets).
                was = self.roles.get(pid, "other")
                if was in ("other", "ray worker", "mpi") or \
                        (was == "caudal" and role in ("raylet", "gcs")) or \
                        (was == "raylet" and role in ("ray worker", "ingest", "head")):
                    self.roles[pid] = role
                if self.session is None:
                    m = re.search(r"--session[-_]dir=(\S+)", cmd)
                    if m:
                        self.session = m.group(1)
            store = _store(self.session) if self.session else None
            self.samples.append((self._progress(), procs, store))
            time.sleep(self.period)

    def _progress(self):
        try:
            with open(self.results, "rb") as f:
                return f.read().count(b"\n")
        except OSError:
            return 0

    def part(self, lo, hi):
        """The samples taken while the progress was in [lo, hi) of its end."""
        end = max(s[0] for s in self.samples)
        return [s for s in self.samples if lo * end <= s[0] < hi * end]


def _per_process(roles, early, late, what):
    """{pid: (role, max in early, max in late)} of `what` (1: RSS, 2: fds,
    3: private RSS)
    for the processes seen in both parts of the run."""
    out = {}
    for pid in set().union(*(s[1] for s in early)) & set().union(*(s[1] for s in late)):
        a = [s[1][pid][what] for s in early if pid in s[1]]
        b = [s[1][pid][what] for s in late if pid in s[1]]
        out[pid] = (roles[pid], max(a), max(b))
    return out


def _store_series(samples, key):
    return [s[2][key] for s in samples if s[2] is not None]


def check_nothing_grows(mon, early, late, rss_slack, fd_slack=16, ranks=2):
    """RSS and descriptors of every process of the run: late <= early + slack.

    Each process is compared with itself: its highest RSS in the late part
    with its highest in the early part. A leak of one object reference or
    one block per step grows by far more over the steps in between; the
    slack covers what settles late (allocator arenas that reach their
    working set, Ray's lazily opened connections)."""
    grew = []
    for what, name in ((1, "RSS"), (3, "private RSS")):
        for pid, (role, a, b) in sorted(_per_process(mon.roles, early, late, what).items()):
            if b > a + rss_slack:
                grew.append("%s %d: %s %.1f -> %.1f MiB" % (role, pid, name, a / MiB, b / MiB))
    for pid, (role, a, b) in sorted(_per_process(mon.roles, early, late, 2).items()):
        if b > a + fd_slack:
            grew.append("%s %d: %d -> %d descriptors" % (role, pid, a, b))
    report(mon, early, late)
    assert not grew, grew
    roles = collections.Counter(mon.roles.values())
    # The comparison covered the processes that matter.
    assert roles["caudal"] >= 1 and roles["ingest"] == 1 and roles["head"] == 1, roles
    assert roles["raylet"] == 1 and roles["rank"] >= ranks, roles


def report(mon, early, late):
    """What was measured, for the log of a run with -s."""
    for pid, (role, a, b) in sorted(_per_process(mon.roles, early, late, 1).items()):
        fds = _per_process(mon.roles, early, late, 2)[pid]
        private = _per_process(mon.roles, early, late, 3)[pid]
        print("%-10s %7d  RSS %7.1f -> %7.1f MiB  private %7.1f -> %7.1f MiB  fds %4d -> %4d"
              % (role, pid, a / MiB, b / MiB, private[1] / MiB, private[2] / MiB,
                 fds[1], fds[2]))
    for key in ("objects", "bytes"):
        print("store %s: early max %s, late max %s, run max %s" % (
            key, max(_store_series(early, key), default=None),
            max(_store_series(late, key), default=None),
            max(_store_series(mon.samples, key), default=None)))


# ------------------------------------------------------------------ runs


def run_load(tmp_path, sim, ranks=2, extra=(), env=None, timeout=600, period=0.2):
    """`caudal run` of sim, sampled every `period` seconds while it runs.
    Returns (process, monitor, results {name: {step: value}}, errors,
    summary)."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    env = dict(os.environ, RAY_debug_dump_period_milliseconds="200", **(env or {}))
    t0 = time.monotonic()
    p = subprocess.Popen([sys.executable, "-m", "caudal", "run", "-n", str(ranks),
                          "--analytics", ANALYTICS, "--run-dir", str(run_dir), *extra, "--",
                          *sim], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env=env)
    mon = Monitor(p, run_dir / "results.jsonl", period)
    mon.start()
    try:
        out, _ = p.communicate(timeout=timeout)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    mon.join()
    p.output, p.seconds = out, time.monotonic() - t0
    results = collections.defaultdict(dict)
    for line in (run_dir / "results.jsonl").read_text().splitlines():
        r = json.loads(line)
        results[r["name"]][r["step"]] = r["value"]
    errors = [json.loads(line) for line in (run_dir / "errors.jsonl").read_text().splitlines()]
    summary = json.loads((run_dir / "summary.json").read_text())
    return p, mon, results, errors, summary


def oracle(prefix, ranks, size):
    """The simulation's own mean per step (its ranks' sums over the global
    size) and the steps some rank dropped."""
    total = collections.Counter()
    dropped = set()
    for r in range(ranks):
        for line in open("%s.sum.%d" % (prefix, r)).read().splitlines():
            step, s = line.split()
            total[int(step)] += float(s)
        dropped |= {int(s) for s in open("%s.dropped.%d" % (prefix, r)).read().split()}
    return {step: s / size for step, s in total.items()}, dropped


# ------------------------------------------------------- a hung analysis

HANGS = """
import time
import caudal

@caudal.analysis("temperature", timeout=2)     # its own deadline
def hangs(t, ctx):
    if t[0].step == 5:
        time.sleep(10**6)
    ctx.record("hangs", t[0].step)

@caudal.analysis("temperature")                # the run's: --analysis-timeout
def stalls(t, ctx):
    if t[0].step == 12:
        time.sleep(10**6)
    ctx.record("stalls", t[0].step)

@caudal.analysis("temperature")
def mean(t, ctx):
    ctx.record("mean", float(t[0].data.mean().compute()))
"""


@pytest.mark.load
def test_a_hanging_analysis_times_out_and_the_run_goes_on(tmp_path, heat2d):
    from test_run import caudal_run
    from test_run import oracle as heat_oracle

    script = tmp_path / "hangs.py"
    script.write_text(HANGS)
    means = tmp_path / "mean.txt"
    steps = 30
    t0 = time.monotonic()
    p, results, run_dir = caudal_run(
        tmp_path, script, [heat2d, "64", "48", str(steps), "--mean", str(means)],
        extra=("--policy", "block", "--analysis-timeout", "3"))
    seconds = time.monotonic() - t0
    assert p.returncode == 1, p.stdout + p.stderr  # the timeouts: analysis failures
    assert "2 analysis call(s) failed" in p.stderr
    # Without deadlines the run would wait for 10**6 s; with them a hung call
    # costs its deadline once (the machine is shared: generous).
    assert seconds < 240, seconds
    want = heat_oracle(means)
    assert sorted(results["mean"]) == list(range(steps))  # every step, none missing
    for step, m in want.items():
        assert abs(results["mean"][step] - m) <= 1e-12 * abs(m)
    # The hung analyses ran up to their hang, and not after it (skipped while
    # their call still runs: never queued behind it).
    assert sorted(results["hangs"]) == list(range(5))
    assert sorted(results["stalls"]) == list(range(12))
    errors = [json.loads(line) for line in (run_dir / "errors.jsonl").read_text().splitlines()]
    by = collections.defaultdict(list)
    for e in errors:
        by[e["analysis"]].append(e)
    assert not by["mean"]
    for name, step, deadline in (("hangs", 5, 2), ("stalls", 12, 3)):
        first, *rest = by[name]
        assert first == {"analysis": name, "step": step, "timed_out": True,
                         "error": "timed out after %d s" % deadline}
        assert [e["step"] for e in rest] == list(range(step + 1, steps))
        assert all(e["skipped"] and e["running_step"] == step for e in rest)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["timeouts"] == 2 and summary["failures"] == 2
    assert summary["calls_skipped"] == (steps - 6) + (steps - 13)
    assert summary["steps_analysed"] == steps and summary["steps_without_call"] == 0
    assert summary["calls"] == steps + 5 + 12
    assert summary["end"]["reason"] == "analysis_failed" and summary["end"]["exit_code"] == 1


# ------------------------------------------- slow analytics, a full store

ROWS, COLS = 256, 256  # 512 KiB per rank and step
STEP_BYTES = 2 * ROWS * COLS * 8
WINDOW = 48
MAX_PENDING = 8
STORE = 80 * MiB


# Under block the ranks run flat out and wait for the analytics. Under drop
# they would not wait: flat out, 3,000 steps take them a second and a
# handful of steps get through, as many as the speeds allow. So the rank
# computes 2 ms a step, about half the analysis' time a step: the analytics
# stay behind for the whole run and hundreds of steps get through. One rank:
# ranks that decide apart drop different steps, and how many steps stay
# whole on all of them is another matter (test_completeness covers drops by
# some ranks).
@pytest.mark.load
@pytest.mark.parametrize("policy, steps, ranks, pause", [("block", 1200, 2, ()),
                                                         ("drop", 3000, 1, ("--pause", "0.002"))])
def test_analytics_slower_than_the_simulation_stay_within_the_memory_budget(
        tmp_path, policy, steps, ranks, pause):
    """Steps of 1 MiB (2 ranks, or 1 under drop), an analysis that sleeps 3 ms
    a step besides its work and holds a window of 48 steps, an object store
    of 80 MiB. The design bounds what the store holds: the window, the head's
    --max-pending complete steps, as many again taken by the driver at once,
    and the ingest's reports in flight: (48 + 2*8 + 3) steps = 67 MiB, 84 %
    of the store. A leak, or anything unbounded, would overflow it."""
    prefix = str(tmp_path / "sim")
    p, mon, results, errors, summary = run_load(
        tmp_path, [sys.executable, SIM, str(steps), str(ROWS * 2 // ranks), str(COLS),
                   "--out", prefix, *pause], ranks=ranks,
        extra=("--policy", policy, "--max-pending", str(MAX_PENDING)),
        env={"CAUDAL_LOAD_WINDOW": str(WINDOW), "CAUDAL_LOAD_SLEEP": "0.003",
             "RAY_OVERRIDE_RESOURCES": json.dumps({"object_store_memory": STORE})})
    assert p.returncode == 0, p.output
    # caudal run's own account of that budget, printed at the first step:
    # past Ray's spill threshold, so a warning, and the run goes on.
    assert "a step is 1.0 MiB over 1 node(s)" in p.output
    assert "needs up to 67.0 MiB of its 80.0 MiB (84%)" in p.output
    assert "may fill past 80% (67.0 MiB of 80.0 MiB)" in p.output
    assert summary["memory"]["error"] is None and summary["memory"]["warning"]
    means, dropped = oracle(prefix, ranks, 2 * ROWS * COLS)
    assert sorted(means) == list(range(steps))
    analysed = set(results["mean"])
    if policy == "block":
        assert not dropped  # back-pressure: the ranks waited, nothing lost
        assert analysed == set(range(WINDOW - 1, steps))  # once the window is full
        assert all(results["window_ok"].values())
    else:
        # Every step is analysed or the rank dropped it, never both; the
        # analysis is 3 ms a step slower than the rank, so windows form.
        assert dropped and not analysed & dropped
        complete = sorted(set(range(steps)) - dropped)
        print("drop: %d steps complete, %d analysed" % (len(complete), len(analysed)))
        assert len(analysed) >= WINDOW
        assert analysed == set(complete[WINDOW - 1:])
        assert summary.get("rank_steps_dropped", summary.get("steps_dropped_by_ranks")) >= len(
            dropped)
    for step in analysed:
        assert abs(results["mean"][step] - means[step]) <= 1e-12 * abs(means[step])
    assert not errors and summary["failures"] == 0

    # The store: what it holds within the budget, not growing. Past 80 % of
    # its capacity Ray spills objects to disk (its object_spilling_threshold).
    # An object just spilled is counted both in memory and spilled until Ray
    # evicts it, so the budget bounds what is in memory, and the sum of both
    # is bounded only loosely (by the store) and must not grow.
    used = _store_series(mon.samples, "bytes")
    assert len(used) > 20, "the raylet's store account was not found"
    held = [s[2]["bytes"] + s[2]["spilled_bytes"] for s in mon.samples if s[2] is not None]
    budget = (WINDOW + 2 * MAX_PENDING + 3) * STEP_BYTES
    print("store: in memory max %.1f MiB, held max %.1f MiB, budget %.1f MiB, %d spills"
          % (max(used) / MiB, max(held) / MiB, budget / MiB,
             max(_store_series(mon.samples, "spill_requests"))))
    assert max(used) <= min(STORE, budget * 1.15), (max(used) / MiB, budget / MiB)
    assert max(held) <= STORE + budget, (max(held) / MiB, budget / MiB)
    early, late = mon.part(0.1, 0.35), mon.part(0.65, 0.95)
    assert early and late
    # What is held moves with the queues (the head's pending steps fill and
    # empty as the analysis falls behind and catches up): compare medians,
    # within one queue's worth and the step being put (a run held 2 KiB
    # past the queue's worth alone; a leak is a step per step, 500 here).
    a = statistics.median(s[2]["bytes"] + s[2]["spilled_bytes"] for s in early if s[2])
    b = statistics.median(s[2]["bytes"] + s[2]["spilled_bytes"] for s in late if s[2])
    assert b <= a + (MAX_PENDING + 1) * STEP_BYTES, (a / MiB, b / MiB)
    # No process grows: a leaked step would be 1 MiB, over 500 steps.
    check_nothing_grows(mon, early, late, rss_slack=48 * MiB, ranks=ranks)


def test_a_run_that_cannot_fit_the_store_is_refused(tmp_path):
    """The same 1 MiB steps with a window of 80 steps: (80 + 2*8 + 3) MiB
    cannot fit an 80 MiB store. caudal run says so with the numbers and
    what to change once the first step is analysed, stops the simulation
    long before its end, and exits 3, as for a declaration error."""
    prefix = str(tmp_path / "sim")
    steps = 5000
    p, _, _, _, summary = run_load(
        tmp_path, [sys.executable, SIM, str(steps), str(ROWS), str(COLS), "--out", prefix,
                   "--pause", "0.01"],  # 50 s to its end: the refusal comes long before
        extra=("--max-pending", str(MAX_PENDING)),
        env={"CAUDAL_LOAD_WINDOW": "80",
             "RAY_OVERRIDE_RESOURCES": json.dumps({"object_store_memory": STORE})})
    assert p.returncode == 3, p.output
    assert re.search(r"caudal run: the run cannot fit: the object store of node [\d.]+ "
                     r"holds 80.0 MiB and the run needs up to 99.0 MiB there \(steps held per "
                     r"array: field 99\); to fit, use a smaller window or --max-pending",
                     p.output), p.output
    assert "--max-pending" in p.output and "object_store_memory" in p.output
    assert summary["end"]["exit_code"] == 3 and summary["memory"]["error"]
    # The simulation was stopped: it writes this file after its last step.
    assert not os.path.exists(prefix + ".dropped.0")
    assert summary["steps_analysed"] + summary.get("steps_without_call", 0) < steps


def test_a_reductions_only_array_is_not_refused_and_stays_out_of_the_store(tmp_path):
    """The same window of 80 steps of 1 MiB in the same 80 MiB store, but
    the analysis is reductions_only: the budget is an upper bound then (its
    blocks are put only until the ingest has the plan), so caudal run warns
    and does not refuse; the run ends, every step's mean is the
    simulation's, and once the window moved past the steps put before the
    plan (the analysis is first called at step 79, when its window is
    full: only then are its reductions known), the store holds nothing of
    the field's."""
    prefix = str(tmp_path / "sim")
    steps, ranks = 300, 2
    p, mon, results, errors, summary = run_load(
        tmp_path, [sys.executable, SIM, str(steps), str(ROWS), str(COLS), "--out", prefix,
                   "--pause", "0.005"],
        extra=("--max-pending", str(MAX_PENDING)), period=0.05,
        env={"CAUDAL_LOAD_WINDOW": "80", "CAUDAL_LOAD_ONLY": "1",
             "RAY_OVERRIDE_RESOURCES": json.dumps({"object_store_memory": STORE})})
    assert p.returncode == 0, p.output
    assert "needs up to 99.0 MiB of its 80.0 MiB (124%); field put only until its " \
        "reductions are computed as its blocks arrive (reductions_only)" in p.output  # a warning
    assert summary["memory"]["error"] is None and summary["memory"]["warning"]
    means, dropped = oracle(prefix, ranks, 2 * ROWS * COLS)
    assert not dropped and set(results["mean"]) == set(range(79, steps))
    assert all(results["window_ok"].values()) and not errors
    for step, m in results["mean"].items():
        assert abs(m - means[step]) <= 1e-12 * abs(m)
    (ingest,) = summary["ingest"]
    assert ingest["blocks_not_put"] >= ranks * (steps - 80 - 30), ingest
    late = _store_series(mon.part(0.75, 1.0), "bytes")  # windows of steps 225 on
    assert late and max(late) <= 4 * STEP_BYTES, max(late) / MiB


# ------------------------------------------------------------------ soak

SOAK_STEPS = 10000


@pytest.mark.load
def test_a_10000_step_soak_grows_nothing(tmp_path):
    """2 ranks x 16x16 float64 for 10,000 steps, the mean recorded at every
    step. Early (5-25 % of the steps) against late (75-98 %): per process
    RSS within 16 MiB (one leaked object reference a step, about 3 KB in its
    owner, would be over 20 MiB across the 7,000 steps between; what is
    seen is under 1 KB a step, from Ray's workers), descriptors within 16,
    objects in the store bounded by the design (a leaked block list a step
    would be thousands) and not more at the end than early on."""
    prefix = str(tmp_path / "sim")
    p, mon, results, errors, summary = run_load(
        tmp_path, [sys.executable, SIM, str(SOAK_STEPS), "8", "16", "--out", prefix],
        extra=("--policy", "block", "--max-pending", str(MAX_PENDING)),
        period=0.02)  # flat out, steps taken together, reduced at receipt: a few seconds
    assert p.returncode == 0, p.output
    means, dropped = oracle(prefix, 2, 2 * 8 * 16)
    assert not dropped and sorted(means) == list(range(SOAK_STEPS))
    assert sorted(results["mean"]) == list(range(SOAK_STEPS))
    for step, m in means.items():
        assert abs(results["mean"][step] - m) <= 1e-12 * abs(m)
    assert not errors and summary["steps_analysed"] == SOAK_STEPS

    early, late = mon.part(0.05, 0.25), mon.part(0.75, 0.98)
    assert len(early) > 10 and len(late) > 10, (len(early), len(late))
    objects = _store_series(mon.samples, "objects")
    assert len(objects) > 20, "the raylet's store account was not found"
    # One object per step (both ranks' blocks in one list): the head's
    # pending steps, as many taken by the driver, the ingest's reports in
    # flight and the window; and Ray's own few.
    bound = 2 * MAX_PENDING + 3 + 1 + 8
    assert max(objects) <= bound, max(objects)
    a = statistics.median(_store_series(early, "objects"))
    b = statistics.median(_store_series(late, "objects"))
    assert b <= a + MAX_PENDING, (a, b)  # the queues move: within one queue's worth
    check_nothing_grows(mon, early, late, rss_slack=16 * MiB)
