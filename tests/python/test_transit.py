"""In transit: `caudal run --transit N`, where the ranks run no Ray and each
streams over TCP, with the job token, to one of N ingest endpoints. Real
`caudal run`, real MPI ranks, a real local Ray, real sockets on loopback:

- 4 ranks of examples/heat2d on 2 endpoints give every result the in situ
  run gives and the simulation's own means, while strangers on the
  endpoints' ports are refused and counted;
- the ring policies hold over TCP as over shared memory: under block with
  slow analytics the ranks wait and nothing is dropped; under drop, steps
  are dropped, reported by rank, and every analysed step equals the
  simulation's own values;
- a malformed list of endpoints stops every rank with a message naming it.
"""

import json
import os
import socket
import subprocess
import sys

import pytest

import caudal
from conftest import new_private_dirs
from caudal.runtime import placement
from test_hostile import ERR_AUTH, ERR_PROTOCOL, HeldRun, answer, hello
from test_load import ANALYTICS as LOAD_ANALYTICS
from test_load import SIM as LOAD_SIM
from test_load import oracle as load_oracle
from test_run import STATS, caudal_run, oracle


def tcp_connect(endpoint):
    assert endpoint.startswith("tcp:"), endpoint
    host, port = endpoint[4:].rsplit(":", 1)
    return socket.create_connection((host.strip("[]"), int(port)), timeout=60)


def steps_of(ranges):
    return {s for a, b in ranges for s in range(a, b + 1)}


# ------------------------------------------------- results as in situ


def test_four_ranks_on_two_endpoints_give_the_in_situ_results(tmp_path, heat2d):
    """The same simulation in situ and in transit (4 ranks, 2 endpoints):
    every result of every step is the same, and the means are the
    simulation's own. Before the ranks start, each endpoint is sent junk and
    a HELLO with a wrong token: both are refused, counted in summary.json,
    and the run does not notice (exit 0, the same results)."""
    steps = 30
    sim = ["64", "48", str(steps)]
    env = {"CAUDAL_DEMO_THRESHOLD": "1e9"}  # no steering: the runs are alike
    (tmp_path / "situ").mkdir()
    situ_means = tmp_path / "situ" / "mean.txt"
    p, situ, _ = caudal_run(tmp_path / "situ", STATS,
                            [heat2d, *sim, "--mean", str(situ_means)], env=env)
    assert p.returncode == 0, p.stdout + p.stderr

    means = tmp_path / "mean.txt"
    with HeldRun(tmp_path, STATS, [heat2d, *sim, "--mean", str(means)], started=4,
                 extra=("--transit", "2"), env=env) as held:
        endpoints = held.endpoint.split(",")  # one list, the same on every rank
        assert len(endpoints) == 2 and all(e.startswith("tcp:") for e in endpoints)
        for ep in endpoints:
            s = tcp_connect(ep)
            s.sendall(b"\x5a" * 16)
            status, text = answer(s)
            assert status == ERR_PROTOCOL and "bad frame header" in text
            s = tcp_connect(ep)
            s.sendall(hello(0, 4, b"not-the-job-token"))  # claims a real rank
            status, text = answer(s)
            assert status == ERR_AUTH and "wrong job token" in text

    p, results, run_dir = held.result
    assert p.returncode == 0, p.stdout + p.stderr
    assert "4 ranks in transit to 2 TCP endpoint(s)" in p.stderr
    want = oracle(means)
    assert sorted(want) == list(range(steps))
    assert want == oracle(situ_means)  # the same simulation
    assert sorted(results["mean"]) == list(range(steps))
    for step, m in want.items():
        assert abs(results["mean"][step] - m) <= 1e-12 * abs(m)
    # Every result of every step, as in situ: the same blocks, the same tree.
    assert set(results) == set(situ) == {"mean", "min", "max", "max_rate"}
    for name in situ:
        assert results[name] == situ[name], name

    summary = json.loads((run_dir / "summary.json").read_text())
    ingest = summary["ingest"]
    assert [i["endpoint"] for i in ingest] == endpoints
    assert [i["ranks"] for i in ingest] == [[0, 1], [2, 3]]
    # Each endpoint had its two ranks' blocks (one a step each), no more.
    assert [i["blocks"] for i in ingest] == [2 * steps, 2 * steps]
    assert [i["connections_refused"] for i in ingest] == [2, 2]
    assert all(len(i["refused_messages"]) == 2 for i in ingest)
    assert "4 connection(s) to the ingest endpoints refused" in p.stderr
    assert summary["end"]["reason"] == "completed"
    assert summary["steps_analysed"] == steps and summary["rank_steps_dropped"] == 0


TREE_MEAN = """
import caudal


@caudal.analysis("temperature")
def mean(temperature, ctx):
    x = temperature[-1]
    down_the_tree = x.tree() is not None  # before anything resolved its blocks
    ctx.record("mean", caudal.stats.moments(x).mean)
    ctx.record("tree", down_the_tree and x.tree() is not None)  # and after: still not
"""


@pytest.mark.parametrize("receipt", ["0", "1"])
def test_six_endpoints_report_through_a_relay_and_reduce_down_it(tmp_path, heat2d, receipt):
    """Past head.HEAD ingests the reports go through a relay: 6 ranks on 6
    endpoints. The steps' means, computed down the relay (the driver sends
    the moments kernel to the relay, which sends it to the ingest holding
    the blocks: blocks.TreeStep), are the simulation's own. With the
    reductions computed at receipt (the default), the states of the
    later steps come up through the relay's branches instead, and the
    means are the same."""
    # Blocks of 1 MiB and 40 steps, so that the ranks' lead (their rings,
    # the reports in flight, each a put of up to ingest.TOGETHER_BYTES)
    # cannot cover the run before the plan reaches the ingests: CI once saw
    # every one of 12 steps of 48 x 36 received before it.
    steps = 40
    analytics = tmp_path / "tree_mean.py"
    analytics.write_text(TREE_MEAN)
    means = tmp_path / "mean.txt"
    p, results, run_dir = caudal_run(tmp_path, analytics,
                                     [heat2d, "1024", "768", str(steps), "--mean", str(means)],
                                     ranks=6, extra=("--transit", "6", "--max-pending", "1"),
                                     env={"CAUDAL_RECEIPT": receipt})
    assert p.returncode == 0, p.stdout + p.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["reports_to_head"]["from"] == 1  # the relay, not the 6 ingests
    want = oracle(means)
    assert sorted(results["mean"]) == sorted(want) == list(range(steps))
    for step, m in want.items():
        assert abs(results["mean"][step] - m) <= 1e-12 * abs(m)
    # Every step's moments went down the tree: also a step whose ingests'
    # parts came up the relay one by one (CI once saw one such step, then
    # reduced on the grid: report.StepBlocks.tree now goes by the run).
    assert all(results["tree"][s] for s in range(steps)), results["tree"]
    if receipt == "1":  # at receipt from the plan on (each ingest got it), through the branches
        r = summary["receipt"]
        assert r["reductions_at_receipt"] >= steps // 4 and r["planned"] == {"temperature": 1}, r
        assert sum(i["reduced_at_receipt"] for i in summary["ingest"]) >= 6 * steps // 4
    else:
        assert summary["receipt"] is None


# ------------------------------------------------------ ring policies


ROWS, COLS = 64, 2048  # 1 MiB per rank and step: TCP's buffers hold only a few


def run_load(tmp_path, policy, ranks, steps, endpoints):
    prefix = str(tmp_path / "sim")
    p, results, run_dir = caudal_run(
        tmp_path, LOAD_ANALYTICS,
        [sys.executable, LOAD_SIM, str(steps), str(ROWS), str(COLS), "--out", prefix],
        ranks=ranks,
        extra=("--transit", str(endpoints), "--policy", policy, "--max-pending", "1",
               "--ring-depth", "2"),
        env={"CAUDAL_LOAD_SLEEP": "0.03"})
    assert p.returncode == 0, p.stdout + p.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    means, dropped = load_oracle(prefix, ranks, ranks * ROWS * COLS)
    assert sorted(means) == list(range(steps))  # the simulation did every step
    per_rank = {r: {int(s) for s in open("%s.dropped.%d" % (prefix, r)).read().split()}
                for r in range(ranks)}
    for step in results["mean"]:
        assert abs(results["mean"][step] - means[step]) <= 1e-12 * abs(means[step]), step
    return results, summary, per_rank


def test_block_over_tcp_the_ranks_wait_and_nothing_is_dropped(tmp_path):
    """Analyses slower than 4 free-running ranks on 2 endpoints, 60 steps of
    1 MiB each: more than the rings, TCP's buffers and the head's one
    pending step hold, so the ranks must wait; every step is analysed."""
    steps = 60
    results, summary, per_rank = run_load(tmp_path, "block", 4, steps, 2)
    assert not any(per_rank.values())
    assert sorted(results["mean"]) == list(range(steps))
    assert summary["rank_steps_dropped"] == 0 and summary["drops_by_rank"] == {}
    assert summary["steps_skipped"] == {} and summary["steps_analysed"] == steps
    # Back-pressure reached the ranks over TCP: they spent time waiting.
    counters = summary["rank_counters"]
    assert sorted(counters) == ["0", "1", "2", "3"]
    assert all(c["steps_dropped"] == 0 and c["steps_sent"] == steps for c in counters.values())
    waited = sum(c["ns_waiting"] for c in counters.values())
    print("block over tcp: the ranks waited %.2f s in all" % (waited / 1e9))
    assert waited > 0


@pytest.mark.parametrize("ranks,endpoints", [(3, 2), (5, 5)])
def test_drop_over_tcp_steps_are_dropped_reported_and_never_analysed(tmp_path, ranks,
                                                                     endpoints):
    """The same load under drop, 3 ranks on 2 endpoints (ranks 0-1 and 2,
    which do not divide evenly): the ranks drop steps, summary.json reports
    exactly the steps each rank says it dropped, no analysed step lacks a
    rank's part, and every analysed step's mean is the simulation's. With 5
    endpoints, more than the head takes (head.HEAD), the same holds through
    the relay that takes their reports (runtime/relay.py)."""
    steps = 60
    results, summary, per_rank = run_load(tmp_path, "drop", ranks, steps, endpoints)
    any_dropped = set().union(*per_rank.values())
    assert any_dropped, "the ranks dropped nothing: the test did not load them"
    assert {int(r): steps_of(rs) for r, rs in summary["drops_by_rank"].items()} == \
        {r: d for r, d in per_rank.items() if d}
    assert summary["rank_steps_dropped"] == sum(len(d) for d in per_rank.values())
    analysed = set(results["mean"])
    print("drop over tcp: %d rank-steps dropped, %d steps analysed of %d"
          % (summary["rank_steps_dropped"], len(analysed), steps))
    assert analysed and not analysed & any_dropped
    # Each step is analysed, skipped (some rank dropped it), or dropped by all.
    skipped = steps_of(summary["steps_skipped"].get("field", []))
    every = set.intersection(*per_rank.values())
    assert analysed | skipped | every == set(range(steps))
    assert skipped == any_dropped - every and not skipped & analysed
    assert summary["steps_left_at_end"] == {} and summary["ranks_lost"] == {}
    # Each endpoint received exactly its ranks' steps that were not dropped.
    ingest = summary["ingest"]
    assert [i["ranks"] for i in ingest] == [list(placement.ranks_of(k, endpoints, ranks))
                                            for k in range(endpoints)]
    if endpoints == 2:
        assert [i["ranks"] for i in ingest] == [[0, 1], [2, 2]]
    # The endpoints themselves, or the one relay above them, reported to the head.
    assert summary["reports_to_head"]["from"] == (endpoints if endpoints == 2 else 1)
    for i in ingest:
        first, last = i["ranks"]
        assert i["blocks"] == sum(steps - len(per_rank[r]) for r in range(first, last + 1))


# ------------------------------------------------ bad lists, bad flags


# Each rank writes its line with one write(2) (under PIPE_BUF, so whole):
# print() writes its parts apart, and four ranks' parts interleave.
OPEN_ONLY = """
import os
from mpi4py import MPI
import caudal
try:
    caudal.Client(MPI.COMM_WORLD.rank, MPI.COMM_WORLD.size)
except caudal.CaudalError as e:
    os.write(1, ("error: %s\\n" % e).encode())
"""


def test_a_malformed_endpoint_list_stops_every_rank_naming_it(tmp_path):
    """libcaudal checks the whole list on every rank: each of 4 real MPI
    ranks fails at open with a message naming itself and the bad entry."""
    script = tmp_path / "open_only.py"
    script.write_text(OPEN_ONLY)
    env = dict(os.environ, CAUDAL_ENDPOINT="tcp:127.0.0.1:9,,tcp:127.0.0.1:9",
               CAUDAL_TOKEN="t")
    p = subprocess.run(["mpiexec", "-n", "4", sys.executable, str(script)], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    lines = sorted(p.stdout.splitlines())
    assert lines == ["error: rank %d, before the first step: CAUDAL_ENDPOINT: entry 2 of 3 "
                     "is empty (a list of endpoints is 'tcp:HOST:PORT,tcp:HOST:PORT,...')" % r
                     for r in range(4)], p.stdout + p.stderr
    # Given as an option, the list is named so.
    with pytest.raises(caudal.CaudalError) as e:
        caudal.Client(2, 4, endpoint="tcp:127.0.0.1:9,udp:127.0.0.1:9", token="t")
    assert str(e.value) == "rank 2, before the first step: the endpoint option: entry 2 of " \
        "2 is malformed: endpoint 'udp:127.0.0.1:9': expected unix:PATH or tcp:HOST:PORT"


def test_transit_wants_between_one_endpoint_and_one_per_rank(tmp_path):
    before = set(os.listdir("/tmp"))
    for n in ("5", "-1"):
        p = subprocess.run([sys.executable, "-m", "caudal", "run", "-n", "4", "--transit", n,
                            "--analytics", STATS, "--run-dir", str(tmp_path / "run"), "--",
                            "true"], capture_output=True, text=True, timeout=120)
        assert p.returncode == 3, p.stderr
        assert "--transit %s: the number of ingest endpoints must be from 1 to the number " \
               "of ranks (4)" % n in p.stderr
        assert "Traceback" not in p.stderr
    assert not (tmp_path / "run").exists()  # nothing started
    assert not new_private_dirs(before)


def test_the_launchers_blocks_of_ranks_are_libcaudals_choice():
    """placement.ranks_of (what caudal run reports) and endpoint_of (the
    formula libcaudal uses, include/caudal.h) agree: each endpoint takes a
    contiguous, non-empty block of ranks, and the blocks cover every rank."""
    for size in range(1, 40):
        for n in range(1, size + 1):
            seen = []
            for i in range(n):
                first, last = placement.ranks_of(i, n, size)
                assert first <= last, (size, n, i)
                assert all(placement.endpoint_of(r, n, size) == i for r in range(first, last + 1))
                seen += range(first, last + 1)
            assert seen == list(range(size)), (size, n)


def test_placing_ranks_on_nodes_speaks_the_launchers_syntax_or_says_it_cannot():
    """In situ on several nodes caudal run tells mpiexec where ranks go:
    MPICH's -hosts here; a launcher given with hosts of its own is left
    alone; one that is neither MPICH's nor Open MPI's is refused by name."""
    hosts = placement.rank_hosts(
        [placement.Place("a", "a", "unix:/x", "10.0.0.1"),
         placement.Place("b", "b", "unix:/y", "10.0.0.2"),
         placement.Place("c", "c", "unix:/z", "10.0.0.3")], 2)
    assert hosts == [("10.0.0.1", 1), ("10.0.0.2", 1)]  # node c has no rank
    assert placement.mpiexec_command("mpiexec", 2, hosts, ["./sim"]) == \
        ["mpiexec", "-n", "2", "-hosts", "10.0.0.1:1,10.0.0.2:1", "./sim"]
    assert placement.mpiexec_command("mpiexec -f my.hosts", 2, hosts, ["./sim"]) == \
        ["mpiexec", "-f", "my.hosts", "-n", "2", "./sim"]
    with pytest.raises(ValueError) as e:
        placement.mpiexec_command("true", 2, hosts, ["./sim"])
    assert str(e.value) == "true is neither MPICH's nor Open MPI's mpiexec: caudal run " \
        "cannot tell it to place 2 ranks on 2 nodes (10.0.0.1:1,10.0.0.2:1)"
