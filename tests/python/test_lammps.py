"""LAMMPS, unchanged, under caudal run: examples/lammps/lammps_caudal (the C
driver on LAMMPS's library interface) built as a user would, with Open MPI's
mpicc (Debian's LAMMPS is built against Open MPI; the project's own MPI is
MPICH), 32,000 Lennard-Jones atoms on 2 Open MPI ranks publishing their
atoms as variable-length arrays. Caudal's answers are checked against what
LAMMPS itself writes for the same steps (fix ave/time in in.lj)."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT

EXAMPLE = os.path.join(ROOT, "examples", "lammps")
sys.path.insert(0, EXAMPLE)
import compare  # noqa: E402  (the example's reader of LAMMPS's files: one home for it)
OMPI_CC, OMPI_RUN = shutil.which("mpicc.openmpi"), shutil.which("mpirun.openmpi")

pytestmark = pytest.mark.skipif(
    not (OMPI_CC and OMPI_RUN and os.path.exists("/usr/include/lammps/library.h")
         and shutil.which("pkg-config")),
    reason="LAMMPS's library or Open MPI missing (scripts/setup.sh installs liblammps-dev)")

STEPS, EVERY, RANKS = 200, 50, 2
NATOMS = 32000  # in.lj: 4 * 20^3

# The example's temperature, and every atom's id gathered (each once).
ANALYTICS = """
import os
import sys
import numpy as np
import caudal
sys.path.insert(0, %r)
from md_analysis import diffusion, temperature  # noqa: F401  (the example's own)

@caudal.analysis("id")
def ids(i, ctx):
    got = np.sort(np.asarray(i[-1].data.compute()))
    ctx.record("ids_each_once", bool(np.array_equal(got, np.arange(1, got.size + 1))))
    ctx.record("ids", int(got.size))

@caudal.analysis("image")
def crossed(image, ctx):
    ctx.record("crossed", int(np.count_nonzero(np.asarray(image[-1].data.compute()))))

@caudal.analysis("v")
def velocities(v, ctx):
    h = caudal.md.speeds(v[-1], bins=40, range=(0.0, 4.0))
    ctx.record("speeds", h.counts.tolist() + [h.above])
    np.save(os.path.join(os.environ["CAUDAL_TEST_FRAMES"], "v%%d.npy" %% v[-1].step),
            np.asarray(v[-1].data.compute()))

@caudal.analysis("x", "type", "id", "box")
def pairs(x, types, ids, box, ctx):
    b = box[-1].data.compute()
    r = caudal.md.rdf(x[-1], types[-1], ids[-1], b, 2.5, 100)
    ctx.record("g", r.g().tolist())
    ctx.record("coord", r.coord().tolist())
    ctx.record("hist", r.hist().tolist())
    # the frame, for an independent library's g(r) (freud) in the test
    np.savez(os.path.join(os.environ["CAUDAL_TEST_FRAMES"], "%%d.npz" %% x[-1].step),
             x=np.asarray(x[-1].data.compute()), box=b)
""" % EXAMPLE


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    """lammps_caudal built as a user would: Open MPI's mpicc, `caudal
    config` and LAMMPS's pkg-config."""
    caudal = subprocess.run([sys.executable, "-m", "caudal", "config", "--cflags", "--libs"],
                            check=True, capture_output=True, text=True).stdout.split()
    lammps = subprocess.run(["pkg-config", "--cflags", "--libs", "liblammps"],
                            check=True, capture_output=True, text=True).stdout.split()
    exe = str(tmp_path_factory.mktemp("lammps") / "lammps_caudal")
    subprocess.run([OMPI_CC, "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror",
                    os.path.join(EXAMPLE, "lammps_caudal.c"), "-o", exe, *caudal, *lammps],
                   check=True)
    return exe


def mpirun():
    """Open MPI's launcher as caudal run's --mpiexec: it refuses root
    unless told (the tests run as root in CI)."""
    return OMPI_RUN + (" --allow-run-as-root" if os.geteuid() == 0 else "")


def run(tmp_path, driver, analytics, inp, steps=STEPS, every=EVERY, extra=()):
    script = tmp_path / "analytics.py"
    script.write_text(analytics)
    out = tmp_path / "lammps"
    out.mkdir()
    (tmp_path / "frames").mkdir()
    run_dir = tmp_path / "run"
    env = dict(os.environ, CAUDAL_TEST_FRAMES=str(tmp_path / "frames"))
    p = subprocess.run([sys.executable, "-m", "caudal", "run", "-n", str(RANKS),
                        "--mpiexec", mpirun(), "--analytics", str(script),
                        "--run-dir", str(run_dir), *extra, "--", driver, str(inp), str(steps),
                        "--every", str(every), "--", "-var", "out", str(out)],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    return p, run_dir, out


def results(run_dir):
    got = {}
    for line in (run_dir / "results.jsonl").read_text().splitlines():
        r = json.loads(line)
        got.setdefault(r["name"], {})[r["step"]] = r["value"]
    return got


def test_temperature_msd_and_atoms_match_lammps_at_every_published_step(tmp_path, driver):
    """Every published step: the temperature equals LAMMPS's compute temp
    (thermo.txt) to 2 ulp, the kinetic energy its `ke` (per atom, LJ units'
    thermo normalisation) to 1e-14, the mean square displacement (x, y, z,
    total) LAMMPS's compute msd (msd.txt) to 2 ulp, and the ranks' atoms,
    whose count per rank changes as they migrate, are all 32,000, each id
    once; the distribution of their speeds is NumPy's on the same
    velocities.

    Why 2 ulp and not a tolerance: the kernels compute LAMMPS's expressions
    atom by atom in its order ((vx*vx + vy*vy + vz*vz) * m, scaled by
    mvv2e / (dof * boltz); x + image * prd - reference, squared), so a
    rank's sums are LAMMPS's bit for bit; only the merge of the ranks' sums
    (MPI_Allreduce there, a sum here) could round differently, by an ulp.
    The atoms cross the periodic box along the run (image flags other than
    0), so the unwrapping is exercised."""
    p, run_dir, out = run(tmp_path, driver, ANALYTICS, os.path.join(EXAMPLE, "in.lj"))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    got = results(run_dir)
    thermo = compare.table(out / "thermo.txt")
    steps = list(range(0, STEPS + 1, EVERY))
    assert sorted(thermo) == steps
    assert sorted(got["temp"]) == steps
    for s in steps:
        temp, _pe, ke_per_atom = thermo[s]
        assert abs(got["temp"][s] - temp) <= 2 * np.spacing(temp), (s, got["temp"][s], temp)
        assert got["ke"][s] / NATOMS == pytest.approx(ke_per_atom, rel=1e-14), s
        assert got["natoms"][s] == got["ids"][s] == NATOMS, s
        assert got["ids_each_once"][s] is True, s
    msd = compare.table(out / "msd.txt")
    for s in steps:
        for mine, theirs in zip(got["msd"][s], msd[s]):
            assert abs(mine - theirs) <= 2 * np.spacing(theirs), (s, got["msd"][s], msd[s])
    assert got["msd"][0] == [0.0] * 4 and got["msd"][STEPS][3] > 0.1
    assert got["crossed"][STEPS] > 0  # atoms left the box and came in on the other side
    # the speeds' distribution, against NumPy on the same velocities
    for s in steps:
        v = np.load(tmp_path / "frames" / ("v%d.npy" % s)).reshape(-1, 3)
        speed = np.sqrt((v ** 2).sum(axis=1))
        want = np.histogram(speed, 40, (0.0, 4.0))[0].tolist() + [int((speed > 4.0).sum())]
        assert got["speeds"][s] == want, s
    # the temperature changed along the run: the steps are not one copied
    assert len({got["temp"][s] for s in steps}) == len(steps)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["rank_steps_dropped"] == 0 and summary["ranks_clean"] == RANKS


def test_rdf_matches_lammps_to_the_bit_and_freud_to_its_single_precision(tmp_path, driver):
    """g(r) and the coordination number of all pairs, 100 bins to the
    cutoff 2.5, at every published step: equal to LAMMPS's compute rdf
    (rdf.txt) bit for bit. The pair counts are exact (each pair once, whichever
    ranks and periodic images hold its atoms), and the normalisation is
    LAMMPS's expressions in its order. Against freud (PyPI), an independent
    library, on the same frames: the same pair counts but for pairs within
    freud's single precision of a bin edge (at most 2 in 10^4 of the pairs
    moved to a neighbouring bin), and the same g(r) to that."""
    import freud

    p, run_dir, out = run(tmp_path, driver, ANALYTICS, os.path.join(EXAMPLE, "in.lj"))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    got = results(run_dir)
    theirs = compare.rdf_file(out / "rdf.txt")
    steps = list(range(0, STEPS + 1, EVERY))
    assert sorted(theirs) == sorted(got["g"]) == steps
    for s in steps:
        assert got["g"][s] == theirs[s][:, 2].tolist(), s
        assert got["coord"][s] == theirs[s][:, 3].tolist(), s
        hist = np.array(got["hist"][s])
        assert hist.sum() > 50 * NATOMS  # about 55 neighbours within 2.5 per atom
        frame = np.load(tmp_path / "frames" / ("%d.npz" % s))
        lo, hi = frame["box"][:3], frame["box"][3:6]
        fbox = freud.box.Box(*(hi - lo))
        # freud's box is centred on 0, and LAMMPS's atoms may stray out of
        # theirs between reneighbourings
        pos = fbox.wrap(frame["x"].reshape(-1, 3) - (lo + hi) / 2)
        f = freud.density.RDF(bins=100, r_max=2.5)
        f.compute(system=(fbox, pos))
        diff = np.abs(np.asarray(f.bin_counts, dtype=np.int64) - hist)
        assert diff.sum() <= 2e-4 * hist.sum(), (s, diff.sum())
        # g differs by what the moved pairs weigh in their bins (g / pairs
        # there), and by at most 1e-4 of it for the normalisation's rounding
        g = np.array(got["g"][s])
        per_pair = np.divide(g, hist, out=np.zeros_like(g), where=hist > 0)
        assert np.all(np.abs(np.asarray(f.rdf) - g) <= diff * per_pair + 1e-4 * g + 1e-12), s


def test_lammps_alone_writes_the_same_answers_as_under_caudal(tmp_path, driver):
    """Without CAUDAL_ENDPOINT the driver is LAMMPS alone (the benchmark's
    baseline): it publishes nothing and its trajectory is the one it runs
    under caudal run, to the last digit of its thermo output."""
    out = tmp_path / "alone"
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAUDAL_")}
    cmd = OMPI_RUN.split() + (["--allow-run-as-root"] if os.geteuid() == 0 else [])
    p = subprocess.run(cmd + ["-n", str(RANKS), driver, os.path.join(EXAMPLE, "in.lj"),
                              str(STEPS), "--every", str(EVERY), "--", "-var", "out", str(out)],
                       capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    with_caudal = tmp_path / "with"
    with_caudal.mkdir()
    q, run_dir, lmp = run(with_caudal, driver, ANALYTICS, os.path.join(EXAMPLE, "in.lj"))
    assert q.returncode == 0, q.stdout[-3000:] + q.stderr[-3000:]
    assert compare.table(out / "thermo.txt") == compare.table(lmp / "thermo.txt")
    assert compare.table(out / "msd.txt") == compare.table(lmp / "msd.txt")


def test_a_triclinic_box_is_refused_before_any_step(tmp_path, driver):
    """A tilted box (region prism): the driver cannot unwrap or publish its
    geometry for caudal.md, and says so before the run, naming the rank;
    caudal run ends with the simulation's failure and analysed nothing."""
    bad = tmp_path / "in.tilted"
    bad.write_text(open(os.path.join(EXAMPLE, "in.lj")).read()
                   .replace("region box block 0 ${side} 0 ${side} 0 ${side}",
                            "region box prism 0 ${side} 0 ${side} 0 ${side} 1 0 0"))
    p, run_dir, _ = run(tmp_path, driver, ANALYTICS, bad)
    text = p.stdout + p.stderr
    assert p.returncode != 0, text[-3000:]
    assert "rank 0" in text and "the box is triclinic" in text, text[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["end"]["reason"] == "simulation_failed" and summary["steps_analysed"] == 0


def test_a_broken_input_fails_the_run_with_lammps_own_message(tmp_path, driver):
    """An input LAMMPS refuses (an unknown pair style): caudal run ends with
    the simulation's failure, LAMMPS's error line is in the output, and no
    step was analysed."""
    bad = tmp_path / "in.bad"
    bad.write_text(open(os.path.join(EXAMPLE, "in.lj")).read()
                   .replace("pair_style lj/cut 2.5", "pair_style lj/nonesuch 2.5"))
    p, run_dir, _ = run(tmp_path, driver, ANALYTICS, bad)
    text = p.stdout + p.stderr
    assert p.returncode != 0, text[-3000:]
    assert "ERROR" in text and "lj/nonesuch" in text, text[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["end"]["reason"] == "simulation_failed", summary["end"]
    assert summary["steps_analysed"] == 0


# The temperature from the atoms' velocities, with what each test adds.
TEMPERATURE = """
import time
import numpy as np
import caudal

@caudal.analysis("v", "type", "mass", "units")
def temperature(v, types, mass, units, ctx):
    boltz, mvv2e, _dt = units[-1].data.compute()
    k = caudal.md.kinetic(v[-1], types[-1], mass[-1].data.compute())
    ctx.record("temp", k.temperature(boltz, mvv2e))
    ctx.record("per_type", k.count.tolist())
    time.sleep(SLEEP)
"""

MIXTURE = TEMPERATURE.replace("SLEEP", "0") + """

@caudal.analysis("x", "type", "id", "box")
def pairs(x, types, ids, box, ctx):
    r = caudal.md.rdf(x[-1], types[-1], ids[-1], box[-1].data.compute(), 2.5, 100)
    for i, j in ((1, 1), (1, 2), (2, 2)):
        ctx.record("g%d%d" % (i, j), r.g(i, j).tolist())
        ctx.record("coord%d%d" % (i, j), r.coord(i, j).tolist())
"""


def test_a_binary_mixture_matches_lammps_per_type_pair(tmp_path, driver):
    """Two types of different masses, half the atoms each (LAMMPS's `set
    type/fraction`): g(r) and the coordination number per pair of types
    (1-1, 1-2, 2-2, LAMMPS's compute rdf 100 1 1 1 2 2 2) bit for bit, and
    the temperature with per-type masses to 1e-13 (LAMMPS sums all atoms in
    one sum, the kernel per type and then the types: the order differs)."""
    text = open(os.path.join(EXAMPLE, "in.lj")).read()
    for old, new in (("create_box 1 box", "create_box 2 box"),
                     ("create_atoms 1 box", "create_atoms 1 box\nset type 1 type/fraction 2 0.5 12345"),
                     ("mass 1 1.0", "mass 1 1.0\nmass 2 2.0"),
                     ("pair_coeff 1 1 1.0 1.0 2.5", "pair_coeff * * 1.0 1.0 2.5"),
                     ("compute rdf all rdf 100", "compute rdf all rdf 100 1 1 1 2 2 2")):
        assert old in text
        text = text.replace(old, new)
    inp = tmp_path / "in.mix"
    inp.write_text(text)
    p, run_dir, out = run(tmp_path, driver, MIXTURE, inp)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    got = results(run_dir)
    theirs, thermo = compare.rdf_file(out / "rdf.txt"), compare.table(out / "thermo.txt")
    steps = list(range(0, STEPS + 1, EVERY))
    assert sorted(theirs) == sorted(got["g11"]) == steps
    for s in steps:
        n1, n2 = got["per_type"][s][1:]
        assert n1 + n2 == NATOMS and abs(n1 - n2) < NATOMS // 20
        for col, name in enumerate(("g11", "coord11", "g12", "coord12", "g22", "coord22")):
            assert got[name][s] == theirs[s][:, 2 + col].tolist(), (s, name)
        assert got["temp"][s] == pytest.approx(thermo[s][0], rel=1e-13), s


# slower than LAMMPS publishes: the ranks must drop steps
SLOW = TEMPERATURE.replace("SLEEP", "0.25")


def test_under_the_drop_policy_lammps_runs_on_and_every_analysed_step_is_whole(tmp_path, driver):
    """--policy drop with a ring of 1 slot and an analysis slower than
    LAMMPS's publishing (every 10 steps): LAMMPS is not held up, steps are
    dropped and counted, and every step that was analysed has all 32,000
    atoms (variable-length arrays from both ranks, none half there) and
    LAMMPS's temperature to 2 ulp."""
    p, run_dir, out = run(tmp_path, driver, SLOW, os.path.join(EXAMPLE, "in.lj"), steps=400,
                          every=10, extra=("--policy", "drop", "--ring-depth", "1"))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    got = results(run_dir)
    thermo = compare.table(out / "thermo.txt")
    summary = json.loads((run_dir / "summary.json").read_text())
    published = set(range(0, 401, 10))
    assert summary["rank_steps_dropped"] > 0, summary
    assert 1 <= len(got["temp"]) < len(published)
    assert set(got["temp"]) <= published
    for s, t in got["temp"].items():
        assert sum(got["per_type"][s]) == NATOMS, s
        assert abs(t - thermo[s][0]) <= 2 * np.spacing(thermo[s][0]), s
    # a step is analysed whole or not at all: the ones not analysed were
    # dropped by a rank, and said so (drops_by_rank: ranges of steps)
    assert summary["steps_analysed"] == len(got["temp"])
    dropped = {s for ranges in summary["drops_by_rank"].values() for lo, hi in ranges
               for s in published if lo <= s <= hi}
    assert dropped | set(got["temp"]) == published and not dropped & set(got["temp"])
