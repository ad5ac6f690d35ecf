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

What the head holds per step does not grow with the ranks or the nodes: it
takes a report.Part per call from each of its children (up to HEAD ingests,
or the top relays of a tree above more: relay.py), and keeps per child the
number of ranks it saw and its floor (the highest step every rank below it
still connected finished), per pending step and array the count of the
blocks that arrived, and per step a handle of its blocks per child, which it
never looks into. Every rank seen and every floor past a step: the step is
complete, and an array whole when its count is the number of blocks its
layout needs. The handles go to the driver in a CompleteStep, which resolves
them into catalog.BlockRefs only when an analysis reads the array
(report.StepBlocks). The ranks' introductions (connected, declare) come a
batch per ingest (`introduce`: the ranks of a node that start together in
one call), and so do their goodbyes (`ranks_done`); dropped once per rank's
range of drops; through the relays, never per step.
"""

import collections
import functools
import math
import threading
import time
from typing import Any, NamedTuple, Tuple

import ray

from ..catalog import CatalogError, Declaration, build_layout
from .relay import Relay
from .report import state


class CompleteStep(NamedTuple):
    """What the head hands the driver: a step that every rank finished,
    the arrays of it that are whole (the others were skipped), and its
    blocks, every array's, as handles (report.StepBlocks resolves them)."""

    step: int
    arrays: Tuple[str, ...]  # the whole ones; their layouts come with take()
    completed: float  # time.time() when it became complete: the lag starts there
    blocks: Tuple[Any, ...] = ()  # handles: report.Leaf or report.Branch


class _Pending:
    """A step not complete yet: blocks counted per array, and their handles."""

    __slots__ = ("blocks", "counts")

    def __init__(self):
        self.counts = collections.Counter()
        self.blocks = []


GROUP = 16  # children per relay
HEAD = 4  # children of the head past which relays take over


def start_head(nranks, max_pending=8, ingests=(), group=GROUP, where=None, head_children=HEAD):
    """The head of a run, and what each ingest calls: ingest name -> the
    head itself (up to `head_children` ingests) or the relay of the
    ingest's group, which has the head's methods (introduce,
    report, ...). Past that, relays in a tree: each takes `group` children
    (ingests, or relays of the level below), and levels are added until
    `head_children` or fewer report to the head. So no actor takes more
    than `group` calls a step (relay.py), the head `head_children`.
    ingests: the names the ingest actors report under (in situ, their Ray
    node ids); where: ingest name -> Ray node id, to start each relay on
    the node of the first ingest below it (None: anywhere, for a load
    generator whose nodes are not Ray's)."""
    from ..blocks import on_node

    if group < 2 or head_children < 1:
        raise ValueError("a relay takes at least 2 children and the head 1, not %d and %d"
                         % (group, head_children))
    from .report import IN_FLIGHT

    # A thread per call that may wait: each child's reports in flight, and
    # the driver's take beside them.
    head = HeadActor.options(max_concurrency=head_children * IN_FLIGHT + 16).remote(
        nranks, max_pending)
    ingests = list(ingests)
    sizes = []  # relays per level, bottom up
    n = len(ingests)
    while n > head_children:
        n = -(-n // group)
        sizes.append(n)
    above = [head]  # the level above the one made next (top down)
    for k in reversed(range(len(sizes))):
        level = []
        for j in range(sizes[k]):
            first = ingests[j * group ** (k + 1)]  # the first ingest below it
            options = on_node(where[first]) if where else {}
            parent = head if k == len(sizes) - 1 else above[j // group]
            level.append(Relay.options(**options).remote(parent, "relay-%d-%d" % (k, j)))
        above = level
    if not sizes:
        return head, {name: head for name in ingests}
    return head, {name: above[i // group] for i, name in enumerate(ingests)}


def _locked(method):
    """The head is a threaded actor (a call costs it about a third less CPU
    than on an asyncio actor: docs/architecture.md), its calls run at once:
    each method holds the lock of its condition, as the event loop's one
    thread ran one at a time."""
    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self.changed:
            return method(self, *args, **kwargs)
    return locked


@ray.remote(num_cpus=0)
class HeadActor:
    def __init__(self, nranks, max_pending=8):
        self.nranks = nranks
        self.max_pending = max_pending
        self.decls = collections.defaultdict(dict)  # array -> rank -> Declaration
        self.layouts = {}
        self.needed = {}  # array -> number of blocks a step of it needs
        self.built = []  # (array, layout) in the order they were built: for take()
        self.children = {}  # child -> (ranks, floor) of its last part
        self.decided = -1  # every step up to it was decided
        self.done = {}  # rank -> (clean, counters or message)
        self.steps = {}  # step -> _Pending, until the step is complete
        self.ready = collections.deque()  # CompleteStep for the driver
        self.values = {}  # (rank, key) -> value the simulation reported
        self.errors = []  # every error, in order: for the summary
        self.declaration_errors = []  # those that are declaration errors
        self.drops = collections.Counter()  # rank -> steps dropped, as the rank counted them
        self.drop_ranges = collections.defaultdict(list)  # rank -> [[first, last], ...]
        self.skipped = collections.defaultdict(list)  # array -> [[first, last], ...] not analysed
        self.lost = {}  # rank -> why it left without goodbye
        self.lost_at = {}  # rank -> when (a launcher ends all ranks when one fails)
        self.changed = threading.Condition()
        self.next_report = collections.defaultdict(int)  # child -> number of its next report
        self.calls = 0  # reports taken, for bench/bench_head.py
        self.introductions = 0  # introduce calls taken
        self.goodbyes = 0  # ranks_done calls taken
        self.blocks_in = 0  # blocks counted in the parts: caudal run's progress
        self.newest = None  # the highest step a block came for
        self.complete = {}  # array -> [steps complete, last complete step]

    # ---- from the ingest actors (or the relays) -------------------------

    @_locked
    def introduce(self, said):
        """A node's ranks' introductions, in the order they came
        (report.Reporter): (rank, size) when a rank connected, its
        Declarations as it declared its arrays."""
        self.introductions += 1
        for x in said:
            if isinstance(x, Declaration):
                self._declare(x)
            else:
                rank, size = x
                if size != self.nranks:
                    self._declaration_error("rank %d says the run has %d ranks, caudal run "
                                            "started %d" % (rank, size, self.nranks))
        self._notify()

    def _declare(self, decl):
        name = decl.name
        self.decls[name][decl.rank] = decl
        if len(self.decls[name]) == self.nranks:
            try:
                layout = build_layout(name, self.decls[name], self.nranks)
            except CatalogError as e:
                self._declaration_error(str(e))
            else:
                self.layouts[name] = layout
                self.needed[name] = len(layout.blocks_needed())
                self.built.append((name, layout))

    def report(self, child, seq, part, urgent=False):
        """A child's report.Part; a child keeps a few in flight, and they
        are applied in the order it sent them (seq). `child` names it: an
        ingest (its node in situ, one of several on a node in transit) or a
        relay. `urgent` is for relays (the head applies every part at once)."""
        with self.changed:
            self.changed.wait_for(lambda: self.next_report[child] == seq and
                                  len(self.ready) < self.max_pending)
            self.next_report[child] = seq + 1
            self.calls += 1
            self.children[child] = (part.ranks, part.floor)
            decided = self.decided
            self.blocks_in += sum(part.counts.values())
            for (array, step), n in part.counts.items():
                if self.newest is None or step > self.newest:
                    self.newest = step
                if step > decided:  # a step decided already is not reopened
                    self._pending(step).counts[array] += n
            for step, handles in part.blocks.items():
                if step > decided:
                    self._pending(step).blocks.extend(handles)
            self._advance()
            self.changed.notify_all()

    @_locked
    def dropped(self, rank, first, last, count):
        self.drops[rank] += count
        _add_range(self.drop_ranges[rank], first, last)

    @_locked
    def reported(self, rank, key, value):
        self.values[(rank, key)] = value

    @_locked
    def ranks_done(self, byes):
        """Ranks that left, in the order they left: (rank, clean, counters
        or message); what that decides came before, in their ingest's part."""
        self.goodbyes += 1
        for rank, clean, info in byes:
            self.done[rank] = (clean, info)
            if not clean:
                self.lost[rank] = str(info)
                self.lost_at[rank] = time.time()  # a batch's ranks keep their order
                self.errors.append("rank %d left without goodbye: %s" % (rank, info))
        self._notify()

    @_locked
    def ingest_failed(self, ingest, message):
        self.errors.append(message)
        self._notify()

    # ---- for the driver -----------------------------------------------

    def take(self, timeout, nlayouts=0):
        """Complete steps in order (CompleteStep), whether the run is over
        (every rank left and nothing is pending), the declaration errors
        so far (caudal run stops the run for them), and the layouts built
        since the first `nlayouts` ((array, Layout) pairs: a step names its
        arrays, the driver keeps their layouts)."""
        with self.changed:
            if not self.ready and not self._over():
                self.changed.wait(timeout)
            out = list(self.ready)
            self.ready.clear()
            self.changed.notify_all()
            return out, self._over(), list(self.declaration_errors), self.built[nlayouts:]

    @_locked
    def progress(self):
        """Where the run is, for caudal run's progress display: cheap, and
        bounded whatever the ranks and steps."""
        ranks, floor = state(self.children.values())
        return {
            "ranks": ranks, "ranks_left": len(self.done), "nranks": self.nranks,
            # the highest step every connected rank finished (None: none yet)
            "published": None if floor is None or floor == math.inf or floor < 0 else floor,
            "newest": self.newest,
            "waiting": len(self.steps), "ready": len(self.ready),
            "blocks": self.blocks_in,
            "rank_steps_dropped": sum(self.drops.values()),
            "complete": {a: tuple(c) for a, c in self.complete.items()},
            "skipped": {a: sum(b - f + 1 for f, b in rs) for a, rs in self.skipped.items()},
            "errors": len(self.errors),
        }

    @_locked
    def value(self, rank, key):
        return self.values.get((rank, key))

    @_locked
    def summary(self):
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
            # What reported to the head (ingests, or the relays above them)
            # and the calls it took: bounded by head.HEAD and the steps.
            "reports_to_head": {"from": len(self.children), "calls": self.calls,
                                "introductions": self.introductions,
                                "goodbyes": self.goodbyes},
            "errors": list(self.errors) + self._undeclared(),
            "declaration_errors": list(self.declaration_errors) + self._undeclared(),
        }

    # ---- internals -----------------------------------------------------

    def _over(self):
        return len(self.done) == self.nranks and not self.steps and not self.ready

    def _pending(self, step):
        p = self.steps.get(step)
        if p is None:
            p = self.steps[step] = _Pending()
        return p

    def _floor(self):
        """Every step up to it is complete: -1 while some rank has not been
        seen (a rank not yet connected may still publish any step)."""
        ranks, floor = state(self.children.values())
        if ranks < self.nranks:
            return -1
        return math.inf if floor is None else floor

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
        held = [(s, p.counts) for s, p in self.steps.items()]
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
        if floor <= self.decided:
            return
        for step in sorted(s for s in self.steps if s <= floor):
            self.decided = max(self.decided, step)
            pending = self.steps.pop(step)
            whole = []
            for name, n in pending.counts.items():
                # Every rank's part, for fixed and variable arrays alike: a
                # variable array analysed with a rank's part missing would be
                # a silently wrong result (a zero-element part is counted).
                if n != self.needed.get(name):  # no layout: needed is None
                    _add_range(self.skipped[name], step, step)
                else:
                    whole.append(name)
                    c = self.complete.setdefault(name, [0, step])
                    c[0] += 1
                    c[1] = step
            if whole:
                self.ready.append(CompleteStep(step, tuple(whole), time.time(),
                                               tuple(pending.blocks)))
        if floor != math.inf:
            self.decided = floor

    def _notify(self):
        self.changed.notify_all()  # under the lock: every caller holds it


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
