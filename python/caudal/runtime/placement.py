"""Where the ingest actors listen, which ranks go to which, and where the
ranks run.

In situ: one ingest actor per Ray node, listening on a unix socket of its
own, and the ranks spread over the same nodes in contiguous blocks (node k
of N takes ranks k * n / N to (k + 1) * n / N - 1), so that neighbouring
ranks share a node, as an MPI launcher places them by default. Every rank
gets the same node-local list in CAUDAL_ENDPOINT, one "unix:PATH@ADDR" entry
per node, and libcaudal takes the entry whose ADDR is one of its host's
addresses (include/caudal.h, "Node-local lists"): the ranks need no
per-host environment, whatever launches them. On one node the list is the
one plain socket it always was.

In transit: the simulation's hosts run no Ray. Each rank streams over TCP,
with the job token, to one of N ingest actors on the Ray nodes. The ranks
learn their endpoint from one list in CAUDAL_ENDPOINT, of which libcaudal
takes entry rank * N / size ("Several endpoints"); ranks_of says the same
from the launcher's side, for the summary.
"""

import ipaddress
import shlex
import subprocess
from typing import List, NamedTuple, Tuple


class Place(NamedTuple):
    """One ingest endpoint to start."""

    name: str  # its identity towards the head (the order of its reports)
    node: str  # the Ray node it runs on, where the blocks it puts live
    listen: str  # what it listens on: tcp:HOST:0 (the port its own) or unix:PATH
    address: str = ""  # in situ on several nodes: the node's address, for the list


def _address(node):
    return node["NodeManagerAddress"]


def ordered(nodes, here):
    """Ray's nodes in a stable order (ray.nodes() has none): `here` (the
    driver's node) first, then by address, numerically."""
    def key(n):
        try:
            addr = ipaddress.ip_address(_address(n))
            return (n["NodeID"] != here, addr.version, int(addr), n["NodeID"])
        except ValueError:
            return (n["NodeID"] != here, 9, 0, _address(n))
    return sorted(nodes, key=key)


def in_situ(nodes, private) -> List[Place]:
    """One ingest per Ray node, each on a socket of its own in the run's
    private directory: on a cluster that directory is node-local, and where
    nodes share a filesystem (several hosts on one machine) the names keep
    them apart."""
    if not nodes:
        raise ValueError("no alive Ray node to run the ingest actors on")
    if len(nodes) == 1:
        n = nodes[0]
        return [Place(n["NodeID"], n["NodeID"], "unix:%s/ingest.sock" % private, _address(n))]
    return [Place(n["NodeID"], n["NodeID"], "unix:%s/ingest-%d.sock" % (private, k), _address(n))
            for k, n in enumerate(nodes)]


def in_transit(nodes, n) -> List[Place]:
    """N ingest endpoints spread over the Ray nodes in turn. `nodes` are the
    alive entries of ray.nodes(): each endpoint listens on its node's
    address as Ray knows it, so that ranks on other hosts can reach it."""
    if not nodes:
        raise ValueError("no alive Ray node to run the ingest endpoints on")
    out = []
    for i in range(n):
        node = nodes[i % len(nodes)]
        host = _address(node)
        if ":" in host:  # IPv6
            host = "[%s]" % host
        out.append(Place("transit-%d" % i, node["NodeID"], "tcp:%s:0" % host, _address(node)))
    return out


def endpoint_list(places, endpoints, transit):
    """CAUDAL_ENDPOINT for every rank: in transit the N endpoints in order,
    in situ on several nodes the node-local list, on one node the socket."""
    if transit:
        return ",".join(endpoints)
    if len(places) == 1:
        return endpoints[0]
    return ",".join("%s@%s" % (ep, p.address) for p, ep in zip(places, endpoints))


def endpoint_of(rank, n, size) -> int:
    """The entry of the list that `rank` connects to (as libcaudal picks it)."""
    return rank * n // size


def ranks_of(i, n, size) -> Tuple[int, int]:
    """The first and last rank that endpoint i takes: a contiguous block, so
    neighbouring ranks share an ingest. Every endpoint has at least one rank
    when n <= size; node k of N in situ takes the same block."""
    first = -(-i * size // n)  # the least rank r with r * n // size >= i
    last = -(-(i + 1) * size // n) - 1
    return first, last


# ---- launching the ranks ------------------------------------------------


def launcher_kind(argv):
    """'hydra' (MPICH, Intel MPI), 'openmpi', or None when its --version
    says neither."""
    try:
        out = subprocess.run([argv[0], "--version"], capture_output=True, text=True,
                             timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    text = out.stdout + out.stderr
    if "HYDRA" in text or "Intel(R) MPI" in text:
        return "hydra"
    if "Open MPI" in text or "OpenRTE" in text:
        return "openmpi"
    return None


# Flags by which a launcher's command line already says where ranks go.
PLACED_BY_USER = {"-host", "-hosts", "--host", "-H", "-f", "-hostfile", "--hostfile",
                  "-machinefile", "--machinefile", "-configfile"}


def mpiexec_command(mpiexec, nranks, hosts, command, named=False):
    """The simulation's command line: `mpiexec` (a command line of its own,
    split as a shell would) with -n and, when the ranks span several hosts,
    the hosts with their rank counts, in the launcher's own syntax. `hosts`
    is a list of (address, ranks) or empty for wherever the launcher puts
    them (this machine). `named`: the hosts are named even when one (under
    Slurm, where the launcher would otherwise use the whole allocation). A
    launcher given with hosts of its own is left to place the ranks."""
    argv = shlex.split(mpiexec)
    out = argv + ["-n", str(nranks)]
    if hosts and (len(hosts) > 1 or named) and not PLACED_BY_USER & set(argv):
        spec = ",".join("%s:%d" % (h, k) for h, k in hosts)
        kind = launcher_kind(argv)
        if kind == "hydra":
            out += ["-hosts", spec]
        elif kind == "openmpi":
            out += ["--host", spec]
        else:
            raise ValueError("%s is neither MPICH's nor Open MPI's mpiexec: caudal run cannot "
                             "tell it to place %d ranks on %d nodes (%s)"
                             % (argv[0], nranks, len(hosts), spec))
    return out + list(command)


def rank_counts(nnodes, nranks):
    """How many ranks each of `nnodes` nodes takes, node k ranks_of(k)."""
    return [last - first + 1 for first, last in
            (ranks_of(k, nnodes, nranks) for k in range(nnodes))]


def rank_hosts(places, nranks):
    """In situ: (address, ranks) per node, node k taking ranks_of(k); nodes
    left without a rank (fewer ranks than nodes) are left out."""
    return [(p.address, k) for p, k in zip(places, rank_counts(len(places), nranks)) if k]
