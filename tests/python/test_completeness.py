"""A step of an array is analysed only with every rank's part of it, fixed
and variable-length arrays alike, under either policy; every other step is
reported as skipped, by array and range, so that analysed + skipped steps are
the steps the simulation published. Real `caudal run`, real MPI ranks of
_particles_sim.py, whose own record of what each rank put is the reference."""

import collections
import json
import os
import sys

import numpy as np
import pytest

from caudal.runtime.head import _add_range
from test_run import caudal_run

HERE = os.path.dirname(os.path.abspath(__file__))
SIM = os.path.join(HERE, "_particles_sim.py")
RANKS = 3

ANALYTICS = """
import os
import time

import caudal

DELAY = float(os.environ.get("CAUDAL_TEST_DELAY", "0"))

@caudal.analysis("field")
def field(f, ctx):
    ctx.record("fsum", float(f[0].data.sum().compute()))
    time.sleep(DELAY)

@caudal.analysis("particles")
def particles(p, ctx):
    x = p[0].data.compute()
    ctx.record("p", x.tolist())
    ctx.record("psum", float(x.sum()))
    time.sleep(DELAY)
"""


def run(tmp_path, steps, *sim_args, extra=(), env=None):
    script = tmp_path / "count.py"
    script.write_text(ANALYTICS)
    truth = tmp_path / "truth"
    truth.mkdir()
    p, results, run_dir = caudal_run(tmp_path, script, [sys.executable, SIM, str(steps),
                                                        str(truth), *sim_args],
                                     ranks=RANKS, extra=extra, env=env)
    summary = json.loads((run_dir / "summary.json").read_text())
    return p, results, summary, read_truth(truth)


def read_truth(folder):
    """step -> rank -> (particles, particle sum, field sum, put particles, put field)."""
    out = collections.defaultdict(dict)
    for r in range(RANKS):
        path = folder / ("rank%d.txt" % r)
        for line in path.read_text().splitlines():
            s, n, psum, fsum, put_p, put_f = line.split()
            out[int(s)][r] = (int(n), float(psum), float(fsum), put_p == "1", put_f == "1")
    return out


def expected_particles(step, ranks):
    """The global particles array of a step: each rank's part, in rank order."""
    parts = [step * 1000.0 + r * 100.0 + np.arange(ranks[r][0]) for r in sorted(ranks)]
    return np.concatenate(parts).tolist()


def steps_of(ranges):
    out = set()
    for a, b in ranges:
        assert a <= b
        out |= set(range(a, b + 1))
    return out


def check_analysed_exactly(results, truth, steps):
    """Every analysed step holds exactly what every rank put: a step with a
    rank's part missing would show in the count or the sum."""
    for s in results["psum"]:
        ranks = truth[s]
        assert len(ranks) == RANKS and all(v[3] for v in ranks.values()), (s, ranks)
        want = expected_particles(s, ranks)
        assert results["p"][s] == want, (s, results["p"][s], want)
        assert results["psum"][s] == sum(v[1] for v in ranks.values())
    for s in results["fsum"]:
        ranks = truth[s]
        assert len(ranks) == RANKS and all(v[4] for v in ranks.values()), (s, ranks)
        assert results["fsum"][s] == sum(v[2] for v in ranks.values())
    assert set(results["psum"]) <= set(range(steps)) and set(results["fsum"]) <= set(range(steps))


def test_block_policy_every_step_analysed_with_every_rank(tmp_path):
    steps = 12
    p, results, summary, truth = run(tmp_path, steps)
    assert p.returncode == 0, p.stdout + p.stderr
    assert sorted(truth) == list(range(steps))
    # Some rank publishes no particles at some steps: those parts are present.
    assert any(v[0] == 0 for ranks in truth.values() for v in ranks.values())
    assert sorted(results["psum"]) == sorted(results["fsum"]) == list(range(steps))
    check_analysed_exactly(results, truth, steps)
    assert summary["steps_analysed"] == steps
    assert summary["steps_skipped"] == {} and summary["steps_skipped_count"] == {}
    assert summary["steps_incomplete"] == {}
    assert summary["drops_by_rank"] == {} and summary["rank_steps_dropped"] == 0
    assert summary["steps_dropped_by_ranks"] == 0
    assert summary["ranks_lost"] == {} and summary["steps_left_at_end"] == {}


def test_drop_policy_a_step_one_rank_dropped_is_skipped_for_every_array(tmp_path):
    """Rank 1 has a ring of one slot, the others of 64, and the analyses are
    slow: rank 1 drops steps the others publish. Those steps are skipped for
    the field and the particles alike, never analysed with rank 1 missing."""
    steps = 30
    p, results, summary, truth = run(
        tmp_path, steps, "--ring-depth", "1:1",
        extra=("--policy", "drop", "--max-pending", "1"), env={"CAUDAL_TEST_DELAY": "0.1"})
    assert p.returncode == 0, p.stdout + p.stderr
    assert sorted(truth) == list(range(steps))  # the simulation published every step
    assert set(summary["drops_by_rank"]) == {"1"}, summary["drops_by_rank"]
    dropped = steps_of(summary["drops_by_rank"]["1"])
    assert dropped and 0 not in dropped  # its one slot was free at the first step
    assert summary["rank_steps_dropped"] == summary["steps_dropped_by_ranks"] == len(dropped)
    check_analysed_exactly(results, truth, steps)
    for array, key in (("field", "fsum"), ("particles", "psum")):
        skipped = steps_of(summary["steps_skipped"][array])
        analysed = set(results[key])
        assert skipped == dropped, (array, summary["steps_skipped"][array])
        assert not analysed & skipped
        assert analysed | skipped == set(range(steps))
        assert summary["steps_skipped_count"][array] == len(skipped)
        assert summary["steps_incomplete"][array] == len(skipped)
    assert summary["steps_analysed"] == steps - len(dropped)
    assert summary["ranks_lost"] == {} and summary["steps_left_at_end"] == {}


@pytest.mark.parametrize("policy", ["block", "drop"])
def test_an_array_a_rank_did_not_put_is_skipped_at_that_step_and_empty_parts_count(
        tmp_path, policy):
    """Rank 2 does not put the particles at step 3, rank 0 not the field at
    step 6: only those steps of those arrays are skipped. Rank 1 has no
    particles at step 2 and no rank has any at step 5: those steps are
    analysed, with the right totals."""
    steps = 10
    p, results, summary, truth = run(
        tmp_path, steps, "--omit", "particles:2:3", "--omit", "field:0:6", "--zero", "1:2",
        "--zero", "*:5", extra=("--policy", policy))
    assert p.returncode == 0, p.stdout + p.stderr
    assert summary["steps_skipped"] == {"particles": [[3, 3]], "field": [[6, 6]]}
    assert summary["steps_skipped_count"] == {"particles": 1, "field": 1}
    assert sorted(results["psum"]) == [s for s in range(steps) if s != 3]
    assert sorted(results["fsum"]) == [s for s in range(steps) if s != 6]
    check_analysed_exactly(results, truth, steps)
    assert truth[2][1][0] == 0 and truth[2][0][0] + truth[2][2][0] > 0
    assert len(results["p"][2]) == truth[2][0][0] + truth[2][2][0]
    assert results["p"][5] == [] and results["psum"][5] == 0.0
    assert summary["steps_analysed"] == steps  # each step had an array to analyse
    assert summary["drops_by_rank"] == {} and summary["ranks_lost"] == {}


def test_steps_after_a_rank_was_lost_are_skipped_for_every_array(tmp_path):
    """Rank 2's publisher dies (SIGKILL) at step 6, after the other ranks
    published all 12 steps: steps 0..5 are analysed, 6..11 of both arrays
    reported as skipped, and rank 2 as lost."""
    steps, lost_at = 12, 6
    p, results, summary, truth = run(tmp_path, steps, "--lose", "2:%d" % lost_at)
    assert p.returncode == 2, p.stdout + p.stderr  # the simulation failed
    assert "rank 2" in p.stderr
    assert set(summary["ranks_lost"]) == {"2"}
    assert sorted(results["psum"]) == sorted(results["fsum"]) == list(range(lost_at))
    check_analysed_exactly(results, truth, steps)
    assert summary["steps_skipped"] == {"field": [[lost_at, steps - 1]],
                                        "particles": [[lost_at, steps - 1]]}
    assert summary["steps_skipped_count"] == {"field": steps - lost_at,
                                              "particles": steps - lost_at}


def test_an_array_one_rank_never_declared_is_skipped_and_an_error(tmp_path):
    """Ranks 0 and 2 declare and put "extra", rank 1 never declares it: no
    step of it can be complete. Every step is reported skipped, the run fails
    naming the array and the rank, and the other arrays are analysed."""
    steps = 6
    p, results, summary, truth = run(tmp_path, steps, "--undeclared", "1")
    assert p.returncode == 3, p.stdout + p.stderr  # a declaration error
    assert "array 'extra': rank 1 did not declare it (2 of 3 ranks did)" in p.stderr
    assert summary["steps_skipped"] == {"extra": [[0, steps - 1]]}
    assert sorted(results["psum"]) == sorted(results["fsum"]) == list(range(steps))
    check_analysed_exactly(results, truth, steps)


def test_ranges_merge_in_and_out_of_order():
    r = []
    for a, b in [(3, 3), (4, 4), (5, 7), (10, 10), (12, 13), (11, 11), (0, 1), (2, 2)]:
        _add_range(r, a, b)
    assert r == [[0, 7], [10, 13]]
    _add_range(r, 20, 25)
    _add_range(r, 9, 9)
    _add_range(r, 22, 23)
    assert r == [[0, 7], [9, 13], [20, 25]]
