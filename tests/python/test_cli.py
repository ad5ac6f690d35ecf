"""The caudal command, and a C simulation built with `caudal config` flags
publishing to a Python receiver."""

import os
import shlex
import shutil
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import caudal
from conftest import endpoint_for, new_private_dirs

# libcaudal and its headers are installed beside the extension module.
PKG = os.path.dirname(os.path.abspath(caudal._caudal.__file__))


def cli(*args):
    return subprocess.run([sys.executable, "-m", "caudal", *args], capture_output=True,
                          text=True, timeout=60)


def test_config_cflags_libs():
    p = cli("config", "--cflags", "--libs")
    assert p.returncode == 0, p.stderr
    words = p.stdout.split()
    inc, lib = os.path.join(PKG, "include"), os.path.join(PKG, "lib")
    assert words == ["-I" + inc, "-L" + lib, "-Wl,-rpath," + lib, "-lcaudal"]
    assert os.path.isfile(os.path.join(inc, "caudal.h"))
    assert os.path.isfile(os.path.join(inc, "caudal_receiver.h"))
    assert os.path.exists(os.path.join(lib, "libcaudal.so"))
    assert cli("config", "--cflags").stdout.split() == ["-I" + inc]
    assert caudal.get_include() == inc and caudal.get_lib() == lib


def test_config_prefix_and_version():
    p = cli("config", "--prefix")
    assert p.returncode == 0 and p.stdout.strip() == PKG
    p = cli("version")
    assert p.returncode == 0 and p.stdout.strip() == caudal.__version__ == "0.1.0"


def test_cli_errors_go_to_stderr():
    p = cli()
    assert p.returncode == 2 and p.stdout == "" and "usage" in p.stderr
    p = cli("config")
    assert p.returncode == 2 and p.stdout == "" and "--cflags" in p.stderr
    p = cli("config", "--bogus")
    assert p.returncode == 2 and p.stdout == "" and "--bogus" in p.stderr
    p = cli("frobnicate")
    assert p.returncode == 2 and p.stdout == "" and "frobnicate" in p.stderr


def test_console_script():
    exe = shutil.which("caudal", path=os.path.dirname(sys.executable))
    if not exe:
        pytest.skip("the caudal console script is not installed beside this Python")
    p = subprocess.run([exe, "config", "--prefix"], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.strip() == PKG


C_SOURCE = textwrap.dedent(r"""
    /* A tiny simulation: rank r of 2 owns rows 2r..2r+1 of a 4x6 field. */
    #include <caudal.h>
    #include <stdio.h>
    #include <stdlib.h>

    int main(int argc, char **argv)
    {
        if (argc != 3)
            return 2;
        int rank = atoi(argv[2]);
        caudal_options o;
        caudal_options_init(&o);
        o.rank = rank;
        o.size = 2;
        o.endpoint = argv[1];
        caudal_client *c;
        char err[256];
        if (caudal_open(&c, &o, err, sizeof err) != CAUDAL_OK) {
            fprintf(stderr, "open: %s\n", err);
            return 1;
        }
        uint64_t shape[2] = {4, 6}, start[2] = {2 * (uint64_t)rank, 0}, count[2] = {2, 6};
        if (caudal_declare(c, "temperature", CAUDAL_FLOAT64, 2, shape, start, count,
                           CAUDAL_ORDER_C) != CAUDAL_OK) {
            fprintf(stderr, "declare: %s\n", caudal_last_error(c));
            return 1;
        }
        double t[2][6];
        for (uint64_t step = 0; step < 3; step++) {
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 6; j++)
                    t[i][j] = 1000.0 * step + 6 * (2 * rank + i) + j + 0.5;
            if (caudal_begin_step(c, step) || caudal_put(c, "temperature", CAUDAL_FLOAT64, t) ||
                caudal_end_step(c)) {
                fprintf(stderr, "step: %s\n", caudal_last_error(c));
                return 1;
            }
        }
        /* A wrong dtype is refused with a message naming the array. */
        caudal_begin_step(c, 3);
        int rc = caudal_put(c, "temperature", CAUDAL_FLOAT32, t);
        printf("%d %s\n", rc, caudal_last_error(c));
        caudal_end_step(c);
        return caudal_close(&c) == CAUDAL_OK ? 0 : 1;
    }
""")


@pytest.mark.skipif(not shutil.which("cc"), reason="no C compiler (cc)")
def test_c_program_built_with_caudal_config(tmp_path, transport):
    src = tmp_path / "sim.c"
    src.write_text(C_SOURCE)
    exe = tmp_path / "sim"
    cmd = "cc -std=c11 -Wall -Werror -o %s %s $(%s -m caudal config --cflags --libs)" % (
        shlex.quote(str(exe)), shlex.quote(str(src)), shlex.quote(sys.executable))
    p = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr

    with caudal.Receiver(endpoint_for(transport)) as r:
        procs = [subprocess.Popen([str(exe), r.endpoint, str(rank)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
                 for rank in range(2)]
        field = {s: np.full((4, 6), np.nan) for s in range(4)}
        byes = 0
        deadline = time.monotonic() + 60
        while byes < 2 and time.monotonic() < deadline:
            ev = r.next(50)
            if ev is None:
                continue
            assert ev.type != "disconnect", ev.message
            if ev.type == "block":
                view = np.asarray(ev.block)
                assert view.dtype == np.float64 and view.shape == (2, 6)
                field[ev.step][ev.start[0]:ev.start[0] + 2, :] = view
            byes += ev.type == "bye"
        outs = [pr.communicate(timeout=60) for pr in procs]
    for pr, (out, errs) in zip(procs, outs):
        assert pr.returncode == 0, errs
        assert out.startswith("%d " % caudal.ERR_DTYPE)
        assert "array 'temperature'" in out and "step 3" in out
    assert byes == 2
    for s in range(3):
        want = 1000.0 * s + np.arange(24.0).reshape(4, 6) + 0.5
        assert np.array_equal(field[s], want)
    # Step 3 had no block from either rank (only the refused put).
    assert np.isnan(field[3]).all()


def test_run_flags_for_ending_a_run():
    p = cli("run", "--help")
    assert p.returncode == 0, p.stderr
    for flag in ("--timeout", "--analysis-timeout", "--debug"):
        assert flag in p.stdout
    # A bad --timeout is refused before anything starts (no Ray, no directory).
    before = set(os.listdir("/tmp"))
    p = cli("run", "-n", "1", "--analytics", __file__, "--timeout", "0", "--", "true")
    assert p.returncode == 3 and "--timeout must be positive" in p.stderr
    assert "Traceback" not in p.stderr
    p = cli("run", "-n", "1", "--analytics", __file__, "--workers", "-1", "--", "true")
    assert p.returncode == 3 and "--workers -1: the Ray workers to start per node must be 0 " \
        "or more" in p.stderr
    assert "Traceback" not in p.stderr
    assert not new_private_dirs(before)


def test_an_analytics_script_that_cannot_load_is_a_setup_error(tmp_path):
    """Exit 3 (what the user gave is wrong, as a declaration error), one line
    naming the script and the error, no traceback, nothing started."""
    cases = {"missing.py": None,
             "syntax.py": "def f(:\n    pass\n",
             "raises.py": "import caudal\nraise RuntimeError('import-time failure')\n",
             "empty.py": "x = 1\n"}
    before = set(os.listdir("/tmp"))
    for name, text in cases.items():
        script = tmp_path / name
        if text is not None:
            script.write_text(text)
        p = cli("run", "-n", "1", "--analytics", str(script), "--run-dir",
                str(tmp_path / "run"), "--", "true")
        assert p.returncode == 3, (name, p.returncode, p.stderr)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("caudal run: "), (name, p.stderr)
        assert "Traceback" not in p.stderr
    assert "line 1" in cli("run", "-n", "1", "--analytics", str(tmp_path / "syntax.py"),
                           "--", "true").stderr
    assert "import-time failure" in cli("run", "-n", "1", "--analytics",
                                        str(tmp_path / "raises.py"), "--", "true").stderr
    assert not (tmp_path / "run").exists()
    assert not new_private_dirs(before)
