"""The ingest actor: one per node, receiving that node's ranks.

It runs libcaudal's receiving end in a thread (the socket work never blocks
the actor's event loop). Once every rank of the node finished a step, it
copies that step's blocks into the Ray object store as one object (a list:
a put costs far more than the bytes of a small block, 0.7 ms against 1.2 ms
for 32 blocks of 8 KiB in one), gives their slots back, and reports the
blocks (a catalog.BlockRef each: the list, the index, this node) to the head
in one call per node and step. Blocks that would hold more than BATCH_BYTES
of slots until then go in at once, alone. Up to REPORTS_IN_FLIGHT such calls
are outstanding, so the thread puts the next step's blocks while the head
takes the last one (the head applies a node's reports in their order).
Declarations go to the head as catalog.Declaration. A report waits while the head holds its limit of
unanalysed steps: the thread then stops giving slots back, the ranks' rings
fill and their policy applies, so memory is bounded end to end.
"""

import collections
import queue
import sys
import threading
import time

import numpy as np
import ray

from .. import _caudal
from ..catalog import BlockRef, Declaration

REPORTS_IN_FLIGHT = 2
BATCH_BYTES = 64 << 20  # held in slots (or inline buffers) while a step completes
REFUSED_KEPT = 5  # refusal messages kept (and printed) in full; the rest are counted


class _Stopped(Exception):
    """shutdown() was asked while the thread waited on the head."""


# max_concurrency: watch() holds one thread for the whole run.
@ray.remote(num_cpus=0, max_concurrency=6)
class IngestActor:
    def __init__(self, endpoint, token, head, node, name=None):
        self.receiver = _caudal.Receiver(endpoint, token=token)
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
        self.stats = collections.Counter(connections_refused=0)  # a key even when none
        self.inflight = collections.deque()  # reports the head has not answered
        self.seq = 0  # this ingest's next report number
        self.thread = threading.Thread(target=self._serve, name="caudal-ingest", daemon=True)
        self.thread.start()

    def endpoint(self):
        return self.receiver.endpoint

    def steer(self, rank, key, value):
        """Queued for the receiving thread, which owns the receiver."""
        self.steer_q.put((rank, key, value))

    def counters(self):
        return dict(self.stats, error=self.error, refused_messages=list(self.refused))

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
        return self.counters()

    # ---- the receiving thread ------------------------------------------

    def _serve(self):
        try:
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
            self.finished.set()

    def _loop(self):
        r = self.receiver
        pending = collections.defaultdict(list)  # step -> [block event, or BlockRef if put]
        held = [0]  # bytes of the block events in pending
        high = {}  # local rank -> highest step it finished (published or dropped)
        reported = [None]  # the node's floor at the last report
        while not self.stop.is_set():
            while not self.steer_q.empty():
                rank, key, value = self.steer_q.get()
                r.steer(rank, key, value)
            ev = r.next(50)
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
                high[ev.rank] = ev.step
                self._report(pending, high, reported, held)
            elif t == "drop":
                high[ev.rank] = ev.step
                self._call(self.head.dropped, ev.rank, ev.first_step, ev.step, ev.ndropped)
                self._report(pending, high, reported, held)
            elif t == "connect":
                high[ev.rank] = -1
                self._call(self.head.connected, ev.rank, ev.size)
            elif t == "declare":
                self._call(self.head.declare, Declaration.from_info(ev.rank, ev))
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
            elif t in ("bye", "disconnect"):
                high.pop(ev.rank, None)
                self._report(pending, high, reported, held, force=True)
                info = ev.counters if t == "bye" else ev.message
                self._call(self.head.rank_done, ev.rank, t == "bye", info)
        self._drain()

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
        self.stats["reports"] += 1
        self.inflight.append(self.head.report.remote(self.name, self.seq, blocks, dict(high)))
        self.seq += 1
        while len(self.inflight) > REPORTS_IN_FLIGHT:
            self._get(self.inflight.popleft())

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

    def _drain(self):
        while self.inflight:
            self._get(self.inflight.popleft())

    def _call(self, method, *args):
        """Any other call to the head, after the reports before it: a rank's
        goodbye must not overtake the report of its last steps."""
        self._drain()
        return self._get(method.remote(*args))

    def _get(self, ref):
        """ray.get that gives up once shutdown() is asked: a report may wait
        on the head (back-pressure) for as long as the analyses lag."""
        while True:
            ready, _ = ray.wait([ref], timeout=0.5)
            if ready:
                return ray.get(ref)
            if self.stop.is_set():
                raise _Stopped()
