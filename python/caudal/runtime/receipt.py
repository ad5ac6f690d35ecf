"""Reductions computed at receipt: on each block where it lies in its rank's
slot, in the ingest, before (or instead of) its copy into the object store.

The analyses' reductions (caudal.stats: moments, histogram, describe,
sketch, quantile) are each a per-block function and a merge
(Grid.map_reduce). The driver learns which of them the analyses call on each
array (`Learner`): one called on two analysed steps of an array in a row, with
the same arguments, goes into a `Plan` that the driver sends to every ingest,
and from then on each ingest runs it on every block of that array as the
block arrives (`compute`). Its states, a few hundred bytes a block, travel in
the report's leaves with the blocks' metadata, and the reduction over a step
merges them in the driver in the grid's order and groups (the same result to
the last bit), with no call to an actor, no task, and no block read from the
store. A reduction not in the plan, or a step reported before the plan
reached its ingest, takes the blocks' path as before; one not called for
IDLE_STEPS analysed steps of its array leaves the plan.

A pair reduction (caudal.temporal.change) is a per-block function of two
steps of an array: at receipt, each block goes with its rank's block of the
array's step before, which the ingest holds for it (its slot, or a copy
where holding the slot could stall the rank), and the state is tagged with
that step. It is planned when called on consecutive analysed steps (a window
of two), and its states answer a call only when every block's tag is the
call's older step: a step some ranks dropped and others did not leaves the
next step without them (the blocks' path then, or an error when the blocks
were not kept).

Only caudal's own per-block functions are learned: their states are new
objects (never views of the slot, which is given back after the call) and
their arguments pickle to the same bytes each step.

An array all of whose analyses are declared ``reductions_only=True`` is
`unkept`: once the plan has a reduction for it, its ingests give its slots
back without putting its blocks in the store, so it costs the run the
kernels and its states, not a copy, a put and the store's memory. Reading
such a step's data, its grid, or a reduction the plan did not have then
fails with an error that names the array and the step (the user promised
not to); a reduction first called on an unkept array is planned at once.
An unkept array is left unput only once every analysis of it returned from
a call (an analysis over a window of two is first called on the second
step), so that the pair reductions they call are planned first, and, with a
pair reduction planned, once it was answered at receipt (so every ingest
holds a previous block of every rank); a pair reduction called on steps
that are not consecutive keeps its array's blocks put for the rest of the
run.
"""

import collections
import itertools
import pickle
import threading
import time
from typing import Callable, Dict, FrozenSet, NamedTuple, Tuple

import numpy as np

IDLE_STEPS = 8  # analysed steps of an array without a call, before a reduction leaves the plan
DROPPED_KEPT = 256  # reductions that left an unkept array's plan, remembered (Learner.dropped)
# An event's blocks are reduced on the ingest's threads (the kernels release
# the GIL) when it holds at least this much: the ranks of a node then cost
# the receiving thread their largest block's kernels, not all of them in
# turn, as when the kernels ran on the actor's threads (IngestActor.run).
PARALLEL_BYTES = 1 << 20


class Plan(NamedTuple):
    """What the ingests compute at receipt, and which arrays they do not put."""

    # array -> ((id, per-block function, its arguments), ...)
    reductions: Dict[str, Tuple[Tuple[int, Callable, tuple], ...]]
    unkept: FrozenSet[str]  # arrays whose blocks are not put (when their states are there)


def is_pair(fn):
    """Whether fn is a pair reduction's per-block function (marked
    `paired`, as caudal.temporal's change is)."""
    return getattr(fn, "paired", False)


def paired(plan, name):
    """Whether the plan has a pair reduction for array `name`: its ingests
    then hold each rank's last block of it (`compute`'s previous)."""
    return plan is not None and any(is_pair(fn) for _, fn, _ in plan.reductions.get(name, ()))


def dropped(step, drops):
    """Whether step is in one of drops' (first, last) ranges."""
    return any(first <= step <= last for first, last in drops)


def compute(plan, blocks, stats, pool=None, previous=None, drops=()):
    """Each block's states under `plan`, aligned with blocks: a tuple of
    (id, state) per block, empty for an array without planned reductions. A
    reduction that fails on a block is left out of its states (and counted):
    the block is then kept, and the analysis' own call meets the error.
    pool: an executor for events of PARALLEL_BYTES or more, over blocks.
    previous: (array, rank) -> (step, its block or a copy), the blocks that
    pair reductions pair with (none: those are left out of the states);
    a pair reduction's state is (that step, the function's state).
    drops: (first, last) ranges of steps that ranks of the node dropped:
    never analysed, so the block after one pairs with the one before."""
    t0 = time.perf_counter()
    todo = [plan.reductions.get(b.name, ()) for b in blocks]
    work = [i for i, t in enumerate(todo) if t]
    if not work:
        return [()] * len(blocks)
    # Each block pairs with its rank's block before it: in this event (a
    # rank ahead brings several steps at once) or held from an earlier one.
    last, before = dict(previous or {}), []
    for b, t in zip(blocks, todo):
        if any(is_pair(fn) for _, fn, _ in t):
            key = (b.name, b.rank)
            before.append(last.get(key))
            if not dropped(b.step, drops):
                last[key] = (b.step, b)
        else:
            before.append(None)
    if (pool is not None and len(work) > 1
            and sum(blocks[i].nbytes for i in work) >= PARALLEL_BYTES):
        done = list(pool.map(lambda i: _reduce(blocks[i], todo[i], before[i]), work))
        stats["receipt_in_parallel"] += 1
    else:
        done = [_reduce(blocks[i], todo[i], before[i]) for i in work]
    out = [()] * len(blocks)
    for i, (states, failed, cpu) in zip(work, done):
        out[i] = states
        stats["reduced_at_receipt"] += len(states)
        stats["receipt_failures"] += failed
        stats["kernel_cpu_seconds"] += cpu
    stats["receipt_seconds"] += time.perf_counter() - t0
    return out


def _reduce(block, todo, before=None):
    """(states, how many failed, the functions' CPU seconds on this thread)
    of a block under its array's reductions; before: (step, block) of its
    rank's previous step, for the pair reductions."""
    v = np.asarray(block)
    states, failed = [], 0
    t0 = time.thread_time()
    for rid, fn, args in todo:
        try:
            if is_pair(fn):
                if before is None or getattr(before[1], "released", False):
                    continue  # nothing to pair with: the block is kept
                step, old = before
                dt = args[0] if args[0] is not None else float(block.step - step)
                states.append((rid, (step, fn(v, np.asarray(old), dt))))
            else:
                states.append((rid, fn(v, *args)))
        except Exception:
            failed += 1
    return tuple(states), failed, time.thread_time() - t0


def complete(plan, name, states):
    """Whether a block of array `name` has every planned state, of one
    planned reduction at least: only then may it go unput."""
    planned = plan.reductions.get(name, ())
    return name in plan.unkept and bool(planned) and len(states) == len(planned)


class Learner:
    """The driver's side: which reductions the analyses call on each array,
    and the plan made of them (see the module's docstring). Called from the
    analyses' threads."""

    def __init__(self, analyses):
        arrays = collections.defaultdict(list)
        self.readers = collections.defaultdict(set)  # array -> ids of its analyses
        for a in analyses:
            for name in a.arrays:
                arrays[name].append(getattr(a, "reductions_only", False))
                self.readers[name].add(id(a))
        self.unkept = frozenset(n for n, only in arrays.items() if all(only))
        # Analyses that returned from a call: an unkept array is left unput
        # once all of its analyses did, so that what they call on its first
        # steps (a pair over a window of two, say) is planned before.
        self.returned_ids = set()
        self.far = set()  # arrays that a pair reduction was called on non-consecutive steps of
        self.sent_unkept = frozenset()  # the unkept arrays of the last plan made
        self.paired_hit = set()  # arrays a pair reduction was answered at receipt on
        self.lock = threading.Lock()
        self.next_id = itertools.count()  # ids are never reused: old steps' states carry them
        self.ids = {}  # (function, pickled arguments) -> id, while live (see _prune)
        self.calls = {}  # id -> (function, arguments, the key in ids)
        self.now = collections.defaultdict(set)  # array -> ids called since its last step
        self.before = {}  # array -> ids called on its step before
        self.planned = {}  # array -> {id: analysed steps since its last call}
        self.ever = set()  # (array, id) ever planned: only those can have states
        # Unkept arrays: reductions called again after they left the plan
        # (called every few steps) stay for good; the keys that left, the
        # last DROPPED_KEPT of them, to tell.
        self.lasting = set()  # (array, key)
        self.dropped = collections.OrderedDict()  # (array, key) -> None
        self.counts = collections.Counter()

    def rid(self, fn, args):
        """The id of a reduction (a per-block function and its arguments),
        or None when it is not one that can be computed at receipt."""
        if not getattr(fn, "__module__", "").startswith("caudal."):
            return None
        try:
            key = (fn, pickle.dumps(args, protocol=5))
        except Exception:
            return None
        with self.lock:
            rid = self.ids.get(key)
            if rid is None:
                rid = self.ids[key] = next(self.next_id)
                self.calls[rid] = (fn, args, key)
            return rid

    def called(self, array, rid, hit, partly=False, consecutive=True, pair=False):
        """An analysis called reduction `rid` on `array`: answered from the
        states computed at receipt (hit; partly: with blocks put before the
        plan reduced where they lie) or from the blocks. consecutive: False
        for a pair reduction over steps with others between them, which
        receipt cannot compute: it is not planned, and the array is kept.
        pair: a pair reduction, whose first hit says that every ingest holds
        a previous block of every rank of the array."""
        with self.lock:
            if pair and hit:
                self.paired_hit.add(array)
            if not consecutive:
                self.far.add(array)
                self.counts["reductions_from_blocks"] += 1
                return
            self.now[array].add(rid)
            self.counts["reductions_at_receipt" if hit else "reductions_from_blocks"] += 1
            self.counts["reductions_partly_at_receipt"] += partly

    def was_planned(self, array, rid):
        return (array, rid) in self.ever

    def step_done(self, arrays):
        """After a step's analyses, `arrays` its new steps: the new Plan if
        it changed, else None."""
        changed = False
        with self.lock:
            for a in arrays:
                # (an id made and pruned between a late call's rid() and called())
                now = {rid for rid in self.now.pop(a, ()) if rid in self.calls}
                before = self.before.get(a, set())
                planned = self.planned.setdefault(a, {})
                unkept = a in self.unkept
                for rid in now:
                    if rid not in planned and (rid in before or unkept):
                        changed = True
                        key = (a, self.calls[rid][2])
                        if unkept and self.dropped.pop(key, False) is None:
                            self.lasting.add(key)  # back after it left: periodic
                    if rid in planned or rid in before or unkept:
                        planned[rid] = 0
                for rid in [r for r in planned if r not in now]:
                    planned[rid] += 1
                    key = (a, self.calls[rid][2])
                    if planned[rid] > IDLE_STEPS and key not in self.lasting:
                        del planned[rid]
                        changed = True
                        if unkept:
                            self.dropped[key] = None
                            while len(self.dropped) > DROPPED_KEPT:
                                self.dropped.popitem(last=False)
                self.before[a] = now
            self._prune()
            now_unkept = self._unkept()
            if not changed and now_unkept == self.sent_unkept:
                return None
            self.sent_unkept = now_unkept
            reductions = {a: tuple((rid,) + self.calls[rid][:2] for rid in sorted(p))
                          for a, p in self.planned.items() if p}
            self.ever.update((a, rid) for a, p in reductions.items() for rid, _, _ in p)
            return Plan(reductions, now_unkept)

    def returned(self, analysis):
        """An analysis returned from a call (its reductions were called)."""
        with self.lock:
            self.returned_ids.add(id(analysis))

    def _unkept(self):
        """The unkept arrays whose blocks are left unput now: every analysis
        of them returned from a call, none called a pair reduction on steps
        of them that are not consecutive, and a pair reduction planned on
        one was answered at receipt once (every block of a step had it: the
        ingests hold a previous block of every rank, so none of them leaves
        a block unput that another's pairs cannot do without)."""
        return frozenset(a for a in self.unkept
                         if a not in self.far and self.readers[a] <= self.returned_ids
                         and (a in self.paired_hit or not self._pair_planned(a)))

    def _pair_planned(self, array):
        return any(is_pair(self.calls[rid][0])
                   for rid in self.planned.get(array, ()) if rid in self.calls)

    def _prune(self):
        """Forget the reductions no array plans or called lately: a
        histogram over each step's own range is a new one every step."""
        live = set()
        for group in (self.planned.values(), self.now.values(), self.before.values()):
            for ids in group:
                live.update(ids)
        if len(self.calls) > len(live):
            for rid in [r for r in self.calls if r not in live]:
                del self.ids[self.calls.pop(rid)[2]]
            self.ever = {(a, r) for a, r in self.ever if r in live}

    def summary(self):
        with self.lock:
            return {"reductions_at_receipt": self.counts["reductions_at_receipt"],
                    "reductions_partly_at_receipt":
                        self.counts["reductions_partly_at_receipt"],
                    "reductions_from_blocks": self.counts["reductions_from_blocks"],
                    "planned": {a: len(p) for a, p in self.planned.items() if p},
                    "unkept": sorted(self.unkept - self.far),
                    "kept_for_pairs_apart": sorted(self.unkept & self.far)}


class Received:
    """One step of one array as the analyses see its states at receipt
    (StepArray's `received`): what blocks.ReceivedStep asks of it."""

    __slots__ = ("blocks", "array", "layout", "learner", "tree", "before")

    def __init__(self, blocks, array, layout, learner, tree, before=None):
        self.blocks = blocks  # report.StepBlocks
        self.array, self.layout, self.learner = array, layout, learner
        self.tree = tree  # report.Tree: where the blocks without states are reduced
        self.before = before  # the array's analysed step before this one, or None

    def states(self, fn, args):
        """[(rank, count, state), ...] of fn(block, *args) for every block
        of the array: those computed at receipt, and the others' computed
        where they were put (a step received partly before the plan); None
        when no block has it, or a block without it was not put."""
        learner, array = self.learner, self.array
        rid = learner.rid(fn, args)
        if rid is None:
            return None
        got, short = None, ()
        if learner.was_planned(array, rid):
            have, short, lost = self.blocks.states(array, rid)
            if have and not lost:
                got = have
                if short:
                    ranks = {rank for rank, _, _ in have}
                    got += [x for x in self.tree.gather(short, array, self.blocks.step, fn, args)
                            if x[0] not in ranks]
        learner.called(array, rid, got is not None, partly=got is not None and bool(short))
        return got

    def pair_states(self, fn, args, old):
        """[(rank, count, state), ...] of pair reduction fn(block, the
        rank's block of step `old`, *args) for every block, all computed at
        receipt against step `old`; else None."""
        learner, array = self.learner, self.array
        rid = learner.rid(fn, args)
        if rid is None:
            return None
        consecutive = old == self.before
        got = None
        if consecutive and learner.was_planned(array, rid):
            have, short, lost = self.blocks.states(array, rid)
            if have and not short and not lost and all(s[0] == old for _, _, s in have):
                got = [(rank, count, s[1]) for rank, count, s in have]
        learner.called(array, rid, got is not None, consecutive=consecutive, pair=True)
        return got

    def pair_missed_error(self, kernel, old):
        """Why a pair reduction over steps old and this one cannot be
        computed."""
        return ("%s against step %d was not computed as the blocks arrived, and they were not "
                "kept: every analysis of %r is declared reductions_only. At receipt it is "
                "computed against each rank's previous step, once an analysis called it on "
                "consecutive steps (a window of two); a step that some ranks dropped and "
                "others published, or a rank's first step, leaves it without a pair. Leave "
                "reductions_only out to have it from the blocks"
                % (kernel, old, self.array))

    def kept(self):
        """Whether the step's blocks of the array were put in the store."""
        return self.blocks.kept(self.array)

    def unkept_error(self):
        """Why the step's data cannot be read."""
        return ("its blocks were not kept: every analysis of %r is declared reductions_only "
                "(caudal.stats' reductions, computed as the blocks arrive); to read its data "
                "or run other kernels on it, leave reductions_only out" % self.array)

    def missed_error(self, fn):
        """Why a reduction cannot be computed for the step."""
        name = KERNELS.get(getattr(fn, "__name__", ""), "this reduction")
        return ("%s was not computed as its blocks arrived, and they were not kept: every "
                "analysis of %r is declared reductions_only, and a reduction is computed "
                "at receipt once an analysis called it with the same arguments, from the "
                "next steps received on. Call it with the same arguments every step (a "
                "histogram with range=), or leave reductions_only out" % (name, self.array))


# What the errors call caudal.stats' per-block functions.
KERNELS = {"_moments_block": "moments", "_hist_block": "histogram",
           "_describe_block": "describe", "_sketch_block": "the quantile sketch"}


def fresh(states):
    """A copy of states that a merge may change in place (a sketch's)."""
    return pickle.loads(pickle.dumps(states, protocol=5))

