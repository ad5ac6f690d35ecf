"""In transit: where the N ingest endpoints listen and which ranks go to which.

The simulation's hosts run no Ray: each rank streams over TCP, with the job
token, to one of N ingest actors on the Ray nodes (all of them analytics
nodes, since no rank runs on one). The ranks learn their endpoint from one
list in CAUDAL_ENDPOINT, the same on every rank, of which libcaudal takes
entry rank * N / size (include/caudal.h, "Several endpoints"); ranks_of
says the same from the launcher's side, for the summary.
"""

from typing import List, NamedTuple, Tuple


class Place(NamedTuple):
    """One ingest endpoint to start."""

    name: str  # its identity towards the head (the order of its reports)
    node: str  # the Ray node it runs on, where the blocks it puts live
    listen: str  # tcp:HOST:0 on that node's address; the port is its own


def places(nodes, n) -> List[Place]:
    """N ingest endpoints spread over the Ray nodes in turn. `nodes` are the
    alive entries of ray.nodes(): each endpoint listens on its node's
    address as Ray knows it, so that ranks on other hosts can reach it."""
    if not nodes:
        raise ValueError("no alive Ray node to run the ingest endpoints on")
    out = []
    for i in range(n):
        node = nodes[i % len(nodes)]
        host = node["NodeManagerAddress"]
        if ":" in host:  # IPv6
            host = "[%s]" % host
        out.append(Place("transit-%d" % i, node["NodeID"], "tcp:%s:0" % host))
    return out


def endpoint_of(rank, n, size) -> int:
    """The entry of the list that `rank` connects to (as libcaudal picks it)."""
    return rank * n // size


def ranks_of(i, n, size) -> Tuple[int, int]:
    """The first and last rank that endpoint i takes: a contiguous block, so
    neighbouring ranks share an ingest. Every endpoint has at least one rank
    when n <= size."""
    first = -(-i * size // n)  # the least rank r with r * n // size >= i
    last = -(-(i + 1) * size // n) - 1
    return first, last
