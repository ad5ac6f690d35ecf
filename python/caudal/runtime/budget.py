"""The object store budget of a run: what each node's store must hold, set
against what it has, printed once the first step is complete and refused
when it cannot fit (DESIGN.md, "Time and memory").

A node's store holds, per array, its blocks of the steps the analyses keep
(the largest window over the analyses that read the array), of the steps
the head holds for the driver (--max-pending), as many again taken by the
driver at once, and of the ingest's reports in flight: W + 2P + 3 steps, the
bound tests/python/test_load.py checks (docs/deployment.md, "What to
size"). Arrays no analysis reads still pass through the store: 2P + 3.

Past SPILL of its capacity Ray starts spilling objects to disk, which is
slow but works: a warning. Past the capacity it cannot work: the run is
refused (exit code 3) with the numbers and what to change.
"""

from typing import Dict, List, NamedTuple, Optional, Set

SPILL = 0.8  # Ray's object_spilling_threshold
IN_FLIGHT = 3  # the ingest's reports in flight and the step being put


class Verdict(NamedTuple):
    lines: List[str]  # what caudal run prints, one line each
    warning: Optional[str]  # past SPILL on some node
    error: Optional[str]  # past the capacity on some node: refuse


def steps_held(window, pending):
    return window + 2 * pending + IN_FLIGHT


def check(per_node: Dict[str, Dict[str, int]], windows: Dict[str, int], pending: int,
          capacity: Dict[str, int], names: Optional[Dict[str, str]] = None,
          variable: Set[str] = frozenset(), unkept: Set[str] = frozenset()) -> Verdict:
    """`per_node`: node -> array -> bytes of that node's blocks in one step;
    `windows`: array -> the largest window reading it (absent: none does);
    `capacity`: node -> its store's bytes; `names`: node -> how to call it;
    `variable`: arrays whose bytes are their declared capacity, an upper
    bound: they can make a warning, never a refusal; so can `unkept` ones,
    which all their analyses read as reductions_only: put only until the
    ingests compute their reductions (runtime/receipt.py), and said so."""
    variable = set(variable) | set(unkept)
    names = names or {}
    worst = None  # (fraction, node, need, cap)
    certain = 0.0  # the largest fraction counting fixed arrays only
    for node, arrays in per_node.items():
        need = sum(b * steps_held(windows.get(a, 0), pending) for a, b in arrays.items())
        fixed = sum(b * steps_held(windows.get(a, 0), pending) for a, b in arrays.items()
                    if a not in variable)
        cap = capacity.get(node) or 0
        frac = need / cap if cap else float("inf")
        certain = max(certain, fixed / cap if cap else float("inf") if fixed else 0.0)
        if worst is None or frac > worst[0]:
            worst = (frac, node, need, cap)
    if worst is None:
        return Verdict([], None, None)
    frac, node, need, cap = worst
    step = sum(b for arrays in per_node.values() for b in arrays.values())
    held = {a: steps_held(windows.get(a, 0), pending)
            for arrays in per_node.values() for a in arrays}
    kept = ", ".join("%s %d" % (a, k) for a, k in sorted(held.items()))
    where = names.get(node, node[:12])
    lines = ["memory: a step is %s over %d node(s); each store holds up to W + 2P + %d steps "
             "of an array (window W, --max-pending P=%d: %s)"
             % (_mib(step), len(per_node), IN_FLIGHT, pending, kept),
             "memory: the busiest store (%s) needs up to %s of its %s (%.0f%%)%s"
             % (where, _mib(need), _mib(cap), 100 * frac,
                "; %s put only until %s reductions are computed as %s arrive "
                "(reductions_only): far less then"
                % (", ".join(sorted(unkept)), "their" if len(unkept) > 1 else "its",
                   "their blocks" if len(unkept) > 1 else "its blocks")
                if unkept else "")]
    fix = ("a smaller window or --max-pending, fewer or smaller arrays, or a larger object "
           "store (ray start --object-store-memory; the embedded Ray: "
           "RAY_OVERRIDE_RESOURCES='{\"object_store_memory\": BYTES}')")
    if frac > 1 and certain > 1:
        return Verdict(lines, None, "the object store of node %s holds %s and the run needs up "
                       "to %s there (%s); to fit, use %s"
                       % (where, _mib(cap), _mib(need), kept and "steps held per array: " + kept,
                          fix))
    if frac > SPILL:
        bound = " (variable-length arrays at their declared capacity)" if variable else ""
        return Verdict(lines, "the store of node %s may fill past %.0f%% (%s of %s%s), where "
                       "Ray spills objects to disk, which is slow: %s"
                       % (where, 100 * SPILL, _mib(need), _mib(cap), bound, fix), None)
    return Verdict(lines, None, None)


def _mib(n):
    return "%.1f MiB" % (n / 2**20)
