"""The C MPI example end to end: heat2d on 4 real MPI ranks, built against the
installed package with `caudal config`, publishing over shared memory to the
receiver in examples/heat2d/analyse.py, which checks every step's mean against
the simulation's own MPI_Allreduce mean and steers the source off."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_demo(heat2d, *extra):
    return subprocess.run([sys.executable, os.path.join(ROOT, "examples", "heat2d", "analyse.py"),
                           heat2d, "--ranks", "4", "--nx", "64", "--ny", "48", *extra],
                          capture_output=True, text=True, timeout=300)


def test_every_step_mean_matches_the_simulation_and_steering_reaches_it(heat2d):
    p = run_demo(heat2d, "--steps", "120", "--threshold", "0.5")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "received complete 120, missing none" in p.stdout
    assert "steered at step" in p.stdout and "demo: OK" in p.stdout


def test_a_threshold_never_reached_is_reported(heat2d):
    p = run_demo(heat2d, "--steps", "20", "--threshold", "1e9")
    assert p.returncode != 0
    assert "nothing was steered" in p.stderr
