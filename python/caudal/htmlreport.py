"""report.html: a run's results folder as one page a scientist opens in a
browser, written by `caudal run` at its end and by `caudal report RUN`.

Self-contained (each plot a PNG inside the page, drawn by matplotlib's Agg
backend, no script, nothing fetched), in this order: how the run ended;
each recorded number over the steps (a plot per analysis and name); each
recorded array of fixed shape (a histogram's counts, a profile) as a heat
map over steps; each extract at its first, middle and last steps, or at
the steps `caudal report RUN --steps S1,S2` chooses (a 2-D extract as an
image, a 1-D one as curves, more axes cut to their first index); the pipeline's lag and throughput per step; the failed calls.
Every plot is an <img class="plot"> with its name in data-name, which the
tests find.
"""

import argparse
import base64
import html
import io
import json
import pathlib

import numpy as np

MAX_SCALAR_PLOTS = 60  # past that, the page says how many it left out
MAX_ERRORS = 20


def _png(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _img(name, fig):
    return ('<figure><img class="plot" data-name="%s" alt="%s" src="data:image/png;base64,%s">'
            '<figcaption>%s</figcaption></figure>'
            % (html.escape(name), html.escape(name), _png(fig), html.escape(name)))


def _scalars(run, out):
    import matplotlib.pyplot as plt

    df = run.results
    nums = df[df["value"].notna()]
    groups = list(nums.groupby(["analysis", "name"], sort=True))
    out.append("<h2>Recorded values</h2>")
    if not groups:
        out.append("<p>No number was recorded.</p>")
    for (analysis, name), g in groups[:MAX_SCALAR_PLOTS]:
        g = g.sort_values("step")
        fig, ax = plt.subplots(figsize=(6, 2.6))
        ax.plot(g["step"], g["value"], marker="." if len(g) < 60 else None)
        ax.set_xlabel("step")
        ax.set_ylabel(name)
        ax.set_title("%s (%s)" % (name, analysis), fontsize=10)
        out.append(_img("%s.%s" % (analysis, name), fig))
    if len(groups) > MAX_SCALAR_PLOTS:
        out.append("<p>%d more not shown: caudal.open_run(%r).results has them.</p>"
                   % (len(groups) - MAX_SCALAR_PLOTS, str(run.path)))


def _arrays(run, out):
    import matplotlib.pyplot as plt

    df = run.results
    arr = df[df["array"].notna()]
    groups = []
    for (analysis, name), g in arr.groupby(["analysis", "name"], sort=True):
        if len({tuple(s) for s in g["shape"]}) == 1 and not g["step"].duplicated().any():
            groups.append((analysis, name, g.sort_values("step")))
    if not groups:
        return
    out.append("<h2>Recorded arrays over the steps</h2>")
    for analysis, name, g in groups[:MAX_SCALAR_PLOTS]:
        data = np.stack([np.asarray(a, dtype=float) for a in g["array"]])
        steps = g["step"].to_numpy()
        fig, ax = plt.subplots(figsize=(6, 3))
        im = ax.imshow(data.T, aspect="auto", origin="lower", interpolation="nearest",
                       extent=(steps[0] - 0.5, steps[-1] + 0.5, -0.5, data.shape[1] - 0.5))
        fig.colorbar(im, ax=ax)
        ax.set_xlabel("step")
        ax.set_ylabel("index (flattened)")
        ax.set_title("%s (%s)" % (name, analysis), fontsize=10)
        out.append(_img("%s.%s" % (analysis, name), fig))


def _picks(x, steps):
    """Positions along "step" to show: the chosen steps an extract has (the
    nearest it has for each), else its first, middle and last."""
    have = x["step"].values
    n = len(have)
    if not steps:
        return sorted({0, n // 2, n - 1})
    return sorted({int(np.abs(have - s).argmin()) for s in steps})


def _extracts(run, out, steps=None):
    import matplotlib.pyplot as plt

    names = run.extracts
    if not names:
        return
    out.append("<h2>Extracts</h2>")
    for name in names:
        x = run.extract(name)
        n = x.sizes["step"]
        if n == 0:
            continue
        picks = _picks(x, steps)
        while x.ndim > 3:  # step and two axes are what a page shows
            x = x.isel({x.dims[-1]: 0})
        if x.ndim == 3:
            fig, axes = plt.subplots(1, len(picks), figsize=(3.4 * len(picks), 3),
                                     squeeze=False, layout="constrained")
            for ax, i in zip(axes[0], picks):
                v = x.isel(step=i)
                im = ax.imshow(np.asarray(v.values, dtype=float).T, origin="lower",
                               aspect="auto", interpolation="nearest",
                               extent=_extent(v, 0) + _extent(v, 1))
                ax.set_title("step %d" % int(v["step"]), fontsize=9)
                ax.set_xlabel(v.dims[0])
                ax.set_ylabel(v.dims[1])
                fig.colorbar(im, ax=ax)
        else:
            fig, ax = plt.subplots(figsize=(6, 2.8))
            for i in picks:
                v = x.isel(step=i)
                axis = v.dims[0] if v.ndim else None
                xs = v[axis].values if axis in v.coords else np.arange(v.size)
                ax.plot(xs, np.atleast_1d(v.values), label="step %d" % int(v["step"]))
            ax.legend(fontsize=8)
            ax.set_xlabel(x.dims[1] if x.ndim > 1 else "step")
        fig.suptitle(name, fontsize=10)
        out.append(_img("extract.%s" % name, fig))


def _extent(v, axis):
    """The span of an axis from its coordinates (cell centres), else its
    indices."""
    d = v.dims[axis]
    c = np.arange(v.shape[axis], dtype=float)
    if d in v.coords and np.issubdtype(v[d].dtype, np.number):  # labels, dates: by index
        c = np.asarray(v[d].values, dtype=float)
    half = (c[1] - c[0]) / 2 if len(c) > 1 else 0.5
    return (c[0] - half, c[-1] + half)


def _pipeline(run, out):
    import matplotlib.pyplot as plt

    p = run.pipeline
    out.append("<h2>The pipeline</h2>")
    if p.empty:
        out.append("<p>No step reached the analyses.</p>")
        return
    p = p.sort_values("step")
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 2.8), layout="constrained")
    a1.plot(p["step"], p["analysed"] - p["complete"])
    a1.set_xlabel("step")
    a1.set_ylabel("lag (s)")
    a1.set_title("complete to analysed", fontsize=10)
    t = np.sort(p["analysed"].to_numpy() - p["analysed"].min())
    a2.plot(t, np.arange(1, len(t) + 1), drawstyle="steps-post", marker="." if len(t) < 60
            else None)
    a2.set_xlabel("seconds since the first step was analysed")
    a2.set_ylabel("steps analysed")
    rate = (len(t) - 1) / t[-1] if len(t) > 1 and t[-1] > 0 else None
    a2.set_title("throughput: %d steps%s" % (len(t), "" if rate is None
                                                else ", %.1f per second" % rate), fontsize=10)
    out.append(_img("pipeline", fig))


def _num(x):
    return "%.3f" % x if isinstance(x, float) else x


def _ending(run, out):
    s = run.summary
    end = s.get("end")
    if end is None:  # killed (or still running): what its logs say
        _unfinished(run, out)
        return
    rows = [("command", " ".join(s.get("command") or []) if isinstance(s.get("command"), list)
             else s.get("command")),
            ("ended", "%s (exit code %s)" % (end.get("reason", "?"), end.get("exit_code"))),
            ("message", end.get("message")),
            ("seconds", "%.1f" % s["seconds"] if "seconds" in s else None),
            ("steps analysed", s.get("steps_analysed")),
            ("calls / failed / skipped", "%s / %s / %s" % (s.get("calls"), s.get("failures"),
                                                           s.get("calls_skipped", 0))),
            ("rank-steps dropped", s.get("rank_steps_dropped")),
            ("lag median / p99 (s)", "%s / %s" % (_num(s.get("lag_seconds_median")),
                                                 _num(s.get("lag_seconds_p99"))))]
    _end_table(rows, out)


def _unfinished(run, out):
    e, p = run.errors, run.pipeline
    skipped = int(_skipped(e).sum())
    _end_table([("ended", "did not finish: no summary.json (caudal run was killed, or still "
                          "runs); the figures below are from its logs"),
                ("steps analysed", int(p["called"].sum()) if len(p) else 0),
                ("calls failed / skipped", "%d / %d" % (len(e) - skipped, skipped))], out)


def _end_table(rows, out):
    """The table of how the run ended; rows whose value is None left out."""
    out.append("<table class='end'>%s</table>" % "".join(
        "<tr><th>%s</th><td>%s</td></tr>" % (html.escape(k), html.escape(str(v)))
        for k, v in rows if v is not None))


def _skipped(errors):
    """Which entries of errors.jsonl are calls skipped (their analysis'
    previous call still ran), not failed."""
    if "skipped" not in errors:
        return np.zeros(len(errors), bool)
    return (errors["skipped"] == True).to_numpy()  # noqa: E712


def _errors(run, out):
    e = run.errors
    if e.empty:
        return
    # A skipped call (its previous one still ran) did not fail: listed apart.
    skipped = _skipped(e)
    for title, rows in (("Failed calls", e[~skipped]), ("Skipped calls", e[skipped])):
        if rows.empty:
            continue
        out.append("<h2>%s (%d)</h2><ul>" % (title, len(rows)))
        for _, r in rows.head(MAX_ERRORS).iterrows():
            out.append("<li>%s, step %s: %s</li>" % (html.escape(str(r.get("analysis"))),
                                                     html.escape(str(r.get("step"))),
                                                     html.escape(str(r.get("error")))))
        if len(rows) > MAX_ERRORS:
            out.append("<li>and %d more: errors.jsonl holds them all</li>"
                       % (len(rows) - MAX_ERRORS))
        out.append("</ul>")


def write(run_dir, steps=None):
    """Write RUN/report.html from the run's results folder; its path.
    steps: the steps at which to show the extracts (the nearest each has),
    else each one's first, middle and last."""
    import matplotlib

    matplotlib.use("Agg")
    from .results import open_run

    run = open_run(run_dir)
    out = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>caudal run %s</title>"
           "<style>body{font-family:sans-serif;margin:2em;max-width:72em}"
           "figure{display:inline-block;margin:0.5em}th{text-align:left;padding-right:1em}"
           "figcaption{font-size:small;color:#555}</style></head><body>"
           % html.escape(str(run.path)),
           "<h1>caudal run: %s</h1>" % html.escape(str(run.path))]
    _ending(run, out)
    _scalars(run, out)
    _arrays(run, out)
    _extracts(run, out, steps)
    _pipeline(run, out)
    _errors(run, out)
    out.append("</body></html>")
    path = pathlib.Path(run_dir) / "report.html"
    path.write_text("\n".join(out))
    return path


def start(run_dir, env=None):
    """`caudal report RUN` in a process of its own (caudal run's end)."""
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-m", "caudal", "report", str(run_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)


def wait(proc, timeout=300):
    """None once it wrote the report, else why not, in a line."""
    import subprocess

    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return "it took over %d s" % timeout
    if proc.returncode == 0:
        return None
    lines = [line for line in out.splitlines() if line.strip()]
    return lines[-1] if lines else "exit code %d" % proc.returncode


def main(args):
    path = pathlib.Path(args.run)
    try:
        out = write(path, args.steps)
    except (FileNotFoundError, json.JSONDecodeError) as e:
        print("caudal report: %s" % e)
        return 2
    except Exception as e:  # what a run left that the report cannot draw
        print("caudal report: %s: %s" % (type(e).__name__, e))
        return 1
    print("caudal report: wrote %s" % out)
    return 0


def _step_list(text):
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a list of steps (integers separated by "
                                         "commas, as 10,50,90)" % text) from None


def add_parser(sub):
    r = sub.add_parser("report", help="write RUN/report.html from a run's results folder",
                       description="Write report.html into a caudal run's results folder "
                                   "(its --run-dir): plots of what it recorded and extracted, "
                                   "and of its pipeline. caudal run writes it at its end too.")
    r.add_argument("run", help="the run's results folder")
    r.add_argument("--steps", type=_step_list, default=None,
                   metavar="S1,S2,...",
                   help="the steps at which to show the extracts (the nearest each has; "
                        "default: its first, middle and last)")
    r.set_defaults(func=main)
