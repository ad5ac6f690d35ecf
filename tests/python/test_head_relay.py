"""The head's relays (runtime.relay): a run's reports sent through a tree of
relays give the head the same complete steps, skips, drops and losses as
the same reports sent to the head directly, in a real local Ray.

Five nodes of two ranks each play a run through report.Reporter, as ingest
actors do (two reports in flight per node, any other call after the node's
reports were answered): two arrays, a rank that drops two steps, a rank
that does not put one array at one step, a rank lost before the last step.
The driver's side (report.StepBlocks) gives back every block as the node
reported it."""


import functools
import os

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from caudal.catalog import BlockRef, Declaration  # noqa: E402
from caudal.runtime.head import start_head  # noqa: E402
from caudal.runtime.relay import relays_of  # noqa: E402
from caudal.runtime.report import Branch, Leaf, Ranks, Reporter, StepBlocks, Tree, state  # noqa: E402

NODES, PER_NODE, STEPS = 5, 2, 8
NRANKS = NODES * PER_NODE
LOST = 5  # a rank lost after step 6
DROPPER = 3  # drops steps 2 and 3
NO_V_AT = (0, 5)  # rank 0 does not put array "v" at step 5


def declarations(rank, nranks=NRANKS):
    return [Declaration(rank=rank, dtype="float64", order="C", variable=False,
                        shape=(nranks, 4), start=(rank, 0), count=(1, 4), name="a"),
            Declaration(rank=rank, dtype="int32", order="C", variable=True,
                        shape=(0,), start=(0,), count=(16,), name="v")]


def script(node):
    """The events node's ingest turns into calls, in order: ("report", step,
    blocks as (array, rank, count), the ranks' progress) or (method, args...)."""
    ranks = range(node * PER_NODE, (node + 1) * PER_NODE)
    calls = [("connected", r, NRANKS) for r in ranks]
    calls += [("declare", d) for r in ranks for d in declarations(r)]
    for step in range(STEPS):
        live = [r for r in ranks if not (r == LOST and step > 6)]
        if step == 7 and LOST in ranks:
            calls.append(("report", step, [], {r: 6 for r in live if r != LOST}))
            calls.append(("goodbye", LOST, False, "connection reset"))
        if DROPPER in ranks and step in (2, 3):
            if step == 3:
                calls.append(("dropped", DROPPER, 2, 3, 2))
            blocks = [("a", r, 4) for r in live if r != DROPPER]
            blocks += [("v", r, r) for r in live if r != DROPPER]
        else:
            blocks = [("a", r, 4) for r in live]
            blocks += [("v", r, r) for r in live if (r, step) != NO_V_AT]
        high = {r: step for r in live if r != LOST or step <= 6}
        if DROPPER in ranks and step == 2:
            high[DROPPER] = 1  # its step 2 is not finished until the drop
        calls.append(("report", step, blocks, high))
    calls += [("goodbye", r, True, {"steps": STEPS}) for r in ranks if r != LOST]
    return calls


def test_a_nodes_part_counts_each_needed_block_once_and_carries_them_all():
    """What report.Ranks makes of a node's events, without Ray: the blocks a
    step needs counted once per rank (a fixed array's empty block is not
    needed, a variable array's empty part is), the blocks packed per object
    and given back whole by report.StepBlocks, the floor over the ranks
    still connected."""
    ranks = Ranks()
    for r in (0, 1, 2):
        ranks.connected(r)
        count = (0, 0) if r == 2 else (1, 4)  # rank 2's block of "a" is empty
        ranks.declared(Declaration(r, "float64", "C", False, (2, 4), (r, 0), count, "a"))
        ranks.declared(Declaration(r, "int32", "C", True, (0,), (0,), (8,), "v"))
    assert ranks.state() == (3, -1) and ranks.changed()
    one, two = ["step 5, put once"], ["step 5, put early"]
    blocks = [BlockRef("a", 5, 0, 4, one, 0, "n"), BlockRef("a", 5, 1, 4, one, 1, "n"),
              BlockRef("a", 5, 0, 4, one, 2, "n"),  # rank 0 again: counted once
              BlockRef("a", 5, 2, 0, one, 3, "n"),  # empty: not needed
              BlockRef("v", 5, 0, 0, one, 4, "n"),  # an empty part is a part
              BlockRef("v", 5, 2, 3, two, 0, "n")]
    ranks.finished({0: 5, 1: 5, 2: 4})
    part = ranks.part(blocks)
    assert (part.ranks, part.floor) == (3, 4) and not ranks.changed()
    assert part.counts == {("a", 5): 2, ("v", 5): 2}
    assert [leaf.ref for leaf in part.blocks[5]] == [one, two]
    assert all(isinstance(leaf, Leaf) and leaf.node == "n" for leaf in part.blocks[5])
    got = StepBlocks(5, part.blocks[5])
    assert got.of("a") == {0: blocks[2], 1: blocks[1], 2: blocks[3]}  # the last of rank 0's
    assert got.of("v") == {0: blocks[4], 2: blocks[5]} and got.of("w") == {}
    ranks.left(2)  # the floor is now the others'
    assert ranks.changed() and ranks.state() == (3, 5)
    ranks.connected(2)  # a rank that left is not live again
    assert ranks.state() == (3, 5)
    assert state([(3, 5), (2, None), (4, 2)]) == (9, 2) and state([(1, None)]) == (1, None)


@ray.remote(num_cpus=0)
class Node:
    """Plays one node's ingest through report.Reporter."""

    def __init__(self, node, target):
        self.up = Reporter(target, node)

    def run(self, calls):
        for call in calls:
            if call[0] == "report":  # high: the ranks' progress, or several in order
                _, step, blocks, high = call
                ref = ray.put([float(step)] * len(blocks))  # a node-step's object
                self.up.report([BlockRef(a, step, r, n, ref, i, "node-%d" % self.up.name)
                                for i, (a, r, n) in enumerate(blocks)],
                               progress=[high] if isinstance(high, dict) else high)
            else:
                getattr(self.up, call[0])(*call[1:])
        self.up.drain()


def play(group, head_children):
    """Run the script through start_head(group=..., head_children=...):
    the complete steps (resolved) and the head's summary."""
    head, targets = start_head(NRANKS, max_pending=2, ingests=range(NODES), group=group,
                               head_children=head_children)
    relays = relays_of(targets, head)
    nodes = [Node.remote(n, targets[n]) for n in range(NODES)]
    runs = [nd.run.remote(script(n)) for n, nd in enumerate(nodes)]
    got, over = [], False
    while not over:  # taken while the nodes report: max_pending holds them back
        steps, over, errors, _ = ray.get(head.take.remote(0.1))
        assert not errors
        ray.get(ray.wait(runs, num_returns=len(runs), timeout=0)[0])  # a node's failure
        for c in steps:
            blocks = StepBlocks(c.step, c.blocks)
            arrays = {name: blocks.of(name) for name in c.arrays}
            got.append((c.step, {name: sorted((r, b.array, b.step, b.count, b.index, b.node)
                                              for r, b in a.items())
                                 for name, a in arrays.items()}))
            for a in arrays.values():
                assert all(isinstance(b, BlockRef) for b in a.values())
                assert all(ray.get(b.ref)[b.index] == c.step for b in a.values())
    ray.get(runs)
    summary = ray.get(head.summary.remote())
    summary.pop("ranks_lost_at")  # a time
    # What reported to the head: the nodes, or the relays at the top; and
    # each node's ranks introduced themselves in one call, through them, and
    # said goodbye in one (the node of the lost rank in two: it left first).
    to_head = summary.pop("reports_to_head")
    assert to_head["from"] == min(NODES, head_children)
    assert (to_head["introductions"], to_head["goodbyes"]) == (NODES, NODES + 1)
    return got, summary, len(relays)


def test_reports_through_relays_decide_as_the_head_alone(local_ray):
    direct, direct_summary, n = play(group=2, head_children=NODES)
    assert n == 0  # no more nodes than the head takes: the head alone
    # 5 nodes -> 2 relays -> head; -> 3 -> 2 -> head; -> 1 -> head
    for group, head_children, relays in ((3, 2, 2), (2, 2, 3 + 2), (5, 1, 1)):
        relayed, relayed_summary, n = play(group, head_children)
        assert n == relays
        assert relayed == direct
        assert relayed_summary == direct_summary

    # And what they agree on is what the script makes: steps 2 and 3
    # skipped (a rank dropped them), "v" at step 5 (rank 0 did not put it),
    # step 7 (rank 5 was lost); the others analysed with every rank's part.
    analysed = {name: [s for s, arrays in direct if name in arrays] for name in ("a", "v")}
    assert analysed == {"a": [0, 1, 4, 5, 6], "v": [0, 1, 4, 6]}
    assert direct_summary["steps_skipped"] == {"a": [[2, 3], [7, 7]],
                                               "v": [[2, 3], [5, 5], [7, 7]]}
    assert direct_summary["drops_by_rank"] == {DROPPER: [[2, 3]]}
    assert set(direct_summary["ranks_lost"]) == {LOST}
    assert direct_summary["ranks_clean"] == NRANKS - 1
    assert direct_summary["steps_left_at_end"] == {}
    step4 = dict(direct)[4]
    assert [r for r, *_ in step4["a"]] == list(range(NRANKS))
    assert all(count == r for r, _, _, count, _, _ in step4["v"])  # each block's own count
    assert all(node == "node-%d" % (r // PER_NODE) for r, *_, node in step4["a"])


@ray.remote(num_cpus=0)
class LockStep:
    """A node whose ranks publish one step at a time, every node waiting
    for the others' answers: a relay's children then all report a step
    before any reports the next."""

    def __init__(self, node, target, nranks):
        self.up = Reporter(target, node)
        self.ranks = range(node * PER_NODE, (node + 1) * PER_NODE)
        self.nranks = nranks

    def start(self, decls):
        for r in self.ranks:
            self.up.connected(r, self.nranks)
            self.up.declare(decls[r])

    def step(self, step):
        ref = ray.put([0.0] * PER_NODE)
        self.up.ranks.finished({r: step for r in self.ranks})
        self.up.report([BlockRef("a", step, r, 4, ref, i, None) for i, r in enumerate(self.ranks)])
        self.up.answered()


def test_a_relay_speaks_once_a_step_when_its_floor_moves(local_ray):
    """4 nodes, 2 relays of 2 in lock step: once every node has reported,
    the head takes one call per relay and step (two at the first step,
    whose first report also says how many ranks there are), not one per
    node, and every step is whole."""
    head, targets = start_head(4 * PER_NODE, ingests=range(4), group=2, head_children=2)
    nodes = [LockStep.remote(n, targets[n], 4 * PER_NODE) for n in range(4)]
    ray.get([n.start.remote({r: declarations(r, 4 * PER_NODE)[0] for r in range(4 * PER_NODE)})
             for n in nodes])
    steps = 6
    for s in range(steps):
        ray.get([n.step.remote(s) for n in nodes])
    calls = ray.get(head.__ray_call__.remote(lambda self: self.calls))
    done, _, errors, _ = ray.get(head.take.remote(0))
    assert not errors
    assert [c.step for c in done] == list(range(steps))
    assert all(c.arrays == ("a",) for c in done)
    assert calls == 2 * (steps + 1)


# ------------------------------------------- reductions down the relays


@ray.remote(num_cpus=0)
class DataNode:
    """A node that puts its ranks' blocks of two arrays as one object per
    step, reports them through the relays, and runs per-block work as an
    ingest actor does (run: blocks.RAY.executors).

    "f": a fixed float64 array of 4x6 blocks, one row of blocks per rank,
    with a NaN at rank 3 and step 1; "v": a variable-length int32 array,
    rank r's part 3r long (rank 0's empty)."""

    def __init__(self, node, target, nranks):
        self.up = Reporter(target, node)
        self.node = "node-%d" % node
        self.ranks = range(node * PER_NODE, (node + 1) * PER_NODE)
        self.nranks = nranks

    def start(self):
        for r in self.ranks:
            self.up.connected(r, self.nranks)
            self.up.declare(Declaration(
                rank=r, dtype="float64", order="C", variable=False, shape=(4 * self.nranks, 6),
                start=(4 * r, 0), count=(4, 6), name="f"))
            self.up.declare(Declaration(rank=r, dtype="int32", order="C", variable=True,
                                        shape=(0,), start=(0,), count=(3 * r,), name="v"))
        return os.getpid()

    def data(self, step):
        """rank -> [its block of "f", its part of "v"] at step."""
        out = {}
        for r in self.ranks:
            f = np.random.default_rng(100 * step + r).normal(size=(4, 6))
            if (r, step) == (3, 1):
                f[0, 0] = np.nan
            out[r] = [f, (np.arange(3 * r, dtype=np.int32) - r) * (step + 1)]
        return out

    def step(self, step):
        data = [b for blocks in self.data(step).values() for b in blocks]
        ref = ray.put(data)
        self.up.ranks.finished({r: step for r in self.ranks})
        self.up.report([BlockRef(name, step, r, data[2 * k + i].size, ref, 2 * k + i, self.node)
                        for k, r in enumerate(self.ranks) for i, name in enumerate("fv")])
        self.up.answered()

    def run(self, fn, *args):
        return fn(*args)


def test_reductions_go_down_the_relays_and_equal_the_grid(local_ray):
    """5 nodes of 2 ranks under 3 levels of relays (start_head with groups
    of 2, one child of the head). A step's moments, histogram, describe and
    quantiles over a fixed and a variable-length array (with an empty part)
    run down the tree (blocks.TreeStep: the step's blocks never resolved
    here), equal NumPy's on the global array, and equal the same step
    reduced through its resolved grid to the last bit. Each block's work
    ran in the actor of the node that put it, and a block's refusal comes
    back as the KernelError that names its array, step and rank."""
    from caudal import stats
    from caudal.blocks import KernelError, TreeStep, as_reducible, step_array
    from caudal.runtime.relay import tree_of

    nranks = NODES * PER_NODE
    head, targets = start_head(nranks, ingests=range(NODES), group=2, head_children=1)
    nodes = [DataNode.remote(n, targets[n], nranks) for n in range(NODES)]
    pids = ray.get([n.start.remote() for n in nodes])
    tree = tree_of(targets, head, {"node-%d" % n: a for n, a in enumerate(nodes)})
    assert len(tree.relays) == 3 + 2 + 1
    layouts, done = {}, []
    for step in range(3):
        ray.get([n.step.remote(step) for n in nodes])
        got, _, errors, built = ray.get(head.take.remote(5, len(layouts)))
        assert not errors
        layouts.update(built)
        done += got
    assert [c.step for c in done] == [0, 1, 2]

    # Once in lock step, a relay merges its children's leaves into a branch
    # (at step 0 each node's first part may go up alone: each says new ranks).
    for c in done[1:]:
        handles = StepBlocks(c.step, c.blocks)
        assert any(isinstance(h, Branch) for h in c.blocks)
        for name in ("f", "v"):
            x = step_array(layouts[name], functools.partial(handles.of, name), c.step,
                           tree=handles.tree(name, tree))
            assert isinstance(as_reducible(x), TreeStep)
            by_tree = (stats.moments(x), stats.histogram(x, bins=7),
                       stats.describe(x, bins=5, range=(-3, 3)),
                       list(stats.quantile(x, [0.1, 0.5, 0.9])))
            assert x.tree() is not None and handles.arrays is None  # nothing resolved here

            # The same blocks on this real Ray node (the grid pins tasks there).
            me = ray.get_runtime_context().get_node_id()
            here = {r: b._replace(node=me)
                    for r, b in StepBlocks(c.step, c.blocks).of(name).items()}
            y = step_array(layouts[name], here, c.step)
            assert not isinstance(as_reducible(y), TreeStep)
            by_grid = (stats.moments(y), stats.histogram(y, bins=7),
                       stats.describe(y, bins=5, range=(-3, 3)),
                       list(stats.quantile(y, [0.1, 0.5, 0.9])))
            assert repr(by_tree) == repr(by_grid), (name, c.step)  # to the last bit

            data = {r: b for n in nodes for r, b in ray.get(n.data.remote(c.step)).items()}
            want = np.concatenate([data[r]["fv".index(name)].ravel()
                                   for r in range(nranks)]).astype(np.float64)
            m = by_tree[0]
            ok = want[~np.isnan(want)]
            assert m.count == ok.size and m.nans == want.size - ok.size
            assert m.mean == pytest.approx(ok.mean(), rel=1e-12)
            assert m.var == pytest.approx(ok.var(), rel=1e-12)
            assert (m.min, m.max) == (ok.min(), ok.max())
            counts, edges = by_tree[1]
            assert counts.tolist() == np.histogram(ok, bins=7)[0].tolist()

    # Where each block's work ran: the actor of its rank's node.
    c = done[-1]
    run = StepBlocks(c.step, c.blocks).tree("v", tree)
    ran = run(lambda block: (os.getpid(), len(block)), ())
    assert sorted((r, n) for r, n, _ in ran) == [(r, 3 * r) for r in range(nranks)]
    assert all(pid == pids[r // PER_NODE] and size == 3 * r for r, _, (pid, size) in ran)

    # A step whose parts each came up a relay alone holds only leaves: in a
    # run with relays it still goes down (straight to each node's ingest),
    # whatever the timing; without relays such a step takes the grid.
    leaves, level = [], list(c.blocks)
    while level:
        leaves += [h for h in level if not isinstance(h, Branch)]
        level = [h for hs in ray.get([h.ref for h in level if isinstance(h, Branch)])
                 for h in hs]
    assert len(leaves) == NODES
    alone = StepBlocks(c.step, leaves)
    assert alone.tree("v", Tree(tree.executors)) is None
    x = step_array(layouts["v"], functools.partial(alone.of, "v"), c.step,
                   tree=alone.tree("v", tree))
    assert repr(stats.moments(x)) == repr(by_tree[0]) and alone.arrays is None

    def refuses(block):
        if block.size and block[0] == -7 * (c.step + 1):  # rank 7's first value
            raise ValueError("not this one")
        return 0

    with pytest.raises(KernelError) as e:
        StepBlocks(c.step, c.blocks).tree("v", tree)(refuses, ())
    assert str(e.value) == "array 'v', step 2, rank 7's block: not this one"


def test_a_reduction_down_the_tree_over_empty_parts_is_refused_or_empty():
    """A variable-length array whose parts are all empty at a step: down
    the tree as through the grid, moments refuses it naming the array and
    step, and a histogram of it is all zeros (the tree's answer given here
    as the ranks' (rank, count, state) would come back)."""
    from caudal import stats
    from caudal.blocks import KernelError, TreeStep, as_reducible, step_array
    from caudal.catalog import build_layout

    decls = {r: Declaration(rank=r, dtype="float32", order="C", variable=True, shape=(0,),
                            start=(0,), count=(0,), name="p") for r in range(3)}
    layout = build_layout("p", decls, 3)
    asked = []

    def run(fn, args):
        asked.append(fn)
        return [(r, 0, fn(np.zeros(0, np.float32), *args)) for r in (2, 0, 1)]

    x = step_array(layout, {}, 9, tree=run)
    assert isinstance(as_reducible(x), TreeStep)
    with pytest.raises(KernelError) as e:
        stats.moments(x)
    assert str(e.value) == "array 'p', step 9: moments needs elements; the array's shape is (0,)"
    h = stats.histogram(x, bins=4, range=(0, 1))
    assert h.counts.tolist() == [0, 0, 0, 0] and (h.below, h.above, h.nans) == (0, 0, 0)
    assert len(asked) == 2  # both went down the tree


def test_progress_is_said_only_by_the_report_that_brings_its_blocks(local_ray):
    """As the ingest meets them when events wait behind each other: rank 0
    finished step 1 and left (its block of step 1 held back, its goodbye
    kept), then in one batch rank 1 finished step 1 and dropped step 2. The
    drop is sent first, and sending it flushes the goodbye with the node's
    state: that state must not yet count rank 1's progress, which only the
    report with step 1's blocks brings (Reporter.report(progress=)), or
    the head decides step 1 with nothing in it. Steps 0 and 1 are whole."""
    head, targets = start_head(2, ingests=[0])
    node = Node.remote(0, targets[0])
    decls = [d for r in (0, 1) for d in declarations(r, 2)][::2]  # array "a" only
    script = [("connected", 0, 2), ("connected", 1, 2)] + [("declare", d) for d in decls]
    script += [("report", 0, [("a", 0, 4), ("a", 1, 4)], {0: 0, 1: 0}),
               ("goodbye", 0, True, {"steps": 1}),
               ("dropped", 1, 2, 2, 1),
               ("report", 1, [("a", 0, 4), ("a", 1, 4)], [{1: 1}, {1: 2}]),
               ("goodbye", 1, True, {"steps": 2})]
    ray.get(node.run.remote(script))
    done, over, errors, _ = ray.get(head.take.remote(5))
    assert not errors and over
    assert [(c.step, c.arrays) for c in done][:2] == [(0, ("a",)), (1, ("a",))]
    summary = ray.get(head.summary.remote())
    assert summary["ranks_clean"] == 2 and summary["steps_left_at_end"] == {}


def test_a_goodbye_kept_goes_after_the_report_that_brings_the_last_blocks(local_ray):
    """As the ingest meets them: rank 0 finished step 1 and left (its block
    of step 1 held back, the node's step not complete), then rank 1
    finished step 1, and the ranks' progress comes with that report. The
    goodbye kept meanwhile must reach the head after the report, not
    before it with the floor at step 1 and no blocks: that decided step 1
    with nothing in it, neither analysed nor skipped (a run lost its last
    steps so). Both steps are whole, and nothing else is left."""
    head, targets = start_head(2, ingests=[0])
    node = Node.remote(0, targets[0])
    decls = [d for r in (0, 1) for d in declarations(r, 2)][::2]  # array "a" only
    script = [("connected", 0, 2), ("connected", 1, 2)] + [("declare", d) for d in decls]
    script += [("report", 0, [("a", 0, 4), ("a", 1, 4)], {0: 0, 1: 0}),
               ("goodbye", 0, True, {"steps": 2}),
               ("report", 1, [("a", 0, 4), ("a", 1, 4)], {1: 1}),
               ("goodbye", 1, True, {"steps": 2})]
    ray.get(node.run.remote(script))
    done, over, errors, _ = ray.get(head.take.remote(5))
    assert not errors and over
    assert [(c.step, c.arrays) for c in done] == [(0, ("a",)), (1, ("a",))]
    summary = ray.get(head.summary.remote())
    assert summary["steps_skipped"] == {} and summary["steps_left_at_end"] == {}
    assert summary["ranks_clean"] == 2
