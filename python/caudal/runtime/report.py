"""What travels from the ingest actors up to the head, and on to the driver.

Each ingest reports to its parent (the head, or the relay of its group: see
relay.py) one `Part` per node-step, and a relay merges its children's parts
into one of the same form, so that what the head takes per call does not
grow with the ranks or the nodes below it:

- ranks: how many ranks the subtree has seen connect (whether they left
  since or not), and floor: the highest step that every rank of it still
  connected has finished (published, skipped or dropped), None when none is
  connected. Both are the subtree's state now, not a change: a later part
  replaces them. The head decides a step once the ranks below it are all
  the run's ranks and every floor reached the step.
- counts: per (array, step), how many blocks that the step needs arrived in
  the subtree since its last part. A rank's block is needed when the array
  is variable-length (an empty part is a part) or the block has elements;
  so, for declarations that tile the array, the needed blocks of a step are
  the layout's `blocks_needed()`, and a step of an array is whole when its
  counts add up to their number. The ingest counts a rank's block once.
- blocks: per step, the handles of the blocks that arrived since the last
  part. A handle is a `Leaf` (an object an ingest put: a list of its node's
  blocks, with their metadata packed as bytes) or a `Branch` (a list of
  handles that a relay put, one per step). Nobody between the ingest and the
  driver looks into them: the head holds a few per step, whatever the ranks.

The driver resolves a complete step's handles into catalog.BlockRefs
(`StepBlocks`) only once an analysis asks for the blocks, one ray.get per
level of relays. A reduction need not resolve them: `StepBlocks.tree`
sends the per-block work down the same tree (`Tree.calls`), each relay to
its children and each node's leaves to the actor that put them, and only
the blocks' partial states come back up. Then the driver makes a call per
top handle, not a call per block, and never holds a reference per node:
past a few hundred nodes, holding them costs more than the step lasts
(bench/bench_head.py).

`Reporter` is the ingest's side: its calls to its parent, in order, with
the parts that `Ranks` (its ranks and their progress) makes. The load that
bench/bench_head.py plays and tests/python/test_head_relay.py go through it
too, so that what they send is what ingests send.
"""

import collections
import functools
import pickle
import threading
import uuid
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import ray

from ..catalog import BlockRef

IN_FLIGHT = 2  # calls an ingest (or a relay) keeps in flight to its parent


class Part(NamedTuple):
    """A subtree's report: its state (ranks, floor) and what arrived in it
    since its last part (counts, blocks); see the module's docstring."""

    ranks: int
    floor: Optional[int]
    counts: Dict[Tuple[str, int], int]  # (array, step) -> needed blocks
    blocks: Dict[int, List[Any]]  # step -> handles (Leaf or ObjectRef)


class Leaf(NamedTuple):
    """Blocks of one step that an ingest put as one list object: each is
    item `index` of `ref` (or `ref` itself, index None)."""

    ref: Any  # ray.ObjectRef
    node: Optional[str]  # the Ray node whose store holds it
    # pickled ((array, rank, count, index, states), ...), one per block;
    # states: the reductions computed on it at receipt (runtime/receipt.py).
    # ref None: the blocks were not put (an unkept array), only their states.
    meta: bytes


class Branch(NamedTuple):
    """Handles a relay merged and put as one list object, one per step."""

    relay: str  # the relay's name: Tree.relays has its actor
    ref: Any  # ray.ObjectRef of the list of handles


def state(children):
    """(ranks, floor) of a subtree from its children's (ranks, floor): the
    ranks they saw, the lowest floor of those with a rank connected."""
    ranks, floor = 0, None
    for n, f in children:
        ranks += n
        if f is not None and (floor is None or f < floor):
            floor = f
    return ranks, floor


class Ranks:
    """A node's ranks as its ingest knows them, and the parts it reports.

    Events come in the receiver's order: a rank connects before it
    publishes, declares an array before it puts it, and leaves after its
    last step was reported (the receiver gives what a leaving rank held back
    before its goodbye)."""

    def __init__(self):
        self.seen = set()
        self.high = {}  # rank still connected -> highest step it finished (-1: none)
        self.variable = {}  # (rank, array) -> declared variable-length
        self.sent = None  # (ranks, floor) of the last part

    def connected(self, rank):
        # A rank seen before is not live again: the head decided without it.
        if rank not in self.seen:
            self.seen.add(rank)
            self.high[rank] = -1

    def declared(self, decl):
        self.variable[(decl.rank, decl.name)] = bool(decl.variable)

    def finished(self, progress):
        """progress: rank -> highest step it finished (never lowered)."""
        high = self.high
        for rank, step in progress.items():
            if rank in high and step > high[rank]:
                high[rank] = step

    def left(self, rank):
        self.high.pop(rank, None)

    def state(self):
        return len(self.seen), (min(self.high.values()) if self.high else None)

    def changed(self):
        """Whether the node's state differs from what its last part said."""
        return self.state() != self.sent

    def part(self, blocks=()):
        """The node's part: its state and `blocks` (catalog.BlockRef, each
        item `index` of its list object `ref`), counted and packed."""
        counts, groups, once = {}, {}, set()
        variable = self.variable
        for b in blocks:
            key = (b.array, b.step)
            n = counts.get(key, 0)
            who = (b.array, b.step, b.rank)
            if who not in once:
                once.add(who)
                if b.count > 0 or variable.get((b.rank, b.array), False):
                    n += 1
            counts[key] = n
            g = groups.get((b.step, id(b.ref)))
            if g is None:
                g = groups[(b.step, id(b.ref))] = (b.ref, b.node, [])
            g[2].append((b.array, b.rank, b.count, b.index, b.states))
        steps = collections.defaultdict(list)
        for (step, _), (ref, node, meta) in groups.items():
            steps[step].append(Leaf(ref, node, pickle.dumps(tuple(meta), protocol=5)))
        self.sent = self.state()
        return Part(self.sent[0], self.sent[1], counts, dict(steps))


class Reporter:
    """An ingest's calls to its parent (the head, or the relay of its
    group): its reports in order, up to IN_FLIGHT in flight, and every other
    call after the reports before it, so that a rank's goodbye never
    overtakes the report of its last steps. A report after which this side
    waits for the answers before it goes on is marked urgent, so that no
    relay holds back what it waits for (relay.py). wait(ref): its value
    (ray.get, or one that gives up when the caller is stopped).

    What ranks say once (connected, declare, goodbye) is kept and sent
    together (flush: the ingest flushes once no event waits, and before
    anything that follows): a node's ranks that start or end together (128
    on a node) cost it one `introduce` and one `ranks_done` call, not one or
    more per rank, which through the relays would be every call the head
    takes at the start and the end of a run of many nodes."""

    def __init__(self, parent, name, wait=None):
        self.parent = parent
        self.name = name  # the parent orders this side's reports by it
        self.wait = wait or ray.get
        self.ranks = Ranks()
        self.inflight = collections.deque()  # calls not answered yet
        self.seq = 0  # number of the next report
        self.lazy = False  # the last report was not urgent: a relay may hold it
        self.said = []  # introductions kept: (rank, size) or a Declaration
        self.byes = []  # goodbyes kept: (rank, clean, counters or message)

    def report(self, blocks=(), urgent=False, progress=()):
        """The node's part with these blocks (catalog.BlockRef); past
        IN_FLIGHT in flight, wait for the oldest (and say so: urgent).
        progress: the ranks' progress these blocks bring ({rank: highest
        step finished}, in order), counted only here, as the part is made:
        a call before it (a drop flushes what the ranks said, and a goodbye
        sends the node's state) must not say steps whose blocks are not
        reported yet, or the head decides them with nothing in them. The
        goodbyes kept go after it, for the same reason."""
        self._introduce()
        for p in progress:
            self.ranks.finished(p)
        self._report(blocks, urgent)
        self._goodbyes()

    def _report(self, blocks=(), urgent=False):
        part = self.ranks.part(blocks)
        while self.inflight and ray.wait([self.inflight[0]], timeout=0)[0]:
            self.wait(self.inflight.popleft())  # answered already (or failed: raised here)
        urgent = urgent or len(self.inflight) >= IN_FLIGHT
        self.inflight.append(self.parent.report.remote(self.name, self.seq, part, urgent))
        self.seq += 1
        self.lazy = not urgent
        while len(self.inflight) > IN_FLIGHT:
            self.wait(self.inflight.popleft())

    def dropped(self, rank, first, last, count):
        """Counted by the head in any order; a goodbye waits for it."""
        self.flush()
        self.inflight.append(self.parent.dropped.remote(rank, first, last, count))

    def drain(self):
        """Wait for every call in flight; reports a relay may hold back are
        made urgent first (an empty report that says so)."""
        self.flush()
        self._drain()

    def _drain(self):
        if self.lazy and self.inflight:
            self._report(urgent=True)
        while self.inflight:
            self.wait(self.inflight.popleft())

    def answered(self):
        """Wait for the calls in flight without making them urgent: a relay
        answers them once its floor moved (a node in lock step with the
        others: bench/bench_head.py)."""
        self.flush()
        while self.inflight:
            self.wait(self.inflight.popleft())

    def call(self, method, *args):
        """Any other call to the parent, after the calls before it."""
        self.drain()
        return self.wait(getattr(self.parent, method).remote(*args))

    def connected(self, rank, size):
        """Kept until flush()."""
        self.ranks.connected(rank)
        self.said.append((rank, size))

    def declare(self, decl):
        """Kept until flush()."""
        self.ranks.declared(decl)
        self.said.append(decl)

    def goodbye(self, rank, clean, info):
        """A rank left (kept until flush())."""
        self.ranks.left(rank)
        self.byes.append((rank, clean, info))

    def flush(self, wait=True):
        """What ranks said and this side kept, sent (the ingest flushes once
        no event waits; every other call flushes first). wait=False, with
        no goodbye kept: the introductions' call, not waited for (the caller
        waits for it before anything else)."""
        if not wait and not self.byes:
            return self._introduce(wait=False)
        self._introduce()
        self._goodbyes()
        return None

    def _introduce(self, wait=True):
        """The introductions as one call, answered before this side says
        anything else (so the head has them before the reports after
        them), but not after the calls in flight: nothing before them needs
        them, and a relay may hold a report until other nodes move."""
        if not self.said:
            return None
        said, self.said = self.said, []
        call = self.parent.introduce.remote(said)
        return self.wait(call) if wait else call

    def _goodbyes(self):
        """The goodbyes as one call, after the node's state without those
        ranks and once every call before was answered."""
        if not self.byes:
            return
        byes, self.byes = self.byes, []
        if self.ranks.changed():
            self._report(urgent=True)
        self._drain()
        self.wait(self.parent.ranks_done.remote(byes))


class StepBlocks:
    """The blocks of a complete step, from its handles: resolved into
    catalog.BlockRefs once, when an analysis first asks for an array's
    blocks (from any of the driver's analysis threads)."""

    def __init__(self, step, handles):
        self.step = step
        self.token = uuid.uuid4().hex  # names its arrays' graphs: unique, whatever the blocks
        self.handles = list(handles)
        self.lock = threading.RLock()  # of() resolves through _walked()
        self.arrays = None  # array -> rank -> BlockRef, once resolved
        self.leaves = None  # [(Leaf, its meta unpickled)], once the handles were walked

    def of(self, array) -> Dict[int, BlockRef]:
        with self.lock:
            if self.arrays is None:
                self.arrays = self._resolve()
                self.handles = None  # the BlockRefs hold the blocks now
        return self.arrays.get(array, {})

    def tree(self, array, tree):
        """A function that runs per-block work on every block of `array`
        where it lies, through `tree` (see the module's docstring), when the
        run has relays (more than head.HEAD ingests); else None (a few
        nodes: their handles cost little to resolve). A step whose parts
        each came up a relay alone holds only leaves: it still goes down,
        each node's leaves straight to their ingest, so that the path a
        step takes depends on the run, not on how its reports were timed."""
        handles = self.handles
        if not tree.relays and all(isinstance(h, Leaf) for h in handles):
            return None
        step = self.step

        def run(fn, args):
            """[(rank, count, fn(block, *args)), ...] for every block of the
            array; a refusal raises the KernelError that names the block."""
            with self.lock:
                if self.arrays is not None:  # resolved meanwhile: no tree
                    return None
            return tree.gather(handles, array, step, fn, args)

        return run

    def states(self, array, rid):
        """Reduction `rid` as computed at receipt on the blocks of `array`:
        ([(rank, count, state), ...] of the blocks that have it (copies,
        which a merge may change in place), the leaves that were put and
        hold blocks of it without it, whether a block without it was not
        put). A step's blocks differ when they were received on either side
        of the plan's arrival: ranks that connect late, or several ingests
        that each got the plan at their own time."""
        from .receipt import fresh

        have, short, lost = [], [], False
        for leaf, meta in self._walked():
            missing = False
            for name, rank, count, _, states in meta:
                if name == array:
                    for r, s in states:
                        if r == rid:
                            have.append((rank, count, s))
                            break
                    else:
                        missing = True
            if missing:
                if leaf.ref is None:
                    lost = True
                else:
                    short.append(leaf)
        return fresh(have), short, lost

    def kept(self, array):
        """Whether every block of `array` in the step was put in the store."""
        return all(leaf.ref is not None for leaf, meta in self._walked()
                   if any(m[0] == array for m in meta))

    def _walked(self):
        """The step's leaves, through the relays' branches (one ray.get per
        level), with their metadata: walked once, whoever asks first."""
        with self.lock:
            if self.leaves is None:
                leaves, refs = [], []
                level = self.handles
                while level:
                    for h in level:
                        if isinstance(h, Leaf):
                            leaves.append(h)
                        else:
                            refs.append(h.ref)
                    level = [h for hs in ray.get(refs) for h in hs] if refs else []
                    refs = []
                self.leaves = [(leaf, pickle.loads(leaf.meta)) for leaf in leaves]
            return self.leaves

    def _resolve(self):
        out = collections.defaultdict(dict)
        step = self.step
        for leaf, meta in self._walked():
            ref, node = leaf.ref, leaf.node
            for array, rank, count, index, states in meta:
                out[array][rank] = BlockRef(array, step, rank, count, ref, index, node, states)
        return out


class Tree:
    """Where per-block work on handles goes: node -> the actor there that
    runs it (the ingest that put the blocks: blocks.RAY.executors), relay
    name -> relay. caudal run gives one to the driver and every relay."""

    def __init__(self, executors=None, relays=None):
        self.executors = {} if executors is None else executors
        self.relays = {} if relays is None else relays

    def gather(self, handles, array, step, fn, args):
        """[(rank, count, fn(block, *args)), ...] for every block of `array`
        below `handles`, run where each lies; a refusal raises the
        KernelError that names the block."""
        return _unwrapped(self.calls(handles, array, step, fn, args))

    def calls(self, handles, array, step, fn, args):
        """The calls that run fn(block, *args) on every block of `array`
        below `handles`: each node's leaves in one call to its executor
        (a task pinned there if it has none), each branch in one call to
        its relay. Each call's value is a list of (rank, count, state)."""
        from ..blocks import _remote, on_node

        leaves, out = collections.defaultdict(list), []
        for h in handles:
            if isinstance(h, Leaf):
                leaves[h.node].append(h)
            else:
                out.append(self.relays[h.relay].map.remote(h.ref, array, step, fn, args))
        for node, group in leaves.items():
            executor = self.executors.get(node)
            if executor is not None:
                out.append(executor.run.remote(map_leaves, group, array, step, fn, args))
            else:
                out.append(_remote(map_leaves).options(**on_node(node)).remote(
                    group, array, step, fn, args))
        return out


def map_leaves(leaves, array, step, fn, args):
    """fn(block, *args) on each block of `array` in these leaves, where they
    were put: [(rank, count, state), ...]."""
    from ..blocks import _checked, describe_array

    out = []
    for leaf, obj in zip(leaves, ray.get([leaf.ref for leaf in leaves])):
        for name, rank, count, index, _ in pickle.loads(leaf.meta):
            if name != array:
                continue
            block = obj if index is None else obj[index]
            where = functools.partial(describe_array, array, step, rank)
            out.append((rank, count, _checked(fn, where, block, *args)))
    return out


def _unwrapped(calls):
    """The calls' lists joined; a failure as the error it began as (a
    KernelError that names the block), not as Ray's wrapping of it at
    every level of the tree."""
    try:
        return [x for part in ray.get(calls) for x in part]
    except ray.exceptions.RayTaskError as e:
        raise cause_of(e) from None


def cause_of(error):
    """What a Ray task's error began as, through every level that passed
    it on."""
    cause = error
    while isinstance(cause, ray.exceptions.RayTaskError) and cause.cause is not None:
        cause = cause.cause
    return cause
