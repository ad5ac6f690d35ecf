"""Reductions computed at receipt (caudal/runtime/receipt.py): the learning
of what the analyses call (no Ray), and real `caudal run`s of heat2d and of
_particles_sim.py whose results are compared with NumPy on the simulations'
own output, with the blocks' path (CAUDAL_RECEIPT=0) bit for bit, and with
what an analysis declared reductions_only may and may not do."""

import json
import os
import sys

import numpy as np
import pytest

from caudal.analytics import analysis
from caudal.runtime import ingest as ingest_actor
from caudal.runtime import receipt, report
from caudal.stats import _describe_block, _moments_block
from test_completeness import RANKS, SIM, read_truth, steps_of
from test_run import caudal_run

SHAPE = (32, 24)
BINS, RANGE = 16, (0.0, 2.0)

SCRIPT = """
import os

import caudal

ONLY = os.environ.get("RECEIPT_ONLY") == "1"
DATA_AT = int(os.environ.get("RECEIPT_DATA_AT", "-1"))  # read .data at this step
MOMENTS_FROM = int(os.environ.get("RECEIPT_MOMENTS_FROM", "-1"))  # a new reduction from here


@caudal.analysis("temperature", reductions_only=ONLY)
def stats(t, ctx):
    m, h = caudal.stats.describe(t[-1], bins=%d, range=%r)
    for k in ("mean", "var", "min", "max", "count"):
        ctx.record(k, getattr(m, k))
    ctx.record("hist", h.counts.tolist())
    ctx.record("median", caudal.stats.quantile(t[-1], 0.5))
    if not ONLY:  # a range from the data: other arguments every step
        ctx.record("auto", caudal.stats.histogram(t[-1], bins=8).counts.tolist())
    if ctx.step == DATA_AT:
        ctx.record("sum", float(t[-1].data.sum().compute()))
    if 0 <= MOMENTS_FROM <= ctx.step:
        ctx.record("late_mean", caudal.stats.moments(t[-1]).mean)
""" % (BINS, RANGE)

# Back-pressure bounds how far the ranks run ahead of the analyses, so the
# steps received after the plan reached the ingest are all but the first
# AHEAD at most: the ring, the reports in flight, the one being made, the
# head's pending report and the one the driver took (each up to
# STEPS_PER_PUT of these small steps), and the two analysed steps the plan
# waits for. A bound, not a timing: a loaded CI machine saw 27 steps ahead,
# more than the 16 once written here.
PACED = ("--ring-depth", "2", "--max-pending", "1")
AHEAD = 2 + (report.IN_FLIGHT + 3) * ingest_actor.STEPS_PER_PUT + 2
STEPS = AHEAD + 60
# Node-steps of 1 MiB are not packed: one step per report, 9 by the same
# count, with slack.
AHEAD_LARGE = 16


def heat_run(tmp_path, heat2d, name, env, shape=SHAPE, steps=STEPS, script=SCRIPT):
    folder = tmp_path / name
    folder.mkdir()
    text, script = script, folder / "stats.py"
    script.write_text(text)
    dump = folder / "dump"
    p, results, run_dir = caudal_run(
        folder, script, [heat2d, str(shape[0]), str(shape[1]), str(steps), "--dump-every", "1",
                         "--dump", str(dump)], ranks=2, extra=PACED,
        env=dict(env, CAUDAL_DEMO_THRESHOLD="1e9"))
    fields = [np.fromfile("%s-%d.bin" % (dump, s), dtype=np.float64) for s in range(steps)]
    summary = json.loads((run_dir / "summary.json").read_text())
    errors = [json.loads(line) for line in (run_dir / "errors.jsonl").read_text().splitlines()]
    return p, results, summary, fields, errors


def check_numpy(results, fields, steps):
    for s in steps:
        x = fields[s]
        assert results["count"][s] == x.size
        assert abs(results["mean"][s] - x.mean()) <= 1e-13 * abs(x.mean())
        assert abs(results["var"][s] - x.var()) <= 1e-10 * x.var()
        assert results["min"][s] == x.min() and results["max"][s] == x.max()
        assert results["hist"][s] == np.histogram(x, BINS, RANGE)[0].tolist(), s
        xs = np.sort(x)  # fewer values than a sketch holds: an exact order statistic
        assert np.quantile(xs, 0.5, method="lower") <= results["median"][s] \
            <= np.quantile(xs, 0.5, method="higher")


# ---------------------------------------------------------------- learning


def test_a_reduction_is_planned_once_called_on_two_steps_in_a_row_and_left_when_idle():
    @analysis("t")
    def kept(t, ctx):
        pass

    learner = receipt.Learner([kept])
    spec = ("uniform", 0.0, 1.0, 8)
    describe = learner.rid(_describe_block, (spec,))
    moments = learner.rid(_moments_block, ())
    assert describe == learner.rid(_describe_block, (spec,))  # the same arguments, one id
    assert describe != learner.rid(_describe_block, (("uniform", 0.0, 2.0, 8),))
    assert learner.rid(lambda b: b.sum(), ()) is None  # only caudal's own kernels

    learner.called("t", describe, False)
    assert learner.step_done({"t"}) is None  # once: not yet
    learner.called("t", describe, False)
    learner.called("t", moments, False)
    plan = learner.step_done({"t"})
    assert [rid for rid, _, _ in plan.reductions["t"]] == [describe]
    assert plan.reductions["t"][0][1:] == (_describe_block, (spec,))
    assert plan.unkept == frozenset() and learner.was_planned("t", describe)
    # A reduction whose arguments change every step (a histogram with the
    # data's range) never makes the plan.
    for lo in range(5):
        learner.called("t", describe, True)
        learner.called("t", learner.rid(_describe_block, (("uniform", lo, 9.0, 8),)), False)
        assert learner.step_done({"t"}) is None
    # Idle for IDLE_STEPS analysed steps of its array: out of the plan.
    for _ in range(receipt.IDLE_STEPS):
        assert learner.step_done({"t"}) is None
    assert learner.step_done({"t"}).reductions == {}
    assert learner.summary()["reductions_at_receipt"] == 5


def test_an_array_whose_analyses_are_all_reductions_only_is_unkept_and_planned_at_once():
    @analysis("t", "u", reductions_only=True)
    def only(t, u, ctx):
        pass

    @analysis("u")
    def reads(u, ctx):
        pass

    learner = receipt.Learner([only, reads])
    assert learner.unkept == frozenset({"t"})  # u is also read by an analysis that may read it
    m = learner.rid(_moments_block, ())
    learner.called("t", m, False)
    learner.called("u", m, False)
    learner.returned(only)  # the driver says so once a call returned
    plan = learner.step_done({"t", "u"})
    assert plan.unkept == {"t"} and set(plan.reductions) == {"t"}
    with pytest.raises(ValueError, match="reductions_only must be True or False"):
        analysis("t", reductions_only="yes")


class _Block:
    """What compute reads of a receiver's block: its array's name, its
    size, and its data as a NumPy array."""

    def __init__(self, name, a):
        self.name, self.a, self.nbytes = name, a, a.nbytes

    def __array__(self, dtype=None, copy=None):
        return self.a


def test_an_events_blocks_are_reduced_on_the_pools_threads_as_they_are_in_turn():
    """A node-step of 1 MiB or more is reduced over the ingest's threads:
    the same states, in the blocks' order, as one thread gives; an array
    without planned reductions gets none, a failing reduction is left out
    and counted."""
    import collections
    import concurrent.futures

    from caudal.stats import _hist_block

    rng = np.random.default_rng(3)
    blocks = [_Block("t", rng.random((256, 128)) * 2) for _ in range(6)]  # 256 KiB each
    blocks.insert(2, _Block("other", np.ones(4)))
    blocks.append(_Block("t", rng.random(7).astype(np.complex128)))  # refused
    spec = ("uniform", 0.0, 2.0, 16)
    plan = receipt.Plan({"t": ((0, _moments_block, ()), (1, _hist_block, (spec,)))},
                        frozenset())
    serial, parallel = collections.Counter(), collections.Counter()
    one = receipt.compute(plan, blocks, serial)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        many = receipt.compute(plan, blocks, parallel, pool)
    assert many[2] == () and one[2] == ()
    for i, b in enumerate(blocks[:-1]):
        if b.name != "t":
            continue
        x = b.a.ravel()
        assert many[i][0][1] == one[i][0][1] and many[i][0][1][0] == x.size
        assert many[i][0][1][2] == pytest.approx(x.mean(), rel=1e-14)
        assert np.array_equal(many[i][1][1], one[i][1][1])
        assert many[i][1][1][:16].tolist() == np.histogram(x, 16, (0.0, 2.0))[0].tolist()
    assert many[-1] == one[-1] == ()  # both kernels refuse complex values
    # the kernels' CPU, on whichever thread ran them: some, and serially
    # within the receipt's wall time
    assert 0 < serial["kernel_cpu_seconds"] <= serial["receipt_seconds"]
    assert parallel["kernel_cpu_seconds"] > 0
    for counts in (serial, parallel):
        del counts["receipt_seconds"], counts["kernel_cpu_seconds"]
    assert parallel.pop("receipt_in_parallel") == 1
    assert serial == parallel == {"reduced_at_receipt": 12, "receipt_failures": 2}


def test_on_an_unkept_array_a_reduction_called_every_few_steps_stays_once_it_came_back():
    """Every 10th step (more than IDLE_STEPS apart): planned at its first
    call, left once idle, and for good once it came back; meanwhile the
    reductions nobody calls any more are forgotten (a histogram over each
    step's own range is a new one every step), so the learner stays small."""
    @analysis("t", reductions_only=True)
    def only(t, ctx):
        pass

    learner = receipt.Learner([only])
    plans = []
    for step in range(40):
        if step % 10 == 5:
            learner.called("t", learner.rid(_moments_block, ()), False)
        learner.called("t", learner.rid(_describe_block, (("uniform", step, 99.0, 8),)), False)
        plan = learner.step_done({"t"})  # changes every step: a new describe
        plans.append(any(fn is _moments_block for _, fn, _ in plan.reductions["t"]))
        assert len(learner.calls) <= receipt.IDLE_STEPS + 3
    assert plans[:5] == [False] * 5 and all(plans[5:14])  # planned at its first call
    assert plans[14] is False  # idle: left
    assert all(plans[15:])  # back: planned again, for good
    assert learner.was_planned("t", learner.rid(_moments_block, ()))


def test_a_pair_reduction_is_planned_on_consecutive_steps_and_its_unkept_array_waits_for_it():
    """change() over a window of two: planned at its first call on an
    unkept array; the array is left unput only once every analysis of it
    returned from a call (the rate's first is on the second step) and the
    pair was answered at receipt once (every ingest holds a previous block
    of every rank); a call on steps with one between them keeps the array's
    blocks put for the rest of the run."""
    from caudal.temporal import _change_block

    @analysis("t", window=2, reductions_only=True)
    def rate(t, ctx):
        pass

    @analysis("t", reductions_only=True)
    def mean(t, ctx):
        pass

    learner = receipt.Learner([rate, mean])
    moments = learner.rid(_moments_block, ())
    learner.called("t", moments, False)  # step 0: the window of two is not full yet
    learner.returned(mean)
    assert learner.step_done({"t"}).unkept == frozenset()
    pair = learner.rid(_change_block, (None,))
    learner.called("t", moments, True)
    learner.called("t", pair, False)  # step 1, on steps 0 and 1
    learner.returned(rate)
    plan = learner.step_done({"t"})  # both analyses returned: the pair planned
    assert plan.reductions["t"] == ((moments, _moments_block, ()), (pair, _change_block, (None,)))
    assert plan.unkept == frozenset() and receipt.paired(plan, "t")
    learner.called("t", pair, False, pair=True)  # the step received before the plan
    assert learner.step_done({"t"}) is None
    learner.called("t", pair, True, pair=True)  # every block had it: every ingest holds one
    plan = learner.step_done({"t"})
    assert plan.unkept == {"t"} and learner.summary()["unkept"] == ["t"]
    learner.called("t", pair, True, pair=True)
    assert learner.step_done({"t"}) is None
    learner.called("t", pair, False, consecutive=False)  # steps 2 and 4, say
    plan = learner.step_done({"t"})
    assert plan.unkept == frozenset()
    assert learner.summary()["kept_for_pairs_apart"] == ["t"]
    assert not receipt.paired(receipt.Plan({"t": ((0, _moments_block, ()),)}, frozenset()), "t")


class _StepBlock(_Block):
    def __init__(self, name, a, rank, step):
        super().__init__(name, a)
        self.rank, self.step = rank, step


def test_a_pair_reduction_at_receipt_pairs_each_block_with_its_ranks_step_before():
    """Each block pairs with its rank's block of the step before: held from
    an earlier event, or earlier in the same event (a rank ahead); a step
    some rank dropped is skipped over; a block with nothing before it gets
    no state (the block is then kept). The state is tagged with the older
    step and equals the blocks' path's per-block function."""
    import collections

    from caudal.temporal import _change_block

    rng = np.random.default_rng(5)
    x = {(r, s): rng.random((6, 4)) for r in range(2) for s in range(6)}
    plan = receipt.Plan({"t": ((7, _change_block, (None,)), (8, _moments_block, ()))},
                        frozenset({"t"}))
    stats = collections.Counter()
    previous = {("t", 0): (1, x[0, 1])}  # rank 0's step 1 is held; rank 1 has none
    blocks = [_StepBlock("t", x[r, s], r, s) for s in (2, 3, 5) for r in range(2)]
    out = receipt.compute(plan, blocks, stats, previous=previous, drops=[(3, 4)])
    for b, states in zip(blocks, out):
        got = dict(states)
        assert got[8] == _moments_block(x[b.rank, b.step])
        before = {2: 1, 3: 2, 5: 2}[b.step]  # 3 was dropped: 5 pairs with 2
        if b.rank == 1 and b.step == 2:
            assert 7 not in got  # nothing before it
            continue
        assert got[7] == (before, _change_block(x[b.rank, b.step], x[b.rank, before],
                                                float(b.step - before)))
    assert stats["reduced_at_receipt"] == 11 and stats["receipt_failures"] == 0
    dt = receipt.compute(receipt.Plan({"t": ((7, _change_block, (0.5,)),)}, frozenset()),
                         blocks[:1], stats, previous=previous)
    assert dt[0][0][1] == (1, _change_block(x[0, 2], x[0, 1], 0.5))  # a given dt wins


# ---------------------------------------------------------------- caudal run


def test_reductions_at_receipt_equal_the_blocks_path_bit_for_bit(tmp_path, heat2d):
    """The same deterministic simulation, with reductions computed at
    receipt and with CAUDAL_RECEIPT=0: every recorded value is the same to
    the last bit, and equals NumPy on the simulation's dumps; the blocks
    are put all the same (no analysis promised reductions_only)."""
    p, at_receipt, summary, fields, errors = heat_run(tmp_path, heat2d, "receipt", {})
    assert p.returncode == 0, p.stdout + p.stderr + str(errors)
    q, from_blocks, summary0, _, _ = heat_run(tmp_path, heat2d, "blocks", {"CAUDAL_RECEIPT": "0"})
    assert q.returncode == 0, q.stdout + q.stderr
    assert sorted(at_receipt["mean"]) == list(range(STEPS))
    assert at_receipt == from_blocks
    check_numpy(at_receipt, fields, range(STEPS))
    for s in range(STEPS):
        assert at_receipt["auto"][s] == np.histogram(fields[s], 8)[0].tolist()

    r = summary["receipt"]
    # describe, sketch, and the moments that give the histogram its range
    assert r["planned"] == {"temperature": 3} and r["unkept"] == []
    assert r["reductions_at_receipt"] >= 3 * (STEPS - AHEAD), r
    # The data-ranged histogram is never planned: every step from the blocks.
    assert r["reductions_from_blocks"] >= STEPS
    (ingest,) = summary["ingest"]
    assert ingest["reduced_at_receipt"] >= 2 * 3 * (STEPS - AHEAD)  # 2 ranks, 3 reductions
    # Every block put all the same (how many steps share a put is the
    # ranks' lead, not a fact of the run: CI once saw 40 steps in 4 puts).
    assert ingest["blocks_not_put"] == 0 and ingest["puts"] >= 1
    assert summary0["receipt"] is None and summary0["ingest"][0]["reduced_at_receipt"] == 0


def test_node_steps_of_a_mib_reduce_on_the_ingests_threads_to_the_same_bits(tmp_path, heat2d):
    """2 ranks of 512 KiB: each node-step (1 MiB) is reduced over the
    ingest's threads (receipt.PARALLEL_BYTES); every value is the blocks'
    path's (CAUDAL_RECEIPT=0) to the last bit."""
    shape, steps = (512, 256), 24
    p, at_receipt, summary, fields, errors = heat_run(tmp_path, heat2d, "big", {}, shape, steps)
    assert p.returncode == 0, p.stdout + p.stderr + str(errors)
    q, from_blocks, _, _, _ = heat_run(tmp_path, heat2d, "big0", {"CAUDAL_RECEIPT": "0"},
                                       shape, steps)
    assert q.returncode == 0, q.stdout + q.stderr
    assert sorted(at_receipt["mean"]) == list(range(steps)) and at_receipt == from_blocks
    for s in range(steps):
        assert at_receipt["hist"][s] == np.histogram(fields[s], BINS, RANGE)[0].tolist()
        assert at_receipt["count"][s] == fields[s].size
    assert summary["receipt"]["reductions_at_receipt"] >= 3 * (steps - AHEAD_LARGE)
    assert summary["ingest"][0]["reduced_at_receipt"] >= 2 * 3 * (steps - AHEAD_LARGE)
    assert summary["ingest"][0]["receipt_in_parallel"] >= steps - AHEAD_LARGE  # node-steps


def test_reductions_only_puts_no_blocks_and_equals_numpy(tmp_path, heat2d):
    p, results, summary, fields, errors = heat_run(tmp_path, heat2d, "only",
                                                   {"RECEIPT_ONLY": "1"})
    assert p.returncode == 0, p.stdout + p.stderr + str(errors)
    assert sorted(results["mean"]) == list(range(STEPS))
    check_numpy(results, fields, range(STEPS))
    (ingest,) = summary["ingest"]
    # Only the steps received before the plan reached the ingest were put.
    assert ingest["blocks_not_put"] >= 2 * (STEPS - AHEAD), ingest
    assert ingest["puts"] <= AHEAD and ingest["blocks"] == 2 * STEPS
    assert summary["receipt"]["unkept"] == ["temperature"]


def test_reductions_only_refuses_reading_data_it_promised_not_to_read(tmp_path, heat2d):
    """Promised reductions_only, then read .data at step 20 and a new
    reduction from step 22: each refused call is an error that names the
    array and the step (the run exits 1: an analysis failed), the other
    steps' results are all there, and the new reduction is planned at once:
    it is computed at receipt for every step the ingest receives after the
    plan (here the ranks may be done by then: their slots go back at
    receipt, so nothing holds them back; the unit tests above check the
    plan)."""
    p, results, summary, fields, errors = heat_run(
        tmp_path, heat2d, "refused",
        {"RECEIPT_ONLY": "1", "RECEIPT_DATA_AT": "20", "RECEIPT_MOMENTS_FROM": "22"})
    assert p.returncode == 1, p.stdout + p.stderr
    by_step = {e["step"]: e["error"] for e in errors}
    assert "array 'temperature', step 20: its blocks were not kept" in by_step[20], by_step
    assert "leave reductions_only out" in by_step[20]
    late = [s for s in by_step if s >= 22]
    assert late and all("moments was not computed as its blocks arrived" in by_step[s]
                        and "array 'temperature', step %d" % s in by_step[s] for s in late)
    assert set(late) == set(range(22, max(late) + 1))  # then computed: never refused again
    # What the calls recorded before they failed is kept; the rest of the
    # steps are whole, and the late mean is NumPy's once it is computed.
    assert sorted(results["mean"]) == list(range(STEPS)) and 20 not in results["sum"]
    check_numpy(results, fields, range(STEPS))
    assert sorted(results["late_mean"]) == list(range(max(late) + 1, STEPS))
    for s in results["late_mean"]:
        assert abs(results["late_mean"][s] - fields[s].mean()) <= 1e-13 * fields[s].mean()
    assert summary["failures"] == len(by_step)
    assert summary["receipt"]["planned"] == {"temperature": 3}  # describe, sketch, moments


RATE = """
import caudal


@caudal.analysis("temperature", window=2, reductions_only=True)
def rate(t, ctx):
    old, new = t
    m = caudal.temporal.change(old, new)
    ctx.record("max_rate", max(abs(m.min), abs(m.max)))
    ctx.record("mean_rate", m.mean)
    ctx.record("mean", caudal.stats.moments(new).mean)
"""


def test_a_window_of_two_reductions_only_is_computed_in_the_slots_and_equals_numpy(
        tmp_path, heat2d):
    """heat_stats.py's rate: change() over a window of two, reductions_only.
    After the first steps the field is never put: each rank's block pairs
    with its previous one, copied (a ring of 2 slots here: holding one would
    stall the rank; _particles_sim's test below holds them), and every
    step's rate equals NumPy's on the simulation's own dumps, the largest
    to the last bit; the same run through the blocks' path gives the same
    bits."""
    p, results, summary, fields, errors = heat_run(tmp_path, heat2d, "rate", {}, script=RATE)
    assert p.returncode == 0, p.stdout + p.stderr + str(errors)
    assert sorted(results["max_rate"]) == list(range(1, STEPS))
    for s in range(1, STEPS):
        d = fields[s] - fields[s - 1]
        assert results["max_rate"][s] == np.abs(d).max(), s
        assert results["mean_rate"][s] == pytest.approx(d.mean(), rel=1e-12, abs=1e-300)
    (ingest,) = summary["ingest"]
    assert ingest["blocks_not_put"] >= 2 * (STEPS - AHEAD), ingest
    assert ingest["copied_for_pairs"] >= 2 * (STEPS - AHEAD) and ingest["held_for_pairs"] == 0
    assert summary["receipt"]["unkept"] == ["temperature"]
    assert summary["receipt"]["reductions_at_receipt"] >= 2 * (STEPS - AHEAD)
    p, off, _, _, _ = heat_run(tmp_path, heat2d, "rate-off", {"CAUDAL_RECEIPT": "0"},
                               script=RATE)
    assert p.returncode == 0, p.stdout + p.stderr
    assert off == results


PAIRS = """
import os
import time

import caudal

DELAY = float(os.environ.get("CAUDAL_TEST_DELAY", "0"))


@caudal.analysis("field", window=2, reductions_only=True)
def field(f, ctx):
    old, new = f
    ctx.record("old", old.step)
    ctx.record("per_step", caudal.temporal.change(old, new).max)
    ctx.record("dt1", caudal.temporal.change(old, new, dt=1.0).max)
    time.sleep(DELAY)


@caudal.analysis("particles", window=2, reductions_only=True)
def particles(p, ctx):
    caudal.temporal.change(p[0], p[1])
"""


def paced_particles(tmp_path, script, steps, policy):
    """_particles_sim under caudal run, its ranks pacing their steps (so
    that most come after the plan); under the drop policy rank 1 has a ring
    of one slot and the analyses are slowed, so that it drops steps.
    (p, results, run_dir, the folder of the ranks' own record)."""
    truth = tmp_path / "truth"
    truth.mkdir()
    sim = [sys.executable, SIM, str(steps), str(truth), "--pace", "0.02"]
    extra, env = ("--max-pending", "1"), {}
    if policy == "drop":
        sim += ["--ring-depth", "1:1"]
        extra += ("--policy", "drop")
        env = {"CAUDAL_TEST_DELAY": "0.05"}
    p, results, run_dir = caudal_run(tmp_path, script, sim, ranks=RANKS, extra=extra, env=env)
    return p, results, run_dir, truth


@pytest.mark.parametrize("policy", ["block", "drop"])
def test_a_pair_reduction_under_both_policies_pairs_each_step_with_the_one_analysed_before(
        tmp_path, policy):
    """_particles_sim's field (s * 10000 + ...) with change() over a window
    of two, reductions_only: with dt=1 the rate is 10000 times the steps
    between the pair, which checks that every block paired with its rank's
    block of the step analysed before. Under the drop policy rank 1 has a
    ring of one slot (its blocks copied, not held: holding its one slot
    would stall it) and drops steps that rank 0 published: those are
    skipped, and the step after pairs over them. change() on the
    variable-length particles is refused every step, naming the array."""
    script = tmp_path / "pairs.py"
    script.write_text(PAIRS)
    steps = 30
    p, results, run_dir, _ = paced_particles(tmp_path, script, steps, policy)
    assert p.returncode == 1, p.stdout + p.stderr  # the particles' analysis failed
    summary = json.loads((run_dir / "summary.json").read_text())
    errors = [json.loads(line) for line in (run_dir / "errors.jsonl").read_text().splitlines()]
    assert errors and all(e["analysis"] == "particles" and "array 'particles'" in e["error"]
                          and "variable-length" in e["error"] for e in errors), errors[:3]
    dropped = steps_of(summary["drops_by_rank"].get("1", []))
    if policy == "drop":
        assert dropped
    analysed = sorted(set(range(steps)) - dropped)
    assert sorted(results["dt1"]) == analysed[1:]
    for before, s in zip(analysed, analysed[1:]):
        assert results["old"][s] == before
        assert results["dt1"][s] == 10000.0 * (s - before), (s, before)
        assert results["per_step"][s] == 10000.0
    (ingest,) = summary["ingest"]
    assert ingest["blocks_not_put"] >= 10, ingest
    # rank 0's slots (a ring of 64) held once its blocks go unput; under drop
    # that comes later (a pair is answered at receipt only on a step every
    # rank published after one every rank published)
    assert ingest["held_for_pairs"] >= (10 if policy == "block" else 1), ingest
    if policy == "drop":  # rank 1's every block (small ones kept are copied anyway)
        assert ingest["copied_for_pairs"] >= 10, ingest
    receipt = summary["receipt"]
    # Under drop a step after one rank 1 dropped pairs over it from blocks:
    # with --max-pending 1 the ingest takes one step at a time, rank 1 drops
    # more often apart, and fewer pairs are whole at receipt (14 of 24).
    assert receipt["reductions_at_receipt"] >= (20 if policy == "block" else 10), receipt
    assert (receipt["reductions_at_receipt"] + receipt["reductions_from_blocks"]
            >= len(analysed) - 1), receipt


PARTICLES = """
import os
import time

import caudal

DELAY = float(os.environ.get("CAUDAL_TEST_DELAY", "0"))

@caudal.analysis("field", reductions_only=True)
def field(f, ctx):
    m = caudal.stats.moments(f[0])
    ctx.record("fcount", m.count)
    ctx.record("fmean", m.mean)
    ctx.record("fmax", m.max)
    time.sleep(DELAY)

@caudal.analysis("particles", reductions_only=True)
def particles(p, ctx):
    h = caudal.stats.histogram(p[0], bins=10, range=(0.0, 1e5))
    ctx.record("phist", h.counts.tolist())
    time.sleep(DELAY)
"""


def check_particles(results, truth):
    """Every step PARTICLES analysed (both arrays alike) equals what
    _particles_sim's ranks put: its values, and their own record of the
    field's sum."""
    assert set(results["phist"]) == set(results["fmean"])
    for s in results["fmean"]:
        f = np.concatenate([s * 10000.0 + r * 100.0 + np.arange(12.0) for r in range(RANKS)])
        assert results["fcount"][s] == f.size and results["fmax"][s] == f.max()
        assert results["fmean"][s] == pytest.approx(f.mean(), rel=1e-13)
        assert sum(truth[s][r][2] for r in range(RANKS)) == f.sum()  # the sim's own
        parts = [s * 1000.0 + r * 100.0 + np.arange(truth[s][r][0]) for r in range(RANKS)]
        assert results["phist"][s] == np.histogram(np.concatenate(parts), 10,
                                                   (0.0, 1e5))[0].tolist(), s


def test_steps_faster_than_the_report_linger_share_reports_and_stay_exact(tmp_path):
    """Ranks that step every 4 ms, faster than ingest.REPORT_LINGER: the
    ingest sends one report per linger with the steps that came meanwhile
    (each report costs the head and the driver the same whatever it
    carries), not one per step as it would for ranks that the ingest keeps
    up with; every step is analysed and equals what the ranks put."""
    from caudal.runtime.ingest import REPORT_LINGER

    script = tmp_path / "receipt.py"
    script.write_text(PARTICLES)
    truth = tmp_path / "truth"
    truth.mkdir()
    steps, pace = 150, 0.004
    assert pace < REPORT_LINGER / 2
    p, results, run_dir = caudal_run(tmp_path, script,
                                     [sys.executable, SIM, str(steps), str(truth),
                                      "--pace", str(pace)], ranks=RANKS)
    assert p.returncode == 0, p.stdout + p.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    truth = read_truth(truth)
    assert sorted(results["fmean"]) == list(range(steps))
    check_particles(results, truth)
    (ingest,) = summary["ingest"]
    assert ingest["blocks"] == RANKS * 2 * steps
    assert ingest["reports"] <= steps // 2, ingest


@pytest.mark.parametrize("policy", ["block", "drop"])
def test_reductions_only_over_fixed_and_variable_arrays_under_both_policies(tmp_path, policy):
    """_particles_sim: a fixed array and a variable-length one whose ranks'
    parts differ per step (some empty), neither put once learned (the ranks
    pace their steps, so that most come after the plan). Under
    the drop policy rank 1 has one slot and drops steps, which are skipped
    for both arrays. Every analysed step equals what the ranks put (their
    own record); analysed and skipped steps make up every step."""
    script = tmp_path / "receipt.py"
    script.write_text(PARTICLES)
    steps = 30
    p, results, run_dir, truth = paced_particles(tmp_path, script, steps, policy)
    assert p.returncode == 0, p.stdout + p.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    truth = read_truth(truth)
    check_particles(results, truth)
    dropped = steps_of(summary["drops_by_rank"].get("1", []))
    if policy == "drop":
        assert dropped and steps_of(summary["steps_skipped"]["particles"]) == dropped
    assert set(results["fmean"]) == set(range(steps)) - dropped
    (ingest,) = summary["ingest"]
    assert ingest["blocks_not_put"] >= RANKS * 10, ingest
    assert sorted(summary["receipt"]["unkept"]) == ["field", "particles"]


LATE_RANK = """
import sys
import time

import numpy as np
from mpi4py import MPI

import caudal

comm = MPI.COMM_WORLD
rank, size, steps = comm.rank, comm.size, int(sys.argv[1])
if rank == 1:
    time.sleep(1.0)  # connects once rank 0 published every step
c = caudal.Client(rank, size)
c.declare("f", "float64", shape=(100 * size,), start=(100 * rank,), count=(100,))
for s in range(steps):
    c.begin_step(s)
    c.put("f", 10.0 * s + rank + np.arange(100.0))
    c.end_step()
    if rank == 1:
        time.sleep(0.02)
c.close()
"""

LATE_MEAN = """
import caudal

@caudal.analysis("f", reductions_only=True)
def mean(f, ctx):
    m = caudal.stats.moments(f[0])
    ctx.record("mean", m.mean)
    ctx.record("count", m.count)
"""


def test_a_step_received_on_both_sides_of_the_plan_reduces_each_block_where_it_is(tmp_path):
    """Rank 1 connects after rank 0 published every step: rank 0's blocks
    were put before the plan, without states, and rank 1's, received
    after it, were not put, with their states. Such a step is reduced from
    both (the put blocks where they lie), never refused: every step's mean
    is exact and the run succeeds."""
    sim, script = tmp_path / "late.py", tmp_path / "mean.py"
    sim.write_text(LATE_RANK)
    script.write_text(LATE_MEAN)
    steps = 30
    p, results, run_dir = caudal_run(tmp_path, script, [sys.executable, str(sim), str(steps)],
                                     ranks=2)
    assert p.returncode == 0, p.stdout + p.stderr
    assert sorted(results["mean"]) == list(range(steps))
    for s in range(steps):
        assert results["mean"][s] == 10.0 * s + 50.0 and results["count"][s] == 200
    summary = json.loads((run_dir / "summary.json").read_text())
    (ingest,) = summary["ingest"]
    assert 10 <= ingest["blocks_not_put"] < steps, ingest  # rank 1's, after the plan
    assert summary["receipt"]["reductions_partly_at_receipt"] >= 10, summary["receipt"]


def test_caudal_run_without_receipt_is_the_former_path(tmp_path, heat2d):
    """CAUDAL_RECEIPT=0 (the benchmarks' baseline) computes nothing at
    receipt even for a reductions_only analysis, and puts every block."""
    p, results, summary, fields, _ = heat_run(tmp_path, heat2d, "off",
                                              {"RECEIPT_ONLY": "1", "CAUDAL_RECEIPT": "0"})
    assert p.returncode == 0, p.stdout + p.stderr
    check_numpy(results, fields, range(STEPS))
    (ingest,) = summary["ingest"]
    assert ingest["blocks_not_put"] == ingest["reduced_at_receipt"] == 0
    assert ingest["blocks"] == 2 * STEPS
    assert os.environ.get("CAUDAL_RECEIPT") is None  # the test's own process untouched
