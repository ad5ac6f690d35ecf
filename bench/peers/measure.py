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


TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid):
    """User plus system CPU seconds of a process so far."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2:].split()  # comm may hold spaces
    return (int(fields[11]) + int(fields[12])) / TICK


def role(pid):
    """What a process is, for the CPU table: the ranks, the MPI launcher,
    and each kind of Caudal's and Ray's processes by name."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return "?"
    if not argv:
        return "?"
    line = " ".join(argv)
    name = os.path.basename(argv[0])
    if argv[0].startswith("ray::"):
        return argv[0].split()[0].split(".")[0]  # ray::IngestActor(.method), ray::IDLE ...
    if argv[1:3] == ["-m", "caudal"]:
        return "caudal run (driver)"
    if "heat.py" in line:
        return "rank"
    if name in ("mpiexec", "mpiexec.hydra", "hydra_pmi_proxy", "mpirun"):
        return "mpiexec"
    for key in ("gcs_server", "raylet", "default_worker.py", "dashboard/agent.py",
                "runtime_env/agent", "dashboard/dashboard.py", "log_monitor.py", "monitor.py",
                "caudal.runtime"):
        if key in line:
            return os.path.basename(key).replace(".py", "")
    return name


class MemorySampler:
    """Peak of the summed PSS of every process that appeared after start()
    (Ray and Dask daemons detach from their parent, so a process tree would
    miss them), plus what /dev/shm holds, sampled every `period` seconds;
    and each such process's CPU seconds, as last seen (cpu: pid -> (role,
    seconds); a process's last `period` before it exits is not seen)."""

    def __init__(self, period=0.1):
        self.period = period
        self.peak_kib = 0
        self.peak_shm_kib = 0
        self.cpu = {}
        self.pss_kib = {}  # pid -> its own peak PSS
        self.series = []  # (time, {role: CPU seconds of its processes so far})
        self._stop = threading.Event()

    def __enter__(self):
        self._before = _pids() - {os.getpid()}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def cpu_by_role(self, leave_out=("rank", "mpiexec")):
        """CPU seconds summed per role, without the roles left out."""
        out = {}
        for r, sec in self.cpu.values():
            if r not in leave_out:
                out[r] = out.get(r, 0.0) + sec
        return out

    def cpu_between(self, t0, t1, leave_out=("rank", "mpiexec")):
        """CPU seconds per role spent between the last sample at or before
        t0 and the first at or after t1 (a run's steady state, without its
        start and end), and those samples' times."""
        before = [x for x in self.series if x[0] <= t0]
        after = [x for x in self.series if x[0] >= t1]
        if not before or not after:
            return None
        (ta, a), (tb, b) = before[-1], after[0]
        return {r: b[r] - a.get(r, 0.0) for r in b if r not in leave_out}, ta, tb

    def pss_by_role(self):
        """Each process's own peak PSS in MiB, summed per role."""
        out = {}
        for p, kib in self.pss_kib.items():
            r = self.cpu.get(p, ("?", 0))[0]
            out[r] = out.get(r, 0.0) + kib / 1024
        return out

    def _run(self):
        while not self._stop.is_set():
            new = _pids() - self._before - {os.getpid()}
            pss = {p: _pss_kib(p) for p in new}
            self.peak_kib = max(self.peak_kib, sum(pss.values()))
            for p, kib in pss.items():
                self.pss_kib[p] = max(self.pss_kib.get(p, 0), kib)
            for p in new:
                sec = _cpu_s(p)
                if sec is None:
                    continue
                # Read each time: a fork takes its role once exec'd, a Ray
                # worker once it names itself (ray::IngestActor).
                r = role(p)
                if r == "?" and p in self.cpu:  # gone meanwhile
                    r = self.cpu[p][0]
                self.cpu[p] = (r, sec)
            self.series.append((time.time(), self.cpu_by_role(leave_out=())))
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
