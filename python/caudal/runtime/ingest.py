"""The ingest actor: one per node, receiving that node's ranks.

It runs libcaudal's receiving end in a thread (the socket work never blocks
the actor's event loop), in its gathering mode: the receiver itself keeps
each rank's blocks and progress, and hands Python one 'steps' event once
every rank of the node finished a step, so Python works per node-step, not
per rank, block and frame. The thread copies that step's blocks into the Ray
object store as one object (a put costs far more than the bytes of a small
block: small blocks are packed into one buffer, catalog.Packed), gives
their slots back, and reports the step to the head (or its relay) in one
call per node and step: a report.Part, made by report.Ranks from the blocks
(a catalog.BlockRef each: the list, the index, this node) and the ranks'
progress, which says what the head needs in a few numbers and carries the
blocks packed, so that the head's work does not grow with the ranks; the
steps of small blocks that come faster than REPORT_LINGER share a report.
Blocks the receiver hands out before their step is complete (a rank whose
inline blocks of one step pass max_held_bytes) are put at once and reported
with their step. Up to report.IN_FLIGHT calls are outstanding, so the thread
puts the next step's blocks while the head takes the last one (the head
applies a node's reports in their order); a call the thread will wait for
is marked urgent, so that a relay does not hold it back (relay.py).
Declarations go to the head as catalog.Declaration. A report waits while the
head holds its limit of unanalysed steps: the thread then stops giving slots
back, the ranks' rings fill and their policy applies, so memory is bounded
end to end.

CAUDAL_INGEST_PER_RANK=1 selects the former path, one Python event per
block, step end and drop, with the same reports to the head: the baseline
that bench/bench_ranks.py measures the gathering against.
"""

import collections
import concurrent.futures
import itertools
import os
import queue
import shutil
import sys
import threading
import time
from typing import Any, NamedTuple

import numpy as np
import ray

from .. import _caudal
from ..catalog import BlockRef, Declaration, Packed
from . import receipt
from .head import _add_range
from .report import Reporter

# A step's blocks are packed into one buffer when they are this small on
# average: copying 64 KiB costs about what Ray spends per array of a list.
PACK_MAX_MEAN = 64 << 10
# An inline block (tcp, or larger than its slot) is held for a pair reduction
# only up to this size, an eighth of the receiver's max_held_bytes (256 MiB);
# a larger one is copied, so that holding it never stops the rank's reads.
HOLD_INLINE_MAX = 32 << 20
# Steps events with small blocks taken together when the ranks are ahead of
# the ingest (one object, one report): bounds the latency of the first, and
# what one object may keep in the store past the steps the memory budget
# counts. (Large blocks taken together too, packed, overflowed test_load's
# store under its budget: not done.) caudal run takes at most --max-pending
# of them together, so that the steps waiting for the analyses stay near
# what the user allowed however small they are.
STEPS_PER_PUT = 32
TOGETHER_BYTES = 4 << 20
# While steps come faster than this, an ingest sends one report per
# REPORT_LINGER seconds, with the steps that arrived meanwhile: a report
# costs the head and the driver a few milliseconds of CPU in Ray's call
# machinery whatever it carries (bench_peers' CPU part), so a fast
# simulation's steps share it, and a step waits at most this long for its
# report. Steps that come slower go at once, as before. Only steps taken
# together (small or unput blocks, up to TOGETHER_BYTES): large blocks are
# put and reported one step at a time, as the memory budget counts them.
# bench_peers' CPU part at 8 MiB steps flat out (about 50 steps/s), Caudal's
# CPU per step over the line: 20 ms 1.73 (2 steps a report), 50 ms
# 1.27 (4.4), 100 ms 1.05 (9): past 50 ms the steps' own costs dominate,
# while a step's added wait keeps growing.
REPORT_LINGER = 0.05
# Per-rank path only: held in slots (or inline buffers) while a step completes
BATCH_BYTES = 64 << 20
REFUSED_KEPT = 5  # refusal messages kept (and printed) in full; the rest are counted


class _Stopped(Exception):
    """shutdown() was asked while the thread waited on the head."""


class _Taken(NamedTuple):
    """A steps event as the plan left it (IngestActor._receive)."""

    ev: Any
    blocks: list  # the blocks to put: complete ones first, then early ones
    states: list  # each one's states from receipt, aligned with blocks
    ncomplete: int  # how many of blocks belong to complete steps
    unput: list  # BlockRefs (no object) of complete blocks not put
    unput_early: list  # ... and of early ones


def _pack(blocks):
    """pack_blocks, which gives their slots back; nothing for no blocks."""
    return _caudal.pack_blocks(blocks) if blocks else (b"", ())


# max_concurrency: watch() holds one thread for the whole run; caudal run
# adds a thread per core of the node for run() (the kernels).
CONTROL_THREADS = 6


@ray.remote(num_cpus=0, max_concurrency=CONTROL_THREADS)
class IngestActor:
    def __init__(self, endpoint, token, head, node, name=None, threads=1,
                 steps_per_put=STEPS_PER_PUT):
        self.steps_per_put = max(1, min(STEPS_PER_PUT, steps_per_put))
        self.per_rank = os.environ.get("CAUDAL_INGEST_PER_RANK") == "1"
        self.made_dir = _socket_dir(endpoint)
        self.receiver = _caudal.Receiver(endpoint, token=token, gather=not self.per_rank)
        self.head = head
        self.node = node  # the Ray node: where the blocks it puts live
        # Its identity towards the head (the order of its reports): the node
        # in situ, one of several on a node in transit.
        self.name = name or node
        self.steer_q = queue.SimpleQueue()
        self.stop = threading.Event()
        self.finished = threading.Event()  # the receiving thread ended
        self.error = None
        self.refused = []  # the first REFUSED_KEPT refusal messages
        # keys even when none: summary.json says 0, not nothing
        self.stats = collections.Counter(
            connections_refused=0, steps_put_together=0, reduced_at_receipt=0,
            receipt_in_parallel=0, receipt_failures=0, receipt_seconds=0.0, blocks_not_put=0,
            kernel_cpu_seconds=0.0, held_for_pairs=0, copied_for_pairs=0)
        # run() is called on several actor threads; its CPU is added under this
        self.run_lock = threading.Lock()
        self.together_high = -1  # the highest step counted in steps_put_together
        self.last_report = -REPORT_LINGER  # time.monotonic() of the last report
        self.ranks = set()  # the ranks that connected here
        # array -> [bytes of this node's blocks in one step, variable?], for
        # the store's budget (runtime/budget.py); a variable array's at its
        # declared capacity.
        self.declared = {}
        # Its calls to the head (or its relay), in order; its ranks and their progress.
        self.up = Reporter(head, self.name, self._get)
        self.plan = None  # receipt.Plan: the reductions computed as blocks arrive
        # (array, rank) -> (step, its block, or a copy): what the plan's pair
        # reductions pair each rank's next block of the array with
        self.previous = {}
        self.drops = collections.deque(maxlen=64)  # (first, last) of the ranks' latest drops
        self.to_put = set()  # ids of blocks held for pairs that a put still needs
        # The node's cores, for the reductions at receipt of a node-step's blocks
        self.pool = (concurrent.futures.ThreadPoolExecutor(threads, "caudal-receipt")
                     if threads > 1 else None)
        self.thread = threading.Thread(target=self._serve, name="caudal-ingest", daemon=True)
        self.thread.start()

    def endpoint(self):
        return self.receiver.endpoint

    def run(self, fn, *args):
        """fn(*args) here, next to the blocks this actor put: the kernels'
        per-block work (blocks.RAY.executors), on the actor's threads (the
        C kernels release the GIL), so that no Ray worker process is needed
        for them. Its CPU on this thread counts as the kernels' (the
        summary's kernel_cpu_seconds: what the analyses' own work cost,
        apart from Caudal's)."""
        t0 = time.thread_time()
        try:
            return fn(*args)
        finally:
            cpu = time.thread_time() - t0
            with self.run_lock:
                self.stats["kernel_cpu_seconds"] += cpu

    def set_plan(self, plan):
        """The driver's receipt.Plan, for the events from now on (one
        reference assigned: the receiving thread reads it per event)."""
        self.plan = plan

    def steer(self, rank, key, value):
        """Queued for the receiving thread, which owns the receiver."""
        self.steer_q.put((rank, key, value))

    def counters(self):
        return dict(self.stats, error=self.error, refused_messages=list(self.refused),
                    ranks_connected=_ranges(sorted(self.ranks)),
                    host=ray.util.get_node_ip_address())

    def step_bytes(self):
        """array -> (bytes of one step of it here, variable-length)."""
        return {name: tuple(v) for name, v in self.declared.items()}

    def watch(self):
        """Returns when the receiving thread ended: None after shutdown, the
        error otherwise. caudal run keeps one call in flight: if this actor
        dies the call fails, and the run knows at once."""
        self.finished.wait()
        return self.error

    def shutdown(self, timeout=10):
        self.stop.set()
        self.thread.join(timeout)
        if self.thread.is_alive():  # still owns the receiver: leave it to process exit
            self.error = self.error or "the receiving thread did not stop within %ss" % timeout
        else:
            self.receiver.close()
            if self.pool is not None:
                self.pool.shutdown(wait=False)
            if self.made_dir:  # on a node of its own; caudal run removes it on its node
                shutil.rmtree(self.made_dir, ignore_errors=True)
        return self.counters()

    # ---- the receiving thread ------------------------------------------

    def _serve(self):
        cpu0 = time.process_time()
        try:
            if self.per_rank:
                self._loop_per_rank()
            else:
                self._loop()
        except _Stopped:
            pass
        except Exception as e:  # reported to the head: the run fails loudly
            who = "" if self.name == self.node else " %s" % self.name
            self.error = "ingest%s on node %s: %r" % (who, self.node, e)
            try:
                ray.get(self.head.ingest_failed.remote(self.name, self.error), timeout=10)
            except Exception:
                pass  # caudal run sees the error through watch() anyway
        finally:
            # The whole process (Ray's threads too) and this thread alone,
            # for the run's summary and bench/bench_ranks.py.
            self.stats["cpu_seconds"] = time.process_time() - cpu0
            self.stats["thread_cpu_seconds"] = time.thread_time()
            self.finished.set()

    def _loop(self):
        early = collections.defaultdict(list)  # step -> BlockRefs put before it was complete
        ev = None
        while not self.stop.is_set():
            if ev is None:
                ev = self._next()
                if ev is None:
                    continue
            t = ev.type
            if t == "steps":
                ev = self._steps(ev, early)
                continue  # the event that came after them, if one did
            if t in ("bye", "disconnect"):
                # The receiver gave the steps this goodbye completes first.
                self._goodbye(ev)
            else:
                self._other(ev)
            ev = None
        for key in list(self.previous):
            self._unhold(key)
        self.up.drain()

    def _next(self):
        """The receiver's next event (None after 50 ms without one), the
        steering values queued for the ranks handed over first: this thread
        owns the receiver."""
        while not self.steer_q.empty():
            self.receiver.steer(*self.steer_q.get())
        if self.up.said or self.up.byes:  # what ranks said, kept: sent once no event waits
            ev = self.receiver.next(0)
            if ev is not None:
                return ev
            self.up.flush()
        return self.receiver.next(50)

    def _steps(self, ev, early):
        """A node's newly complete steps, one report to the head with them
        and the ranks' progress. Each event's blocks first go through the
        plan (_receive: reductions computed at receipt, unkept arrays'
        blocks given back unput). Small blocks (_ahead): those of ev and of
        the steps events waiting behind it (the ranks ahead of this ingest),
        every step of them, as one object, Ray's cost per put and per call
        paid once for them all; large ones: each step's as one object.
        Returns the event after them that was not taken, or None."""
        taken, packs, after = self._ahead(ev)  # ev first
        evs = [t.ev for t in taken]
        for e in evs:
            self.stats["blocks"] += len(e.blocks)
            self.stats["bytes"] += sum(b.nbytes for b in e.blocks)
            for rank, first, last, count in e.drops:
                self.up.dropped(rank, first, last, count)
        refs = []
        if packs:
            steps = {b.step for e in evs for b in e.blocks}
            if len(steps) > 1:  # each step once (ranks that connect late bring it again)
                self.stats["steps_put_together"] += sum(s > self.together_high for s in steps)
                self.together_high = max(self.together_high, max(steps))
            put = self._put_packed(packs, taken)
        else:
            t = taken[0]
            put = []
            for _, group in itertools.groupby(range(t.ncomplete), key=lambda i: t.blocks[i].step):
                group = list(group)
                put += self._put_blocks([t.blocks[i] for i in group], [t.states[i] for i in group])
            if len(t.blocks) > t.ncomplete:
                put += self._put_blocks(t.blocks[t.ncomplete:], t.states[t.ncomplete:])
            put = [put]
        for t, refs_t in zip(taken, put):
            refs += refs_t[:t.ncomplete] + t.unput
            for r in refs_t[t.ncomplete:] + t.unput_early:  # early: reported once complete
                early[r.step].append(r)
        progress = evs[-1].progress
        floor = min(progress.values()) if progress else None  # None: no rank holds back
        for step in sorted(s for s in early if floor is None or s <= floor):
            refs += early.pop(step)
        self._send_report(refs, [e.progress for e in evs])  # counted with their blocks
        return after

    def _receive(self, ev):
        """ev's blocks through the plan (receipt.py): each block's states
        computed in its slot; the blocks of an unkept array that got every
        planned state given back at once, as BlockRefs without an object."""
        plan = self.plan
        blocks, nc = ev.blocks, ev.ncomplete
        if plan is None:
            return _Taken(ev, blocks, [()] * len(blocks), nc, [], [])
        if self.previous:  # arrays whose pairs left the plan
            for key in [k for k in self.previous if not receipt.paired(plan, k[0])]:
                self._unhold(key)
        for rank, first, last, count in ev.drops:
            self.drops.append((first, last))
        states = receipt.compute(plan, blocks, self.stats, self.pool, self.previous, self.drops)
        kept, kept_states, ncomplete, unput, unput_early = [], [], 0, [], []
        for i, (b, st) in enumerate(zip(blocks, states)):
            unkept = receipt.complete(plan, b.name, st)
            # A step some rank of the node dropped is never analysed: the
            # next step pairs with the one before it, as the analyses do.
            held = (receipt.paired(plan, b.name) and not receipt.dropped(b.step, self.drops)
                    and self._hold(b, unkept))
            if unkept:
                (unput if i < nc else unput_early).append(
                    BlockRef.from_event(b, None, None, self.node, st))
                if not held:
                    b.release()
            else:
                kept.append(b)
                kept_states.append(st)
                ncomplete += i < nc
        self.stats["blocks_not_put"] += len(unput) + len(unput_early)
        return _Taken(ev, kept, kept_states, ncomplete, unput, unput_early)

    def _hold(self, b, unput):
        """Keep b as its rank's last block of its array, for the plan's pair
        reductions, in place of the one before: the block itself (its slot,
        or its inline memory) when that cannot stall the rank, else a copy.
        Whether the block itself is kept (a put must not release it)."""
        key = (b.name, b.rank)
        self._unhold(key)
        # A ring of 3 slots or more keeps one free while another is written.
        # An inline block counts against the receiver's max_held_bytes, past
        # which it reads no more of the rank: held only when small beside it.
        # A block packed into the store is released by the packing.
        itself = ((b.ring_slots >= 3 or (b.ring_slots == 0 and b.nbytes <= HOLD_INLINE_MAX))
                  and (unput or b.nbytes > PACK_MAX_MEAN)
                  and all(s == b.step or not isinstance(h, _caudal.Block)
                          for (_, r), (s, h) in self.previous.items() if r == b.rank))
        self.previous[key] = (b.step, b if itself else np.array(b))
        if itself and not unput:
            self.to_put.add(id(b))
        self.stats["held_for_pairs" if itself else "copied_for_pairs"] += 1
        return itself

    def _unhold(self, key):
        """Forget the block held for key; give it back unless a put still
        needs it (the put gives it back then)."""
        _, held = self.previous.pop(key, (None, None))
        if isinstance(held, _caudal.Block) and id(held) not in self.to_put:
            try:
                held.release()
            except BufferError:  # a view of it is still alive: it goes back when collected
                pass

    def _pack(self, blocks):
        """_pack: the blocks copied and given back (held ones too: their
        pairs are then left to the blocks' path)."""
        for b in blocks:
            self.to_put.discard(id(b))
        return _pack(blocks)

    def _held(self, b):
        """Whether b is held for a pair reduction (not to be released)."""
        return self.previous.get((b.name, b.rank), (None, None))[1] is b

    def _ahead(self, ev):
        """ev received, and when its kept blocks are small (packed), the
        steps events with small blocks waiting behind it or arriving until
        REPORT_LINGER after the last report, up to TOGETHER_BYTES and
        steps_per_put, each received and packed as it is
        taken (its slots given back at once: no rank's ring is held while
        more are taken): ([_Taken, ...], their packs or None for large
        blocks, the first event not taken or None)."""
        first = self._receive(ev)
        nbytes = sum(b.nbytes for b in first.blocks)
        if (first.blocks and not self._packed(first.blocks)) or nbytes > TOGETHER_BYTES:
            return [first], None, None
        taken, packs = [first], [self._pack(first.blocks)]
        linger_until = self.last_report + REPORT_LINGER
        while len(taken) < self.steps_per_put:
            wait = linger_until - time.monotonic()
            nxt = self.receiver.next(int(wait * 1000) if wait > 0 else 0)
            if nxt is None:
                break
            if nxt.type != "steps":
                return taken, packs, nxt
            kept = self._kept(nxt.blocks)
            size = sum(b.nbytes for b in kept)
            if (kept and not self._packed(kept)) or nbytes + size > TOGETHER_BYTES:
                return taken, packs, nxt
            t = self._receive(nxt)
            taken.append(t)
            packs.append(self._pack(t.blocks))
            nbytes += sum(b.nbytes for b in t.blocks)
        return taken, packs, None

    def _kept(self, blocks):
        """The blocks the plan would put (those of arrays it does not leave
        unput): what decides how an event goes into the store."""
        plan = self.plan
        if plan is None or not plan.unkept:
            return blocks
        return [b for b in blocks if b.name not in plan.unkept]

    def _put_packed(self, packs, taken):
        """Packed events' buffers as one Packed object in the store (each
        buffer's length is a multiple of its alignment, so the offsets
        stay aligned): per event, the BlockRefs of its kept blocks."""
        total = sum(len(b) for b, _ in packs)
        if not total:  # nothing kept
            return [[] for _ in taken]
        t0 = time.perf_counter()
        buf = np.empty(total, np.uint8)
        layout, at = [], 0
        for b, lay in packs:
            buf[at:at + len(b)] = np.frombuffer(b, np.uint8)
            layout += [(off + at, dtype, shape, order) for off, dtype, shape, order in lay]
            at += len(b)
        ref = ray.put(Packed(buf, tuple(layout)))
        self.stats["put_seconds"] += time.perf_counter() - t0
        self.stats["puts"] += 1
        out, i = [], 0
        for t in taken:
            out.append([BlockRef.from_event(b, ref, i + k, self.node, st)
                        for k, (b, st) in enumerate(zip(t.blocks, t.states))])
            i += len(t.blocks)
        return out

    def _put_blocks(self, blocks, states):
        """Blocks as one object in the store, their slots given back: small
        ones packed into one buffer (a catalog.Packed: one more copy, of
        little, against Ray's cost per array), large ones as a list of
        arrays (the one copy). states: each block's, from receipt."""
        if not blocks:
            return []
        t0 = time.perf_counter()
        if self._packed(blocks):
            buf, layout = self._pack(blocks)
            ref = ray.put(Packed(np.frombuffer(buf, np.uint8), layout))
        else:
            ref = ray.put([np.asarray(b) for b in blocks])
            for b in blocks:
                self.to_put.discard(id(b))
                if not self._held(b):
                    b.release()
        self.stats["put_seconds"] += time.perf_counter() - t0
        self.stats["puts"] += 1
        return [BlockRef.from_event(b, ref, i, self.node, st)
                for i, (b, st) in enumerate(zip(blocks, states))]

    @staticmethod
    def _packed(blocks):
        """Whether blocks go into the store packed into one buffer."""
        return bool(blocks) and sum(b.nbytes for b in blocks) <= PACK_MAX_MEAN * len(blocks)

    def _send_report(self, refs, progress=()):
        self.stats["reports"] += 1
        self.last_report = time.monotonic()
        self.up.report(refs, progress=progress)

    def _goodbye(self, ev):
        """A rank left, cleanly (BYE: its counters) or not (its message);
        after the reports before it (Reporter.goodbye)."""
        bye = ev.type == "bye"
        # (its blocks held for pairs stay: its last steps may still come,
        # once the other ranks finished them)
        self.up.goodbye(ev.rank, bye, ev.counters if bye else ev.message)

    def _other(self, ev):
        """Events both paths handle alike."""
        t = ev.type
        if t == "connect":
            self.ranks.add(ev.rank)
            self.up.connected(ev.rank, ev.size)
        elif t == "declare":
            d = Declaration.from_info(ev.rank, ev)
            entry = self.declared.setdefault(d.name, [0, d.variable])
            entry[0] += int(np.prod(d.count, dtype=np.int64)) * np.dtype(d.dtype).itemsize
            self.up.declare(d)
        elif t == "steer":
            # Latest value wins: no need to wait for the reports first.
            self._get(self.head.reported.remote(ev.rank, ev.key, ev.value))
        elif t == "refused":
            # Never about a rank of this run (it did not authenticate, or
            # claimed a rank already connected): logged and counted only.
            self.stats["connections_refused"] += 1
            n = self.stats["connections_refused"]
            if n <= REFUSED_KEPT:
                self.refused.append(ev.message)
                print("caudal ingest: refused a connection: %s" % ev.message,
                      file=sys.stderr, flush=True)

    # ---- the per-rank path (CAUDAL_INGEST_PER_RANK=1), the bench's baseline

    def _loop_per_rank(self):
        pending = collections.defaultdict(list)  # step -> [block event, or BlockRef if put]
        held = [0]  # bytes of the block events in pending
        high = self.up.ranks.high  # connected rank -> highest step finished (published or dropped)
        reported = [None]  # the node's floor at the last report
        while not self.stop.is_set():
            ev = self._next()
            if ev is None:
                continue
            t = ev.type
            if t == "block":
                self.stats["blocks"] += 1
                self.stats["bytes"] += ev.nbytes
                if held[0] + ev.nbytes > BATCH_BYTES:
                    t0 = time.perf_counter()
                    ref = ray.put(np.asarray(ev.block))  # large: alone, at once
                    ev.block.release()
                    self.stats["put_seconds"] += time.perf_counter() - t0
                    pending[ev.step].append(BlockRef.from_event(ev, ref, node=self.node))
                else:
                    held[0] += ev.nbytes
                    pending[ev.step].append(ev)
            elif t == "step_end":
                self.up.ranks.finished({ev.rank: ev.step})
                self._report(pending, high, reported, held)
            elif t == "drop":
                self.up.ranks.finished({ev.rank: ev.step})
                self.up.call("dropped", ev.rank, ev.first_step, ev.step, ev.ndropped)
                self._report(pending, high, reported, held)
            elif t in ("bye", "disconnect"):
                self.up.ranks.left(ev.rank)
                self._report(pending, high, reported, held, force=True)
                self._goodbye(ev)
            else:
                self._other(ev)
        self.up.drain()

    def _report(self, pending, high, reported, held, force=False):
        """Once every rank of this node finished a step, put that step's
        blocks (and any earlier ones) in the store, one object per step, and
        hand the head their references with the ranks' progress: one call
        per node and step."""
        floor = min(high.values()) if high else None
        if not force and (floor is None or floor == reported[0]):
            return
        steps = [s for s in pending if floor is None or s <= floor]
        blocks = [b for s in sorted(steps) for b in self._put(pending.pop(s), held)]
        reported[0] = floor
        self._send_report(blocks)

    def _put(self, entries, held):
        """A step's block events as one list object in the store (the one
        copy), their slots given back; entries already put pass through."""
        events = [e for e in entries if not isinstance(e, BlockRef)]
        out = [e for e in entries if isinstance(e, BlockRef)]
        if events:
            t0 = time.perf_counter()
            ref = ray.put([np.asarray(e.block) for e in events])
            for e in events:
                e.block.release()
                held[0] -= e.nbytes
            self.stats["put_seconds"] += time.perf_counter() - t0
            self.stats["puts"] += 1
            out += [BlockRef.from_event(e, ref, i, self.node) for i, e in enumerate(events)]
        return out

    def _get(self, ref):
        """ray.get that gives up once shutdown() is asked: a report may wait
        on the head (back-pressure) for as long as the analyses lag."""
        while True:
            ready, _ = ray.wait([ref], timeout=0.5)
            if ready:
                return ray.get(ref)
            if self.stop.is_set():
                raise _Stopped()


def _socket_dir(endpoint):
    """In situ on another node than caudal run's, the run's private
    directory does not exist there yet: made as caudal run makes it (0700),
    and returned so that shutdown removes it. None when there is nothing to
    make."""
    if not endpoint.startswith("unix:"):
        return None
    d = os.path.dirname(endpoint[5:])
    if os.path.isdir(d):
        return None
    os.mkdir(d, 0o700)
    return d


def _ranges(ranks):
    """[[first, last], ...] of a sorted list of ranks."""
    out = []
    for r in ranks:
        _add_range(out, r, r)
    return out
