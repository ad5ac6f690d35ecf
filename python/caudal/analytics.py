"""The analytics API: functions registered on arrays, called on windows of steps.

An analytics script is a module whose decorated functions are its analyses:

    import caudal

    @caudal.analysis("temperature", window=2)
    def rate(temperature, ctx):
        old, new = temperature                    # oldest first
        d = (new.data - old.data) / (new.step - old.step)
        ctx.record("max_rate", float(abs(d).max().compute()))

Each argument is the list of the last `window` steps of one array, oldest
first; each item is a StepArray: its step number and the global array, a Dask
array whose chunks are the ranks' blocks (computed on Ray). With several
arrays, trigger="and" calls the function at a step where all of them have a
new complete step, trigger="or" where any has (the others then give what
their windows hold). A function decorated with @caudal.at_end runs once after
the last step.

Each call has a deadline: `timeout=` seconds on the decorator, else the run's
default (``caudal run --analysis-timeout``, 300 s). A call past it is recorded
in errors.jsonl as timed out for its step and the run goes on without it; see
caudal.runtime.driver for what happens to the call itself.
"""

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Tuple

import numpy as np


class StepArray:
    """One step of a global array: ``data`` is the Dask array, ``blocks``
    the grid of its blocks with the Ray node each lives on (caudal.blocks),
    which the kernels (caudal.stats, ...) use to run next to the data.

    Either may be given made, or as a function that makes it (``make_data``,
    ``make_blocks``), called once, when it is first asked for: a step of
    ``caudal run`` costs its blocks' references, its graph and its grid only
    to an analysis that reads them (each call from any thread)."""

    __slots__ = ("step", "_data", "_blocks", "_make_data", "_make_blocks", "_shape", "_dtype",
                 "_lock", "_tree", "received", "name", "dims")

    def __init__(self, step, data=None, blocks=None, *, make_data=None, make_blocks=None,
                 shape=None, dtype=None, tree=None, received=None, name=None, dims=None):
        import threading

        self.step = step
        self.name = name  # the array's, as the simulation declared it
        self.dims = dims  # its axes' names, as the analyses gave them (analysis(dims=))
        self._tree = tree  # (layout, run) for reductions down caudal run's relays
        # caudal run's reductions computed at receipt (runtime/receipt.Received)
        self.received = received
        self._data, self._blocks = data, blocks
        self._make_data, self._make_blocks = make_data, make_blocks
        self._shape, self._dtype = shape, dtype
        self._lock = threading.RLock()  # a maker may ask for the other

    @property
    def data(self):
        """The Dask array (dask.array.Array) of the step."""
        if self._data is None and self._make_data is not None:
            with self._lock:
                if self._data is None:
                    self._data, self._make_data = self._make_data(), None
        return self._data

    @property
    def blocks(self):
        """The grid of blocks (caudal.blocks.Grid), or None."""
        if self._blocks is None and self._make_blocks is not None:
            with self._lock:
                if self._blocks is None:
                    self._blocks, self._make_blocks = self._make_blocks(), None
        return self._blocks

    def tree(self):
        """(layout, run) while neither the Dask array nor the grid was made
        and the blocks came through caudal run's relays (caudal.blocks.
        TreeStep), else None."""
        if self._tree is None or self._blocks is not None or self._data is not None:
            return None
        return self._tree

    @property
    def xarray(self):
        """The step as an xarray.DataArray over the Dask array: its axes
        named as the analyses declared them (analysis(dims=), else dim_0,
        ...), each with its global index as coordinate, so that a slice or
        a coarsened copy keeps where it lies; attrs["step"] is the step."""
        import xarray as xr

        data = self.data
        dims = tuple(self.dims) if self.dims else tuple("dim_%d" % i for i in range(data.ndim))
        if len(dims) != data.ndim:
            raise ValueError("array %r at step %s has %d axes, but its dims are %r"
                             % (self.name, self.step, data.ndim, dims))
        coords = {d: np.arange(n) for d, n in zip(dims, data.shape)}
        return xr.DataArray(data, dims=dims, coords=coords, name=self.name,
                            attrs={"step": self.step})

    @property
    def shape(self):
        return self._shape if self._shape is not None else self.data.shape

    @property
    def dtype(self):
        return self._dtype if self._dtype is not None else self.data.dtype

    def __repr__(self):  # without making anything
        shape = self._shape if self._shape is not None else getattr(self._data, "shape", "?")
        return "StepArray(step=%r, shape=%s)" % (self.step, shape)


@dataclass(frozen=True)
class Analysis:
    func: Callable
    arrays: Tuple[str, ...]
    window: int = 1
    trigger: str = "and"
    name: str = ""
    timeout: Optional[float] = None  # seconds per call; None: the run's default
    reductions_only: bool = False  # reads its arrays only through caudal.stats' reductions
    dims: Optional[Mapping[str, Tuple[str, ...]]] = None  # array -> its axes' names

    def __call__(self, *args, **kwargs):
        return self.func(*args, **kwargs)


def check_timeout(timeout, what="timeout"):
    """A deadline in seconds: a positive number (math.inf: none) or None."""
    if timeout is None:
        return None
    if (not isinstance(timeout, numbers.Real) or isinstance(timeout, bool)
            or math.isnan(timeout) or timeout <= 0):
        raise ValueError("%s must be a positive number of seconds, not %r" % (what, timeout))
    return float(timeout)


def analysis(*arrays, window=1, trigger="and", name=None, timeout=None, reductions_only=False,
             dims=None):
    """Register the decorated function on `arrays` (names as the simulation
    declared them). `timeout`: seconds one call may take (math.inf for no
    deadline), overriding the run's --analysis-timeout for this analysis.

    `dims` names the axes of an array, for StepArray.xarray: a tuple of
    names when the analysis has one array, else a dict from array name to
    tuple. The names belong to the array: every analysis that gives an
    array dims must give the same ones.

    `reductions_only=True` promises that the function reads its arrays only
    through caudal.stats' reductions (moments, histogram, describe, sketch,
    quantile), called with the same arguments on every step (a histogram
    with a fixed range). Under caudal run, an array whose analyses all
    promise it is not put in Ray's object store once the reductions they
    call are known (from its first analysed step, plus the steps the
    simulation was ahead by): each node reduces its blocks as they arrive
    and only the partial states travel. Reading such a step's ``.data`` or
    ``.blocks``, or a reduction not called on the steps before, then fails
    for that call with an error naming the array and the step; the
    reduction is computed from the next steps on (docs/deployment.md,
    "Reductions at receipt"). Without it, the same reductions are computed
    as the blocks arrive too (once called on two steps in a row), and the
    blocks are put as well."""
    if not arrays or not all(isinstance(a, str) and a for a in arrays):
        raise ValueError("caudal.analysis needs one or more array names")
    if not isinstance(window, int) or window < 1:
        raise ValueError("window must be a positive integer, not %r" % (window,))
    if trigger not in ("and", "or"):
        raise ValueError("trigger must be 'and' or 'or', not %r" % (trigger,))
    timeout = check_timeout(timeout)
    if not isinstance(reductions_only, bool):
        raise ValueError("reductions_only must be True or False, not %r" % (reductions_only,))
    dims = _check_dims(arrays, dims)

    def wrap(func):
        return Analysis(func, tuple(arrays), window, trigger, name or func.__name__, timeout,
                        reductions_only, dims)

    return wrap


def _check_dims(arrays, dims):
    if dims is None:
        return None
    if not isinstance(dims, Mapping):
        if len(arrays) != 1:
            raise ValueError("dims for several arrays is a dict from array name to its axes' "
                             "names, not %r" % (dims,))
        dims = {arrays[0]: dims}
    out = {}
    for array, names in dims.items():
        if array not in arrays:
            raise ValueError("dims names the axes of %r, which is not one of the analysis' "
                             "arrays %s" % (array, ", ".join(map(repr, arrays))))
        if isinstance(names, str):
            names = (names,)
        names = tuple(names)
        if (not names or not all(isinstance(n, str) and n for n in names)
                or len(set(names)) != len(names)):
            raise ValueError("the dims of %r are distinct non-empty strings, not %r"
                             % (array, names))
        out[array] = names
    return out


def analyses_in(namespace):
    """The analyses a loaded analytics script defines, in definition order."""
    return [v for v in namespace.values() if isinstance(v, Analysis)]


def array_dims(analyses):
    """array -> its axes' names, from every analysis that gives them; two
    analyses that name one array's axes differently are an error."""
    out, who = {}, {}
    for a in analyses:
        for array, names in (a.dims or {}).items():
            if array in out and out[array] != names:
                raise ValueError("analysis %r names the axes of %r %r, but analysis %r names "
                                 "them %r" % (a.name, array, names, who[array], out[array]))
            out[array], who[array] = names, a.name
    return out


@dataclass(frozen=True)
class Finisher:
    func: Callable
    name: str
    timeout: Optional[float] = None  # seconds; None: the run's default

    def __call__(self, *args, **kwargs):
        return self.func(*args, **kwargs)


def at_end(func=None, *, timeout=None):
    """Register func(ctx), called once after the last step was analysed: the
    place to gather and save what the analyses accumulated (for instance a
    caudal.temporal.PointStats) into ctx.run_dir or with ctx.record.
    ``@caudal.at_end`` or ``@caudal.at_end(timeout=SECONDS)``, a deadline as
    for an analysis."""
    timeout = check_timeout(timeout)
    if func is None:
        return lambda f: Finisher(f, f.__name__, timeout)
    if not callable(func):
        raise ValueError("caudal.at_end decorates a function, not %r" % (func,))
    return Finisher(func, func.__name__, timeout)


def finishers_in(namespace):
    return [v for v in namespace.values() if isinstance(v, Finisher)]


@dataclass
class Context:
    """What an analysis can do besides computing: steer the simulation,
    record results, read values the simulation reported."""

    step: int
    analysis: str
    run_dir: Any = None  # pathlib.Path of the run's results
    _steer: Callable = field(repr=False, default=None)
    _record: Callable = field(repr=False, default=None)
    _reported: Callable = field(repr=False, default=None)
    _extract: Callable = field(repr=False, default=None)

    def steer(self, key, value, rank=-1):
        """Set steering value `key` (float, int or str) for one rank or all."""
        self._steer(key, value, rank)

    def record(self, name, value):
        """Record a named result of this step (a scalar or a small array)."""
        self._record(self.analysis, self.step, name, value)

    def extract(self, name, value, dims=None, coords=None, attrs=None):
        """Keep an array of this step in the run's extracts.zarr under `name`:
        a field, a slice or a coarse copy (caudal.extract), small enough to
        gather here. `value` is a NumPy or Dask array, or an xarray.DataArray
        (its dims and dimension coordinates are kept); `dims` names its
        axes, `coords` maps a dim to its coordinate values. Every step of an
        extract has its first step's shape and dims (caudal.results)."""
        from .results import Extract

        self._extract(Extract(name, self.step, value, dims, coords, attrs))

    def reported(self, key, rank=0):
        """The latest value the simulation reported under `key`, or None."""
        return self._reported(key, rank)
