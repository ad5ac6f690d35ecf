"""The analytics driver: calls the analyses on windows of complete steps.

It takes complete steps from the head in order (head.CompleteStep), turns
each array of a step into a StepArray (a Dask array whose chunks are the
blocks, and the grid of blocks with their nodes for the kernels, both run
next to them), keeps per array the window the analyses need (older steps are
dropped, and their objects freed with them), and calls each analysis whose
trigger fires. A StepArray is made of the step's handles (report.StepBlocks):
its blocks' references, its graph and its grid are made when an analysis
first reads it, so a step costs the driver per block only what an analysis
asks for. An analysis that raises is reported with its step and the others go on.
The reductions the analyses call are learned (receipt.Learner) and sent to
the ingests, which compute them on each block as it arrives: a StepArray
then merges the states that came with its step (receipt.py).

Deadlines. Each analysis (and each @caudal.at_end function) runs its calls
in a thread of its own, one call at a time, and the driver waits for a call
no longer than its deadline (the analysis' timeout=, else the run's
--analysis-timeout). Python cannot stop a thread, so a call past its
deadline goes on running; the driver
  - records it in errors.jsonl as timed out for its step ("timed_out": true)
    and counts it in "timeouts" (and in "failures": the run exits 1);
  - closes its Context: what the call records or steers from then on is
    discarded, and what it recorded before is discarded too (a call's
    results are written to results.jsonl only once it returned in time, so
    those of a call that timed out are all missing, never a part; a call
    that raised keeps what it recorded before);
  - skips that analysis' later steps while the call still runs, each
    recorded in errors.jsonl as skipped ("skipped": true, "running_step")
    and counted in "calls_skipped", so nothing queues up behind it (only
    the running call's own window stays held, by its arguments);
  - discards the result of the call when it returns late (nothing is written
    for it; "late_returns" counts them), and calls the analysis again from
    the next step on.
Other analyses, each in its own thread, and the simulation go on meanwhile.
"""

import collections
import functools
import json
import math
import os
import queue
import random
import threading
import time
import traceback

import numpy as np
import ray

from ..analytics import Context
from ..blocks import RAY, step_array
from ..results import ExtractStore
from . import receipt
from .head import CompleteStep
from .report import StepBlocks, Tree


def _plain(value):
    """A result as JSON can hold it."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "compute"):
        return _plain(value.compute())
    return value


class _Call:
    """One call of an analysis, run by its worker thread. What it records is
    kept here, as results.jsonl lines, until the driver takes them (the call
    returned in time) or discards them (it did not)."""

    def __init__(self, func, args, ctx):
        self.func, self.args, self.ctx = func, args, ctx
        self.lock = threading.Lock()
        self.open = True  # until the driver stopped waiting for it
        self.lines = []
        self.extracts = []  # results.Extract, written with the lines
        self.error = None  # (repr, traceback) of what it raised
        self.seconds = None
        self.done = threading.Event()

    def run(self):
        t0 = time.perf_counter()
        try:
            self.func(*self.args, self.ctx)
        except BaseException as e:  # SystemExit too: it must not stop the thread
            self.error = (repr(e), traceback.format_exc())
        finally:
            self.args = self.ctx = None  # the window's steps are not kept alive by it
            self.seconds = time.perf_counter() - t0
            self.done.set()

    def close(self):
        """Stop accepting records and steering; True if it had returned."""
        with self.lock:
            self.open = False
            return self.done.is_set()

    def record(self, line):
        with self.lock:
            if self.open:
                self.lines.append(line)

    def extract(self, e):
        with self.lock:
            if self.open:
                self.extracts.append(e)


class _Worker:
    """The thread that runs one analysis' calls, one at a time, so that a
    hung analysis holds up only itself."""

    def __init__(self, name):
        self.q = queue.SimpleQueue()
        self.call = None  # the call submitted last
        self.step = None  # its step
        self.late = False  # that call ran past its deadline
        self.thread = threading.Thread(target=self._run, name="caudal-analysis-%s" % name,
                                       daemon=True)  # a hung call must not hold up the exit
        self.thread.start()

    def busy(self):
        return self.call is not None and not self.call.done.is_set()

    def submit(self, call, step):
        self.call, self.step, self.late = call, step, False
        self.q.put(call)

    def stop(self):
        self.q.put(None)

    def _run(self):
        while True:
            call = self.q.get()
            if call is None:
                return
            call.run()


class Driver:
    """Calls the analyses on the complete steps the head hands over.

    analysis_timeout: the run's default deadline per call, in seconds (None
    or math.inf: none); an analysis' own timeout= overrides it."""

    BROKEN_WAIT = 2.0  # seconds a call broken by a stop is waited for (_settle_broken)
    TICK = 1.0  # while a call runs, while_waiting() is called about this often
    LAG_SAMPLES = 4096  # lags kept for the quantiles: a uniform sample past that

    def __init__(self, analyses, head, ingests, run_dir, finishers=(), analysis_timeout=300.0,
                 tree=None):
        from ..analytics import array_dims, check_timeout

        self.analyses = analyses
        self.dims = array_dims(analyses)
        # Where reductions over a step that came through relays go.
        self.tree = tree if tree is not None else Tree(RAY.executors, RAY.relays)
        self.finishers = list(finishers)
        self.head = head
        self.ingests = ingests
        self.run_dir = run_dir
        self.analysis_timeout = check_timeout(analysis_timeout, "the analysis timeout")
        depth = collections.defaultdict(int)
        for a in analyses:
            for name in a.arrays:
                depth[name] = max(depth[name], a.window)
        self.windows = {n: collections.deque(maxlen=d) for n, d in depth.items()}
        self.layouts = {}  # array -> Layout, as the head built them
        self.taking = None  # the head's take() in flight (see take)
        self.backlog = collections.deque()  # steps taken, not analysed yet (see poll)
        self.over = False
        self.broken = []  # calls whose wait a signal broke: (analysis, step, call, t0, timeout)
        self.results = open(run_dir / "results.jsonl", "w")
        self.failures = open(run_dir / "errors.jsonl", "w")
        # a line per step taken: when it was complete and analysed, for the
        # report's lag and throughput (results.py)
        self.pipeline = open(run_dir / "pipeline.jsonl", "w", buffering=1)  # line by line
        self.extract_store = ExtractStore(run_dir)
        self.lock = threading.Lock()  # the two files
        self.counts = collections.Counter()
        self.lags = []  # a uniform sample of LAG_SAMPLES, so memory stays bounded
        self.nlags = 0
        self.sampler = random.Random(0)
        self.seconds = collections.Counter()
        self.last_step = None
        self.last_lag = None
        self.arrays_analysed = {}  # array -> [steps a call got it new, last such step]
        self.declaration_errors = []  # the head's, as of the last poll
        self.workers = {}  # id of an analysis or finisher -> its _Worker
        self.running = None  # (name, step, perf_counter at start) of the call waited for
        # caudal run's progress display, called while a call runs and between
        # the steps of a backlog: the run's loop is waiting, and the display
        # would freeze
        self.while_waiting = None
        # The reductions computed at receipt; CAUDAL_RECEIPT=0: none (the
        # benchmarks' baseline, and tests of the paths behind it).
        self.learner = (receipt.Learner(analyses) if os.environ.get("CAUDAL_RECEIPT") != "0"
                        else None)

    def close(self):
        for w in self.workers.values():
            w.stop()  # a thread whose call still runs ends when it returns
        with self.lock:
            self.results.close()
            self.failures.close()
            self.pipeline.close()

    def poll(self, timeout=0.2):
        """Analyse what is complete; True once the run is over. A signal
        (caudal run's Ctrl-C) may break it anywhere: the calls it broke are
        settled, and the steps taken and not analysed yet are analysed, by
        the next poll, so none is lost."""
        self._settle_broken()
        if not self.backlog:
            steps, self.over = self.take(timeout)
            self.backlog.extend(steps)
        while self.backlog:
            self.analyse(self.backlog.popleft())
            if self.while_waiting is not None:  # a backlog of steps takes a while too
                self.while_waiting()
        return self.over

    def take(self, timeout=0.2):
        """The complete steps the head holds (waiting up to timeout for
        one), and whether the run is over; the layouts of their arrays kept.
        The head gives steps up when it answers: a call whose wait a signal
        broke (caudal run's Ctrl-C) is kept and read by the next take, so
        its steps are analysed, not lost."""
        if self.taking is None:
            self.taking = self.head.take.remote(timeout, len(self.layouts))
        steps, over, self.declaration_errors, layouts = ray.get(self.taking)
        self.taking = None
        self.layouts.update(layouts)
        return steps, over

    def analyse(self, complete: CompleteStep):
        t0 = time.perf_counter()
        step = complete.step
        updated = set()
        blocks = StepBlocks(step, complete.blocks)
        learner = self.learner
        for name in complete.arrays:
            if name in self.windows:
                layout = self.layouts[name]
                window = self.windows[name]
                before = window[-1].step if window else None
                sa = step_array(
                    layout, functools.partial(blocks.of, name), step,
                    token=blocks.token, tree=blocks.tree(name, self.tree),
                    received=(None if learner is None
                              else receipt.Received(blocks, name, layout, learner, self.tree,
                                                    before)))
                sa.name, sa.dims = name, self.dims.get(name)
                window.append(sa)
                updated.add(name)
        self.last_step = step
        called = False
        for a in self.analyses:
            fresh = [n in updated for n in a.arrays]
            if not (all(fresh) if a.trigger == "and" else any(fresh)):
                continue
            views = [list(self.windows[n])[-a.window:] for n in a.arrays]
            if a.trigger == "and" and any(len(v) < a.window for v in views):
                continue  # not enough history yet
            called |= self._call(a, step, *views)
        # A step on which no analysis ran (no trigger fired, too little
        # history, or every analysis it fired still busy) is not "analysed".
        self.counts["steps" if called else "steps_without_call"] += 1
        if called:
            for name in updated:
                c = self.arrays_analysed.setdefault(name, [0, step])
                c[0] += 1
                c[1] = step
        plan = learner.step_done(updated) if learner is not None and called else None
        if plan is not None:  # no answer awaited: it applies from the ingests' next events
            for ingest in self.ingests:
                ingest.set_plan.remote(plan)
            self.counts["plans_sent"] += 1
        self.seconds["driver"] += time.perf_counter() - t0
        now = time.time()
        self._lag(now - complete.completed)
        self.pipeline.write('{"step": %d, "complete": %.6f, "analysed": %.6f, "called": %s}\n'
                            % (step, complete.completed, now, "true" if called else "false"))

    def _lag(self, lag):
        self.last_lag = lag
        self.nlags += 1
        if len(self.lags) < self.LAG_SAMPLES:
            self.lags.append(lag)
        else:  # reservoir sampling: every lag equally likely to be kept
            k = self.sampler.randrange(self.nlags)
            if k < self.LAG_SAMPLES:
                self.lags[k] = lag

    def finish(self):
        """Call the @caudal.at_end functions, after the last step."""
        for f in self.finishers:
            self._call(f, self.last_step)

    def _call(self, a, step, *args):
        """One call of an analysis or finisher in its thread, waited for up
        to its deadline; a failure or a timeout is recorded with its step and
        the run goes on. False if it was skipped (its last call still runs)."""
        worker = self.workers.get(id(a))  # by identity: two may compare equal
        if worker is None:
            worker = self.workers[id(a)] = _Worker(a.name)
        elif worker.busy():
            self.counts["calls_skipped"] += 1
            self._error({"analysis": a.name, "step": step,
                         "error": "skipped: its call for step %s is still running%s"
                                  % (worker.step, ", past its deadline" if worker.late else ""),
                         "skipped": True, "running_step": worker.step})
            return False
        elif worker.late:
            worker.late = False
            self.counts["late_returns"] += 1  # its result was discarded
        call = _Call(a.func, args, None)
        call.ctx = Context(step, a.name, self.run_dir,
                           lambda key, value, rank: self._steer(call, key, value, rank),
                           lambda analysis, step_, name, value:
                               self._record(call, analysis, step_, name, value),
                           self._reported,
                           lambda e: self._extract(call, e))
        timeout = a.timeout if a.timeout is not None else self.analysis_timeout
        t1 = time.perf_counter()
        worker.submit(call, step)
        self.running = (a.name, step, t1)
        try:
            self._wait(call, t1, timeout)
        except BaseException:
            # A signal broke the wait: the call runs on, and what it
            # records is taken by the next poll (_settle_broken).
            self.broken.append((a, step, call, t1, timeout))
            raise
        finally:
            self.running = None
        self._settle(a, step, call, t1, timeout)
        return True

    def _wait(self, call, t1, timeout):
        """Wait for the call up to its deadline, calling while_waiting()
        every TICK seconds meanwhile."""
        end = None if timeout is None or math.isinf(timeout) else t1 + timeout
        while True:
            left = self.TICK if end is None else min(self.TICK, end - time.perf_counter())
            if left <= 0 or call.done.wait(left):
                return
            if self.while_waiting is not None:
                self.while_waiting()

    def _settle_broken(self):
        """The calls a signal broke the wait of, each waited for up to
        BROKEN_WAIT more (the run is being stopped: Ray itself may be going,
        under scancel, and caudal run must end within Slurm's KillWait) and
        settled; their steps count as analysed."""
        while self.broken:
            a, step, call, t1, timeout = self.broken[0]
            wait = self.BROKEN_WAIT
            if timeout is not None and not math.isinf(timeout):
                wait = min(wait, max(0.0, t1 + timeout - time.perf_counter()))
            call.done.wait(wait)
            self.broken.pop(0)
            self.counts["steps"] += 1
            self._settle(a, step, call, t1, timeout, stopped=True)

    def _settle(self, a, step, call, t1, timeout, stopped=False):
        """What a call that returned, raised or passed its deadline leaves:
        its records, its error, the counts. stopped: a broken call that did
        not return while the run was being stopped."""
        worker = self.workers[id(a)]
        returned = call.close()
        self.seconds[a.name] += time.perf_counter() - t1
        if not returned and stopped:
            worker.late = True
            self.counts["failures"] += 1
            self._error({"analysis": a.name, "step": step, "stopped": True,
                         "error": "the run was stopped while it ran; what it recorded is lost"})
        elif not returned:
            worker.late = True
            self.counts["timeouts"] += 1
            self.counts["failures"] += 1
            self._error({"analysis": a.name, "step": step,
                         "error": "timed out after %g s" % timeout, "timed_out": True})
        elif call.error is not None:
            self.counts["failures"] += 1
            self._write(call.lines, call.extracts, a.name)  # what it recorded before it raised
            self._error({"analysis": a.name, "step": step, "error": call.error[0],
                         "traceback": call.error[1]})
        else:
            self.counts["calls"] += 1
            self._write(call.lines, call.extracts, a.name)
        if returned and call.error is None and self.learner is not None:
            self.learner.returned(a)

    def _error(self, entry):
        with self.lock:
            self.failures.write(json.dumps(entry) + "\n")
            self.failures.flush()

    def _write(self, lines, extracts=(), analysis=None):
        for e in extracts:
            try:
                self.extract_store.write(e)
                self.counts["extracts"] += 1
            except ValueError as err:  # a misfit check() could not see: two in one call
                self._error({"analysis": analysis, "step": e.step, "error": str(err)})
        if not lines:
            return
        with self.lock:
            self.results.write("".join(lines))
            self.results.flush()
        self.counts["results"] += len(lines)

    def _steer(self, call, key, value, rank):
        if not isinstance(value, (int, float, str)) or isinstance(value, bool):
            raise TypeError("a steering value is a float, int or str, not %r" % (value,))
        with call.lock:  # a call past its deadline no longer steers
            if not call.open:
                return
            for ingest in self.ingests:
                ingest.steer.remote(rank, key, value)

    def _record(self, call, analysis, step, name, value):
        # Converted in the caller's thread: a value JSON cannot hold fails
        # that call, with its step.
        call.record(json.dumps({"analysis": analysis, "step": step, "name": name,
                                "value": _plain(value)}) + "\n")

    def _extract(self, call, e):
        self.extract_store.check(e)  # in the caller's thread: a misfit fails that call
        call.extract(e)

    def _reported(self, key, rank):
        return ray.get(self.head.value.remote(rank, key))

    def progress(self):
        """Where the analyses are, for caudal run's progress display."""
        running = self.running
        return {"last_step": self.last_step, "lag": self.last_lag,
                "running": (None if running is None
                            else (running[0], running[1], time.perf_counter() - running[2])),
                "calls": self.counts["calls"], "failures": self.counts["failures"],
                "arrays": {a: tuple(c) for a, c in self.arrays_analysed.items()}}

    def summary(self):
        lags = sorted(self.lags)
        # None, not NaN, with no step: summary.json must stay valid JSON.
        pick = ((lambda q: lags[min(len(lags) - 1, int(q * len(lags)))]) if lags
                else (lambda q: None))
        late = sum(1 for w in self.workers.values() if w.late and not w.busy())
        return {
            "steps_analysed": self.counts["steps"],
            "steps_without_call": self.counts["steps_without_call"],
            "calls": self.counts["calls"],
            "failures": self.counts["failures"],
            "timeouts": self.counts["timeouts"],
            "calls_skipped": self.counts["calls_skipped"],
            "calls_running": sum(1 for w in self.workers.values() if w.busy()),
            "late_returns": self.counts["late_returns"] + late,
            "results": self.counts["results"],
            "extracts": self.counts["extracts"],
            "analysis_timeout": (None if self.analysis_timeout is None
                                 or math.isinf(self.analysis_timeout) else self.analysis_timeout),
            "lag_seconds_median": pick(0.5),
            "lag_seconds_p99": pick(0.99),
            "seconds_per_analysis": dict(self.seconds),
            "receipt": (dict(self.learner.summary(), plans_sent=self.counts["plans_sent"])
                        if self.learner is not None else None),
        }
