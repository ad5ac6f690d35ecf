"""What every system in the peer benchmark shares: the simulation's physics,
the analysis and its results file, the ranks' timing files.

The work (issue 5): an mpi4py 2-D heat equation, one block per rank, that
publishes its field every step; each system computes, per step, the global
field's mean, min, max and a 64-bin histogram over [0, HIST_MAX], and writes
one JSON line per step to OUT/results.jsonl:

    {"step": s, "mean": m, "min": a, "max": b, "hist": [64 ints], "t": unix time}

where t is when the result was ready. Each rank writes OUT/rank-R.json with
its publish times (after the step's last publishing call returned), so the
harness can compute latencies on the machine's one clock.

A system is a module bench/peers/systems/NAME.py with:

    version() -> str                       the versions measured
    class Bridge(comm, shape, start, count, out_dir)
        .publish(step, block)              block: the rank's float64 block (C order)
        .close()
    launch(cfg, out_dir, rank_cmd) -> dict runs the analytics and the simulation
                                           to the end: `mpiexec(cfg) + rank_cmd`
                                           (cfg["ranks"] ranks of heat.py with
                                           --system NAME) or its own launcher of
                                           the same; returns notes (how the
                                           system was configured)
"""

import json
import os
import time

import numpy as np

HIST_BINS = 64
HIST_MAX = 1.0  # the field stays in [0, 1): source q0 <= 1, alpha small


def mpiexec(cfg):
    """The launcher prefix for cfg["ranks"] ranks (MPICH: oversubscribes
    without being asked)."""
    return ["mpiexec", "-n", str(cfg["ranks"])]


def peer_python(path, setup):
    """The python of a peer's environment, or an error saying how to make it."""
    if not os.path.exists(path):
        raise RuntimeError("%s missing: run %s" % (path, setup))
    return path


def split(n, parts, i):
    base, extra = divmod(n, parts)
    return i * base + min(i, extra), base + (i < extra)


class Heat:
    """One rank's part of the heat equation of examples/heat2d (same
    physics), on a block of bx x by cells per rank."""

    def __init__(self, comm, bx, by):
        from mpi4py import MPI

        dims = MPI.Compute_dims(comm.size, 2)
        self.cart = comm.Create_cart(dims, periods=[False, False])
        cx, cy = self.cart.Get_coords(self.cart.rank)
        self.shape = (dims[0] * bx, dims[1] * by)
        self.start = (cx * bx, cy * by)
        self.count = (bx, by)
        nx, ny = self.shape
        self.u = np.zeros((bx + 2, by + 2))
        gi = np.arange(self.start[0], self.start[0] + bx)[:, None]
        gj = np.arange(self.start[1], self.start[1] + by)[None, :]
        dx = (gi - nx / 2.0) / (nx / 8.0 + 1)
        dy = (gj - ny / 2.0) / (ny / 8.0 + 1)
        r2 = dx * dx + dy * dy
        self.q0 = np.where(r2 < 9, 1.0 / (1.0 + r2), 0.0)
        self.border = (gi == 0) | (gj == 0) | (gi == nx - 1) | (gj == ny - 1)
        self.up, self.down = self.cart.Shift(0, 1)
        self.left, self.right = self.cart.Shift(1, 1)
        self.col_send, self.col_recv = np.empty(bx), np.empty(bx)
        self.PROC_NULL = MPI.PROC_NULL

    def step(self, alpha=0.2, q=0.02):
        u, cart = self.u, self.cart
        bx, by = self.count
        cart.Sendrecv(u[1, 1:-1].copy(), self.up, 0, u[bx + 1, 1:-1], self.down, 0)
        cart.Sendrecv(u[bx, 1:-1].copy(), self.down, 1, u[0, 1:-1], self.up, 1)
        self.col_send[:] = u[1:-1, 1]
        cart.Sendrecv(self.col_send, self.left, 2, self.col_recv, self.right, 2)
        if self.right != self.PROC_NULL:
            u[1:-1, by + 1] = self.col_recv
        self.col_send[:] = u[1:-1, by]
        cart.Sendrecv(self.col_send, self.right, 3, self.col_recv, self.left, 3)
        if self.left != self.PROC_NULL:
            u[1:-1, 0] = self.col_recv
        c = u[1:-1, 1:-1]
        lap = u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:] - 4 * c
        u[1:-1, 1:-1] = np.where(self.border, 0.0, c + alpha * lap + q * self.q0)
        return np.ascontiguousarray(u[1:-1, 1:-1])


def analyse(field):
    """The reference analysis of one global field (NumPy)."""
    hist = np.histogram(field, bins=HIST_BINS, range=(0.0, HIST_MAX))[0]
    return {"mean": float(field.mean()), "min": float(field.min()), "max": float(field.max()),
            "hist": [int(v) for v in hist]}


class Results:
    """OUT/results.jsonl, one line per analysed step, flushed at once."""

    def __init__(self, out_dir):
        self.f = open(os.path.join(out_dir, "results.jsonl"), "a")

    def write(self, step, mean, lo, hi, hist):
        self.f.write(json.dumps({"step": int(step), "mean": float(mean), "min": float(lo),
                                 "max": float(hi), "hist": [int(v) for v in hist],
                                 "t": time.time()}) + "\n")
        self.f.flush()

    def close(self):
        self.f.close()


def read_results(out_dir):
    path = os.path.join(out_dir, "results.jsonl")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return {r["step"]: r for r in map(json.loads, f) if r}


def read_ranks(out_dir):
    ranks = []
    for name in sorted(os.listdir(out_dir)):
        if name.startswith("rank-") and name.endswith(".json"):
            with open(os.path.join(out_dir, name)) as f:
                ranks.append(json.load(f))
    return ranks
