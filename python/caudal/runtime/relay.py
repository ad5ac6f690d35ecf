"""Relays: the head's stand-ins for groups of nodes, in a tree.

Ray costs an actor a few tenths of a millisecond per call it takes, whatever
the call does, and about as much again per object reference the call
carries (bench/bench_head.py measures it), so a head that took one call per
node and step would spend more than a step lasts at a thousand nodes. Past
HEAD ingests (head.start_head), each group of GROUP (16) reports to a Relay,
groups of GROUP relays to a relay above them, and so on until HEAD (4) or
fewer report to the head: a tree whose every actor takes at most GROUP
calls per step, the head at most HEAD.

A relay merges its children's parts (report.Part) into one of the same form:
their ranks added, the lowest of their floors, their counts added, and per
step their handles put as one list object (so each call up carries one
reference per step: a report.Branch). It says something only when it
matters:

- when its state (ranks, floor) moved, which is what lets the head decide
  a step: once the last child's part of a step arrived, so one call per
  step as long as the nodes keep pace, and at most IN_FLIGHT in flight;
- when a child waits for the answer (`urgent`): an ingest that has more
  than IN_FLIGHT reports in flight, or that waits for them before a
  goodbye (report.Reporter). The relay's call is then urgent too, and its
  parent does the same: a node ahead of the others is not held back by
  them, and nobody waits on a relay that holds back. One urgent call at a
  time: what arrives meanwhile goes with the next one (group commit), so
  that under load, when every ingest waits, the calls stay few.

A child's call is answered once the parent applied the call that carried it
(recursively: once the head applied it), so what an ingest does after its
reports were answered (a goodbye) reaches the head after them, and the head's
back-pressure (max_pending) reaches the ingests. The other calls (connected,
introduce, dropped, ...) go on to the parent as they are.

Work goes down the same tree: `map` runs per-block work on the blocks below
one of the relay's branches (report.Tree), so that a reduction over a
thousand nodes costs the driver a call per handle the head gave it (at
most HEAD), not a call per block.
"""

import asyncio
import collections

import ray

from .report import IN_FLIGHT, Branch, Part, Tree, cause_of, state


class _Batch:
    """The children's calls that the next call up will carry."""

    def __init__(self):
        self.calls = 0
        self.urgent = False
        self.counts = {}
        self.blocks = collections.defaultdict(list)
        self.done = None  # future, answered once the parent applied the call

    def add(self, part, urgent):
        if self.done is None:
            self.done = asyncio.get_running_loop().create_future()
        self.calls += 1
        self.urgent |= bool(urgent)
        counts = self.counts
        for key, n in part.counts.items():
            counts[key] = counts.get(key, 0) + n
        for step, handles in part.blocks.items():
            self.blocks[step].extend(handles)


def _one(name, handles):
    """A step's handles as one: a list object in the store, unless there is
    only one."""
    return handles if len(handles) == 1 else [Branch(name, ray.put(handles))]


@ray.remote(num_cpus=0)
class Relay:
    """Stands for the head to a group of ingests or relays (see the
    module's docstring); has the head's methods that they call."""

    def __init__(self, parent, name):
        self.parent = parent
        self.name = name  # the parent orders this relay's calls by it
        self.next = collections.defaultdict(int)  # child -> number of its next call
        self.arrived = asyncio.Condition()
        self.children = {}  # child -> (ranks, floor) of its last part
        self.batch = _Batch()
        self.sent = None  # (ranks, floor) of the last call up
        self.seq = 0  # number of the next call up
        self.lazy = 0  # calls up not answered yet, not urgent (the parent may hold them)
        self.urgent = 0  # urgent ones (0 or 1)
        self.tasks = set()  # the loop holds tasks weakly
        self.tree = Tree()  # where work on the blocks below goes (know)

    def know(self, tree):
        """The executors and relays that work on the blocks goes to."""
        self.tree = tree

    async def map(self, handles, array, step, fn, args):
        """fn(block, *args) on every block of `array` below these handles
        (one of this relay's branches: Ray gives its list): [(rank, count,
        state), ...] from every child at once."""
        try:
            parts = await asyncio.gather(*self.tree.calls(handles, array, step, fn, args))
        except ray.exceptions.RayTaskError as e:
            raise cause_of(e) from None  # the block's own KernelError, not Ray's wrapping
        return [x for part in parts for x in part]

    async def report(self, child, seq, part, urgent=False):
        """A child's part, answered once the head applied it."""
        async with self.arrived:  # a child's calls go in the order it sent them
            await self.arrived.wait_for(lambda: self.next[child] == seq)
            self.next[child] = seq + 1
            self.arrived.notify_all()
        self.children[child] = (part.ranks, part.floor)
        batch = self.batch
        batch.add(part, urgent)
        self._pump()
        await asyncio.shield(batch.done)  # one call cancelled leaves the others be

    def _state(self):
        return state(self.children.values())

    def _pump(self):
        """Calls the parent with the batch, if it is due and a call may go."""
        while self.batch.calls and (
                not self.urgent if self.batch.urgent else
                self.lazy < IN_FLIGHT and self._state() != self.sent):
            batch, self.batch = self.batch, _Batch()
            self.sent = self._state()
            if batch.urgent:
                self.urgent += 1
            else:
                self.lazy += 1
            try:
                part = Part(self.sent[0], self.sent[1], batch.counts,
                            {step: _one(self.name, hs) for step, hs in batch.blocks.items()})
                call = self.parent.report.remote(self.name, self.seq, part, batch.urgent)
            except Exception as e:  # pragma: no cover - Ray itself failing
                call = e
            self.seq += 1
            task = asyncio.ensure_future(self._answer(call, batch))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _answer(self, call, batch):
        try:
            if isinstance(call, Exception):
                raise call
            await call
        except Exception as e:  # the parent is gone: so is the run
            batch.done.set_exception(e)
        else:
            batch.done.set_result(None)
        finally:
            if batch.urgent:
                self.urgent -= 1
            else:
                self.lazy -= 1
            self._pump()

    # Every other call goes on to the parent as it is, answered when the
    # parent answered: a child makes them only after its reports were answered.

    async def introduce(self, said):
        return await self.parent.introduce.remote(said)

    async def dropped(self, rank, first, last, count):
        return await self.parent.dropped.remote(rank, first, last, count)

    async def reported(self, rank, key, value):
        return await self.parent.reported.remote(rank, key, value)

    async def ranks_done(self, byes):
        return await self.parent.ranks_done.remote(byes)

    async def ingest_failed(self, node, message):
        return await self.parent.ingest_failed.remote(node, message)


def relays_of(targets, head):
    """Every relay of the tree start_head built (`targets`: what it returned,
    each ingest's parent), the head's children last: for the tests and
    bench_head, which look at each relay's counters."""
    def others(actors):  # handles of the same actor compare by its id
        return list({a._actor_id: a for a in actors if a._actor_id != head._actor_id}.values())

    out, level = [], others(targets.values())
    while level:
        out += level
        level = others(ray.get([r.__ray_call__.remote(lambda self: self.parent) for r in level]))
    return out


def tree_of(targets, head, executors):
    """The report.Tree of the tree start_head built (`targets`, as for
    relays_of), every relay told it: where work on the blocks goes."""
    relays = relays_of(targets, head)
    names = ray.get([r.__ray_call__.remote(lambda self: self.name) for r in relays])
    tree = Tree(executors, dict(zip(names, relays)))
    ray.get([r.know.remote(tree) for r in relays])
    return tree
