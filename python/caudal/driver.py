"""The analytics driver: calls the analyses on windows of complete steps.

It takes complete steps from the head in order, turns each array's block
references into a StepArray (a Dask array whose chunks are the blocks, and
the grid of blocks with their nodes for the kernels, both run next to them),
keeps per array the window the analyses need (older steps are dropped, and
their objects freed with them), and calls each analysis whose trigger fires.
An analysis that raises is reported with its step and the others go on.
"""

import collections
import json
import math
import time
import traceback

import numpy as np
import ray

from .analytics import Context
from .blocks import step_array


def _plain(value):
    """A result as JSON can hold it."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "compute"):
        return _plain(value.compute())
    return value


class Driver:
    def __init__(self, analyses, head, ingests, run_dir, finishers=()):
        self.analyses = analyses
        self.finishers = list(finishers)
        self.head = head
        self.ingests = ingests
        self.run_dir = run_dir
        depth = collections.defaultdict(int)
        for a in analyses:
            for name in a.arrays:
                depth[name] = max(depth[name], a.window)
        self.windows = {n: collections.deque(maxlen=d) for n, d in depth.items()}
        self.results = open(run_dir / "results.jsonl", "w")
        self.failures = open(run_dir / "errors.jsonl", "w")
        self.counts = collections.Counter()
        self.lags = []
        self.seconds = collections.Counter()
        self.last_step = None
        self.head_errors = []

    def close(self):
        self.results.close()
        self.failures.close()

    def poll(self, timeout=0.2):
        """Analyse what is complete; True once the run is over."""
        steps, over, errors = ray.get(self.head.take.remote(timeout))
        self.head_errors = errors
        for step, arrays, completed in steps:
            self.analyse(step, arrays, completed)
        return over

    def analyse(self, step, arrays, completed):
        t0 = time.perf_counter()
        updated = set()
        for name, (layout, refs, counts, nodes) in arrays.items():
            if name in self.windows:
                self.windows[name].append(step_array(layout, refs, step, nodes, counts))
                updated.add(name)
        self.counts["steps"] += 1
        self.last_step = step
        for a in self.analyses:
            fresh = [n in updated for n in a.arrays]
            if not (all(fresh) if a.trigger == "and" else any(fresh)):
                continue
            views = [list(self.windows[n])[-a.window:] for n in a.arrays]
            if a.trigger == "and" and any(len(v) < a.window for v in views):
                continue  # not enough history yet
            self._call(a, step, *views)
        self.seconds["driver"] += time.perf_counter() - t0
        self.lags.append(time.time() - completed)

    def finish(self):
        """Call the @caudal.at_end functions, after the last step."""
        for f in self.finishers:
            self._call(f, self.last_step)

    def _call(self, a, step, *args):
        """One call of an analysis or finisher; a failure is recorded with
        its step and the run goes on."""
        ctx = Context(step, a.name, self.run_dir, self._steer, self._record, self._reported)
        t1 = time.perf_counter()
        try:
            a.func(*args, ctx)
            self.counts["calls"] += 1
        except Exception as e:
            self.counts["failures"] += 1
            entry = {"analysis": a.name, "step": step, "error": repr(e),
                     "traceback": traceback.format_exc()}
            self.failures.write(json.dumps(entry) + "\n")
            self.failures.flush()
        self.seconds[a.name] += time.perf_counter() - t1

    def _steer(self, key, value, rank):
        if not isinstance(value, (int, float, str)) or isinstance(value, bool):
            raise TypeError("a steering value is a float, int or str, not %r" % (value,))
        for ingest in self.ingests:
            ingest.steer.remote(rank, key, value)

    def _record(self, analysis, step, name, value):
        self.results.write(json.dumps({"analysis": analysis, "step": step, "name": name,
                                       "value": _plain(value)}) + "\n")
        self.results.flush()
        self.counts["results"] += 1

    def _reported(self, key, rank):
        return ray.get(self.head.value.remote(rank, key))

    def summary(self):
        lags = sorted(self.lags)
        pick = (lambda q: lags[min(len(lags) - 1, int(q * len(lags)))]) if lags else (lambda q: math.nan)
        return {
            "steps_analysed": self.counts["steps"],
            "calls": self.counts["calls"],
            "failures": self.counts["failures"],
            "results": self.counts["results"],
            "lag_seconds_median": pick(0.5),
            "lag_seconds_p99": pick(0.99),
            "seconds_per_analysis": dict(self.seconds),
        }
