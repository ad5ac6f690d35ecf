"""The results folder: one `caudal run` of examples/heat2d on 4 real MPI
ranks whose analyses record numbers, arrays, strings and dicts and keep
extracts (a coarse field from xarray, a slice with coordinates), read back
with caudal.open_run and checked against the simulation's own means; then
the folder of a run that was killed (no table), read from results.jsonl."""

import json
import subprocess
import sys

import numpy as np
import pytest

import caudal

NX, NY, STEPS = 32, 24, 12

ANALYSIS = """
import caudal, numpy as np

@caudal.analysis("temperature", dims=("x", "y"))
def fields(t, ctx):
    x = t[-1]
    ctx.record("mean", caudal.stats.moments(x).mean)
    counts, _ = np.histogram(x.data.compute(), bins=8)
    ctx.record("counts", counts)
    ctx.record("label", "step %d" % ctx.step)
    ctx.record("info", {"step": ctx.step, "shape": list(x.shape)})
    ctx.extract("coarse", x.xarray.coarsen(x=8, y=8).mean())
    ctx.extract("row", caudal.extract.slice(x, 0, 5), dims=("y",),
                coords={"y": np.arange(x.shape[1]) * 0.5}, attrs={"units": "K"})
    # From step 6 on this extract has another shape: those calls fail, with
    # what they recorded before it kept.
    ctx.record("before_misfit", ctx.step)
    ctx.extract("misfit", np.zeros(3 if ctx.step < 6 else 4))

@caudal.at_end
def last(ctx):
    ctx.record("last", ctx.step)
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory, heat2d):
    tmp = tmp_path_factory.mktemp("results")
    script = tmp / "analysis.py"
    script.write_text(ANALYSIS)
    run_dir, means = tmp / "run", tmp / "means.txt"
    p = subprocess.run([sys.executable, "-m", "caudal", "run", "-n", "4", "--analytics",
                        str(script), "--run-dir", str(run_dir), "--csv", "--", heat2d, str(NX),
                        str(NY), str(STEPS), "--mean", str(means)],
                       capture_output=True, text=True, timeout=300)
    sim = {int(s): float(m) for s, m in (line.split() for line in
                                          means.read_text().splitlines())}
    return p, run_dir, sim


def test_the_records_read_back_as_the_simulation_computed_them(run):
    p, run_dir, sim = run
    assert p.returncode == 1, p.stdout + p.stderr  # the misfit calls failed
    r = caudal.open_run(run_dir)
    mean = r.scalar("mean")
    assert list(mean.index) == list(range(STEPS))
    for s, m in sim.items():
        assert mean[s] == pytest.approx(m, rel=1e-12)
    counts = r.array("counts", dims=("bin",))
    assert counts.dims == ("step", "bin") and counts.shape == (STEPS, 8)
    assert (counts.sum("bin") == NX * NY).all()
    assert r["label"][3] == "step 3"
    info = r.results[r.results["name"] == "info"]
    assert [json.loads(j)["shape"] for j in info["json"]] == [[NX, NY]] * STEPS
    assert r.scalar("last").to_dict() == {STEPS - 1: STEPS - 1}
    assert sorted(r.names) == ["before_misfit", "counts", "info", "label", "last", "mean"]
    assert r.names["counts"] == "array" and r.names["info"] == "json"
    assert list(r.scalar("before_misfit").index) == list(range(STEPS))
    assert r.summary["end"]["exit_code"] == 1 and r.summary["extracts"] == STEPS * 2 + 6
    # results.csv: the same rows, arrays as JSON text
    import pandas as pd

    csv = pd.read_csv(run_dir / "results.csv")
    assert len(csv) == len(r.results)
    row = csv[(csv["name"] == "counts") & (csv["step"] == 2)]["array"].iloc[0]
    assert json.loads(row) == counts.sel(step=2).values.tolist()


def test_extracts_keep_their_steps_dims_and_coordinates(run):
    _, run_dir, sim = run
    r = caudal.open_run(run_dir)
    assert r.extracts == ["coarse", "misfit", "row"]
    coarse = r.extract("coarse")
    assert coarse.dims == ("step", "x", "y") and coarse.shape == (STEPS, NX // 8, NY // 8)
    assert list(coarse["step"].values) == list(range(STEPS))
    # the centre of each 8-wide cell, from the global index coordinates
    assert list(coarse["x"].values) == [3.5, 11.5, 19.5, 27.5]
    for s, m in sim.items():  # equal cells: their mean is the field's
        assert float(coarse.sel(step=s).mean()) == pytest.approx(m, rel=1e-12)
    row = r["row"]
    assert row.dims == ("step", "y") and list(row["y"].values) == list(np.arange(NY) * 0.5)
    assert row.attrs["units"] == "K"
    assert r.summary and caudal.open_run(run_dir).extract("row").shape == (STEPS, NY)
    misfit = r.extract("misfit")
    assert list(misfit["step"].values) == list(range(6))
    errors = r.errors
    assert sorted(errors["step"]) == list(range(6, STEPS))
    assert all("extract 'misfit' at step %d has shape (4,)" % s in e and "at step 0 it had (3,)"
               in e for s, e in zip(errors["step"], errors["error"]))


def test_a_killed_runs_records_are_read_from_its_log(tmp_path):
    lines = [{"analysis": "a", "step": s, "name": "x", "value": s * 1.5} for s in range(5)]
    lines.append({"analysis": "b", "step": 2, "name": "x", "value": 7})
    # a number that is NaN at every step still reads as numbers
    lines += [{"analysis": "a", "step": s, "name": "nan", "value": float("nan")}
              for s in range(3)]
    text = "".join(json.dumps(line) + "\n" for line in lines)
    (tmp_path / "results.jsonl").write_text(text + '{"analysis": "a", "st')  # cut short
    r = caudal.open_run(tmp_path)
    assert len(r.results) == 9 and r.summary == {} and r.extracts == []
    nan = r.scalar("nan")
    assert nan.index.tolist() == [0, 1, 2] and nan.isna().all() and nan.dtype == np.float64
    with pytest.raises(KeyError, match="recorded by analyses a, b: name one"):
        r.scalar("x")
    assert r.scalar("x", analysis="a").to_dict() == {s: s * 1.5 for s in range(5)}
    with pytest.raises(KeyError, match="no record named 'y'.*recorded: nan, x"):
        r["y"]
    with pytest.raises(KeyError, match="no extract named 'z'"):
        r.extract("z")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="not a caudal run folder"):
        caudal.open_run(empty)
    with pytest.raises(FileNotFoundError, match="no run folder"):
        caudal.open_run(tmp_path / "nowhere")


def test_bad_dims_and_extracts_are_refused_with_their_names():
    with pytest.raises(ValueError, match="not one of the analysis' arrays"):
        caudal.analysis("a", dims={"b": ("x",)})
    with pytest.raises(ValueError, match="a dict from array name"):
        caudal.analysis("a", "b", dims=("x",))
    one = caudal.analysis("t", dims=("x", "y"))(lambda t, ctx: None)
    other = caudal.analysis("t", dims=("i", "j"))(lambda t, ctx: None)
    from caudal.analytics import array_dims

    with pytest.raises(ValueError, match="names the axes of 't'"):
        array_dims([one, other])
    from caudal.results import Extract

    with pytest.raises(ValueError, match="extract 'e' at step 3: dims"):
        Extract("e", 3, np.zeros((2, 2)), dims=("x",))
    with pytest.raises(ValueError, match="coordinate 'x' has shape"):
        Extract("e", 3, np.zeros(2), dims=("x",), coords={"x": [1, 2, 3]})
    with pytest.raises(ValueError, match="array of numbers"):
        Extract("e", 3, np.array(["a"]))
    with pytest.raises(ValueError, match="name"):
        Extract("a/b", 3, np.zeros(2))


def test_the_report_shows_every_plot_in_a_browser(run, tmp_path):
    """report.html, written by the run, opened in headless Chromium: a
    screenshot that is not blank, and every plot an image with data on it."""
    import base64
    import html
    import re
    import shutil

    import matplotlib.image as mpimg

    _, run_dir, _ = run
    page = (run_dir / "report.html").read_text()
    plots = dict(re.findall(r'data-name="([^"]+)"[^>]*src="data:image/png;base64,([^"]+)"',
                            page))
    assert sorted(plots) == ["extract.coarse", "extract.misfit", "extract.row",
                             "fields.before_misfit", "fields.counts", "fields.mean",
                             "last.last", "pipeline"]
    for name, data in plots.items():
        png = tmp_path / ("%s.png" % name)
        png.write_bytes(base64.b64decode(data))
        img = mpimg.imread(png)[..., :3]
        # more than the white page, the black axes and their labels
        colours = {tuple(p) for p in (img.reshape(-1, 3) * 20).round().astype(int).tolist()}
        assert len(colours) > 12, name
    # the failed calls, named
    assert "extract 'misfit' at step 6 has shape (4,)" in html.unescape(page)
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.fail("chromium not found: scripts/setup.sh installs it")
    shot = tmp_path / "shot.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                    "--window-size=1200,4000", "--screenshot=%s" % shot,
                    (run_dir / "report.html").as_uri()], capture_output=True, timeout=120,
                   check=True)
    img = mpimg.imread(shot)[..., :3]
    rows = np.flatnonzero((img < 0.9).any(axis=(1, 2)))  # rows with ink
    assert img.shape[1] == 1200 and rows.size > 1000  # the plots, not an empty page
    # the coloured heat maps and curves, not only text
    assert ((img.max(axis=2) - img.min(axis=2)) > 0.3).sum() > 10000


def test_caudal_report_rewrites_it_and_refuses_a_folder_that_is_not_a_run(run, tmp_path):
    _, run_dir, _ = run
    (run_dir / "report.html").unlink()
    p = subprocess.run([sys.executable, "-m", "caudal", "report", str(run_dir), "--steps",
                        "2,9"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "wrote %s" % (run_dir / "report.html") in p.stdout
    page = (run_dir / "report.html").read_text()
    assert 'data-name="fields.mean"' in page
    # the row extract drawn at the steps chosen: their legend, in its image
    import base64
    import re

    import matplotlib.image as mpimg

    png = tmp_path / "row.png"
    png.write_bytes(base64.b64decode(re.search(
        r'data-name="extract.row"[^>]*src="data:image/png;base64,([^"]+)"', page).group(1)))
    img = mpimg.imread(png)[..., :3]
    tab = np.array([0.12, 0.47, 0.71])  # matplotlib's first colour: a curve per step
    orange = np.array([1.0, 0.5, 0.05])  # the second
    green = np.array([0.17, 0.63, 0.17])  # a third would be there with 3 steps
    near = lambda c: (np.abs(img - c).sum(axis=2) < 0.15).sum()  # noqa: E731
    assert near(tab) > 50 and near(orange) > 50 and near(green) == 0
    p = subprocess.run([sys.executable, "-m", "caudal", "report", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "not a caudal run folder" in p.stdout


def test_the_docs_results_snippets_run_on_this_folder(run):
    """docs/results.md's open_run block, on this run's folder: each line
    gives what its comment says."""
    from test_docs import blocks

    _, run_dir, sim = run
    (where, _, code), = [b for b in blocks("python") if "open_run" in b[2]]
    ns = {}
    exec(compile(code.replace('"runs/demo-heat"', repr(str(run_dir))), where, "exec"), ns)
    r = ns["run"]
    assert isinstance(r, caudal.results.RunResults)
    lines = [line.split("#")[0].strip() for line in code.splitlines()[3:] if line.strip()]
    values = [eval(line, ns) for line in lines]
    mean, counts, coarse, same = values[:4]
    assert mean.to_dict() == pytest.approx(sim, rel=1e-12) and same.equals(mean)
    assert counts.dims == ("step", "counts_0") and coarse.dims == ("step", "x", "y")


def test_a_reused_run_folder_holds_only_the_new_runs_results(run, tmp_path, heat2d):
    """--run-dir given a folder an earlier run wrote: its results, table,
    CSV, extracts and report are replaced, not mixed with the new run's; a
    file of the user's own stays."""
    import shutil

    _, first, _ = run
    again = tmp_path / "again"
    shutil.copytree(first, again)
    (again / "notes.txt").write_text("mine")
    script = tmp_path / "other.py"
    script.write_text("import caudal\n\n@caudal.analysis('temperature')\n"
                      "def other(t, ctx):\n    ctx.record('other', ctx.step)\n")
    p = subprocess.run([sys.executable, "-m", "caudal", "run", "-n", "2", "--analytics",
                        str(script), "--run-dir", str(again), "--", heat2d, "16", "8", "5"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "%s held an earlier run's results; they are replaced" % again in p.stderr
    r = caudal.open_run(again)
    assert r.names == {"other": "value"} and r.extracts == []
    assert r.scalar("other").to_dict() == {s: s for s in range(5)}
    assert r.errors.empty and not (again / "results.csv").exists()
    assert (again / "notes.txt").read_text() == "mine"
    assert (again / "report.html").exists() and "fields.mean" not in (
        again / "report.html").read_text()


def test_a_folder_that_never_held_a_run_is_not_cleared(tmp_path):
    from caudal.results import clear

    (tmp_path / "results.csv").write_text("theirs")
    assert clear(tmp_path) == [] and (tmp_path / "results.csv").read_text() == "theirs"
    (tmp_path / "summary.json").write_text("{}")
    assert clear(tmp_path) == ["summary.json", "results.csv"]
    assert list(tmp_path.iterdir()) == []


def _extract(name, step, data, **kw):
    from caudal.results import Extract

    return Extract(name, step, np.asarray(data), **kw)


def test_an_extracts_form_is_fixed_by_its_first_step_written(tmp_path):
    """A call whose records were lost (past its deadline) does not fix the
    form; two of one name in one call that disagree fail at the write."""
    from caudal.results import ExtractStore

    store = ExtractStore(tmp_path)
    store.check(_extract("e", 1, np.zeros(3)))  # its call is then lost: never written
    second = _extract("e", 2, np.arange(4.0))
    store.check(second)
    store.write(second)
    with pytest.raises(ValueError, match=r"extract 'e' at step 3 has shape \(3,\).*at step 2"):
        store.check(_extract("e", 3, np.zeros(3)))
    store.check(_extract("f", 3, np.zeros(2)))
    store.check(_extract("f", 3, np.zeros(5)))  # the same call: neither written yet
    store.write(_extract("f", 3, np.zeros(2)))
    with pytest.raises(ValueError, match="extract 'f' at step 3 has shape"):
        store.write(_extract("f", 3, np.zeros(5)))
    (tmp_path / "summary.json").write_text("{}")
    x = caudal.open_run(tmp_path).extract("e")
    assert x.sizes["step"] == 1 and x.sel(step=2).values.tolist() == [0, 1, 2, 3]


def test_the_report_of_a_cut_run_with_labelled_axes_and_skipped_calls(tmp_path):
    """A folder as a killed run leaves it (logs with a cut last line), with
    an extract whose axis has text labels and a skipped call: the report
    draws it, and counts the skipped call apart from the failed ones."""
    from caudal import htmlreport
    from caudal.results import ExtractStore

    store = ExtractStore(tmp_path)
    for s in range(3):
        store.write(_extract("species", s, np.arange(6.0).reshape(2, 3) * s,
                             dims=("kind", "x"), coords={"kind": np.array(["O", "H"])}))
    errors = [{"analysis": "a", "step": 1, "error": "ValueError: bad"},
              {"analysis": "a", "step": 2, "error": "skipped: its call for step 1 is still "
               "running", "skipped": True, "running_step": 1}]
    (tmp_path / "errors.jsonl").write_text(
        "".join(json.dumps(e) + "\n" for e in errors) + '{"analysis": "a", "st')
    (tmp_path / "pipeline.jsonl").write_text(
        "".join('{"step": %d, "complete": %d, "analysed": %d.5, "called": true}\n' % (s, s, s)
                for s in range(3)) + '{"step": 3, "comp')
    (tmp_path / "results.jsonl").write_text(
        "".join(json.dumps({"analysis": "a", "step": s, "name": "x", "value": s}) + "\n"
                for s in range(3)))
    r = caudal.open_run(tmp_path)
    assert len(r.errors) == 2 and r.pipeline["lag"].tolist() == [0.5, 0.5, 0.5]
    page = (htmlreport.write(tmp_path)).read_text()
    assert "Failed calls (1)" in page and "Skipped calls (1)" in page
    # No summary.json: the header says so, and counts from the logs.
    assert "did not finish: no summary.json" in page and "None" not in page
    assert "<th>steps analysed</th><td>3</td>" in page
    assert "<th>calls failed / skipped</th><td>1 / 1</td>" in page
    assert 'data-name="extract.species"' in page and 'data-name="pipeline"' in page
