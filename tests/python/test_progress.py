"""What `caudal run` shows while it runs: _particles_sim on 2 real MPI
ranks, paced (50 ms a step) so the run lasts seconds, once with stderr a
file (a batch job's log: a line per --progress seconds) and once in a
pseudo-terminal (a live table, gone at the end, the summary line left)."""

import os
import pty
import re
import select
import subprocess
import sys
import time

from conftest import HERE

SIM = os.path.join(HERE, "_particles_sim.py")
ANALYSIS = """
import caudal

@caudal.analysis("field")
def f(field, ctx):
    ctx.record("mean", caudal.stats.moments(field[-1]).mean)

@caudal.analysis("particles")
def p(particles, ctx):
    ctx.record("n", particles[-1].shape[0])
"""
STEPS = 60


def command(tmp_path, *extra, analysis=ANALYSIS):
    script = tmp_path / "a.py"
    script.write_text(analysis)
    truth = tmp_path / "truth"
    truth.mkdir()
    return [sys.executable, "-m", "caudal", "run", "-n", "2", "--analytics", str(script),
            "--run-dir", str(tmp_path / "run"), *extra, "--", sys.executable, SIM, str(STEPS),
            str(truth), "--pace", "0.05"]


LINE = re.compile(r"caudal run: +(?P<t>\d+) s, ranks (?P<ranks>\d+)/(?P<of>\d+), "
                  r"step (?P<published>\S+) published, (?P<analysed>\S+) analysed "
                  r"\(arrays complete/analysed: (?P<arrays>.*?)\), (?P<waiting>\d+) waiting, "
                  r"lag (?P<lag>\S+)( s)?, (?P<rate>\d+) blocks/s, store (?P<store>.*?), "
                  r"(?P<dropped>\d+) rank-steps dropped, (?P<failed>\d+) failed"
                  r"(, analysis (?P<running>\S+) on step (?P<on>\d+) for (?P<for>\d+) s)?$")


def test_a_batch_log_gets_a_line_every_progress_seconds(tmp_path):
    p = subprocess.run(command(tmp_path, "--progress", "1"), capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    lines = [m for m in map(LINE.match, p.stderr.splitlines()) if m]
    assert len(lines) >= 2, p.stderr  # a 3 s run, a line a second
    analysed = [int(m["analysed"]) for m in lines if m["analysed"] != "-"]
    assert analysed == sorted(analysed) and all(0 <= a < STEPS for a in analysed)
    assert max(int(m["ranks"]) for m in lines) == 2 and {m["of"] for m in lines} == {"2"}
    last = lines[-1]
    assert last["dropped"] == "0" and last["failed"] == "0"
    # both arrays, complete / analysed counts no higher than the steps
    arrays = dict((a, tuple(map(int, n.split("/")))) for a, n in
                  (x.split(" ") for x in last["arrays"].split("; ")))
    assert set(arrays) == {"field", "particles"}
    assert all(0 < a <= c <= STEPS for c, a in arrays.values())
    assert re.match(r"\d+ (KiB|MiB) of \d+ MiB", last["store"])
    # no progress line without --progress on a run this short (30 s default)
    assert "\x1b[" not in p.stderr  # no terminal codes in a log


def test_a_long_call_keeps_the_lines_coming_and_is_named(tmp_path):
    """An analysis that takes 5 s on one step: caudal run's loop waits for
    it, and the batch log still gets its line a second, naming the call."""
    slow = ANALYSIS + """
import time

@caudal.analysis("field")
def slow(field, ctx):
    if ctx.step == 10:
        time.sleep(5)
"""
    p = subprocess.run(command(tmp_path, "--progress", "1", analysis=slow), capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    lines = [m for m in map(LINE.match, p.stderr.splitlines()) if m]
    during = [m for m in lines if m["running"]]
    assert {(m["running"], m["on"]) for m in during} == {("slow", "10")}, p.stderr
    held = [int(m["for"]) for m in during]
    assert len(during) >= 2 and held == sorted(held) and 2 <= held[0] and held[-1] <= 6
    times = [int(m["t"]) for m in during]
    assert times[-1] > times[0]  # the clock moves while the counts stand


def test_a_terminal_gets_a_live_table_that_gives_way_to_the_summary(tmp_path):
    main, sub = pty.openpty()
    proc = subprocess.Popen(command(tmp_path), stdin=subprocess.DEVNULL, stdout=sub,
                            stderr=sub, close_fds=True)
    os.close(sub)
    out = b""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: the terminal's other side closed
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    os.close(main)
    assert proc.wait(60) == 0, out.decode(errors="replace")
    text = out.decode(errors="replace")
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    # the table: its title, its header and a row per array
    assert re.search(r"caudal run, \d+ s: ranks \d of 2 connected", plain), plain
    assert "last analysed" in plain and "│ field" in plain and "│ particles" in plain
    assert re.search(r"object store \d+ (KiB|MiB) of \d+ MiB", plain)
    # redrawn in place (cursor moves), then the one summary line
    assert "\x1b[" in text
    assert re.search(r"caudal run: %d steps analysed" % STEPS, plain)
