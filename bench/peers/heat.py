"""The common simulation of the peer benchmark: every system is fed by it.

    mpiexec -n N python bench/peers/heat.py --system NAME --block BX BY --steps T --out DIR
                    [--interval SECONDS] [--reference]

Each rank owns a BX x BY block of the heat equation (common.Heat), and every
step hands its block to the system's Bridge (bench/peers/systems/NAME.py;
"none" publishes nothing: the baseline). Rank R writes DIR/rank-R.json with
its wall time and, per step, when its publishing call returned. With
--reference, rank 0 gathers every step's field and writes the NumPy answer
to DIR/reference.jsonl (a check run, not a timed one). With --interval each
step starts no earlier than that many seconds after the one before (a paced
simulation, for latencies that are not queueing behind earlier steps).
"""

import argparse
import importlib
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
from mpi4py import MPI  # noqa: E402

import common  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--system", required=True)
    ap.add_argument("--block", type=int, nargs=2, required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--reference", action="store_true")
    ap.add_argument("--interval", type=float, default=0.0)
    args = ap.parse_args()
    comm = MPI.COMM_WORLD
    heat = common.Heat(comm, *args.block)
    bridge = None
    if args.system != "none":
        mod = importlib.import_module("systems." + args.system.replace("-", "_"))
        bridge = mod.Bridge(heat.cart, heat.shape, heat.start, heat.count, args.out)
    ref = None
    if args.reference and heat.cart.rank == 0:
        ref = open(os.path.join(args.out, "reference.jsonl"), "w")
    published = []
    spent = 0.0
    heat.cart.Barrier()
    t_start = time.time()
    for step in range(args.steps):
        if args.interval:
            time.sleep(max(0.0, t_start + step * args.interval - time.time()))
        block = heat.step()
        if bridge is not None:
            t0 = time.perf_counter()
            bridge.publish(step, block)
            spent += time.perf_counter() - t0
            published.append(time.time())
        if args.reference:
            blocks = heat.cart.gather((heat.start, block), root=0)
            if ref:
                field = np.zeros(heat.shape)
                for (x0, y0), b in blocks:
                    field[x0:x0 + b.shape[0], y0:y0 + b.shape[1]] = b
                ref.write(json.dumps(dict(step=step, **common.analyse(field))) + "\n")
    t_loop = time.time()
    if bridge is not None:
        bridge.close()
    heat.cart.Barrier()
    t_end = time.time()
    if ref:
        ref.close()
    with open(os.path.join(args.out, "rank-%d.json" % heat.cart.rank), "w") as f:
        json.dump({"rank": heat.cart.rank, "size": heat.cart.size, "shape": heat.shape,
                   "t_start": t_start, "t_loop": t_loop, "t_end": t_end,
                   "publish_seconds": spent, "published": published}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
