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
