"""A publishing process for the tests: runs client jobs given as JSON.

    python _client_worker.py            serve: one JSON job per stdin line,
                                        one JSON result per stdout line
    python _client_worker.py 'JOB'      run one job, print its result

A job is {"kind": NAME, ...}; the result {"ok": true, ...} or
{"ok": false, "error": str, "status": int or null}. The data a job publishes
is a pure function of its arguments (see make_global), so the receiving test
knows what it must get.
"""

import json
import sys
import time
import traceback

import numpy as np

import caudal

WORKER_FILE = __import__("os").path.abspath(__file__)


def make_global(seed, dtype, shape):
    """The global array of one step: random bytes viewed as dtype (so
    floating-point arrays hold NaNs, infinities and denormals too)."""
    dt = np.dtype(dtype)
    n = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    raw = np.random.default_rng(seed).integers(0, 256, size=n, dtype=np.uint8)
    return raw.view(dt).reshape(shape)


def block_of(glob, start, count, order):
    sl = tuple(slice(s, s + c) for s, c in zip(start, count))
    b = glob[sl]
    return np.asfortranarray(b) if order == "F" else np.ascontiguousarray(b)


def make_var(seed, dtype, n):
    return make_global(seed, dtype, (n,))


def client_from(job):
    return caudal.Client(
        job["rank"],
        job["size"],
        endpoint=job["endpoint"],
        token=job.get("token"),
        ring_depth=job.get("ring_depth", 0),
        slot_bytes=job.get("slot_bytes", 0),
        policy=job.get("policy"),
        block_timeout_ms=job.get("block_timeout_ms", 20000),
        connect_timeout_ms=job.get("connect_timeout_ms", 20000),
    )


def job_publish(job):
    """Declare job["arrays"] and publish job["steps"] steps of them.

    A fixed array: {"name", "dtype", "order", "shape", "start", "count",
    "seed"}; its data at step s is block_of(make_global(seed + s, ...)).
    A variable one: {"name", "dtype", "variable": true, "capacity",
    "lengths": [per step], "seed"}; at step s: make_var(seed + s, dtype,
    lengths[s]).
    """
    c = client_from(job)
    try:
        for a in job["arrays"]:
            if a.get("variable"):
                c.declare_var(a["name"], a["dtype"], a.get("capacity", 0))
            else:
                c.declare(a["name"], a["dtype"], a["shape"], a["start"], a["count"],
                          order=a["order"])
        for k, step in enumerate(job["steps"]):
            c.begin_step(step)
            for a in job["arrays"]:
                if a.get("variable"):
                    c.put_var(a["name"], make_var(a["seed"] + step, a["dtype"],
                                                  a["lengths"][k]))
                else:
                    g = make_global(a["seed"] + step, a["dtype"], a["shape"])
                    c.put(a["name"], block_of(g, a["start"], a["count"], a["order"]))
            c.end_step()
            if job.get("step_sleep"):
                time.sleep(job["step_sleep"])
        counters = c.counters()
    finally:
        if not c.closed:
            c.close()
    return {"ok": True, "counters": counters}


STEER_KEYS = ["dt", "iters", "mode", "only0", "early", "big", "text"]


def job_steer(job):
    """Read steering values before and after the receiver set them, and
    report values of this rank's own."""
    c = client_from(job)
    rank = job["rank"]
    before = {k: c.steer_get(k) for k in ("dt", "iters", "mode", "only0")}
    c.steer_set("residual", 0.5 + rank)
    c.steer_set("iteration", 1000 + rank)
    c.steer_set("state", "rank %d: ok \u2713" % rank)
    c.steer_set("ready", rank)
    deadline = time.monotonic() + 20
    while c.steer_get("go") is None:
        if time.monotonic() > deadline:
            raise TimeoutError("no 'go' from the receiver")
        time.sleep(0.002)
    after = {k: c.steer_get(k) for k in STEER_KEYS}
    c.close()
    return {"ok": True, "before": before, "after": after}


def job_abort(job):
    """Connect, declare, put half a step and die without goodbye."""
    import os

    c = client_from(job)
    c.declare("x", "float64", [4], [0], [4])
    c.begin_step(0)
    c.put("x", np.zeros(4))
    c.end_step()
    c.begin_step(1)
    sys.stdout.flush()
    os._exit(0)


JOBS = {"publish": job_publish, "steer": job_steer, "abort": job_abort}


def run(job):
    try:
        return JOBS[job["kind"]](job)
    except caudal.CaudalError as e:
        return {"ok": False, "error": str(e), "status": e.status}
    except Exception as e:  # report, do not die: the worker serves on
        return {"ok": False, "error": "%s: %s\n%s" % (type(e).__name__, e,
                                                      traceback.format_exc()),
                "status": None}


def main():
    if len(sys.argv) > 1:
        print(json.dumps(run(json.loads(sys.argv[1]))), flush=True)
        return
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        print(json.dumps(run(json.loads(line))), flush=True)


if __name__ == "__main__":
    main()
