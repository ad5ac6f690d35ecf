"""`caudal run` inside a real Slurm allocation: slurmctld, munged and one
slurmd per host (network namespaces, netns_hosts), made and started by the
module (slurm_cluster.py), three nodes node1..node3 of 2 CPUs. Jobs are
submitted with `sbatch --wait` as a user would, with the sbatch examples of
examples/slurm; their batch script runs on the allocation's first node.

What each test checks, besides the results against the simulation's own
means: where things ran (a sampler maps every process to its host by its
network namespace while the job runs: Ray's processes, the ranks, the
driver), the exit code, and that nothing of the run is left afterwards: no
process in any host but its slurmd, no step of the job, no private
directory of the run's processes.
"""

import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import pytest

import netns_hosts
import slurm_cluster
from conftest import HERE, ROOT
from test_run import STATS, oracle

EXAMPLES = os.path.join(ROOT, "examples", "slurm")
FAULTY = os.path.join(HERE, "_faulty_sim.py")
MEAN = """
import caudal

@caudal.analysis("field")
def mean(t, ctx):
    ctx.record("mean", float(t[0].data.mean().compute()))
"""


@pytest.fixture(scope="module")
def cluster():
    why = slurm_cluster.available()
    if why:
        pytest.skip(why)
    netns_hosts.cleanup_stale()
    # Short paths: munged's and slurmd's unix sockets live under it.
    root = tempfile.mkdtemp(prefix="cdl-slurm-", dir="/tmp")
    try:
        with netns_hosts.Hosts(3) as hosts, slurm_cluster.Slurm(hosts, root) as slurm:
            yield slurm
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ---- where processes run ---------------------------------------------------


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def host_processes(hosts):
    """{host name: {pid: cmdline}} of the processes in each host."""
    out = {h.name: {} for h in hosts}
    for pid, host in slurm_cluster.processes_in(hosts).items():
        cmd = _cmdline(pid)
        if cmd:
            out[host][pid] = cmd
    return out


RAY = re.compile(r"raylet|gcs_server|ray::|/ray/|ray\.scripts")


def kind(cmd):
    argv = cmd.split()
    if "caudal.runtime.slurm node" in cmd:
        return "node side"
    if RAY.search(cmd):
        return "ray"
    if re.search(r"(/caudal|-m caudal) run ", cmd):
        return "driver"
    if os.path.basename(argv[0]) == "heat2d" or argv[1:2] == [FAULTY]:
        return "rank"
    return None


class Sampler:
    """What ran in each host while a job ran: {host: {kind: {pids}}}."""

    def __init__(self, hosts):
        self.hosts = hosts
        self.seen = collections.defaultdict(lambda: collections.defaultdict(set))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.is_set():
            for host, procs in host_processes(self.hosts).items():
                for pid, cmd in procs.items():
                    k = kind(cmd)
                    if k:
                        self.seen[host][k].add(pid)
            self.stop.wait(0.1)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def assert_nothing_left(slurm, job, pids):
    """Only slurmd in every host, no step of the job, no private directory
    of the job's processes (/tmp/caudal-<pid>-*). A cancelled job's
    processes have KillWait to end, and its steps stay listed a moment
    after: both are waited for."""
    deadline = time.monotonic() + 45
    while True:
        left = {h: {p: c for p, c in procs.items() if not re.search(r"\bslurmd\b", c)}
                for h, procs in host_processes(slurm.hosts).items()}
        left = {h: procs for h, procs in left.items() if procs}
        steps = slurm.run(["squeue", "--steps", "--noheader", "--jobs=%s" % job]).stdout.strip()
        if (not left and not steps) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert not left, left
    assert steps == "", steps
    dirs = [d for d in os.listdir("/tmp") if re.match(r"caudal-(\d+)-", d)
            and int(d.split("-")[1]) in pids]
    assert not dirs, dirs


# ---- jobs ------------------------------------------------------------------


def sbatch(slurm, tmp_path, script, args, env=None, options=()):
    """`sbatch --wait` of `script` with `args`, from the repository root as
    a user would, `caudal` on the PATH; returns (exit code, job id, output)."""
    out = tmp_path / "job.out"
    env = dict(env or {}, PATH=os.path.dirname(sys.executable) + ":" + os.environ["PATH"])
    # Slurm ends a job that hangs (--time, minutes), before the test would.
    p = slurm.run(["sbatch", "--wait", "--parsable", "--output=%s" % out, "--time=4", *options,
                   script, *args], env=env, cwd=ROOT, timeout=360)
    job = p.stdout.strip().split(";")[0]
    text = (out.read_text() if out.exists() else "") + p.stderr
    print(text)  # the job's output, shown with the test's when it fails
    return p.returncode, job, text


def results_of(run_dir):
    results = collections.defaultdict(dict)
    for line in (run_dir / "results.jsonl").read_text().splitlines():
        r = json.loads(line)
        results[r["name"]][r["step"]] = r["value"]
    return results


def check_means(results, means, steps):
    want = oracle(means)
    assert sorted(want) == list(range(steps))
    assert sorted(results["mean"]) == list(range(steps))
    for step, m in want.items():
        assert abs(results["mean"][step] - m) <= 1e-12 * abs(m), step


def test_in_situ_on_two_nodes_each_rank_to_its_own_nodes_ingest(cluster, tmp_path, heat2d):
    """examples/slurm/in_situ.sbatch on 2 nodes: Ray on both, 2 ranks of
    heat2d on each (ranks 0-1 on the first, 2-3 on the second), each rank
    publishing through shared memory to the ingest on its own node, whose
    blocks live there; the driver on the first node, where the batch script
    runs."""
    steps = 30
    means = tmp_path / "mean.txt"
    run_dir = tmp_path / "run"
    with Sampler(cluster.hosts) as seen:
        rc, job, out = sbatch(cluster, tmp_path, os.path.join(EXAMPLES, "in_situ.sbatch"),
                              [heat2d, "64", "48", str(steps), "--mean", str(means)],
                              env={"RUN_DIR": str(run_dir), "ANALYTICS": STATS,
                                   "CAUDAL_DEMO_THRESHOLD": "1e9"})
    assert rc == 0, out
    assert "running on" not in out  # already on the first Ray node
    check_means(results_of(run_dir), means, steps)

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["end"]["reason"] == "completed"
    nodes = summary["slurm"]["ray_nodes"]
    assert len(nodes) == 2 and summary["slurm"]["simulation_nodes"] == nodes
    ips = {h.name: h.ip for h in cluster.hosts}
    ingest = summary["ingest"]
    assert [i["node"] for i in ingest] == nodes
    assert [i["host"] for i in ingest] == [ips[n] for n in nodes]
    assert [i["ranks_connected"] for i in ingest] == [[[0, 1]], [[2, 3]]]
    assert [i["blocks"] for i in ingest] == [2 * steps, 2 * steps]
    # Each node's entry of the ranks' list is its own socket, at its address.
    assert all(i["endpoint"].startswith("unix:") for i in ingest)

    for n in nodes:
        assert len(seen.seen[n]["rank"]) == 2 and seen.seen[n]["ray"], (n, seen.seen[n])
    assert seen.seen[nodes[0]]["driver"] and not seen.seen[nodes[1]]["driver"]
    assert_nothing_left(cluster, job, set().union(*(
        k for h in seen.seen.values() for k in h.values())))


def test_in_transit_the_simulation_nodes_run_no_ray(cluster, tmp_path, heat2d):
    """examples/slurm/in_transit.sbatch on 3 nodes: 4 ranks of heat2d on
    node1 and node2, which run no Ray process at all, streaming to 2 TCP
    endpoints on node3, where Ray and the driver run (the batch script, on
    node1, ran caudal run again there)."""
    steps = 30
    means = tmp_path / "mean.txt"
    run_dir = tmp_path / "run"
    with Sampler(cluster.hosts) as seen:
        rc, job, out = sbatch(cluster, tmp_path, os.path.join(EXAMPLES, "in_transit.sbatch"),
                              [heat2d, "64", "48", str(steps), "--mean", str(means)],
                              env={"RUN_DIR": str(run_dir), "ANALYTICS": STATS,
                                   "CAUDAL_DEMO_THRESHOLD": "1e9"})
    assert rc == 0, out
    assert "running on node3, the first analytics Ray node" in out
    assert "Ray on node3, the simulation on node1,node2" in out
    check_means(results_of(run_dir), means, steps)

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["end"]["reason"] == "completed"
    assert summary["slurm"] == {"job_id": job, "ray_nodes": ["node3"],
                                "simulation_nodes": ["node1", "node2"], "launcher": "srun"}
    ingest = summary["ingest"]
    assert [i["node"] for i in ingest] == ["node3", "node3"]
    assert [i["ranks"] for i in ingest] == [[0, 1], [2, 3]]
    assert [i["blocks"] for i in ingest] == [2 * steps, 2 * steps]
    node3 = cluster.hosts[2].ip
    assert all(i["endpoint"].startswith("tcp:%s:" % node3) for i in ingest)

    # Two ranks on each simulation node and nothing of Ray there; Ray, its
    # node side and the driver on node3, and no rank.
    assert {h: len(seen.seen[h]["rank"]) for h in ("node1", "node2", "node3")} == \
        {"node1": 2, "node2": 2, "node3": 0}
    for h in ("node1", "node2"):
        assert not seen.seen[h]["ray"] and not seen.seen[h]["node side"], seen.seen[h]
    assert seen.seen["node3"]["ray"] and seen.seen["node3"]["node side"]
    assert seen.seen["node3"]["driver"]
    assert_nothing_left(cluster, job, set().union(*(
        k for h in seen.seen.values() for k in h.values())))


def test_a_failing_simulation_tears_ray_down_on_every_node(cluster, tmp_path):
    """Ray on two analytics nodes (node2, node3: --analytics-nodes 2, one
    endpoint on each), 2 ranks on node1 started by MPICH's mpiexec
    (--launcher mpiexec), of which rank 1 calls MPI_Abort at step 8: exit
    code 2, the steps before it analysed with the simulation's means, and
    Ray stopped on both nodes. HYDRA_IFACE: every host here has the
    machine's hostname, which resolves to loopback, so mpiexec's proxies
    must be told its address."""
    script = tmp_path / "mean.py"
    script.write_text(MEAN)
    means = tmp_path / "mean.txt"
    run_dir = tmp_path / "run"
    wrap = ("caudal run -n 2 --transit 2 --analytics-nodes 2 --launcher mpiexec "
            "--analytics %s --run-dir %s -- "
            "%s %s 40 --oracle %s --sleep 0.05 --abort-at 8"
            % (script, run_dir, sys.executable, FAULTY, means))
    with Sampler(cluster.hosts) as seen:
        rc, job, out = sbatch(cluster, tmp_path, "--wrap=%s" % wrap, [],
                              env={"HYDRA_IFACE": "eth0"},
                              options=["--nodes=3", "--ntasks-per-node=2"])
    assert rc == 2, out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["end"]["reason"] == "simulation_failed", summary["end"]
    assert summary["slurm"]["ray_nodes"] == ["node2", "node3"]
    assert summary["slurm"]["launcher"] == "mpiexec"
    assert summary["command"][:5] == ["mpiexec", "-n", "2", "-hosts", "node1:2"]
    assert [i["node"] for i in summary["ingest"]] == ["node2", "node3"]
    want = oracle(means)
    analysed = results_of(run_dir)["mean"]
    assert analysed and set(analysed) <= set(range(8))
    for step, m in analysed.items():
        assert abs(m - want[step]) <= 1e-12 * abs(want[step])
    assert seen.seen["node2"]["ray"] and seen.seen["node3"]["ray"]
    assert not seen.seen["node1"]["ray"] and len(seen.seen["node1"]["rank"]) == 2
    assert_nothing_left(cluster, job, set().union(*(
        k for h in seen.seen.values() for k in h.values())))


def submit_until_results(cluster, script_sh, nodes, out, run_dir):
    """sbatch --wait of `script_sh` on `nodes` nodes, 2 tasks each, returned
    (the sbatch process, the job id) once the run recorded 5 results."""
    env = dict(cluster.env, PATH=os.path.dirname(sys.executable) + ":" + os.environ["PATH"])
    p = subprocess.Popen(["sbatch", "--wait", "--parsable", "--nodes=%d" % nodes,
                          "--ntasks-per-node=2", "--time=4", "--output=%s" % out,
                          str(script_sh)], env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    job = p.stdout.readline().strip().split(";")[0]
    results = run_dir / "results.jsonl"
    deadline = time.monotonic() + 120
    while not (results.exists() and len(results.read_text().splitlines()) >= 5):
        assert p.poll() is None and time.monotonic() < deadline, out.read_text()
        time.sleep(0.2)
    return p, job


def test_sigterm_to_the_batch_script_ends_the_run_in_order(cluster, tmp_path):
    """In transit, the batch script (caudal run on node1, which ran itself
    again on node3) gets SIGTERM alone (scancel --batch), as from a user or
    a wrapper: it passes it to the caudal run on node3, which stops the
    simulation, writes its summary (interrupted, 143) and stops Ray; the
    job ends with 143 and nothing of it is left."""
    script = tmp_path / "mean.py"
    script.write_text(MEAN)
    means = tmp_path / "mean.txt"
    run_dir = tmp_path / "run"
    out = tmp_path / "job.out"
    script_sh = tmp_path / "job.sh"
    script_sh.write_text("#!/bin/bash\nexec caudal run -n 4 --transit 2 --analytics %s "
                         "--run-dir %s -- %s %s 400 --oracle %s --sleep 0.05\n"
                         % (script, run_dir, sys.executable, FAULTY, means))
    with Sampler(cluster.hosts) as seen:
        p, job = submit_until_results(cluster, script_sh, 3, out, run_dir)
        cluster.run(["scancel", "--batch", "--signal=TERM", job], check=True)
        p.wait(120)
    text = out.read_text()
    print(text)
    assert p.returncode == 143, text
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["end"]["reason"] == "interrupted" and summary["end"]["exit_code"] == 143
    assert "interrupted (SIGTERM)" in text
    want = oracle(means)
    analysed = results_of(run_dir)["mean"]
    assert len(analysed) >= 5 and len(want) < 400  # stopped half way
    for step, m in analysed.items():
        assert abs(m - want[step]) <= 1e-12 * abs(want[step])
    assert seen.seen["node3"]["driver"] and seen.seen["node3"]["ray"]
    assert_nothing_left(cluster, job, set().union(*(
        k for h in seen.seen.values() for k in h.values())))


# ---- without Slurm ---------------------------------------------------------


def test_the_allocation_read_from_slurms_variables():
    from caudal.runtime import slurm

    assert slurm.detect({}) is None
    assert slurm.detect({"SLURM_JOB_ID": "7"}) is None  # no node list: not an allocation
    assert slurm.expand_counts("4(x2),8,2(x3)", 6) == [4, 4, 8, 2, 2, 2]
    assert slurm.expand_counts("", 3) == [1, 1, 1]
    with pytest.raises(slurm.SlurmError, match="names 2 nodes, the allocation has 3"):
        slurm.expand_counts("4(x2)", 3)
    alloc = slurm.Allocation("7", ["a", "b", "c", "d"], [2] * 4, "a")
    assert slurm.split(alloc, 0, 0) == (["a", "b", "c", "d"],) * 2
    assert slurm.split(alloc, 2, 0) == (["d"], ["a", "b", "c"])
    assert slurm.split(alloc, 2, 3) == (["b", "c", "d"], ["a"])
    for k in (4, -1):
        with pytest.raises(slurm.SlurmError, match="at least one analytics node and one"):
            slurm.split(alloc, 2, k)


def test_two_jobs_ports_never_meet_unless_port_slots_apart():
    """Each job's block of ports lies between Ray's fixed defaults and
    Linux's ephemeral ports, its ports distinct; jobs whose ids are less
    than PORT_SLOTS apart have disjoint blocks."""
    from caudal.runtime import slurm

    blocks = {}
    for job in range(1, 3 * slurm.PORT_SLOTS, 37):
        ports = slurm.ports(job)
        assert sorted(ports) == sorted(slurm.PORT_NAMES)
        values = set(ports.values())
        assert len(values) == len(ports)
        assert all(20000 <= v < 32768 for v in values)
        blocks[job] = values
    for a in blocks:
        for b in blocks:
            if a != b and abs(a - b) < slurm.PORT_SLOTS:
                assert not blocks[a] & blocks[b], (a, b)
    assert slurm.ports(5) == slurm.ports(5 + slurm.PORT_SLOTS)


def test_the_ranks_hostfile_gives_node_k_the_ranks_of_its_ingest(tmp_path):
    from caudal.runtime import placement, slurm

    env = slurm.ranks_env("srun", ["n1", "n2", "n3"], 7, str(tmp_path))
    lines = open(env["SLURM_HOSTFILE"]).read().split()
    assert lines == ["n1"] * 3 + ["n2"] * 2 + ["n3"] * 2
    for k, node in enumerate(["n1", "n2", "n3"]):
        first, last = placement.ranks_of(k, 3, 7)
        assert [r for r, n in enumerate(lines) if n == node] == list(range(first, last + 1))
    assert slurm.srun_ranks(7, ["./sim", "1"])[-2:] == ["./sim", "1"]
    assert "--distribution=arbitrary" in slurm.srun_ranks(7, ["./sim"])


def test_a_cancelled_job_leaves_nothing(cluster, tmp_path):
    """scancel of a job in situ on two nodes, half way: Slurm signals every
    process of every step at once (srun clients then kill their steps), and
    the run still ends as interrupted and leaves nothing behind."""
    script = tmp_path / "mean.py"
    script.write_text(MEAN)
    run_dir = tmp_path / "run"
    out = tmp_path / "job.out"
    script_sh = tmp_path / "job.sh"
    script_sh.write_text("#!/bin/bash\nexec caudal run -n 4 --analytics %s --run-dir %s -- "
                         "%s %s 400 --sleep 0.05\n" % (script, run_dir, sys.executable, FAULTY))
    with Sampler(cluster.hosts) as seen:
        p, job = submit_until_results(cluster, script_sh, 2, out, run_dir)
        cluster.run(["scancel", job], check=True)
        p.wait(120)
        # sbatch --wait returns once the job is cancelled, while its
        # processes still have the cluster's KillWait to end (30 s).
        assert_nothing_left(cluster, job, set().union(*(
            k for h in seen.seen.values() for k in h.values())))
    print(out.read_text())  # cut at the cancel: Slurm stops writing it
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["end"]["reason"] == "interrupted", summary["end"]
    assert summary["end"]["exit_code"] == 143
    assert summary["steps_analysed"] >= 5


def test_a_port_already_taken_is_named():
    """The node side checks the job's ports before `ray start`, so that a
    clash with another job says which port."""
    import socket

    from caudal.runtime import slurm

    with socket.socket() as s:
        s.bind(("", 0))
        s.listen()
        taken = s.getsockname()[1]
        args = ["--port=%d" % taken, "--node-manager-port=%d" % taken, "--min-worker-port=0",
                "--num-cpus=%d" % taken]
        assert slurm._taken_ports(args) == [taken, taken]
    assert slurm._taken_ports(args) == []
