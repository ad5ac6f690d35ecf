"""Caudal inside a Slurm allocation: which nodes do what, and Ray on them.

`caudal run` in a batch script (or under salloc) finds the allocation in
its environment (SLURM_JOB_ID, SLURM_JOB_NODELIST) and runs everything on
the allocated nodes:

- Ray: one `ray start --block` per Ray node, each in a job step of its own
  (`srun --overlap -N1 -n1 -w NODE`), kept running in the background. The
  step owns the node's Ray: ending the step ends it, and Slurm ends every
  step with the job. Each node gets the job's CPUs on it (--num-cpus), its
  own address (NodeAddr), ports of the job's own (`ports`), and a short
  private temp dir of its own made on the node (`python -m
  caudal.runtime.slurm node`, below), with the run's Ray token.
- In situ every node of the allocation is a Ray node and runs ranks; with
  --transit the last K nodes are set aside for Ray (the ingest endpoints and
  the analyses) and the ranks run on the others, which run no Ray at all.
- The driver (`caudal run` itself) must be on a Ray node, the first one:
  a Ray driver attaches to its own node's raylet. If it is elsewhere (the
  batch script's node in transit, salloc's login node) it runs itself there
  through one more step (`relaunch`).
- The simulation: `srun --mpi=pmi2 -n RANKS` on its nodes (or mpiexec), node
  k of them taking the ranks of placement.ranks_of(k), contiguous blocks.
"""

import collections
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Dict, List, NamedTuple, Optional

from .placement import rank_counts
from .simulation import kill_until_gone

# Ports of a job: a block of PORTS_PER_JOB from PORT_BASE, chosen by the job
# id, the same on every node of the job. Below Linux's ephemeral ports
# (32768-60999: what the workers and outgoing connections take) and above
# Ray's fixed defaults (6379, 8265, 10001-19999), so two jobs on one node
# collide only if their ids are PORT_SLOTS apart and they share the node at
# the same time. The workers' ports are the kernel's choice (--min-worker-port=0).
PORT_BASE = 20000
PORT_NAMES = ("gcs", "client_server", "dashboard", "node_manager", "object_manager",
              "runtime_env_agent", "dashboard_agent_grpc", "dashboard_agent_http",
              "metrics_export")
PORTS_PER_JOB = 10
PORT_SLOTS = (32768 - PORT_BASE) // PORTS_PER_JOB

START_SECONDS = 120  # for Ray to come up on every node (slow under load)
STOP_SECONDS = 30  # for a node's step to end once told to
STEP_PREFIX = "caudal-"  # the names of the steps a run starts

# A caudal run that relaunched itself on its first Ray node marks the
# relaunched one, so that it never relaunches again.
RELAUNCHED = "CAUDAL_SLURM_RELAUNCHED"


class SlurmError(Exception):
    """Slurm or Ray on it failed to do what the run needs."""


class Allocation(NamedTuple):
    job_id: str
    nodes: List[str]  # the allocated nodes, in Slurm's order
    cpus: List[int]  # the job's CPUs on each node
    here: Optional[str]  # the node this process runs on, if one of them


def detect(environ=os.environ) -> Optional[Allocation]:
    """The allocation this process runs in, or None outside Slurm."""
    job, nodelist = environ.get("SLURM_JOB_ID"), environ.get("SLURM_JOB_NODELIST")
    if not job or not nodelist:
        return None
    nodes = hostnames(nodelist)
    cpus = expand_counts(environ.get("SLURM_JOB_CPUS_PER_NODE", ""), len(nodes))
    here = environ.get("SLURMD_NODENAME")
    return Allocation(job, nodes, cpus, here if here in nodes else None)


def hostnames(nodelist) -> List[str]:
    """node[1-3],gpu7 -> [node1, node2, node3, gpu7], as Slurm expands it."""
    p = _scontrol(["show", "hostnames", nodelist])
    return p.split()


def expand_counts(spec, n) -> List[int]:
    """SLURM_JOB_CPUS_PER_NODE ("4(x2),8") as one count per node; 1 each
    when absent."""
    out = []
    for part in filter(None, spec.split(",")):
        m = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", part.strip())
        if not m:
            raise SlurmError("cannot read SLURM_JOB_CPUS_PER_NODE=%r" % spec)
        out += [int(m.group(1))] * int(m.group(2) or 1)
    if not out:
        return [1] * n
    if len(out) != n:
        raise SlurmError("SLURM_JOB_CPUS_PER_NODE=%r names %d nodes, the allocation has %d"
                         % (spec, len(out), n))
    return out


def addresses(nodes) -> Dict[str, str]:
    """Each node's IP address: its NodeAddr in Slurm, resolved if a name."""
    text = _scontrol(["-o", "show", "node", ",".join(nodes)])
    addr = {}
    for line in text.splitlines():
        name = re.search(r"\bNodeName=(\S+)", line)
        where = re.search(r"\bNodeAddr=(\S+)", line)
        if name and where:
            addr[name.group(1)] = where.group(1)
    out = {}
    for node in nodes:
        host = addr.get(node, node)
        try:
            out[node] = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0][4][0]
        except OSError as e:
            raise SlurmError("cannot resolve node %s's address %s: %s" % (node, host, e))
    return out


def _scontrol(args):
    try:
        p = subprocess.run(["scontrol", *args], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SlurmError("scontrol %s: %s" % (" ".join(args), e))
    if p.returncode:
        raise SlurmError("scontrol %s failed: %s" % (" ".join(args), p.stderr.strip()))
    return p.stdout


def split(alloc, transit, analytics_nodes):
    """(Ray nodes, simulation nodes). In situ both are every node; in
    transit the last `analytics_nodes` are Ray's and the others the
    simulation's."""
    if not transit:
        return list(alloc.nodes), list(alloc.nodes)
    k = analytics_nodes or 1
    if not 1 <= k < len(alloc.nodes):
        raise SlurmError("--analytics-nodes %d: in transit the allocation's %d node(s) must "
                         "hold at least one analytics node and one simulation node"
                         % (k, len(alloc.nodes)))
    return list(alloc.nodes[-k:]), list(alloc.nodes[:-k])


def ports(job_id) -> Dict[str, int]:
    """The job's ports, by name (PORT_NAMES)."""
    n = int(job_id) if str(job_id).isdigit() else sum(str(job_id).encode())
    base = PORT_BASE + (n % PORT_SLOTS) * PORTS_PER_JOB
    return {name: base + i for i, name in enumerate(PORT_NAMES)}


def step_env(extra=None):
    """The environment for a step this run starts: the job's, without what
    describes the step caudal run itself may run in (srun reads SLURM_NTASKS
    and its like as defaults)."""
    keep = ("SLURM_JOB_", "SLURM_CONF", "SLURM_CLUSTER_NAME", "SLURM_SUBMIT_",
            "SLURM_WORKING_CLUSTER")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SLURM_") or k.startswith(keep)}
    env["SLURM_JOB_ID"] = os.environ["SLURM_JOB_ID"]
    env.update(extra or {})
    return env


def srun(nodes, ntasks, name, cpus):
    """The srun line of one of the run's own steps on `nodes` (Ray's, the
    relaunched driver's): all the job's CPUs and memory there, shared with
    the other steps (--overlap: the ranks run there too in situ)."""
    return ["srun", "--nodes=%d" % len(nodes), "--ntasks=%d" % ntasks,
            "--nodelist=%s" % ",".join(nodes), "--job-name=%s" % name, "--overlap",
            "--mem=0", "--cpus-per-task=%d" % cpus]


def srun_ranks(nranks, command):
    """The simulation's srun line: its ranks placed by the hostfile of
    ranks_env (one rank that fails ends the others: they would wait for it
    in MPI)."""
    return ["srun", "--mpi=pmi2", "--ntasks=%d" % nranks, "--distribution=arbitrary",
            "--kill-on-bad-exit=1", "--job-name=%ssim" % STEP_PREFIX] + list(command)


def ranks_env(launcher, nodes, nranks, private):
    """What the simulation's environment needs under Slurm: srun's
    hostfile (node k takes placement.ranks_of(k) ranks, consecutive ones),
    written in the run's private directory; MPICH's mpiexec starts its
    proxies through srun (left to guess, it tried ssh from a step)."""
    if launcher == "srun":
        path = os.path.join(private, "hostfile")
        with open(path, "w") as f:
            for node, count in zip(nodes, rank_counts(len(nodes), nranks)):
                f.write(("%s\n" % node) * count)
        return {"SLURM_HOSTFILE": path}
    return {"HYDRA_LAUNCHER": os.environ.get("HYDRA_LAUNCHER", "slurm")}


# ---- Ray on the allocation ------------------------------------------------


class RayCluster:
    """Ray on `nodes` (names) of the allocation, the first the head.

    start() leaves one srun per node running, the node's `ray start
    --block` under it; stop() closes their stdin (the node side then stops
    its Ray, removes its files and exits), and what does not end in time is
    cancelled. Logs of each step go to `log_dir`."""

    def __init__(self, alloc, nodes, token, log_dir, tag):
        self.alloc = alloc
        self.nodes = list(nodes)
        self.token = token
        self.log_dir = log_dir
        self.name = "%sray-%s" % (STEP_PREFIX, tag)
        self.ports = ports(alloc.job_id)
        self.ips = addresses(self.nodes)
        self.address = "%s:%d" % (_host(self.ips[self.nodes[0]]), self.ports["gcs"])
        self.steps = collections.OrderedDict()  # node -> its srun
        self.logs = {}

    def start(self, timeout=START_SECONDS):
        """Start the head, wait for its GCS, then the other nodes. Returns
        at once; wait_nodes() waits for them to join."""
        deadline = time.monotonic() + timeout
        head = self.nodes[0]
        self._start_node(head, ["--head", "--port=%d" % self.ports["gcs"]])
        while not _connects(self.ips[head], self.ports["gcs"]):
            self._check_steps()
            if time.monotonic() > deadline:
                raise SlurmError("Ray's head on %s did not listen on %s within %gs%s"
                                 % (head, self.address, timeout, self._tail(head)))
            time.sleep(0.2)
        for node in self.nodes[1:]:
            self._start_node(node, ["--address=%s" % self.address])

    def _start_node(self, node, role):
        cpus = self.alloc.cpus[self.alloc.nodes.index(node)]
        p = self.ports
        ray_args = role + [
            "--node-ip-address=%s" % self.ips[node], "--num-cpus=%d" % cpus,
            "--node-manager-port=%d" % p["node_manager"],
            "--object-manager-port=%d" % p["object_manager"],
            "--runtime-env-agent-port=%d" % p["runtime_env_agent"],
            "--dashboard-agent-grpc-port=%d" % p["dashboard_agent_grpc"],
            "--dashboard-agent-listen-port=%d" % p["dashboard_agent_http"],
            "--metrics-export-port=%d" % p["metrics_export"],
            "--min-worker-port=0", "--max-worker-port=0",
            "--disable-usage-stats",
            "--include-log-monitor=false"]  # as launcher.lean_ray_head
        if "--head" in role:
            ray_args += ["--no-monitor",
                         "--include-dashboard=false", "--dashboard-port=%d" % p["dashboard"],
                         "--ray-client-server-port=%d" % p["client_server"]]
        argv = srun([node], 1, self.name, cpus=cpus) + [
            sys.executable, "-m", "caudal.runtime.slurm", "node", *ray_args]
        log = os.path.join(self.log_dir, "ray-%s.log" % node)
        self.logs[node] = log
        with open(log, "ab") as out:
            # stdin is the node side's lifeline: its end tells it to stop.
            self.steps[node] = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT,
                env=step_env({"CAUDAL_RAY_TOKEN": self.token}), start_new_session=True)

    def _check_steps(self):
        for node, p in self.steps.items():
            if p.poll() is not None:
                raise SlurmError("Ray on %s ended at start (srun exit code %s)%s"
                                 % (node, p.returncode, self._tail(node)))

    def _tail(self, node, n=1500):
        try:
            with open(self.logs[node], "rb") as f:
                text = f.read()[-n:].decode(errors="replace").strip()
        except (OSError, KeyError):
            return ""
        return ": ...%s" % text[-n:] if text else ""

    def wait_nodes(self, ray, timeout=START_SECONDS):
        """Once the driver is connected: every node alive in Ray. Returns
        {node name: Ray node id}."""
        deadline = time.monotonic() + timeout
        want = {self.ips[n]: n for n in self.nodes}
        while True:
            self._check_steps()
            alive = {n["NodeManagerAddress"]: n["NodeID"] for n in ray.nodes() if n["Alive"]}
            if set(want) <= set(alive):
                return {want[ip]: alive[ip] for ip in want}
            if time.monotonic() > deadline:
                missing = [want[ip] for ip in want if ip not in alive]
                raise SlurmError("Ray did not start on %s within %gs%s" % (
                    ", ".join(missing), timeout, self._tail(missing[0])))
            time.sleep(0.3)

    def stop(self, timeout=STOP_SECONDS):
        """Every node's Ray stopped and its step ended; returns what could
        not be (lines), empty when all is gone."""
        for p in self.steps.values():
            _close(p.stdin)
        deadline = time.monotonic() + timeout
        problems = []
        for node, p in self.steps.items():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                # srun, signalled, cancels its step: SIGTERM to every
                # process of it, SIGKILL after the cluster's KillWait.
                _signal_group(p, signal.SIGTERM)
                try:
                    p.wait(STOP_SECONDS)
                except subprocess.TimeoutExpired:
                    _signal_group(p, signal.SIGKILL)
                    p.wait()
                problems.append("Ray on %s did not stop in %gs: its step was cancelled"
                                % (node, timeout))
                continue
            if p.returncode:
                problems.append("Ray on %s ended with exit code %s%s"
                                % (node, p.returncode, self._tail(node, 300)))
        left = cancel_steps(self.alloc.job_id, self.name)
        if left:
            problems.append("steps %s were still listed, cancelled" % ", ".join(left))
        return problems


def cancel_steps(job_id, name, wait=15):
    """Cancel the job's steps named `name` still listed; returns their ids."""
    found = list_steps(job_id, name)
    if found:
        subprocess.run(["scancel", "--signal=KILL", *found], capture_output=True, timeout=60)
        deadline = time.monotonic() + wait
        while list_steps(job_id, name) and time.monotonic() < deadline:
            time.sleep(0.3)
    return found


def list_steps(job_id, name=None):
    """The ids (JOB.STEP) of the job's steps, those named `name` only."""
    try:
        p = subprocess.run(["squeue", "--steps", "--noheader", "--jobs=%s" % job_id,
                            "--format=%i %j"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return []
    out = []
    for line in p.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and (name is None or parts[1] == name):
            out.append(parts[0])
    return out


def _close(f):
    try:
        f.close()
    except OSError:
        pass


def _signal_group(p, sig):
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _connects(host, port):
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _host(ip):
    return "[%s]" % ip if ":" in ip else ip


# ---- the relaunch: caudal run on its first Ray node ----------------------


def relaunch(alloc, node, argv):
    """Run `caudal argv` (run ...) again on `node` in a step of its own and
    wait for it; returns its exit code. SIGINT and SIGTERM to this process
    reach that one as themselves, written to its stdin (listen_to_relauncher):
    srun would turn a SIGTERM into a SIGKILL of the step, and signalling the
    step (scancel --signal) reaches every process of it, the srun clients of
    its own steps too, which then kill Ray and the ranks at once."""
    name = "%sdriver-%d" % (STEP_PREFIX, os.getpid())
    cpus = alloc.cpus[alloc.nodes.index(node)]
    cmd = srun([node], 1, name, cpus=cpus) + [sys.executable, "-m", "caudal", *argv]
    p = subprocess.Popen(cmd, env=step_env({RELAUNCHED: "1"}), stdin=subprocess.PIPE,
                         start_new_session=True)

    def forward(signum, frame):
        try:
            p.stdin.write(b"%d\n" % signum)
            p.stdin.flush()
        except OSError:
            pass

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return p.wait()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        _close(p.stdin)


def listen_to_relauncher():
    """In the caudal run that relaunch() started: the signals the first one
    gets arrive on stdin, one number a line, and are raised here. Nothing
    else reads that stdin: fd 0 becomes /dev/null for the rest (the
    simulation's launcher would forward it)."""
    fd = os.dup(0)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)

    def read():
        with os.fdopen(fd, "rb") as f:
            for line in f:
                try:
                    signum = int(line)
                except ValueError:
                    continue
                if signum in (signal.SIGINT, signal.SIGTERM):
                    os.kill(os.getpid(), signum)

    threading.Thread(target=read, name="caudal-relauncher", daemon=True).start()


# ---- the node side: python -m caudal.runtime.slurm node RAY_START_ARGS ----


NODE_GRACE = 10  # between asking Ray to stop and killing what is left of it


def node_main(ray_args):
    """One node's Ray, in the step that srun runs there: a private dir of
    its own on the node (Ray's temp dir and the token, from
    CAUDAL_RAY_TOKEN), `ray start --block` in a session of its own until
    stdin ends (or a signal comes), then Ray stopped: SIGTERM to `ray
    start`, which stops its processes, and after NODE_GRACE SIGKILL to
    every process left in its session (Ray's agents ignore SIGTERM); the
    directory removed. Only that session: the driver, on the head node,
    holds files in the directory too (its logs) and must live on. If this
    process is killed, Slurm kills the whole step with it."""
    import shutil

    from .private import private_dir

    token = os.environ.pop("CAUDAL_RAY_TOKEN", None)
    if not token:
        print("caudal slurm node: no CAUDAL_RAY_TOKEN", file=sys.stderr)
        return 2
    priv = private_dir()
    procs = []  # `ray start`, once started
    try:
        rc = _serve(priv, token, ray_args, procs)
    finally:
        for ray in procs:
            left = kill_until_gone(lambda: _session(ray.pid))
            ray.wait()
            if left:
                print("caudal slurm node: %d process(es) of Ray would not die: %s"
                      % (len(left), left), file=sys.stderr)
                rc = 1
        shutil.rmtree(priv, ignore_errors=True)
    return rc


def _serve(priv, token, ray_args, procs):
    path = os.path.join(priv, "ray_token")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=path)
    env.pop("RAY_AUTH_TOKEN", None)
    if not _client_server_available():
        ray_args = [a for a in ray_args if not a.startswith("--ray-client-server-port")]
    taken = _taken_ports(ray_args)
    if taken:
        print("caudal slurm node %s: port(s) %s taken (another job's Ray?)"
              % (os.environ.get("SLURMD_NODENAME", socket.gethostname()),
                 ", ".join(map(str, taken))), file=sys.stderr)
        return 1
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, _stop_node)
    ray = subprocess.Popen(
        [sys.executable, "-m", "ray.scripts.scripts", "start", "--block",
         "--temp-dir=%s" % os.path.join(priv, "ray"), *ray_args],
        env=env, stdin=subprocess.DEVNULL, start_new_session=True)
    procs.append(ray)
    try:
        # Until stdin ends (the driver's stop, or srun gone) or Ray does.
        while ray.poll() is None:
            if select.select([0], [], [], 1.0)[0] and not os.read(0, 4096):
                break
    except (OSError, _NodeStop):
        pass
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_IGN)  # stopping already
    rc = ray.poll()
    if rc is not None:
        return rc or 1  # Ray ended before it was told to
    ray.send_signal(signal.SIGTERM)
    try:
        ray.wait(NODE_GRACE)
    except subprocess.TimeoutExpired:
        pass
    return 0


def _session(sid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d, "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid pgrp session ...: comm may hold spaces.
        fields = stat[stat.rindex(b")") + 2:].split()
        if int(fields[3]) == sid and fields[0] != b"Z":
            out.append(int(d))
    return out


class _NodeStop(Exception):
    pass


def _stop_node(signum, frame):
    raise _NodeStop()


def _client_server_available():
    try:
        from ray._private.utils import get_ray_client_dependency_error
    except ImportError:
        return False
    return get_ray_client_dependency_error() is None


def _taken_ports(ray_args):
    """The ports of `ray_args` that something listens on. SO_REUSEADDR:
    a port that an earlier run of the same job left in TIME_WAIT is free
    for Ray (gRPC reuses addresses too)."""
    out = []
    for a in ray_args:
        m = re.fullmatch(r"--(?!min-|max-)[a-z-]*port=(\d+)", a)
        if m and int(m.group(1)):
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("", int(m.group(1))))
                except OSError:
                    out.append(int(m.group(1)))
    return out


if __name__ == "__main__":
    if sys.argv[1:2] != ["node"]:
        sys.exit("usage: python -m caudal.runtime.slurm node RAY_START_ARGS...")
    sys.exit(node_main(sys.argv[2:]))
