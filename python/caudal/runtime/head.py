"""The head actor: catalog of arrays, step completeness, run counters.

A step is complete once every rank has finished it (published it, skipped it
or dropped it) or has left: each rank's steps strictly increase, so the
highest step a rank finished says it is done with every earlier one. The head
never waits on a later step to decide an earlier one. A complete step of an
array is analysed only if every rank's part of it is there (an empty part of
a variable-length array is a part): a rank that dropped the step, left, or
did not put the array makes that step of the array skipped, and counted by
array and step, never analysed with a hole. Complete steps are
handed to the driver in order, once; the head then forgets their references,
and the driver's windows hold what it still needs. At most `max_pending`
complete steps wait for the driver: past that, reports from the ingest actors
wait, so the pressure reaches the ranks' rings.

Blocks arrive as catalog.BlockRef, made by the ingest, and leave in a
CompleteStep as they came.
"""

import asyncio
import collections
import time
from typing import Dict, NamedTuple

import ray

from ..catalog import BlockRef, CatalogError, Declaration, Layout, build_layout


class ArrayBlocks(NamedTuple):
    """One array's part of a complete step: every block it needs is there."""

    layout: Layout
    blocks: Dict[int, BlockRef]  # rank -> its block


class CompleteStep(NamedTuple):
    """What the head hands the driver: a step that every rank finished,
    with the arrays of it that are whole (the others were skipped)."""

    step: int
    arrays: Dict[str, ArrayBlocks]  # array name -> its blocks
    completed: float  # time.time() when it became complete: the lag starts there


def start_head(nranks, max_pending=8, nodes=()):
    """The head of a run, and what each node's ingest reports to: node ->
    actor with the head's methods (connected, declare, report, ...)."""
    head = HeadActor.remote(nranks, max_pending)
    return head, {node: head for node in nodes}


@ray.remote(num_cpus=0)
class HeadActor:
    def __init__(self, nranks, max_pending=8):
        self.nranks = nranks
        self.max_pending = max_pending
        self.decls = collections.defaultdict(dict)  # array -> rank -> Declaration
        self.layouts = {}
        self.high = {}  # rank -> highest step finished; absent until it connects
        self.done = {}  # rank -> (clean, counters or message)
        # step -> array -> rank -> BlockRef, until the step is complete
        self.steps = collections.defaultdict(lambda: collections.defaultdict(dict))
        self.ready = collections.deque()  # CompleteStep for the driver
        self.values = {}  # (rank, key) -> value the simulation reported
        self.errors = []  # every error, in order: for the summary
        self.declaration_errors = []  # those that are declaration errors
        self.drops = collections.Counter()  # rank -> steps dropped, as the rank counted them
        self.drop_ranges = collections.defaultdict(list)  # rank -> [[first, last], ...]
        self.skipped = collections.defaultdict(list)  # array -> [[first, last], ...] not analysed
        self.lost = {}  # rank -> why it left without goodbye
        self.lost_at = {}  # rank -> when (a launcher ends all ranks when one fails)
        self.changed = asyncio.Condition()
        self.next_report = collections.defaultdict(int)  # node -> number of its next report

    # ---- from the ingest actors ----------------------------------------

    async def connected(self, rank, size):
        if size != self.nranks:
            self._declaration_error("rank %d says the run has %d ranks, caudal run "
                                    "started %d" % (rank, size, self.nranks))
        self.high.setdefault(rank, -1)
        await self._notify()

    async def declare(self, decl: Declaration):
        name = decl.name
        self.decls[name][decl.rank] = decl
        if len(self.decls[name]) == self.nranks:
            try:
                self.layouts[name] = build_layout(name, self.decls[name], self.nranks)
            except CatalogError as e:
                self._declaration_error(str(e))
        await self._notify()

    async def report(self, node, seq, blocks, high):
        """A node's blocks and ranks' progress; an ingest keeps a few reports
        in flight, and they are applied in the order they were sent (seq)."""
        async with self.changed:
            await self.changed.wait_for(lambda: self.next_report[node] == seq and
                                        len(self.ready) < self.max_pending)
            self.next_report[node] = seq + 1
            for b in blocks:
                self.steps[b.step][b.array][b.rank] = b
            for rank, step in high.items():
                self.high[rank] = max(self.high.get(rank, -1), step)
            self._advance()
            self.changed.notify_all()

    async def dropped(self, rank, first, last, count):
        self.drops[rank] += count
        _add_range(self.drop_ranges[rank], first, last)

    async def reported(self, rank, key, value):
        self.values[(rank, key)] = value

    async def rank_done(self, rank, clean, info):
        self.done[rank] = (clean, info)
        if not clean:
            self.lost[rank] = str(info)
            self.lost_at[rank] = time.time()
            self.errors.append("rank %d left without goodbye: %s" % (rank, info))
        self.high.setdefault(rank, -1)
        self._advance()
        await self._notify()

    async def ingest_failed(self, node, message):
        self.errors.append(message)
        await self._notify()

    # ---- for the driver -----------------------------------------------

    async def take(self, timeout):
        """Complete steps in order (CompleteStep), whether the run is over
        (every rank left and nothing is pending), and the declaration errors
        so far (caudal run stops the run for them)."""
        async with self.changed:
            if not self.ready and not self._over():
                try:
                    await asyncio.wait_for(self.changed.wait(), timeout)
                except asyncio.TimeoutError:
                    pass
            out = list(self.ready)
            self.ready.clear()
            self.changed.notify_all()
        return out, self._over(), list(self.declaration_errors)

    async def value(self, rank, key):
        return self.values.get((rank, key))

    async def summary(self):
        counters = {r: info for r, (clean, info) in self.done.items() if clean}
        skipped_count = {name: sum(b - a + 1 for a, b in rs) for name, rs in self.skipped.items()}
        dropped = sum(self.drops.values())
        return {
            "ranks": self.nranks,
            "ranks_clean": sum(1 for c, _ in self.done.values() if c),
            "ranks_lost": dict(self.lost),
            "ranks_lost_at": dict(self.lost_at),
            "arrays_declared": sorted(self.decls),
            # Steps summed over ranks: 3 ranks dropping the same step count 3.
            "rank_steps_dropped": dropped,
            "steps_dropped_by_ranks": dropped,  # the old name, kept for readers of it
            "drops_by_rank": {r: [list(x) for x in rs] for r, rs in self.drop_ranges.items()},
            "steps_skipped": {name: [list(x) for x in rs] for name, rs in self.skipped.items()},
            "steps_skipped_count": skipped_count,
            "steps_incomplete": dict(skipped_count),  # the old name, kept for readers of it
            "steps_left_at_end": self._left(),
            "rank_counters": counters,
            "errors": list(self.errors) + self._undeclared(),
            "declaration_errors": list(self.declaration_errors) + self._undeclared(),
        }

    # ---- internals -----------------------------------------------------

    def _over(self):
        return len(self.done) == self.nranks and not self.steps and not self.ready

    def _floor(self):
        if len(self.high) < self.nranks:
            return -1  # a rank not yet connected may still publish any step
        live = [h for r, h in self.high.items() if r not in self.done]
        return min(live) if live else float("inf")

    def _declaration_error(self, message):
        """Kept apart from the other errors (ranks lost, an ingest failed):
        these stop the run, and caudal run exits 3 for them."""
        self.declaration_errors.append(message)
        self.errors.append(message)

    def _left(self):
        """Steps of each array the head still held when the run ended (not
        yet complete, or complete but not taken by the driver): neither
        analysed nor skipped, so said apart rather than lost from the count."""
        left = collections.defaultdict(list)
        held = [(s, names) for s, names in self.steps.items()]
        held += [(c.step, c.arrays) for c in self.ready]
        for step, names in sorted(held, key=lambda x: x[0]):
            for name in names:
                _add_range(left[name], step, step)
        return dict(left)

    def _undeclared(self):
        """Arrays some ranks never declared although they ended the run
        cleanly: a declaration error, whose steps were all skipped. Ranks that
        were lost may simply have died before declaring: that is said apart."""
        out = []
        for name, decls in sorted(self.decls.items()):
            missing = set(range(self.nranks)) - set(decls)
            if name in self.layouts or not missing or missing <= set(self.lost):
                continue
            try:
                build_layout(name, decls, self.nranks)
            except CatalogError as e:
                out.append("%s; every step of it was skipped" % e)
        return out

    def _advance(self):
        floor = self._floor()
        for step in sorted(s for s in self.steps if s <= floor):
            arrays = self.steps.pop(step)
            out = {}
            for name, blocks in arrays.items():
                layout = self.layouts.get(name)
                # Every rank's part, for fixed and variable arrays alike: a
                # variable array analysed with a rank's part missing would be
                # a silently wrong result (a zero-element part is present).
                if layout is None or layout.blocks_needed() - set(blocks):
                    _add_range(self.skipped[name], step, step)
                    continue
                out[name] = ArrayBlocks(layout, blocks)
            if out:
                self.ready.append(CompleteStep(step, out, time.time()))

    async def _notify(self):
        async with self.changed:
            self.changed.notify_all()


def _add_range(ranges, first, last):
    """Merge the inclusive range [first, last] into a sorted list of disjoint
    inclusive ranges, joining neighbours, so that a long run of skipped or
    dropped steps stays one entry. Ranges mostly come in order: that case
    is appended or extended in place."""
    first, last = int(first), int(last)
    if not ranges or first > ranges[-1][1] + 1:
        ranges.append([first, last])
        return
    if first >= ranges[-1][0]:
        ranges[-1][1] = max(ranges[-1][1], last)
        return
    merged = []
    for a, b in sorted(ranges + [[first, last]]):
        if merged and a <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    ranges[:] = merged
