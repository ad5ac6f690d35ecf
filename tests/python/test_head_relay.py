"""The head's relays (runtime.head.Relay): a run's reports sent through
relays give the head the same complete steps, skips, drops and losses as
the same reports sent to the head directly, in a real local Ray.

Three nodes of two ranks each play a run as ingest actors would (two
reports in flight per node, any other call after the node's reports were
answered): two arrays, a rank that drops two steps, a rank that does not
put one array at one step, a rank lost before the last step."""


import pytest

ray = pytest.importorskip("ray")

from caudal.catalog import BlockRef, Declaration  # noqa: E402
from caudal.runtime.head import resolve, start_head  # noqa: E402

NODES, PER_NODE, STEPS = 3, 2, 8
NRANKS = NODES * PER_NODE
LOST = 5  # a rank lost after step 6
DROPPER = 3  # drops steps 2 and 3
NO_V_AT = (0, 5)  # rank 0 does not put array "v" at step 5


def declarations(rank):
    return [Declaration(rank=rank, dtype="float64", order="C", variable=False,
                        shape=(NRANKS, 4), start=(rank, 0), count=(1, 4), name="a"),
            Declaration(rank=rank, dtype="int32", order="C", variable=True,
                        shape=(0,), start=(0,), count=(16,), name="v")]


def script(node):
    """The calls node's ingest makes, in order: ("report", step, blocks
    as (array, rank, count), high) or (method, args...)."""
    ranks = range(node * PER_NODE, (node + 1) * PER_NODE)
    calls = [("connected", r, NRANKS) for r in ranks]
    calls += [("declare", d) for r in ranks for d in declarations(r)]
    for step in range(STEPS):
        live = [r for r in ranks if not (r == LOST and step > 6)]
        if step == 7 and LOST in ranks:
            calls.append(("report", step, [], {r: 6 for r in live if r != LOST}))
            calls.append(("rank_done", LOST, False, "connection reset"))
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
    calls += [("rank_done", r, True, {"steps": STEPS}) for r in ranks if r != LOST]
    return calls


@ray.remote(num_cpus=0)
class Node:
    """Plays one node's ingest: its reports, two in flight, in order."""

    def __init__(self, node, target):
        self.node, self.target = node, target

    def run(self, calls):
        inflight, seq = [], 0
        for call in calls:
            if call[0] == "report":
                _, step, blocks, high = call
                ref = ray.put([float(step)] * len(blocks))  # a node-step's object
                refs = [BlockRef(a, step, r, n, ref, i, None)
                        for i, (a, r, n) in enumerate(blocks)]
                inflight.append(self.target.report.remote(self.node, seq, refs, high))
                seq += 1
                if len(inflight) > 2:
                    ray.get(inflight.pop(0))
            else:
                ray.get(inflight)
                inflight = []
                ray.get(getattr(self.target, call[0]).remote(*call[1:]))
        ray.get(inflight)


def play(group):
    """Run the script through start_head(group=...): the complete steps
    (resolved) and the head's summary."""
    head, targets = start_head(NRANKS, max_pending=2, ingests=range(NODES), group=group)
    relays = {id(t) for t in targets.values() if t is not head}
    nodes = [Node.remote(n, targets[n]) for n in range(NODES)]
    runs = [nd.run.remote(script(n)) for n, nd in enumerate(nodes)]
    got, over = [], False
    while not over:  # taken while the nodes report: max_pending holds them back
        steps, over, errors = ray.get(head.take.remote(0.1))
        assert not errors
        for c in resolve(steps):
            got.append((c.step, {name: sorted((r, b.array, b.step, b.count, b.index)
                                              for r, b in a.blocks.items())
                                 for name, a in c.arrays.items()}))
            for a in c.arrays.values():
                assert all(isinstance(b, BlockRef) for b in a.blocks.values())
    ray.get(runs)
    summary = ray.get(head.summary.remote())
    summary.pop("ranks_lost_at")  # a time
    return got, summary, len(relays)


def test_reports_through_relays_decide_as_the_head_alone(local_ray):
    direct, direct_summary, n = play(group=NODES)
    assert n == 0  # no more nodes than a group: the head alone
    relayed, relayed_summary, n = play(group=2)
    assert n == 2  # nodes 0, 1 and node 2 each behind a relay
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
    assert all(count == r for r, _, _, count, _ in step4["v"])  # each block's own count
