"""What `caudal run` shows while it runs.

On a terminal: a live table (rich) on stderr, redrawn twice a second, with
per array the steps complete (every rank's block arrived) and analysed,
their last step and the steps skipped; and for the run the ranks, the
newest step published, steps waiting, the lag, the ingest rate, the object
store's use, rank-steps dropped and failed calls. It is cleared at the end,
where caudal run prints its one-line summary.

Elsewhere (a batch job's log): the same as one terse line every
`--progress SECONDS` (default 30; 0: none), so a job's log shows where it
was without flooding it.

The figures come from the head (`HeadActor.progress`, one cheap call), the
driver (its counters) and, at most every STORE_EVERY seconds, the object
stores' use as Ray's resources count it (store_use).
"""

import time

STORE_EVERY = 5.0  # seconds between asks for the object store's use
REDRAW = 0.5  # seconds between redraws on a terminal
RUNNING_SHOWN = 2.0  # seconds a call runs before the display names it


def _mib(n):
    return "%.0f MiB" % (n / 2**20) if n >= 2**20 else "%.0f KiB" % (n / 2**10)


def _step(s):
    return "-" if s is None else str(s)


def store_use():
    """(bytes used, capacity) of the object stores over all nodes, or None.
    Ray counts the store's use against its `object_store_memory` resource:
    capacity less what is available is what objects hold (a GCS call of
    about a millisecond)."""
    import ray

    try:
        cap = ray.cluster_resources().get("object_store_memory")
        avail = ray.available_resources().get("object_store_memory", 0.0)
    except Exception:  # Ray going down: the display says unknown
        return None
    return None if not cap else (max(0.0, cap - avail), cap)


class Progress:
    """Fed a snapshot (head's progress, the driver's) about every second by
    caudal run's loop; shows it as a live table or a periodic line."""

    def __init__(self, stream, interactive, every=30.0, clock=time.monotonic):
        self.stream = stream
        self.interactive = interactive
        self.every = every
        self.clock = clock
        self.t0 = clock()
        self.last_shown = self.t0  # the first line after `every` seconds
        self.last_update = self.t0 - 1.0
        self.last_blocks = (self.t0, 0)
        self.rate = 0.0
        self.store = None  # store_use(), as last asked
        self.store_asked = None
        self.live = None
        if interactive:
            from rich.console import Console
            from rich.live import Live

            self.live = Live(console=Console(file=stream), refresh_per_second=1 / REDRAW,
                             transient=True)
            self.live.start()

    def due(self):
        """Whether update() would show something now: caudal run asks the
        head only then (a batch log's line every `every` seconds costs the
        run one call per line, not one per second)."""
        now = self.clock()
        if self.interactive:
            return now - self.last_update >= 1.0
        return bool(self.every) and now - self.last_shown >= self.every

    def update(self, head, driver):
        """head: HeadActor.progress(); driver: Driver.progress()."""
        now = self.last_update = self.clock()
        t, n = self.last_blocks
        if now > t:
            self.rate = (head["blocks"] - n) / (now - t)
            self.last_blocks = (now, head["blocks"])
        if self.store_asked is None or now - self.store_asked >= STORE_EVERY:
            self.store, self.store_asked = store_use(), now
        if self.live is not None:
            self.live.update(self._table(head, driver, now))
        elif self.every and now - self.last_shown >= self.every:
            self.last_shown = now
            print(self.line(head, driver, now), file=self.stream, flush=True)

    def _store_text(self):
        if self.store is None:
            return "unknown"
        used, cap = self.store
        return "%s of %s" % (_mib(used), _mib(cap))

    def line(self, head, driver, now=None):
        now = self.clock() if now is None else now
        arrays = "; ".join(
            "%s %d/%d" % (a, (head["complete"].get(a) or (0, None))[0], driver["arrays"][a][0])
            for a in sorted(driver["arrays"]))
        return ("caudal run: %5.0f s, ranks %d/%d, step %s published, %s analysed "
                "(arrays complete/analysed: %s), %d waiting, lag %s, %.0f blocks/s, store %s, "
                "%d rank-steps dropped, %d failed"
                % (now - self.t0, head["ranks"] - head["ranks_left"], head["nranks"],
                   _step(head["published"]), _step(driver["last_step"]), arrays or "none yet",
                   head["waiting"] + head["ready"],
                   "-" if driver["lag"] is None else "%.2f s" % driver["lag"], self.rate,
                   self._store_text(), head["rank_steps_dropped"], driver["failures"])
                + _running(driver, ", "))

    def _table(self, head, driver, now):
        from rich.table import Table

        t = Table(title="caudal run, %.0f s: ranks %d of %d connected%s"
                  % (now - self.t0, head["ranks"] - head["ranks_left"], head["nranks"],
                     ", %d left" % head["ranks_left"] if head["ranks_left"] else ""),
                  title_justify="left", expand=False)
        for col in ("array", "complete", "last complete", "analysed", "last analysed",
                    "skipped"):
            t.add_column(col, justify="left" if col == "array" else "right")
        names = sorted(set(head["complete"]) | set(driver["arrays"]))
        for a in names:
            n, last = head["complete"].get(a) or (0, None)
            m, mlast = driver["arrays"].get(a) or (0, None)
            t.add_row(a, str(n), _step(last), str(m), _step(mlast),
                      str(head["skipped"].get(a, 0)))
        t.caption = ("newest step %s, every rank to %s; %d steps waiting; lag %s; "
                     "%.0f blocks/s; object store %s; %d rank-steps dropped; "
                     "%d calls, %d failed"
                     % (_step(head["newest"]), _step(head["published"]),
                        head["waiting"] + head["ready"],
                        "-" if driver["lag"] is None else "%.2f s" % driver["lag"], self.rate,
                        self._store_text(), head["rank_steps_dropped"], driver["calls"],
                        driver["failures"])
                     + _running(driver, "; "))
        t.caption_justify = "left"
        return t

    def close(self):
        if self.live is not None:
            self.live.stop()
            self.live = None


def _running(driver, sep):
    """The call the analyses wait for, once it has run RUNNING_SHOWN
    seconds: what holds the run while the counts stand still."""
    running = driver.get("running")
    if running is None or running[2] < RUNNING_SHOWN:
        return ""
    name, step, seconds = running
    return "%sanalysis %s on step %s for %.0f s" % (sep, name, step, seconds)
