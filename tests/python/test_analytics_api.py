"""The analytics API's own checks: a bad registration fails when the script
loads, with a message that says what is wrong."""

import pytest

import caudal
from caudal.analytics import Analysis, analyses_in


def test_registration_keeps_the_function_and_its_options():
    @caudal.analysis("a", "b", window=3, trigger="or")
    def f(a, b, ctx):
        return 42

    assert isinstance(f, Analysis)
    assert (f.arrays, f.window, f.trigger, f.name) == (("a", "b"), 3, "or", "f")
    assert f(None, None, None) == 42
    assert analyses_in({"f": f, "x": 1, "g": len}) == [f]


@pytest.mark.parametrize("args, kwargs, words", [
    ((), {}, "array names"),
    (("",), {}, "array names"),
    (("a",), {"window": 0}, "window"),
    (("a",), {"window": 1.5}, "window"),
    (("a",), {"trigger": "xor"}, "trigger"),
])
def test_bad_registrations_are_refused(args, kwargs, words):
    with pytest.raises(ValueError, match=words):
        caudal.analysis(*args, **kwargs)


def test_a_script_without_analyses_is_refused(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "empty.py"
    script.write_text("x = 1\n")
    p = subprocess.run([sys.executable, "-m", "caudal", "run", "-n", "1", "--analytics",
                        str(script), "--", "true"], capture_output=True, text=True)
    assert p.returncode != 0 and "registers no analysis" in p.stderr
    p = subprocess.run([sys.executable, "-m", "caudal", "run", "-n", "1", "--analytics",
                        str(tmp_path / "missing.py"), "--", "true"],
                       capture_output=True, text=True)
    assert p.returncode != 0 and "not found" in p.stderr


# ------------------------------------------------------------ deadlines


def test_a_timeout_is_an_option_of_the_analysis_and_of_at_end():
    @caudal.analysis("a", timeout=2)
    def f(a, ctx):
        pass

    @caudal.analysis("a")
    def g(a, ctx):
        pass

    assert f.timeout == 2.0 and g.timeout is None  # None: the run's default

    @caudal.at_end
    def plain(ctx):
        pass

    @caudal.at_end(timeout=7.5)
    def bounded(ctx):
        pass

    assert plain.timeout is None and plain.name == "plain"
    assert bounded.timeout == 7.5 and bounded.name == "bounded"


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), "2", True])
def test_bad_timeouts_are_refused(timeout):
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        caudal.analysis("a", timeout=timeout)
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        caudal.at_end(timeout=timeout)


class _Ingest:
    """Stands in for the ingest actors: keeps what the driver steers."""

    def __init__(self):
        self.steered = []
        self.steer = self

    def remote(self, rank, key, value):
        self.steered.append((rank, key, value))


def _lines(path):
    import json

    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_call_past_its_deadline_is_recorded_skipped_while_it_runs_and_discarded(tmp_path):
    import threading

    from caudal.runtime.driver import Driver

    release, returned = threading.Event(), threading.Event()

    # The run's default (300 s) would hold this test up: timeout= overrides it.
    @caudal.analysis("a", timeout=0.2)
    def hangs(a, ctx):
        ctx.record("v", a[0])
        if a[0] == 1:
            ctx.steer("before", 1)
            try:
                release.wait()
                ctx.record("late", a[0])  # past its deadline: discarded
                ctx.steer("after", 1)  # and no longer reaches the ranks
            finally:
                returned.set()

    @caudal.analysis("a")
    def good(a, ctx):
        ctx.record("g", a[0])

    ingest = _Ingest()
    d = Driver([hangs, good], None, [ingest], tmp_path, analysis_timeout=300)
    try:
        for step in range(4):
            d._call(hangs, step, [step])
            d._call(good, step, [step])
        release.set()
        assert returned.wait(60)
        d.workers[id(hangs)].call.done.wait(60)  # its thread is done with the call
        d._call(hangs, 4, [4])
        d._call(good, 4, [4])
        summary = d.summary()
    finally:
        release.set()
        d.close()
    results = [(r["analysis"], r["step"], r["name"]) for r in _lines(tmp_path / "results.jsonl")]
    # Nothing of the call that timed out: not what it recorded before its
    # deadline, not what it recorded after.
    assert sorted(r for r in results if r[0] == "hangs") == [("hangs", 0, "v"), ("hangs", 4, "v")]
    assert sorted(r[1] for r in results if r[0] == "good") == [0, 1, 2, 3, 4]
    errors = _lines(tmp_path / "errors.jsonl")
    assert all(e["analysis"] == "hangs" for e in errors)
    (timed_out,) = [e for e in errors if e.get("timed_out")]
    assert timed_out["step"] == 1 and timed_out["error"] == "timed out after 0.2 s"
    skipped = [e for e in errors if e.get("skipped")]
    assert [e["step"] for e in skipped] == [2, 3]
    assert all(e["running_step"] == 1 and "still running" in e["error"] for e in skipped)
    assert ingest.steered == [(-1, "before", 1)]
    assert summary["timeouts"] == 1 and summary["failures"] == 1
    assert summary["calls_skipped"] == 2 and summary["late_returns"] == 1
    assert summary["calls"] == 2 + 5 and summary["calls_running"] == 0
    assert summary["results"] == len(results) == 2 + 5


def test_the_runs_default_deadline_applies_to_analyses_and_finishers_without_their_own(
        tmp_path):
    import threading

    from caudal.runtime.driver import Driver

    release = threading.Event()

    @caudal.analysis("a")
    def waits(a, ctx):
        release.wait()

    @caudal.at_end
    def final(ctx):
        release.wait()

    @caudal.at_end(timeout=600)
    def quick(ctx):
        ctx.record("done", ctx.step)

    d = Driver([waits], None, [], tmp_path, [final, quick], analysis_timeout=0.25)
    try:
        d._call(waits, 0, [0])
        d.last_step = 0
        d.finish()
        summary = d.summary()
    finally:
        release.set()
        d.close()
    errors = _lines(tmp_path / "errors.jsonl")
    assert [(e["analysis"], e["step"], e["error"]) for e in errors] == [
        ("waits", 0, "timed out after 0.25 s"), ("final", 0, "timed out after 0.25 s")]
    assert [r["name"] for r in _lines(tmp_path / "results.jsonl")] == ["done"]
    assert summary["timeouts"] == 2 and summary["failures"] == 2 and summary["calls"] == 1
    assert summary["analysis_timeout"] == 0.25


def test_a_step_no_analysis_ran_on_is_not_counted_as_analysed(tmp_path):
    import time

    from caudal.runtime.driver import Driver
    from caudal.runtime.head import CompleteStep

    @caudal.analysis("a")
    def f(a, ctx):
        pass

    d = Driver([f], None, [], tmp_path)
    try:
        d.analyse(CompleteStep(3, {}, time.time()))  # without array "a": f does not fire
        summary = d.summary()
    finally:
        d.close()
    assert summary["steps_analysed"] == 0 and summary["steps_without_call"] == 1
    assert summary["calls"] == 0 and summary["analysis_timeout"] == 300
