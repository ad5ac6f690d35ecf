"""Several nodes: real hosts on one machine (network namespaces joined by a
bridge, tests/python/netns_hosts.py), a real Ray cluster over them (a raylet
and an object store on each), real MPICH ranks started on the hosts by
mpiexec, real unix sockets and shared memory on each host, TCP between them.

- In situ on two nodes: `caudal run --address` on the head node places 4
  ranks over the two Ray nodes (2 each), starts an ingest actor on each,
  and each rank publishes to the ingest on its own host (a node-local list
  of endpoints). Every result equals the single-node run's, bit for bit,
  the means are the simulation's own, the kernels ran on the node that
  holds each block, and each node's ingest reported once per step.
- In transit across hosts: Ray on one host only, 4 ranks on two other hosts
  that run no Ray, streaming over TCP to 2 ingest endpoints on the Ray
  host. The same results again.
- g(r) across nodes: atoms in slabs of 4 ranks on two nodes; each rank's
  halo comes from the ranks next to it, one of them on the other node, and
  from across the periodic box: every pair is counted once, as counting
  them all here does.
- A rank on a host without an ingest is told so, by name.
"""

import json
import os
import subprocess
import sys

import pytest

from netns_hosts import Hosts, available, cleanup_stale, mpiexec_from
from netns_ray import RayCluster
from test_run import STATS, caudal_run, oracle

HERE = os.path.dirname(os.path.abspath(__file__))
FAULTY_SIM = os.path.join(HERE, "_faulty_sim.py")
ATOMS_SIM = os.path.join(HERE, "_atoms_sim.py")
LOAD_ANALYTICS = os.path.join(HERE, "_load_analytics.py")

pytestmark = pytest.mark.skipif(available() is not None, reason=str(available()))

STEPS = 30
SIM = ["64", "48", str(STEPS)]
ENV = {"CAUDAL_DEMO_THRESHOLD": "1e9"}  # no steering: runs are alike

# Per step, where each rank's block lives and where a kernel on it ran: the
# Ray node IDs, and the address of the host the kernel ran on.
WHERE = '''
import ray
import caudal

@caudal.analysis("temperature")
def where(temperature, ctx):
    t = temperature[-1]
    blocks = t.blocks.blocks
    ran = caudal.blocks.map_blocks(
        lambda b: (ray.get_runtime_context().get_node_id(), ray.util.get_node_ip_address()), t)
    ctx.record("where", [[blocks[p].rank, blocks[p].node, node, ip]
                         for p, (node, ip) in zip(sorted(blocks), ran)])
'''


@pytest.fixture(scope="module")
def hosts():
    cleanup_stale()
    with Hosts(3) as hs:
        yield hs


@pytest.fixture(scope="module")
def single_node(tmp_path_factory, heat2d):
    """The reference: the same simulation on this machine alone."""
    tmp = tmp_path_factory.mktemp("single")
    means = tmp / "mean.txt"
    p, results, _ = caudal_run(tmp, STATS, [heat2d, *SIM, "--mean", str(means)], env=ENV)
    assert p.returncode == 0, p.stdout + p.stderr
    return results, oracle(means)


def run_on(host, cluster, tmp_path, analytics, ranks, sim, extra=(), launcher=None):
    """`caudal run` on `host`, as a batch script runs it on the first node."""
    run_dir = tmp_path / "run"
    argv = host.cmd([sys.executable, "-m", "caudal", "run", "-n", str(ranks), "--address",
                     cluster.address, "--analytics", str(analytics), "--run-dir",
                     str(run_dir), "--mpiexec", launcher or mpiexec_from(host), *extra,
                     "--", *sim])
    p = subprocess.run(argv, capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, **ENV, **cluster.env))
    results = {}
    path = run_dir / "results.jsonl"
    if path.exists():
        for line in path.read_text().splitlines():
            r = json.loads(line)
            results.setdefault(r["name"], {})[r["step"]] = r["value"]
    summary = run_dir / "summary.json"
    return p, results, json.loads(summary.read_text()) if summary.exists() else {}


def test_in_situ_on_two_nodes_equals_one_node(hosts, single_node, heat2d, tmp_path):
    situ, want = single_node
    node1, node2 = hosts[0], hosts[1]
    analytics = tmp_path / "stats_where.py"
    analytics.write_text(open(STATS).read() + WHERE)
    means = tmp_path / "mean.txt"
    with RayCluster([node1, node2]) as cluster:
        p, results, summary = run_on(node1, cluster, tmp_path, analytics, 4,
                                     [heat2d, *SIM, "--mean", str(means)])
        assert p.returncode == 0, p.stdout + p.stderr
        assert "2 Ray node(s)" in p.stderr
    assert oracle(means) == want  # the same simulation, on two hosts
    for name in ("mean", "min", "max", "max_rate"):
        assert results[name] == situ[name], name  # bit for bit
    for step, m in want.items():
        assert abs(results["mean"][step] - m) <= 1e-12 * abs(m)

    # One ingest per node, each took its own host's ranks: 0-1 on node1,
    # 2-3 on node2 (mpiexec's blocks of ranks), a block each per step, at
    # most one report per step (steps that come faster than
    # ingest.REPORT_LINGER share one), never one per rank.
    ingest = sorted(summary["ingest"], key=lambda i: i["host"])
    assert [i["host"] for i in ingest] == [node1.ip, node2.ip]
    assert [i["ranks_connected"] for i in ingest] == [[[0, 1]], [[2, 3]]]
    assert [i["blocks"] for i in ingest] == [2 * STEPS, 2 * STEPS]
    assert all(1 <= i["reports"] <= STEPS + 2 for i in ingest), ingest
    assert all(i["endpoint"].startswith("unix:") for i in ingest)

    # Each block lived on its rank's node and its kernel ran there.
    assert sorted(results["where"]) == list(range(STEPS))
    for step, where in results["where"].items():
        assert sorted(r for r, *_ in where) == [0, 1, 2, 3]
        for rank, block_node, ran_node, ran_ip in where:
            assert ran_node == block_node, (step, rank)
            assert ran_ip == (node1.ip if rank < 2 else node2.ip), (step, rank)
    assert summary["end"]["reason"] == "completed"


def net_ns(pid):
    """The inode of a process's network namespace (None if it is gone)."""
    try:
        return os.stat("/proc/%d/ns/net" % pid).st_ino
    except OSError:
        return None


def in_host(argv, out_dir):
    """argv, after the rank wrote its host's address to out_dir/host.RANK."""
    return ["sh", "-c", "ip -4 -o addr show eth0 | awk '{print $4}' > %s/host.$PMI_RANK && "
            'exec "$@"' % out_dir, "sh", *argv]


def test_in_transit_ranks_on_hosts_without_ray(hosts, single_node, heat2d, tmp_path):
    """Ray on node1 only; 4 ranks on node2 and node3 (2 each), which run no
    Ray, on 2 TCP endpoints on node1: the single-node results again."""
    situ, want = single_node
    node1, node2, node3 = hosts
    means = tmp_path / "mean.txt"
    launcher = "%s -hosts %s:2,%s:2" % (mpiexec_from(node1), node2.ip, node3.ip)
    with RayCluster([node1]) as cluster:
        p, results, summary = run_on(
            node1, cluster, tmp_path, STATS, 4,
            in_host([heat2d, *SIM, "--mean", str(means)], tmp_path),
            extra=("--transit", "2"), launcher=launcher)
        assert p.returncode == 0, p.stdout + p.stderr
        ray_nets = {net_ns(pid) for pid in cluster.pids()} - {None}
    assert "4 ranks in transit to 2 TCP endpoint(s)" in p.stderr
    # The ranks ran on node2 and node3, Ray on node1 alone.
    ran = {r: (tmp_path / ("host.%d" % r)).read_text().strip() for r in range(4)}
    assert ran == {0: node2.ip + "/24", 1: node2.ip + "/24", 2: node3.ip + "/24",
                   3: node3.ip + "/24"}
    assert ray_nets == {os.stat("/run/netns/%s" % node1.ns).st_ino}
    assert oracle(means) == want
    for name in ("mean", "min", "max", "max_rate"):
        assert results[name] == situ[name], name
    ingest = summary["ingest"]
    assert [i["ranks"] for i in ingest] == [[0, 1], [2, 3]]
    assert [i["ranks_connected"] for i in ingest] == [[[0, 1]], [[2, 3]]]
    assert all(i["endpoint"].startswith("tcp:%s:" % node1.ip) for i in ingest)
    assert [i["blocks"] for i in ingest] == [2 * STEPS, 2 * STEPS]
    assert summary["end"]["reason"] == "completed"


def test_a_rank_on_a_host_without_an_ingest_is_told(hosts, tmp_path):
    """In situ, Ray on node1 and node2, and the launcher, placing the ranks
    itself (caudal run then leaves its hosts alone), puts a rank on node3,
    where no ingest runs: that rank fails at open naming its host's address,
    and the run ends as a simulation failure naming that rank. Rank 1 opens
    a second after rank 0 (tests/python/_faulty_sim.py): the run names a
    rank that never connected once another did, and a rank 0 ended by the
    launcher before its hello arrived would leave it nothing to go by (CI
    met that once with heat2d, whose ranks open together)."""
    node1, node2, node3 = hosts
    launcher = "%s -hosts %s:1,%s:1" % (mpiexec_from(node1), node1.ip, node3.ip)
    with RayCluster([node1, node2]) as cluster:
        p, _, summary = run_on(node1, cluster, tmp_path, LOAD_ANALYTICS, 2,
                               [sys.executable, FAULTY_SIM, "5", "--open-late", "1"],
                               launcher=launcher)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "rank 1, before the first step: CAUDAL_ENDPOINT: none of the 2 entries is for " \
        "this rank's host (its addresses: %s" % node3.ip in p.stderr
    # The rank that failed is named, not the one the launcher ended after it.
    assert "rank 1 never connected to Caudal (its own message above says why)" in p.stderr
    assert summary["end"]["reason"] == "simulation_failed"


RDF = """
import ray
import caudal

@caudal.analysis("x", "type", "id", "box")
def pairs(x, types, ids, box, ctx):
    r = caudal.md.rdf(x[-1], types[-1], ids[-1], box[-1].data.compute(), 2.0, 20)
    ctx.record("counts", r.counts.tolist())
    ctx.record("nodes", sorted({b.node for b in x[-1].blocks.blocks.values()}))
"""


def test_rdf_halos_cross_nodes_and_every_pair_counts_once(hosts, tmp_path):
    """4 ranks on two nodes (2 each), each publishing the atoms of its slab
    of a periodic box: the counts of pairs per pair of types and bin equal
    those of every pair counted here with the minimum image, at every step,
    and the blocks lay on both nodes (so halos went between them)."""
    import numpy as np

    sys.path.insert(0, HERE)
    from _atoms_sim import HI, LO, atoms
    from test_md import brute_pairs

    analytics = tmp_path / "rdf.py"
    analytics.write_text(RDF)
    steps = 4
    with RayCluster([hosts[0], hosts[1]]) as cluster:
        p, results, summary = run_on(hosts[0], cluster, tmp_path, analytics, 4,
                                     [sys.executable, ATOMS_SIM, str(steps)])
        assert p.returncode == 0, p.stdout + p.stderr
    assert sorted(results["counts"]) == list(range(steps))
    for step in range(steps):
        pos, types, _ = atoms(step)
        want = brute_pairs(pos, types, HI - LO, 2.0, 20)
        assert np.array_equal(np.array(results["counts"][step]), want), step
        assert len(results["nodes"][step]) == 2, step
    assert [i["ranks_connected"] for i in sorted(summary["ingest"], key=lambda i: i["host"])] \
        == [[[0, 1]], [[2, 3]]]
