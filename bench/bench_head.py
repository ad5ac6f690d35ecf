"""bench_head - the head's and the driver's cost per step against the number
of nodes reporting, up to 1,024 nodes, on one machine.

    .venv/bin/python bench/bench_head.py                    # N = 1 8 64 256 1024
    .venv/bin/python bench/bench_head.py --nodes 64 1024 --steps 5
    .venv/bin/python bench/bench_head.py --profile head.prof   # cProfile of the head

A local Ray (its temp dir under /tmp) and a load generator: G generator
actors play N nodes between them, each node with R ranks (a global 2-D
float64 array tiled by the N*R ranks' 8x8 blocks). They send exactly the
calls N ingest actors would send, through the ingest's own
caudal.runtime.report.Reporter: the ranks' introductions once per node, then
one report per node and step (a report.Part made of the blocks'
catalog.BlockRefs and the ranks' progress), from G processes at once as
real nodes would. The blocks point at one small object per node and step
(a list of its R blocks, as an ingest puts a node-step), put before the
step is timed, so the data path costs nothing and only the runtime's own
work is timed. The runtime is the real one: caudal.runtime.head (start_head,
what `caudal run` starts, with its tree of relays past 4 nodes) and
caudal.runtime.driver.Driver.

Once, "connect": every node's ranks introduced (connected and declared)
through the relays, until the head has them all, a node's in one call (ms
for the whole run, not per step); "connect_per_rank", its baseline: the
same with a call per rank's hello and per declaration, into a head and
relays of their own.

Per step, in lock step (one step at a time, so the phases are apart):
- reports in: from the first report sent until every report was answered,
  the step being then complete and handed over (in the head's queue);
- take: the driver's head.take, which brings the CompleteStep over;
- assemble: Driver.analyse on it (the StepArray in the window, an analysis
  that does nothing with it);
- end to end: the three together;
- driver CPU: the CPU time of this process (every thread: Ray's too) over
  take and assemble;
- resolve: what reading the array then costs the analysis before any
  kernel runs: its blocks' references fetched from the step's handles, its
  grid and its Dask graph made (report.StepBlocks, blocks.step_array);
- kernel: caudal.stats.moments over that global array (checked once against
  NumPy on the same array), for scale: it is the analysis' cost, not the
  runtime's;
- tree, tree_cpu: the same moments before anything resolved the step's
  blocks, sent down the relays instead (blocks.TreeStep, report.Tree: each
  relay's leaves go to the actor that put them, here a generator): the
  wall time and this process's CPU time. No reference per node reaches the
  driver, and the result is the grid's to the last bit (checked each step);
and the head's CPU time per step (its process's, every thread, from
/proc), also less what it spends idle for as long (head busy: Ray's own
threads cost an idle actor a few ms per second, and a step lasts longer on
a loaded machine), the busiest relay's, and the calls the head took
(relays: see caudal.runtime.relay; one per node and step without them).

Baseline, measured in the same run: the same generators sending the same
calls, with the same arguments, to an actor whose methods do nothing: what
Ray itself costs to carry N reports into one actor. Ratios are against it.
Then "streamed": the generators send S steps without waiting, two reports
in flight per node as the ingest does, while the driver takes and analyses
them: wall time per step once the pipe is full.

Numbers are milliseconds per step, median over the steps; nothing is written
into the repository (--json PATH writes the table).
"""

import argparse
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import ray

import caudal
from caudal.analytics import Analysis
from caudal.catalog import BlockRef, Declaration
from caudal.runtime.driver import Driver
from caudal.runtime.head import start_head
from caudal.runtime.relay import relays_of, tree_of
from caudal.runtime.report import Reporter

BLOCK = 8  # each rank's block is BLOCK x BLOCK float64
ARRAY = "field"


def grid_of(nranks):
    """px x py ranks, as square as the count allows."""
    px = int(math.isqrt(nranks))
    while nranks % px:
        px -= 1
    return px, nranks // px


def decl_of(rank, nranks):
    px, py = grid_of(nranks)
    i, j = divmod(rank, py)
    return Declaration(rank=rank, dtype="float64", order="C", variable=False,
                       shape=(px * BLOCK, py * BLOCK), start=(i * BLOCK, j * BLOCK),
                       count=(BLOCK, BLOCK), name=ARRAY)


def block_of(local):
    return np.arange(BLOCK * BLOCK, dtype=np.float64).reshape(BLOCK, BLOCK) + 1000.0 * local


def expected(nranks, per_node):
    """The global array the ranks' blocks make, in NumPy."""
    px, py = grid_of(nranks)
    out = np.empty((px * BLOCK, py * BLOCK))
    for r in range(nranks):
        i, j = divmod(r, py)
        out[i * BLOCK:(i + 1) * BLOCK, j * BLOCK:(j + 1) * BLOCK] = block_of(r % per_node)
    return out


@ray.remote(num_cpus=0)
class Sink:
    """The baseline: takes the head's calls and does nothing."""

    async def introduce(self, said):
        pass

    async def report(self, node, seq, part, urgent=False):
        pass


@ray.remote(num_cpus=0)
class Nodes:
    """Plays some nodes: the calls their ingest actors would make."""

    def __init__(self, nodes, per_node, nranks, node_id, shared):
        self.nodes = list(nodes)
        self.per_node = per_node
        self.nranks = nranks
        self.node_id = node_id
        # A node-step's blocks are one list object, as the ingest puts them:
        # a new object per node and step (Ray's reference counting costs
        # per object, in every process the reference passes through), or
        # with `shared` one for all (the data path then costs nothing).
        self.data = [block_of(i) for i in range(per_node)]
        self.ref = ray.put(self.data) if shared else None
        self.objects = {}  # step -> node -> its object, put ahead of the step
        self.ups = {}  # node -> its Reporter

    def prepare(self, step):
        """Put a step's objects before it is timed: the ingest's puts are
        not the head's cost."""
        if self.ref is None:
            self.objects[step] = {n: ray.put(self.data) for n in self.nodes}

    def ranks(self, node):
        return range(node * self.per_node, (node + 1) * self.per_node)

    def run(self, fn, *args):
        """Per-block work, as an ingest actor runs it (report.Tree)."""
        return fn(*args)

    def connect(self, targets, per_rank=False):
        """targets: node -> what its ingest reports to. Each node's ranks
        introduced in one call, the nodes' calls at once (a real ingest
        sends what its ranks said when no event waits: report.Reporter);
        per_rank: a call per rank's hello and per declaration, as before
        the introductions were batched (the baseline)."""
        self.ups = {n: Reporter(targets[n], n) for n in self.nodes}
        calls = []
        for n, up in self.ups.items():
            for r in self.ranks(n):
                up.connected(r, self.nranks)
                if per_rank:
                    calls.append(up.flush(wait=False))
            for r in self.ranks(n):
                up.declare(decl_of(r, self.nranks))
                if per_rank:
                    calls.append(up.flush(wait=False))
            calls.append(up.flush(wait=False))
        ray.get([c for c in calls if c is not None])

    def _report(self, node, step):
        ref = self.ref
        if ref is None:
            if step not in self.objects:  # streamed: put as the ingest does
                self.prepare(step)
            ref = self.objects[step].pop(node)
            if not self.objects[step]:
                del self.objects[step]
        blocks = [BlockRef(ARRAY, step, r, BLOCK * BLOCK, ref, i, self.node_id)
                  for i, r in enumerate(self.ranks(node))]
        up = self.ups[node]
        up.ranks.finished({r: step for r in self.ranks(node)})
        up.report(blocks)  # waits, as the ingest, past IN_FLIGHT reports in flight

    def send(self, step):
        """One step: every node's report, answered."""
        for n in self.nodes:
            self._report(n, step)
        for up in self.ups.values():
            up.answered()

    def stream(self, first, count):
        """count steps, each node's reports as its ingest sends them."""
        for step in range(first, first + count):
            for n in self.nodes:
                self._report(n, step)
        for up in self.ups.values():
            up.answered()


def cpu_seconds(pid):
    """CPU time of every thread of a process (schedstat: nanoseconds, where
    /proc/PID/stat counts ticks of 10 ms)."""
    total = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                total += int(f.read().split()[0])
        except OSError:  # the thread ended meanwhile
            pass
    return total * 1e-9


def idle_rate(pid, seconds=1.0):
    """CPU seconds per second that a process spends without being called
    (Ray's own threads): a step that lasts longer on a loaded machine costs
    the head more of it, whatever the head does."""
    c0 = cpu_seconds(pid)
    time.sleep(seconds)
    return (cpu_seconds(pid) - c0) / seconds


def pid_of(actor):
    return ray.get(actor.__ray_call__.remote(lambda self: os.getpid()))


PY_SPY = shutil.which("py-spy", path=os.path.dirname(sys.executable)) or "py-spy"


def calls_into(head):
    """Reports the head took so far."""
    return ray.get(head.__ray_call__.remote(lambda self: self.calls))


def noop(x, ctx):
    pass


def split(nnodes, ngen):
    nodes = list(range(nnodes))
    return [nodes[i::ngen] for i in range(min(ngen, nnodes))]


def measure(nnodes, args, run_dir, profile=None):
    nranks = nnodes * args.per_node
    node_id = ray.get_runtime_context().get_node_id()
    groups = split(nnodes, args.generators)
    gens = [Nodes.remote(g, args.per_node, nranks, node_id, args.shared) for g in groups]
    row = {"nodes": nnodes, "ranks": nranks}

    # Baseline: the same calls into an actor that does nothing.
    sink = Sink.remote()
    ray.get([g.connect.remote({n: sink for n in grp}) for g, grp in zip(gens, groups)])
    spid = pid_of(sink)
    base, base_cpu = [], []
    for step in range(args.steps + 1):
        ray.get([g.prepare.remote(step) for g in gens])
        c0 = cpu_seconds(spid)
        t0 = time.perf_counter()
        ray.get([g.send.remote(step) for g in gens])
        base.append(time.perf_counter() - t0)
        base_cpu.append(cpu_seconds(spid) - c0)
    row["baseline"] = statistics.median(base[1:])
    row["baseline_cpu"] = statistics.median(base_cpu[1:])
    ray.kill(sink)

    # The ranks' introductions: a call per rank and declaration (the
    # baseline, into a head and relays of its own), then batched per node.
    for key in ("connect_per_rank", "connect"):
        head, targets = start_head(nranks, max_pending=8, ingests=range(nnodes))
        # Every block is on this one Ray node: its work goes to one generator.
        # (tree_of also waits until every relay is up: their start is not timed.)
        tree = tree_of(targets, head, {node_id: gens[0]})
        ray.get(head.summary.remote())
        t0 = time.perf_counter()
        ray.get([g.connect.remote({n: targets[n] for n in grp}, key == "connect_per_rank")
                 for g, grp in zip(gens, groups)])
        row[key] = time.perf_counter() - t0
        if key == "connect_per_rank":
            for a in [head] + relays_of(targets, head):
                ray.kill(a)
    hpid = pid_of(head)
    relays = relays_of(targets, head)
    rpids = [pid_of(r) for r in relays]
    idle = idle_rate(hpid)
    driver = Driver([Analysis(noop, (ARRAY,), name="noop")], head, [], run_dir, tree=tree)
    want = expected(nranks, args.per_node)
    phases = {k: [] for k in ("reports", "take", "assemble", "e2e", "driver_cpu", "resolve",
                              "kernel", "tree", "tree_cpu", "head_cpu", "head_busy", "relay_cpu",
                              "head_calls")}
    spy = profile and subprocess.Popen(
        [PY_SPY, "record", "--pid", str(hpid), "--format", "raw", "-o", profile,
         "--rate", "200"] + (["--native"] if args.native else []),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for step in range(args.steps + 1):
        ray.get([g.prepare.remote(step) for g in gens])
        c0 = cpu_seconds(hpid)
        r0 = [cpu_seconds(p) for p in rpids]
        n0 = calls_into(head)
        t0 = time.perf_counter()
        ray.get([g.send.remote(step) for g in gens])
        t1 = time.perf_counter()
        d0 = time.process_time()
        steps, _ = driver.take(0)
        t2 = time.perf_counter()
        assert not driver.declaration_errors, driver.declaration_errors
        assert [c.step for c in steps] == [step], "step %d not complete: %r" % (step, steps)
        driver.analyse(steps[0])
        t3 = time.perf_counter()
        d1 = time.process_time()
        c1 = cpu_seconds(hpid)
        r1 = max([cpu_seconds(p) - r for p, r in zip(rpids, r0)], default=0.0)
        n1 = calls_into(head)
        x = driver.windows[ARRAY][-1]
        down = x.tree() is not None  # relays merged the nodes' parts (past HEAD nodes)
        p0, t7 = time.process_time(), time.perf_counter()
        by_tree = caudal.stats.moments(x) if down else None
        p1, t8 = time.process_time(), time.perf_counter()
        t4 = time.perf_counter()
        x.blocks, x.data  # noqa: B018 - made on first use: what an analysis pays
        t5 = time.perf_counter()
        m = caudal.stats.moments(x)
        t6 = time.perf_counter()
        assert by_tree is None or repr(by_tree) == repr(m), (by_tree, m)
        if step == 0:
            assert x.shape == want.shape
            assert np.isclose(m.mean, want.mean()) and m.max == want.max(), (m, want.mean())
            assert np.array_equal(x.data.compute(), want)
            continue  # warm-up
        for k, v in (("reports", t1 - t0), ("take", t2 - t1), ("assemble", t3 - t2),
                     ("e2e", t3 - t0), ("driver_cpu", d1 - d0), ("resolve", t5 - t4),
                     ("kernel", t6 - t5), ("tree", t8 - t7 if down else math.nan),
                     ("tree_cpu", p1 - p0 if down else math.nan), ("head_cpu", c1 - c0),
                     ("head_busy", c1 - c0 - idle * (t3 - t0)), ("relay_cpu", r1),
                     ("head_calls", n1 - n0)):
            phases[k].append(v)
    if spy:
        spy.send_signal(signal.SIGINT)
        spy.wait()
    # tree: only the steps that came through relays (NaN: none did)
    row.update({k: statistics.median([x for x in v if x == x] or [math.nan])
                for k, v in phases.items()})

    # Streamed: the generators do not wait for the driver.
    first = args.steps + 1
    gpids = [pid_of(g) for g in gens]
    n0 = calls_into(head)
    cpu0 = [cpu_seconds(p) for p in [hpid] + rpids + gpids]
    t0 = time.perf_counter()
    sent = [g.stream.remote(first, args.stream) for g in gens]
    got = 0
    while got < args.stream:
        steps, _ = driver.take(0.05)
        for c in steps:
            driver.analyse(c)
        got += len(steps)
    ray.get(sent)
    row["streamed"] = (time.perf_counter() - t0) / args.stream
    cpu1 = [cpu_seconds(p) for p in [hpid] + rpids + gpids]
    used = [b - a for a, b in zip(cpu0, cpu1)]
    row["streamed_head_calls"] = (calls_into(head) - n0) / args.stream
    row["streamed_cpu"] = sum(used) / args.stream  # head, relays and generators
    row["streamed_relays_cpu"] = sum(used[1:1 + len(rpids)]) / args.stream
    summary = ray.get(head.summary.remote())
    assert not summary["steps_skipped"] and not summary["errors"], summary
    assert driver.summary()["calls"] == args.steps + 1 + args.stream
    driver.close()
    for a in [head] + relays + gens:
        ray.kill(a)
    return row


COLUMNS = [("nodes", "%6d"), ("ranks", "%6d"), ("connect_per_rank", "%16.1f"),
           ("connect", "%8.1f"), ("baseline", "%9.2f"),
           ("baseline_cpu", "%12.2f"),
           ("reports", "%9.2f"), ("take", "%7.2f"), ("assemble", "%9.2f"), ("e2e", "%8.2f"),
           ("head_cpu", "%9.2f"), ("head_busy", "%9.2f"), ("driver_cpu", "%10.2f"),
           ("relay_cpu", "%10.2f"),
           ("head_calls", "%10.0f"), ("resolve", "%8.2f"), ("kernel", "%7.2f"),
           ("tree", "%7.2f"), ("tree_cpu", "%8.2f"),
           ("streamed", "%9.2f"), ("streamed_cpu", "%13.2f"),
           ("streamed_relays_cpu", "%20.2f"), ("streamed_head_calls", "%20.1f")]


# The other columns are seconds, shown as ms.
COUNTS = ("nodes", "ranks", "head_calls", "streamed_head_calls")


def print_table(rows):
    print("ms per step (median); baseline = the same reports into an actor that does nothing")
    print(" ".join("%*s" % (len(f % 0), name) for name, f in COLUMNS)
          + "   e2e/baseline head_cpu/baseline_cpu")
    for row in rows:
        cells = [f % (row[k] if k in COUNTS else 1e3 * row[k]) for k, f in COLUMNS]
        print(" ".join(cells) + "   %6.2f %6.2f" % (row["e2e"] / row["baseline"],
                                                 row["head_cpu"] / row["baseline_cpu"]), flush=True)
    print("connect_per_rank / connect: " + ", ".join(
        "%.1f at N=%d" % (r["connect_per_rank"] / r["connect"], r["nodes"]) for r in rows))


def print_profile(path, top=15):
    """The functions the head spent its samples in (self: at the top of
    the stack), from py-spy's collapsed stacks."""
    own, total, n = {}, {}, 0
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            frames, c = stack.split(";"), int(count)
            n += c
            own[frames[-1]] = own.get(frames[-1], 0) + c
            for fr in set(frames):
                total[fr] = total.get(fr, 0) + c
    print("%d samples; self %%, total %%, function" % n)
    for fr, c in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        print("%6.1f %6.1f  %s" % (100 * c / n, 100 * total[fr] / n, fr[:110]))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, nargs="+", default=[1, 8, 64, 256, 1024])
    p.add_argument("--per-node", type=int, default=2, help="ranks per node")
    p.add_argument("--generators", type=int, default=8, help="generator actors")
    p.add_argument("--steps", type=int, default=10, help="lock-step steps per N")
    p.add_argument("--stream", type=int, default=20, help="streamed steps per N")
    p.add_argument("--shared", action="store_true",
                   help="one object for every block (default: one per node and step)")
    p.add_argument("--profile", help="py-spy the head at the largest N (lock step) into "
                   "this file (collapsed stacks), and print its top functions")
    p.add_argument("--native", action="store_true", help="with --profile: Ray's C++ too")
    p.add_argument("--json", help="write the rows here")
    args = p.parse_args()

    tmp = tempfile.mkdtemp(prefix="cdlbh-", dir="/tmp")
    ray.init(num_cpus=max(2, os.cpu_count()), include_dashboard=False, _temp_dir=tmp,
             log_to_driver=False, configure_logging=False)
    try:
        from ray.util.dask import enable_dask_on_ray
        enable_dask_on_ray()
        rows = []
        for n in sorted(args.nodes):
            prof = args.profile and os.path.abspath(args.profile) if n == max(args.nodes) else None
            rows.append(measure(n, args, _run_dir(tmp, n), prof))
            print("N=%d done" % n, file=sys.stderr, flush=True)
        print_table(rows)
        if args.profile:
            print("\nthe head at N=%d, lock step:" % max(args.nodes))
            print_profile(args.profile)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(rows, f, indent=1)
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


def _run_dir(tmp, n):
    import pathlib

    d = pathlib.Path(tmp) / ("run-%d" % n)
    d.mkdir()
    return d


if __name__ == "__main__":
    main()
