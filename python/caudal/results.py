"""The results folder of a run: what `caudal run` writes there, and
`caudal.open_run`, which reads it back as pandas and xarray objects.

    RUN/results.jsonl   every ctx.record, a JSON line each, written as the
                        calls return: the live record, whole up to the last
                        call even when the run is killed
    RUN/results.parquet the same records as one table, written at the end
                        (results.csv beside it with `caudal run --csv`)
    RUN/extracts.zarr/  every ctx.extract: a group per name holding its
                        values stacked over the steps, with its dimensions'
                        names and coordinates (xarray's Zarr convention)
    RUN/errors.jsonl    every failed, timed out or skipped call
    RUN/pipeline.jsonl  a line per step the driver took: its step, when it
                        was complete (every rank's block in) and analysed
                        (Unix times), and whether an analysis was called
    RUN/report.html     plots of all this (caudal.htmlreport)
    RUN/summary.json    the run's counts, its end and its exit code

The table has a row per record: step, analysis, name, and the value in the
one column its kind fills: `value` (float64) for a number or a boolean,
`text` for a string, `array` (float64, flattened) with `shape` for an array
or a nested list of numbers, `json` for anything else JSON holds (a dict, a
ragged list). What an @caudal.at_end function records is under the last
step analysed.

An extract keeps the shape, dtype, dimension names and coordinates of its
first step; a later step of another shape or dimensions fails that call
with an error naming the extract and both steps, and nothing of it is
written.
"""

import json
import pathlib
import shutil
import threading

import numpy as np

__all__ = ["open_run", "RunResults"]

EXTRACTS = "extracts.zarr"
SIM_TAIL = "simulation-after-stop.log"  # the simulation's output once caudal run stops it
# What caudal run writes in a run folder; a run given a folder that holds an
# earlier run's removes them first, so the two never mix (clear).
RUN_FILES = ("results.jsonl", "errors.jsonl", "pipeline.jsonl", "summary.json",
             "results.parquet", "results.csv", "report.html", EXTRACTS, SIM_TAIL)
_KINDS = ("value", "text", "array", "json")


# --- values, as an analysis gives them ---------------------------------------

def _numeric_array(value):
    """value as a float64 NumPy array, or None when it is not a rectangular
    list (or array) of numbers."""
    try:
        a = np.asarray(value)
    except ValueError:  # ragged
        return None
    if a.dtype == object or a.dtype.kind not in "biuf" or a.ndim == 0:
        return None
    return a.astype(np.float64)


def _row(record):
    """A results.jsonl record as a table row."""
    row = {"step": record["step"], "analysis": record["analysis"], "name": record["name"],
           "value": None, "text": None, "array": None, "shape": None, "json": None}
    v = record["value"]
    if isinstance(v, (bool, int, float)):
        row["value"] = float(v)
    elif isinstance(v, str):
        row["text"] = v
    elif isinstance(v, list) and (a := _numeric_array(v)) is not None:
        row["array"], row["shape"] = a.ravel().tolist(), list(a.shape)
    else:
        row["json"] = json.dumps(v)
    return row


def clear(run_dir):
    """Remove an earlier run's outputs from run_dir (RUN_FILES); the names
    removed. Files of the user's own are left, and a folder with no sign of
    a caudal run (its logs, summary.json) is left whole: a results.csv in a
    folder that never held a run is not ours to remove."""
    removed = []
    if not any((pathlib.Path(run_dir) / n).exists() for n in RUN_FILES[:4]):
        return removed
    for name in RUN_FILES:
        p = pathlib.Path(run_dir) / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
        else:
            continue
        removed.append(name)
    return removed


def read_records(run_dir):
    """The records of results.jsonl, in the order written. A last line cut
    short (a killed run) is left out."""
    return read_lines(pathlib.Path(run_dir) / "results.jsonl")


def read_lines(path):
    """The JSON lines of one of the run's logs; a last line cut short (a
    killed run) is left out, a broken line before it is an error."""
    out = []
    if not path.exists():
        return out
    with open(path) as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                if line.endswith("\n"):
                    raise
    return out


def _table(records):
    import pyarrow as pa

    rows = [_row(r) for r in records]
    col = lambda k: [r[k] for r in rows]  # noqa: E731
    return pa.table({
        "step": pa.array(col("step"), pa.int64()),
        "analysis": pa.array(col("analysis"), pa.string()),
        "name": pa.array(col("name"), pa.string()),
        "value": pa.array(col("value"), pa.float64()),
        "text": pa.array(col("text"), pa.string()),
        "array": pa.array(col("array"), pa.list_(pa.float64())),
        "shape": pa.array(col("shape"), pa.list_(pa.int64())),
        "json": pa.array(col("json"), pa.string()),
    })


def write_tables(run_dir, csv=False):
    """results.parquet (and results.csv) from results.jsonl; the paths
    written."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    run_dir = pathlib.Path(run_dir)
    table = _table(read_records(run_dir))
    pq.write_table(table, run_dir / "results.parquet")
    written = [run_dir / "results.parquet"]
    if csv:
        # CSV holds no lists: an array is its JSON text there.
        arrays = [None if a is None else json.dumps(np.reshape(a, s).tolist())
                  for a, s in zip(table.column("array").to_pylist(),
                                  table.column("shape").to_pylist())]
        import pyarrow as pa

        flat = table.drop_columns(["array", "shape"]).add_column(
            5, "array", pa.array(arrays, pa.string()))
        pcsv.write_csv(flat, run_dir / "results.csv")
        written.append(run_dir / "results.csv")
    return written


# --- extracts ----------------------------------------------------------------

class Extract:
    """One step of an extract, converted in the analysis' thread: a NumPy
    array with its dimensions' names and coordinates."""

    __slots__ = ("name", "step", "data", "dims", "coords", "attrs")

    def __init__(self, name, step, value, dims=None, coords=None, attrs=None):
        if not isinstance(name, str) or not name or "/" in name or name == "step":
            raise ValueError("an extract's name is a non-empty string without '/' (and not "
                             "'step'), not %r" % (name,))
        self.name, self.step = name, step
        vdims, vcoords = None, {}
        if hasattr(value, "dims") and hasattr(value, "coords"):  # an xarray.DataArray
            vdims = tuple(str(d) for d in value.dims)
            vcoords = {str(d): np.asarray(value.coords[d].values) for d in value.dims
                       if d in value.coords}
            value = value.data
        if hasattr(value, "compute"):
            value = value.compute()
        data = np.asarray(value)
        if data.dtype == object or data.dtype.kind not in "biufc":
            raise ValueError("extract %r at step %s: an extract is an array of numbers, not %s"
                             % (name, step, data.dtype))
        dims = tuple(dims) if dims is not None else vdims
        if dims is None:
            dims = tuple("dim_%d" % i for i in range(data.ndim))
        if len(dims) != data.ndim or len(set(dims)) != len(dims) or "step" in dims:
            raise ValueError("extract %r at step %s: dims %r do not name the %d axes of its "
                             "array once each (and 'step' is taken)" % (name, step, dims,
                                                                      data.ndim))
        coords = dict(vcoords, **{str(k): np.asarray(v) for k, v in (coords or {}).items()})
        for d, c in coords.items():
            if d not in dims:
                raise ValueError("extract %r at step %s: a coordinate for %r, which is not one "
                                 "of its dims %r" % (name, step, d, dims))
            n = data.shape[dims.index(d)]
            if c.shape != (n,):
                raise ValueError("extract %r at step %s: the coordinate %r has shape %s, its "
                                 "axis %d" % (name, step, d, c.shape, n))
        self.data, self.dims, self.coords = data, dims, coords
        self.attrs = dict(attrs or {})


class ExtractStore:
    """extracts.zarr, written by the driver: each extract's first step
    written fixes its form (not one of a call whose records were lost, past
    its deadline), and each later step is appended along "step". check()
    runs in the analysis' thread, so a step that does not fit fails its
    call."""

    def __init__(self, run_dir):
        self.path = pathlib.Path(run_dir) / EXTRACTS
        self.lock = threading.Lock()
        self.forms = {}  # name -> (shape, dtype, dims, first step), as written
        self.group = None

    def check(self, e):
        with self.lock:
            form = self.forms.get(e.name)
        if form is not None:
            self._fits(e, form)

    @staticmethod
    def _fits(e, form):
        shape, dtype, dims, first = form
        if e.data.shape != shape or e.dims != dims:
            raise ValueError("extract %r at step %s has shape %s and dims %r, but at step %s it "
                             "had %s and %r: an extract keeps its first step's form"
                             % (e.name, e.step, e.data.shape, e.dims, first, shape, dims))
        if not np.can_cast(e.data.dtype, dtype, "same_kind"):
            raise ValueError("extract %r at step %s is %s, but at step %s it was %s"
                             % (e.name, e.step, e.data.dtype, first, dtype))

    def write(self, e):
        import zarr

        with self.lock:
            if self.group is None:
                self.group = zarr.open_group(str(self.path), mode="w", zarr_format=2)
            if e.name not in self.forms:
                self.forms[e.name] = (e.data.shape, e.data.dtype, e.dims, e.step)
                self._create(e)
            else:
                self._fits(e, self.forms[e.name])  # two of one name in one call
            g = self.group[e.name]
            data, steps = g[e.name], g["step"]
            n = steps.shape[0]
            steps.resize((n + 1,))
            data.resize((n + 1,) + data.shape[1:])
            steps[n] = e.step
            data[n] = e.data.astype(data.dtype, copy=False)

    def _create(self, e):
        # No fill values: xarray would read a 0 as missing.
        g = self.group.create_group(e.name)
        shape, dtype, dims, _ = self.forms[e.name]
        g.create_array(e.name, shape=(0,) + shape, chunks=(1,) + tuple(max(1, n) for n in shape),
                       dtype=dtype, fill_value=None,
                       attributes=dict(e.attrs, _ARRAY_DIMENSIONS=["step", *dims]))
        g.create_array("step", shape=(0,), chunks=(4096,), dtype=np.int64, fill_value=None,
                       attributes={"_ARRAY_DIMENSIONS": ["step"]})
        for d, c in e.coords.items():
            a = g.create_array(d, shape=c.shape, chunks=c.shape or (1,), dtype=c.dtype,
                               fill_value=None, attributes={"_ARRAY_DIMENSIONS": [d]})
            a[...] = c


# --- reading a run back -----------------------------------------------------

class RunResults:
    """A run's results folder, read: `results` (a pandas DataFrame, a row per
    record), `summary` (dict), `errors` (DataFrame), and per name
    `scalar(name)` (a pandas Series by step), `array(name)` (an
    xarray.DataArray over step and the array's axes) and `extract(name)`
    (an xarray.DataArray read lazily from extracts.zarr). `run[name]` is
    whichever of the three the name holds."""

    def __init__(self, path):
        self.path = pathlib.Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError("no run folder at %s" % self.path)
        if not any((self.path / f).exists()
                   for f in ("results.parquet", "results.jsonl", "summary.json")):
            raise FileNotFoundError("%s is not a caudal run folder: it has no results.parquet, "
                                    "results.jsonl or summary.json" % self.path)
        self._results = None

    @property
    def summary(self):
        p = self.path / "summary.json"
        return json.loads(p.read_text()) if p.exists() else {}

    @property
    def results(self):
        """Every record, as results.parquet holds them (or, for a run that
        ended before writing it, as results.jsonl does), by step."""
        if self._results is None:
            import pyarrow.parquet as pq

            p = self.path / "results.parquet"
            table = pq.read_table(p) if p.exists() else _table(read_records(self.path))
            df = table.to_pandas()
            self._results = df.sort_values("step", kind="stable").reset_index(drop=True)
        return self._results

    @property
    def errors(self):
        import pandas as pd

        rows = read_lines(self.path / "errors.jsonl")
        return pd.DataFrame(rows, columns=None if rows else ["analysis", "step", "error"])

    @property
    def pipeline(self):
        """A row per step the analyses took: step, complete, analysed (Unix
        times), called, and lag (analysed - complete, seconds)."""
        import pandas as pd

        rows = read_lines(self.path / "pipeline.jsonl")
        df = pd.DataFrame(rows, columns=["step", "complete", "analysed", "called"])
        df["lag"] = df["analysed"] - df["complete"]
        return df

    @property
    def names(self):
        """The recorded names, each with the kind of its values."""
        df = self.results
        return {n: _kind(g) for n, g in df.groupby("name", sort=True)}

    @property
    def extracts(self):
        p = self.path / EXTRACTS
        return sorted(d.name for d in p.iterdir() if d.is_dir()) if p.is_dir() else []

    def _rows(self, name, analysis):
        df = self.results
        rows = df[df["name"] == name]
        if analysis is not None:
            rows = rows[rows["analysis"] == analysis]
        if rows.empty:
            raise KeyError("%s: no record named %r%s (recorded: %s)"
                           % (self.path, name, "" if analysis is None
                              else " by analysis %r" % analysis,
                              ", ".join(sorted(set(df["name"]))) or "none"))
        who = sorted(set(rows["analysis"]))
        if len(who) > 1:
            raise KeyError("%r is recorded by analyses %s: name one (analysis=...)"
                           % (name, ", ".join(who)))
        if rows["step"].duplicated().any():
            s = int(rows["step"][rows["step"].duplicated()].iloc[0])
            raise ValueError("%r is recorded twice at step %d: read run.results for all rows"
                             % (name, s))
        return rows

    def scalar(self, name, analysis=None):
        """A recorded number (or string) as a pandas Series indexed by step."""
        rows = self._rows(name, analysis)
        kind = _kind(rows)
        if kind not in ("value", "text"):
            raise TypeError("%r holds %s values: read it with run.array(%r)"
                            % (name, kind, name) if kind == "array" else
                            "%r holds values of several kinds or JSON ones: read run.results"
                            % name)
        s = rows.set_index("step")[kind]
        s.name = name
        return s

    def array(self, name, analysis=None, dims=None):
        """A recorded array of the same shape at every step as an
        xarray.DataArray over ("step", *dims)."""
        import xarray as xr

        rows = self._rows(name, analysis)
        if _kind(rows) != "array":
            raise TypeError("%r does not hold arrays: read it with run.scalar(%r)" % (name, name))
        shapes = {tuple(s) for s in rows["shape"]}
        if len(shapes) != 1:
            raise ValueError("%r changes shape over the steps (%s): read run.results"
                             % (name, ", ".join(map(str, sorted(shapes)))))
        (shape,) = shapes
        data = np.stack([np.asarray(a).reshape(shape) for a in rows["array"]])
        dims = tuple(dims) if dims is not None else tuple("%s_%d" % (name, i)
                                                          for i in range(len(shape)))
        return xr.DataArray(data, dims=("step",) + dims, coords={"step": rows["step"].values},
                            name=name)

    def extract(self, name):
        """An extract as an xarray.DataArray over ("step", *its dims), read
        lazily (Dask) from extracts.zarr, its steps in the order written."""
        import xarray as xr

        if name not in self.extracts:
            raise KeyError("%s: no extract named %r (extracts: %s)"
                           % (self.path, name, ", ".join(self.extracts) or "none"))
        ds = xr.open_zarr(str(self.path / EXTRACTS), group=name, consolidated=False)
        return ds[name].sortby("step")

    def __getitem__(self, name):
        if name in self.extracts:
            return self.extract(name)
        rows = self._rows(name, None)
        return self.array(name) if _kind(rows) == "array" else self.scalar(name)

    def __repr__(self):
        return "RunResults(%r: %d records, extracts %s)" % (
            str(self.path), len(self.results), self.extracts)


def _kind(rows):
    kinds = [k for k in _KINDS if rows[k].notna().any()]
    if not kinds:  # a row holds one of the four, null only when it is a NaN value
        return "value"
    return kinds[0] if len(kinds) == 1 else "mixed"


def open_run(path):
    """The results folder of a `caudal run` (its --run-dir), read."""
    return RunResults(path)

