"""The Fortran module (fortran/caudal.f90) end to end: libcaudal and the
module built and installed by a plain CMake build into a scratch prefix,
examples/heat2d/heat2d.f90 compiled against the installed module with
mpif90 as a user would, and run on 3 real MPI ranks under `caudal run`.
Every step's global mean and the mean of the first row equal the
simulation's own record (MPI_Allreduce), the global array has the declared
Fortran shape, and a steering value reaches every rank at the same step."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

# Steering is asynchronous: the value set at step 4 reaches the ranks some
# steps later (the first analysis call starts a Ray worker). 120 steps leave
# room for that; which step applied it is read from the simulation's record.
STEPS = 120
NX, NY = 20, 15

ANALYSIS = """
import caudal

@caudal.analysis("temperature")
def stats(t, ctx):
    x = t[-1]
    ctx.record("mean", caudal.stats.moments(x).mean)
    ctx.record("shape", list(x.shape))
    ctx.record("rowmean", float(caudal.extract.slice(x, 0, 0).mean()))  # Fortran's u(1, :)
    if ctx.step == 4:
        ctx.steer("q", 0.0)
"""


@pytest.fixture(scope="module")
def heat2d_f(tmp_path_factory):
    if not shutil.which("gfortran") or not shutil.which("mpif90"):
        pytest.fail("gfortran or mpif90 not found: scripts/setup.sh installs them")
    work = tmp_path_factory.mktemp("fortran")
    build, prefix = work / "build", work / "prefix"
    subprocess.run(["cmake", "-S", ROOT, "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                    "-DCAUDAL_TESTS=OFF", "-DCAUDAL_BENCH=OFF", "-DCAUDAL_EXAMPLES=OFF"],
                   check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(build), "-j2"], check=True, capture_output=True)
    subprocess.run(["cmake", "--install", str(build), "--prefix", str(prefix)], check=True,
                   capture_output=True)
    lib = next(p for p in (prefix / "lib", prefix / "lib64") if (p / "libcaudal.so").exists())
    assert (prefix / "include" / "caudal.mod").exists()
    exe = work / "heat2d_f"
    subprocess.run(["mpif90", "-O2", "-Wall", "-Wextra", "-Werror", "-I%s" % (prefix / "include"),
                    os.path.join(ROOT, "examples", "heat2d", "heat2d.f90"), "-o", str(exe),
                    "-L%s" % lib, "-lcaudal_fortran", "-lcaudal", "-Wl,-rpath,%s" % lib],
                   check=True)
    return str(exe)


def read(path):
    """step -> (mean, row mean, q applied that step), rank 0's record."""
    return {int(s): (float(m), float(r), float(q))
            for s, m, r, q in (line.split() for line in path.read_text().splitlines())}


def test_the_fortran_heat_example_publishes_what_it_computes(tmp_path, heat2d_f):
    script = tmp_path / "stats.py"
    script.write_text(ANALYSIS)
    run_dir, own = tmp_path / "run", tmp_path / "means.txt"
    p = subprocess.run([sys.executable, "-m", "caudal", "run", "-n", "3", "--analytics",
                        str(script), "--run-dir", str(run_dir), "--", heat2d_f, str(NX),
                        str(NY), str(STEPS), "--mean", str(own)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    results = {}
    for line in (run_dir / "results.jsonl").read_text().splitlines():
        r = json.loads(line)
        results.setdefault(r["name"], {})[r["step"]] = r["value"]
    sim = read(own)
    assert sorted(results["mean"]) == sorted(sim) == list(range(STEPS))
    for s, (mean, row, _) in sim.items():
        assert results["shape"][s] == [NX, NY]
        assert results["mean"][s] == pytest.approx(mean, rel=1e-13)
        assert results["rowmean"][s] == pytest.approx(row, rel=1e-13, abs=1e-300)
    # q = 0 from some step after 4 to the end (read after publishing step 4
    # at the earliest). Rank 0 broadcasts what it read, so every rank applied
    # it that step: heated the global mean only rises, and from the step the
    # source went off on every rank it only falls; a rank still heating
    # after the others would break that.
    off = min(s for s, (_, _, q) in sim.items() if q == 0.0)
    assert 4 < off < STEPS and all(sim[s][2] == 0.0 for s in range(off, STEPS))
    assert all(sim[s][2] == 0.05 for s in range(off))
    assert all(sim[s][0] > sim[s - 1][0] for s in range(1, off))
    assert all(sim[s][0] < sim[s - 1][0] for s in range(off, STEPS))


def doc_blocks():
    """The fortran blocks of README.md and docs/*.md (test_docs.py checks
    that these are all of them)."""
    from test_docs import blocks

    return blocks("fortran")


SNIPPET = """program snippet
    use, intrinsic :: iso_c_binding, only: c_double
    use caudal
    implicit none
    integer :: rc, rank, nranks, step, nx, ny, nyl, y0
    real(c_double), allocatable :: u(:, :)
    rank = 0; nranks = 1; step = 0; nx = 4; ny = 3; nyl = 3; y0 = 0
    allocate(u(nx, 0:nyl + 1))
    u = 0
%s
    print *, rc
end program snippet
"""


def test_the_docs_fortran_snippets_compile_against_the_installed_module(heat2d_f, tmp_path):
    prefix = os.path.join(os.path.dirname(heat2d_f), "prefix")
    for where, _, code in doc_blocks():
        src = tmp_path / "snippet.f90"
        body = "\n".join("    " + line for line in code.splitlines()
                         if not line.strip().startswith(("use caudal", "type(caudal_client)")))
        decl = "    type(caudal_client) :: c\n" if "type(caudal_client)" in code else ""
        src.write_text(SNIPPET.replace("    u = 0\n", "    u = 0\n").replace(
            "implicit none\n", "implicit none\n" + decl) % body)
        p = subprocess.run(["mpif90", "-fsyntax-only", "-Wall", "-Werror",
                            "-I%s" % os.path.join(prefix, "include"), str(src)],
                           capture_output=True, text=True, cwd=tmp_path)
        assert p.returncode == 0, "%s:\n%s\n%s" % (where, src.read_text(), p.stderr)


BAD_PUTS = """program bad_puts
    use, intrinsic :: iso_c_binding, only: c_double, c_int64_t
    use caudal
    implicit none
    type(caudal_client) :: c
    real(c_double) :: a(4, 2), b(4, 3), p(5)
    integer :: rc
    a = 1
    b = 2
    p = 3
    rc = caudal_open(c, 0, 1)
    if (rc /= CAUDAL_OK) error stop "open"
    rc = caudal_declare(c, "t", CAUDAL_FLOAT64, [4, 3], [0, 0], [4, 3])
    rc = caudal_declare_var(c, "p", CAUDAL_FLOAT64, 8_c_int64_t)
    rc = caudal_begin_step(c, 7)
    rc = caudal_put(c, "t", a)
    print '(i0, "|", a)', rc, caudal_last_error(c)
    rc = caudal_put_var(c, "p", p, 9_c_int64_t)
    print '(i0, "|", a)', rc, caudal_last_error(c)
    rc = caudal_put(c, "t", b)
    print '(i0, "|", a)', rc, caudal_last_error(c)
    rc = caudal_put_var(c, "p", p, 5_c_int64_t)
    print '(i0, "|", a)', rc, caudal_last_error(c)
    rc = caudal_end_step(c)
    rc = caudal_close(c)
    print '(i0)', rc
end program bad_puts
"""


def test_a_fortran_put_of_the_wrong_size_is_refused_naming_the_array(heat2d_f, tmp_path):
    """A block smaller than declared, and a put_var past its array: errors
    naming rank, step and array, nothing read past the arrays; then the
    right puts go through to a real receiver, which gets b's values."""
    import threading

    import numpy as np

    import caudal

    prefix = os.path.join(os.path.dirname(heat2d_f), "prefix")
    lib = next(p for p in (os.path.join(prefix, "lib"), os.path.join(prefix, "lib64"))
               if os.path.exists(os.path.join(p, "libcaudal.so")))
    src = tmp_path / "bad_puts.f90"
    src.write_text(BAD_PUTS)
    exe = tmp_path / "bad_puts"
    subprocess.run(["gfortran", "-Wall", "-Werror", "-I%s" % os.path.join(prefix, "include"),
                    str(src), "-o", str(exe), "-L%s" % lib, "-lcaudal_fortran", "-lcaudal",
                    "-Wl,-rpath,%s" % lib], check=True, cwd=tmp_path)
    endpoint = "unix:%s" % (tmp_path / "ingest.sock")
    got = {}
    with caudal.Receiver(endpoint) as r:
        def drain():
            while True:
                ev = r.next(timeout_ms=20000)
                if ev is None or ev.type in ("bye", "disconnect"):
                    return
                if ev.type == "block":
                    with ev.block as b:
                        got[ev.name] = np.array(b, copy=True)
        t = threading.Thread(target=drain)
        t.start()
        p = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, CAUDAL_ENDPOINT=endpoint))
        t.join(30)
    assert p.returncode == 0, p.stdout + p.stderr
    (shape_rc, shape_msg), (var_rc, var_msg), ok1, ok2, closed = [
        tuple(line.split("|", 1)) if "|" in line else (line, "")
        for line in p.stdout.split("\n") if line.strip()]
    assert int(shape_rc) == caudal.ERR_SHAPE
    assert "rank 0" in shape_msg and "step 7" in shape_msg and "'t'" in shape_msg
    assert int(var_rc) == caudal.ERR_INVALID
    assert "'p'" in var_msg and "put_var of 9 elements from an array of 5" in var_msg
    assert int(ok1[0]) == int(ok2[0]) == int(closed[0]) == 0
    assert np.array_equal(got["t"], np.full((4, 3), 2.0)) and list(got["p"]) == [3.0] * 5


def test_the_fortran_example_refuses_bad_arguments(heat2d_f):
    p = subprocess.run(["mpiexec", "-n", "1", heat2d_f, "20", "x", "5"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode != 0 and "not a number: 'x'" in p.stdout + p.stderr
