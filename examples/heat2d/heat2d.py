"""heat2d in Python: the physics of heat2d.c with mpi4py and NumPy, publishing
through the Python binding of libcaudal (the same C path as the C example).

usage: mpiexec -n 4 python heat2d.py NX NY STEPS [--every K] [--mean FILE]

Without CAUDAL_ENDPOINT in the environment nothing is published.
"""

import argparse
import os
import sys

import numpy as np
from mpi4py import MPI

import caudal


def split(n, parts, i):
    base, extra = divmod(n, parts)
    return i * base + min(i, extra), base + (i < extra)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("nx", type=int)
    ap.add_argument("ny", type=int)
    ap.add_argument("steps", type=int)
    ap.add_argument("--every", type=int, default=1)
    ap.add_argument("--mean")
    args = ap.parse_args()
    world = MPI.COMM_WORLD
    dims = MPI.Compute_dims(world.size, 2)
    if args.nx < dims[0] or args.ny < dims[1] or args.steps < 0 or args.every < 1:
        if world.rank == 0:
            print("heat2d.py: bad sizes %d x %d for this many ranks" % (args.nx, args.ny),
                  file=sys.stderr)
        return 1
    cart = world.Create_cart(dims, periods=[False, False])
    cx, cy = cart.Get_coords(cart.rank)
    x0, lx = split(args.nx, dims[0], cx)
    y0, ly = split(args.ny, dims[1], cy)
    up, down = cart.Shift(0, 1)
    left, right = cart.Shift(1, 1)

    u = np.zeros((lx + 2, ly + 2))
    gi = np.arange(x0, x0 + lx)[:, None]
    gj = np.arange(y0, y0 + ly)[None, :]
    dx = (gi - args.nx / 2.0) / (args.nx / 8.0 + 1)
    dy = (gj - args.ny / 2.0) / (args.ny / 8.0 + 1)
    r2 = dx * dx + dy * dy
    q0 = np.where(r2 < 9, 1.0 / (1.0 + r2), 0.0)
    border = (gi == 0) | (gj == 0) | (gi == args.nx - 1) | (gj == args.ny - 1)

    client = None
    if os.environ.get("CAUDAL_ENDPOINT"):
        client = caudal.Client(cart.rank, cart.size)
        client.declare("temperature", "float64", shape=(args.nx, args.ny), start=(x0, y0),
                       count=(lx, ly))
    mean_out = open(args.mean, "w") if args.mean and cart.rank == 0 else None
    alpha, q = 0.2, 0.05
    col_send, col_recv = np.empty(lx), np.empty(lx)
    for step in range(args.steps):
        # Halos: rows are contiguous, columns go through a buffer.
        cart.Sendrecv(u[1, 1:-1].copy(), up, 0, u[lx + 1, 1:-1], down, 0)
        cart.Sendrecv(u[lx, 1:-1].copy(), down, 1, u[0, 1:-1], up, 1)
        col_send[:] = u[1:-1, 1]
        cart.Sendrecv(col_send, left, 2, col_recv, right, 2)
        if right != MPI.PROC_NULL:
            u[1:-1, ly + 1] = col_recv
        col_send[:] = u[1:-1, ly]
        cart.Sendrecv(col_send, right, 3, col_recv, left, 3)
        if left != MPI.PROC_NULL:
            u[1:-1, 0] = col_recv
        c = u[1:-1, 1:-1]
        lap = u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:] - 4 * c
        new = np.where(border, 0.0, c + alpha * lap + q * q0)
        u[1:-1, 1:-1] = new
        total = cart.allreduce(float(new.sum()), op=MPI.SUM)
        if mean_out:
            mean_out.write("%d %.17g\n" % (step, total / (args.nx * args.ny)))
        if client and step % args.every == 0:
            client.begin_step(step)
            client.put("temperature", new)  # a contiguous copy of the interior
            client.end_step()
            # Rank 0 reads the steering value and every rank applies the same.
            steer = client.steer_get("q") if cart.rank == 0 else None
            q = cart.bcast(q if steer is None else float(steer), root=0)
    if client:
        client.close()
    if mean_out:
        mean_out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
