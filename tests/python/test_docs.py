"""The README's and docs' code, run: every fenced block of README.md and
docs/*.md is found and checked by its language, and a block of a language
nobody checks fails the test, so a new snippet cannot go untested.

- python: analytics snippets are executed and each analysis they define is
  called on a step of a known field (a Dask array, the kernels run on it
  as on a caudal run step); what it records is compared with NumPy and
  SciPy. API listings (Client, Receiver) are checked name by name against
  the package. The results folder snippets run in test_results.py, against
  a real run's folder.
- sh: every `caudal` command line parses with caudal's own parser; every
  other command names a script of the repository, a program the setup
  installs, or a file the build makes; every path into the repository
  exists.
- c: compiled (mpicc -fsyntax-only -Wall -Werror) inside a function, with
  the names it leaves to the reader declared.
- fortran: in test_fortran.py, against the installed module.
- text: output shown as an example: the progress line matches what
  test_progress.py parses.
"""

import glob
import os
import re
import shlex
import shutil
import subprocess

import dask.array as da
import numpy as np
import pytest
import scipy.ndimage

import caudal
from caudal.analytics import StepArray, analyses_in, finishers_in
from conftest import ROOT

FILES = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def blocks(lang=None):
    out = []
    for path in FILES:
        text = open(path).read()
        for m in FENCE.finditer(text):
            if lang is None or m.group(1) == lang:
                line = text.count("\n", 0, m.start()) + 1
                out.append(("%s:%d" % (os.path.relpath(path, ROOT), line), m.group(1),
                            m.group(2)))
    return out


def ids(bs):
    return [b[0] for b in bs]


CHECKED = {"python", "sh", "c", "fortran", "text", ""}


def test_every_block_has_a_language_that_is_checked():
    unknown = [(where, lang) for where, lang, _ in blocks() if lang not in CHECKED]
    assert not unknown
    # an unlabelled block is a diagram or a listing: no command or code in it
    for where, lang, text in blocks(""):
        assert not re.search(r"^\s*(caudal run|import caudal|#include)", text, re.M), where


# --- python -------------------------------------------------------------------

class Ctx:
    """What an analysis gets as ctx, keeping what it does."""

    def __init__(self, step, run_dir):
        self.step, self.run_dir, self.analysis = step, run_dir, "doc"
        self.records, self.steered, self.extracts = {}, {}, {}

    def record(self, name, value):
        self.records[name] = value

    def steer(self, key, value, rank=-1):
        self.steered[key] = value

    def extract(self, name, value, dims=None, coords=None, attrs=None):
        from caudal.results import Extract

        self.extracts[name] = Extract(name, self.step, value, dims, coords, attrs)

    def reported(self, key, rank=0):
        return None


def field(step):
    """A smooth field with hot spots, two blocks per axis, as four ranks'."""
    x, y = np.meshgrid(np.linspace(0, 3, 64), np.linspace(0, 2, 48), indexing="ij")
    return 0.9 + np.sin(3 * x) * np.cos(4 * y) + 0.01 * step


def particles(step):
    """A variable-length array: 4 ranks' parts joined in rank order."""
    return np.concatenate([np.arange(r + step % 3, dtype=float) + 100 * r for r in range(4)])


def step_array(name, step, dims=None):
    if name == "temperature":
        data = da.from_array(field(step), chunks=(32, 24))
    else:
        p = particles(step)
        data = da.from_array(p, chunks=((len(p),),))
    return StepArray(step, data=data, name=name, dims=dims)


ANALYTICS = [b for b in blocks("python") if "@caudal.analysis" in b[2]]


@pytest.mark.parametrize("where,lang,code", ANALYTICS, ids=ids(ANALYTICS))
def test_analytics_snippets_compute_what_numpy_does(where, lang, code, tmp_path):
    ns = {"caudal": caudal, "np": np, "numpy": np}
    exec(compile(code, where, "exec"), ns)
    analyses = analyses_in(ns)
    assert analyses, where
    ctx = Ctx(101, tmp_path)
    for a in analyses:
        assert set(a.arrays) <= {"temperature", "particles"}, where
        windows = [[step_array(n, 101 - a.window + 1 + i, (a.dims or {}).get(n))
                    for i in range(a.window)] for n in a.arrays]
        a.func(*windows, ctx)
    for f in finishers_in(ns):
        f.func(ctx)
    new, old = field(101), field(100)
    lap = scipy.ndimage.convolve(new, [[0, 1, 0], [1, -4, 1], [0, 1, 0]], mode="constant")
    check = {
        "mean": lambda v: v == pytest.approx(new.mean(), rel=1e-12),
        "n_particles": lambda v: v == len(particles(101)),
        "counts": lambda v: np.array_equal(v, np.histogram(new, bins=64, range=(0.0, 2.0))[0]),
        # the interior: caudal.stencil's borders are its own (docs/kernels.md)
        "max_laplacian": lambda v: v >= np.abs(lap[1:-1, 1:-1]).max() * (1 - 1e-12),
        "max_rate": lambda v: v == pytest.approx(np.abs(new - old).max(), rel=1e-12),
        "p99": lambda v: abs(v - np.quantile(new, 0.99)) <= 0.01 * np.ptp(new),
        "hot_spots": lambda v: v == scipy.ndimage.label(new > 1.0)[1],
        "coarse": lambda v: np.allclose(v, new.reshape(8, 8, 6, 8).mean(axis=(1, 3))),
    }
    for name, value in ctx.records.items():
        assert name in check, "%s records %r: say here what it should be" % (where, name)
        assert check[name](value), (where, name, value)
    kept = {
        "coarse": lambda e: check["coarse"](e.data) and (
            "x" not in e.coords or list(e.coords["x"]) == list(np.arange(8) * 8 + 3.5)),
        "row": lambda e: np.array_equal(e.data, new[5]) and e.dims == ("y",),
    }
    for name, e in ctx.extracts.items():
        assert name in kept, "%s extracts %r: say here what it should be" % (where, name)
        assert kept[name](e), (where, name)
    if ctx.steered:
        assert ctx.steered == {"q": 0.0}
    # what the snippet's functions save at the end, it saves
    assert ctx.records or ctx.extracts or list(tmp_path.iterdir()), where


def _names(code, var):
    return set(re.findall(r"\b%s\.(\w+)" % var, code))


API = [b for b in blocks("python") if re.search(r"^(c|r) = caudal\.", b[2], re.M)]


@pytest.mark.parametrize("where,lang,code", API, ids=ids(API))
def test_api_listings_name_what_the_package_has(where, lang, code):
    cls = caudal.Client if code.lstrip().startswith("c =") else caudal.Receiver
    var = "c" if cls is caudal.Client else "r"
    missing = [n for n in _names(code, var) if not hasattr(cls, n)]
    assert not missing, (where, missing)
    first = code.split(")", 1)[0]
    doc = cls.__doc__ or ""
    for kw in re.findall(r"(\w+)=", first):
        assert kw in doc or kw in (cls.__init__.__doc__ or ""), (where, kw)


def test_every_python_block_is_run_somewhere():
    others = [b for b in blocks("python") if b not in ANALYTICS and b not in API]
    # the rest: the results folder (test_results.py) and the simulation side
    for where, _, code in others:
        assert "open_run" in code or "caudal.Client(" in code, where


def test_the_python_simulation_snippet_publishes_to_a_real_receiver(tmp_path):
    (where, _, code), = [b for b in blocks("python") if "caudal.Client(" in b[2]
                         and not b[2].lstrip().startswith("c =")]
    endpoint = "unix:%s" % (tmp_path / "ingest.sock")
    r = caudal.Receiver(endpoint)
    try:
        NX, NY = 8, 6
        ns = {"rank": 0, "size": 1, "NX": NX, "NY": NY, "x0": 0, "y0": 0, "nx": NX, "ny": NY,
              "block": field(0)[:NX, :NY].copy()}
        src = code.replace('"unix:/tmp/ingest.sock"', repr(endpoint))
        import threading

        t = threading.Thread(target=exec, args=(compile(src, where, "exec"), ns))
        t.start()
        got, seen = None, []
        while not seen or seen[-1] not in ("bye", "disconnect"):
            ev = r.next(timeout_ms=10000)
            assert ev is not None, "no goodbye from %s (%s)" % (where, seen)
            seen.append(ev.type)
            if ev.type == "block":
                with ev.block as b:
                    got = np.array(b, copy=True)
        assert seen == ["connect", "declare", "block", "step_end", "bye"]
        t.join(30)
        assert np.array_equal(got, ns["block"])
    finally:
        r.close()


# --- sh -----------------------------------------------------------------------

def _commands(text):
    text = text.replace("\\\n", " ")
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if line.startswith("#SBATCH") or not line or line.startswith("#"):
            continue
        yield from (c.strip() for c in line.split("&&"))


KNOWN = {"cc", "mpicc", "mpif90", "cmake", "pip", "sbatch", "pkg-config", "caudal"}
REPO_DIRS = ("examples/", "scripts/", "bench/", "docs/", "tests/", "fortran/", "include/")


def _made_by_the_build(path):
    """build/<dir>/<sub>/NAME: a target NAME of the CMake files."""
    name = os.path.basename(path)
    cmake = "".join(open(p).read() for p in glob.glob(os.path.join(ROOT, "**", "CMakeLists.txt"),
                                                      recursive=True))
    return re.search(r"add_executable\(\s*%s\b" % re.escape(name), cmake) is not None


SH = blocks("sh")


@pytest.mark.parametrize("where,lang,code", SH, ids=ids(SH))
def test_shell_commands_parse_and_name_what_exists(where, lang, code):
    from caudal.__main__ import _parser

    for cmd in _commands(code):
        words = shlex.split(re.sub(r"\$\((.*?)\)", "SUBST", cmd))
        while words and "=" in words[0] and not words[0].startswith("-"):
            words = words[1:]  # VAR=value prefixes
        prog = words[0]
        if prog == "caudal":
            try:
                _parser().parse_args(words[1:])
            except SystemExit:
                pytest.fail("%s: %r does not parse" % (where, cmd))
        elif "/" in prog and not prog.startswith("./"):
            assert (os.path.exists(os.path.join(ROOT, prog)) or _made_by_the_build(prog)), \
                (where, prog)
        elif not prog.startswith("./"):
            assert prog in KNOWN or shutil.which(prog), (where, prog)
        for w in words[1:]:
            if w.startswith(REPO_DIRS):
                assert os.path.exists(os.path.join(ROOT, w)), (where, w)
            elif w.startswith("build/") and "/examples/" in w:
                assert _made_by_the_build(w), (where, w)


# --- c --------------------------------------------------------------------------

C_PRELUDE = """
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
%s
enum { NX = 16, NY = 12 };
static void compute(double *t) { t[0] += 1; }
int snippet(void);
int snippet(void) {
    uint64_t x0 = 0, y0 = 0, nx = NX, ny = NY;
    int step, nsteps = 3;
    double q = 0, t[NX * NY] = {0};
%s
    (void)q, (void)x0, (void)y0, (void)nx, (void)ny, (void)t;
    return 0;
}
"""

C = blocks("c")


@pytest.mark.parametrize("where,lang,code", C, ids=ids(C))
def test_c_snippets_compile_against_the_headers(where, lang, code, tmp_path):
    includes = "\n".join(line for line in code.splitlines() if line.startswith("#include"))
    body = "\n".join(line for line in code.splitlines() if not line.startswith("#include"))
    src = tmp_path / "snippet.c"
    src.write_text(C_PRELUDE % (includes, body))
    p = subprocess.run(["mpicc", "-std=c11", "-fsyntax-only", "-Wall", "-Wextra", "-Werror",
                        "-I%s" % os.path.join(ROOT, "include"), str(src)],
                       capture_output=True, text=True)
    assert p.returncode == 0, "%s:\n%s" % (where, p.stderr)


# --- text -----------------------------------------------------------------------

def test_the_progress_line_shown_is_the_one_printed():
    from test_progress import LINE

    shown = [text for _, lang, text in blocks("text") if text.startswith("caudal run: ")]
    assert shown and all(LINE.match(t.strip()) for t in shown)


def test_fortran_blocks_are_checked_in_test_fortran():
    import test_fortran

    assert [b[2] for b in blocks("fortran")] == [b[2] for b in test_fortran.doc_blocks()]




def test_the_c_api_page_names_every_function_and_status_of_the_headers():
    page = open(os.path.join(ROOT, "docs", "c_api.md")).read()
    header = open(os.path.join(ROOT, "include", "caudal.h")).read()
    mpi = open(os.path.join(ROOT, "include", "caudal_mpi.h")).read()
    functions = set(re.findall(r"CAUDAL_API [^;(]*?\b(caudal_\w+)\(", header))
    functions |= set(re.findall(r"static inline int (caudal_\w+)\(", mpi))
    assert len(functions) >= 30
    for f in functions:
        # a family (caudal_steer_get_double, `_int64`) may share a row
        stem = re.sub(r"_(double|int64|string)(_mpi)?$", "", f)
        assert f in page or (stem + "_double") in page, f
    for name, value in re.findall(r"X\((\w+), (-?\d+), \"", header.split("CAUDAL_STATUS_LIST")[1]
                                  .split("typedef")[0]):
        assert "| `CAUDAL_%s` | %s |" % (name, value) in page, name
