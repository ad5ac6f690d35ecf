"""Measuring one run of one system: memory of every process it started,
latencies and times from the ranks' and the analytics' files."""

import os
import statistics
import threading
import time

import common


def _pss_kib(pid):
    """Proportional set size: shared pages (the object store, shm slots)
    split among the processes that map them, so a sum counts them once."""
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _pids():
    return {int(p) for p in os.listdir("/proc") if p.isdigit()}


class MemorySampler:
    """Peak of the summed PSS of every process that appeared after start()
    (Ray and Dask daemons detach from their parent, so a process tree would
    miss them), plus what /dev/shm holds, sampled every `period` seconds."""

    def __init__(self, period=0.1):
        self.period = period
        self.peak_kib = 0
        self.peak_shm_kib = 0
        self._stop = threading.Event()

    def __enter__(self):
        self._before = _pids() - {os.getpid()}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        while not self._stop.is_set():
            new = _pids() - self._before - {os.getpid()}
            self.peak_kib = max(self.peak_kib, sum(_pss_kib(p) for p in new))
            st = os.statvfs("/dev/shm")
            self.peak_shm_kib = max(self.peak_shm_kib,
                                    (st.f_blocks - st.f_bfree) * st.f_frsize // 1024)
            self._stop.wait(self.period)


def percentile(xs, q):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = min(len(xs) - 1, max(0, int(round(q * (len(xs) - 1)))))
    return xs[k]


def summarise(out_dir, steps):
    """The numbers of one run from its files: wall time of the simulation
    (slowest rank), latency per step (result ready minus the last rank's
    publish), drain (last result minus the simulation's last publish),
    analysed steps per second."""
    ranks = common.read_ranks(out_dir)
    results = common.read_results(out_dir)
    wall = max(r["t_end"] - r["t_start"] for r in ranks)
    s = {"wall_s": wall, "steps_published": steps, "steps_analysed": len(results),
         "publish_s_per_step": statistics.mean(r["publish_seconds"] for r in ranks) / steps}
    if results and all(r["published"] for r in ranks):
        lat = [results[k]["t"] - max(r["published"][k] for r in ranks) for k in results]
        last_pub = max(r["published"][-1] for r in ranks)
        first_pub = min(r["published"][0] for r in ranks)
        t_last = max(v["t"] for v in results.values())
        s.update(latency_ms_median=1e3 * statistics.median(lat),
                 latency_ms_p99=1e3 * percentile(lat, 0.99),
                 drain_s=t_last - last_pub,
                 analysed_steps_per_s=len(results) / max(t_last - first_pub, 1e-9))
    return s


def same_results(out_dir, reference_dir):
    """Whether every step's results equal the NumPy reference: mean to 1e-12
    relative (a sum's order differs between systems), the rest exactly."""
    import json

    with open(os.path.join(reference_dir, "reference.jsonl")) as f:
        ref = {r["step"]: r for r in map(json.loads, f)}
    got = common.read_results(out_dir)
    if sorted(got) != sorted(ref):
        return False, "steps %s analysed, %d expected" % (len(got), len(ref))
    for k, r in ref.items():
        g = got[k]
        if abs(g["mean"] - r["mean"]) > 1e-12 * abs(r["mean"]) or g["min"] != r["min"] \
                or g["max"] != r["max"] or g["hist"] != r["hist"]:
            return False, "step %d differs" % k
    return True, ""


def wait_quiet(before, timeout=20):
    """Wait until the processes a run started are gone (a system's daemons
    may take a moment), so the next run's memory is its own."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        left = _pids() - before
        if not any(_pss_kib(p) for p in left):
            return True
        time.sleep(0.2)
    return False
