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

Past a few dozen nodes the head does not take one call per node and step:
Ray's own cost of a call into an actor (about 0.3 to 0.8 ms of the actor's
CPU, whatever the method does; bench/bench_head.py) would make the head's
step cost grow with the nodes, 1,024 calls a step at 1,024 nodes. Each group
of GROUP nodes then reports to a `Relay` instead, on the group's first node,
which merges the reports that arrive while its last call to the head is
under way into one call (group commit: no timer, no waiting for the other
nodes of the group), so the head takes a few calls per group and step. The
relay answers a node's report only once the head applied it, and passes
every other call on as it is, so what the head sees, and in which order, is
what the nodes sent: the same completeness, skips and counts.

A relay also keeps the block references away from the head: it puts the
BlockRefs it merged in the store as one list object and sends the head that
object's reference with each block's (array, step, rank) (`Merged`). Ray's
bookkeeping of a reference an actor receives, holds, passes on and drops
cost the head more than the calls themselves (a third of its time at 1,024
nodes went to pickling and freeing the references of a step); now it holds
one per relay call, and the driver fetches the lists (`resolve`).
"""

import asyncio
import collections
import heapq
import time
from typing import Any, Dict, List, NamedTuple

import ray

from ..catalog import BlockRef, CatalogError, Declaration, Layout, build_layout


class Merged(NamedTuple):
    """A relay's merged blocks of one step, as the head receives them in
    a report's list in place of BlockRefs: the list as one object in the
    store, and what the head needs of each block to decide completeness."""

    ref: Any  # ray.ObjectRef of [BlockRef, ...]
    keys: List[tuple]  # (array, step, rank) of each, in the list's order


class Stored(NamedTuple):
    """A block the head knows by where its BlockRef is: item `index` of the
    list a relay put (Merged). The driver's `resolve` turns it into that
    BlockRef."""

    ref: Any
    index: int


class ArrayBlocks(NamedTuple):
    """One array's part of a complete step: every block it needs is there."""

    layout: Layout
    blocks: Dict[int, BlockRef]  # rank -> its block (a Stored until resolve())


class CompleteStep(NamedTuple):
    """What the head hands the driver: a step that every rank finished,
    with the arrays of it that are whole (the others were skipped)."""

    step: int
    arrays: Dict[str, ArrayBlocks]  # array name -> its blocks
    completed: float  # time.time() when it became complete: the lag starts there


GROUP = 32  # nodes per relay: sqrt(1024), so that neither the head nor a relay takes many calls


def start_head(nranks, max_pending=8, ingests=(), group=GROUP, where=None):
    """The head of a run, and what each ingest calls: ingest name -> the
    head itself (up to `group` ingests) or the relay of the ingest's group,
    which has the head's methods (connected, declare, report, ...).
    ingests: the names the ingest actors report under (in situ, their Ray
    node ids); where: ingest name -> Ray node id, to start each relay on
    the node of its group's first ingest (None: anywhere, for a load
    generator whose nodes are not Ray's)."""
    from ..blocks import on_node

    head = HeadActor.remote(nranks, max_pending)
    ingests = list(ingests)
    if len(ingests) <= group:
        return head, {name: head for name in ingests}
    targets = {}
    for i in range(0, len(ingests), group):
        members = ingests[i:i + group]
        options = on_node(where[members[0]]) if where else {}
        relay = Relay.options(**options).remote(head, "relay-%d" % (i // group))
        targets.update((name, relay) for name in members)
    return head, targets


@ray.remote(num_cpus=0)
class HeadActor:
    def __init__(self, nranks, max_pending=8):
        self.nranks = nranks
        self.max_pending = max_pending
        self.decls = collections.defaultdict(dict)  # array -> rank -> Declaration
        self.layouts = {}
        self.high = {}  # rank -> highest step finished; absent until it connects
        self.done = {}  # rank -> (clean, counters or message)
        # The floor (lowest high of a rank not done) kept as it changes, so
        # that a report costs its own ranks, not all of them: high -> number
        # of ranks not done at it, and a heap of those highs (stale ones
        # dropped when they reach the top).
        self.live = collections.Counter()
        self.live_heap = []
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
        self.next_report = collections.defaultdict(int)  # ingest -> number of its next report

    # ---- from the ingest actors ----------------------------------------

    async def connected(self, rank, size):
        if size != self.nranks:
            self._declaration_error("rank %d says the run has %d ranks, caudal run "
                                    "started %d" % (rank, size, self.nranks))
        if rank not in self.high:
            self._set_high(rank, -1)
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

    async def report(self, ingest, seq, blocks, high):
        """An ingest's blocks and its ranks' progress; an ingest keeps a few
        reports in flight, and they are applied in the order it sent them
        (seq). `ingest` names it: its node in situ, one of several on a node
        in transit (the blocks name the node they live on)."""
        async with self.changed:
            await self.changed.wait_for(lambda: self.next_report[ingest] == seq and
                                        len(self.ready) < self.max_pending)
            self.next_report[ingest] = seq + 1
            for b in blocks:
                if isinstance(b, Merged):
                    for i, (array, step, rank) in enumerate(b.keys):
                        self.steps[step][array][rank] = Stored(b.ref, i)
                else:
                    self.steps[b.step][b.array][b.rank] = b
            for rank, step in high.items():
                self._set_high(rank, step)
            self._advance()
            self.changed.notify_all()

    async def dropped(self, rank, first, last, count):
        self.drops[rank] += count
        _add_range(self.drop_ranges[rank], first, last)

    async def reported(self, rank, key, value):
        self.values[(rank, key)] = value

    async def rank_done(self, rank, clean, info):
        if rank in self.high and rank not in self.done:
            self._unlive(self.high[rank])
        self.done[rank] = (clean, info)
        if not clean:
            self.lost[rank] = str(info)
            self.lost_at[rank] = time.time()
            self.errors.append("rank %d left without goodbye: %s" % (rank, info))
        self.high.setdefault(rank, -1)
        self._advance()
        await self._notify()

    async def ingest_failed(self, ingest, message):
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
        heap = self.live_heap
        while heap and heap[0] not in self.live:
            heapq.heappop(heap)
        return heap[0] if heap else float("inf")

    def _set_high(self, rank, step):
        """A rank finished every step up to `step` (never lowers it)."""
        old = self.high.get(rank)
        if old is not None and step <= old:
            return
        self.high[rank] = step
        if rank in self.done:
            return
        if old is not None:
            self._unlive(old)
        self.live[step] += 1
        if self.live[step] == 1:
            heapq.heappush(self.live_heap, step)

    def _unlive(self, high):
        self.live[high] -= 1
        if not self.live[high]:
            del self.live[high]

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


@ray.remote(num_cpus=0)
class Relay:
    """Stands for the head to a group of nodes: their reports reach the
    head merged, a few calls per step for the whole group (see the module's
    docstring). A merged report is what the head would have made of the
    reports one by one: blocks are only ever added, and a rank's highest
    step only raised, so applying them together decides the same steps."""

    def __init__(self, head, name):
        self.head = head
        self.name = name  # the head orders this relay's reports as a node's
        self.seq = 0  # number of the next call to the head
        self.next_report = collections.defaultdict(int)  # node -> number of its next report
        self.arrived = asyncio.Condition()
        self.blocks = []  # of the reports waiting for the next call
        self.high = {}
        self.batch = None  # future of the next call: set once the head applied it
        self.sending = False
        self.sender = None

    async def report(self, node, seq, blocks, high):
        """Answered once the head applied it: the ingest's order of its calls
        (a goodbye after the last report) holds at the head."""
        async with self.arrived:  # a node's reports go in the order it sent them
            await self.arrived.wait_for(lambda: self.next_report[node] == seq)
            self.next_report[node] = seq + 1
            self.arrived.notify_all()
            self.blocks.extend(blocks)
            for rank, step in high.items():
                self.high[rank] = max(self.high.get(rank, -1), step)
            if self.batch is None:
                self.batch = asyncio.get_running_loop().create_future()
            batch = self.batch
        if not self.sending:
            self.sending = True
            self.sender = asyncio.ensure_future(self._send())  # kept: the loop holds tasks weakly
        await asyncio.shield(batch)  # one report cancelled leaves the others be

    async def _send(self):
        """Calls the head, one at a time, with whatever arrived meanwhile:
        under load each call carries more, and the calls stay few."""
        try:
            while self.batch is not None:
                blocks, high, batch = self.blocks, self.high, self.batch
                self.blocks, self.high, self.batch = [], {}, None
                try:
                    blocks = _merge(blocks)
                    await self.head.report.remote(self.name, self.seq, blocks, high)
                except Exception as e:  # the head is gone: so is the run
                    batch.set_exception(e)
                else:
                    batch.set_result(None)
                self.seq += 1
        finally:
            self.sending = False

    # Every other call goes on to the head as it is, answered when the head
    # answered: a node makes them only after its reports were answered.

    async def connected(self, rank, size):
        return await self.head.connected.remote(rank, size)

    async def declare(self, decl):
        return await self.head.declare.remote(decl)

    async def dropped(self, rank, first, last, count):
        return await self.head.dropped.remote(rank, first, last, count)

    async def reported(self, rank, key, value):
        return await self.head.reported.remote(rank, key, value)

    async def rank_done(self, rank, clean, info):
        return await self.head.rank_done.remote(rank, clean, info)

    async def ingest_failed(self, node, message):
        return await self.head.ingest_failed.remote(node, message)


def _merge(blocks):
    """BlockRefs as Merged, one per step: each list is then handed to the
    driver once, with its step, and freed with it (a list shared by two
    steps was freed under the driver by Ray's reference counting while the
    head still held it for the later step)."""
    by_step = collections.defaultdict(list)
    for b in blocks:
        by_step[b.step].append(b)
    return [Merged(ray.put(bs), [(b.array, b.step, b.rank) for b in bs])
            for _, bs in sorted(by_step.items())]


def resolve(steps):
    """The complete steps from HeadActor.take with every block a BlockRef:
    the lists the relays put (Stored blocks), fetched together."""
    refs = list({b.ref: None for c in steps for a in c.arrays.values()
                 for b in a.blocks.values() if isinstance(b, Stored)})
    if not refs:
        return steps
    lists = dict(zip(refs, ray.get(refs)))
    out = []
    for c in steps:
        arrays = {name: a._replace(blocks={r: lists[b.ref][b.index] if isinstance(b, Stored)
                                           else b for r, b in a.blocks.items()})
                  for name, a in c.arrays.items()}
        out.append(c._replace(arrays=arrays))
    return out


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
