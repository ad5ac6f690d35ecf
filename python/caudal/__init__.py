"""Caudal: publish a running simulation's arrays to online analytics.

The classes come from the C extension ``caudal._caudal``, a thin binding of
libcaudal (``include/caudal.h`` and ``include/caudal_receiver.h``):

``Client``
    The simulation side: declare arrays, then ``begin_step``, ``put`` each
    block (any buffer, e.g. a NumPy array), ``end_step``; read and report
    steering values.
``Receiver``
    The receiving end: ``next()`` returns ``Event`` objects; a block event's
    ``block`` is a ``Block``, a read-only buffer so that
    ``numpy.asarray(event.block)`` is a zero-copy view of the rank's data.
Kernels (C, run next to the blocks): ``caudal.stats`` (moments,
histograms, quantiles), ``caudal.stencil`` (gradient, Laplacian, divergence,
curl), ``caudal.extract`` (coarsening, slices), ``caudal.features``
(connected components), ``caudal.temporal`` (per-point statistics over
time), ``caudal.md`` (molecular dynamics: kinetic energy and temperature of
the atoms ranks publish); ``caudal.blocks`` runs any function next to each block.

``CaudalError``
    Raised by every failing call; ``.status`` is one of the ``ERR_*``
    constants and the message names the rank, step and array concerned.
"""

from . import _caudal
from .analytics import Context, StepArray, analysis, at_end  # noqa: F401
from ._caudal import (  # noqa: F401
    DTYPES,
    ERR_AUTH,
    ERR_CLOSED,
    ERR_CONNECT,
    ERR_DTYPE,
    ERR_DUPLICATE,
    ERR_INVALID,
    ERR_IO,
    ERR_NOMEM,
    ERR_PROTOCOL,
    ERR_SHAPE,
    ERR_STATE,
    ERR_STEP_ORDER,
    ERR_SYSTEM,
    ERR_TIMEOUT,
    ERR_TRUNCATED,
    ERR_TYPE,
    ERR_UNKNOWN_ARRAY,
    ERR_VERSION,
    MAX_DIMS,
    MAX_NAME,
    NO_VALUE,
    OK,
    ArrayInfo,
    Block,
    CaudalError,
    Client,
    Event,
    Receiver,
    dtype_size,
    strerror,
)

# The kernels: one call each over a StepArray, a Dask or a NumPy array.
from . import blocks, extract, features, md, stats, stencil, temporal  # noqa: F401,E402
from .results import open_run  # noqa: F401,E402

__version__ = "%d.%d.%d" % (
    _caudal.VERSION_MAJOR,
    _caudal.VERSION_MINOR,
    _caudal.VERSION_PATCH,
)

EVENT_TYPES = _caudal.EVENT_TYPES  # from the header's list: "connect" ... "steps"


def dtype_name(dtype):
    """The caudal dtype name (``"float64"``) of ``dtype``.

    ``dtype`` is anything ``numpy.dtype()`` accepts (``np.float32``, ``"f8"``,
    ``float``, an array's ``.dtype``) or a caudal dtype name. Raises
    ``CaudalError`` (status ``ERR_DTYPE``) for a dtype that caudal does not
    carry: another kind, or a non-native byte order.
    """
    if isinstance(dtype, str) and dtype in DTYPES:
        return dtype
    try:
        import numpy
    except ImportError:  # pragma: no cover - numpy is a dependency
        return _caudal.dtype_name(dtype)
    try:
        dt = numpy.dtype(dtype)
    except TypeError:
        return _caudal.dtype_name(dtype)  # raises CaudalError
    if not dt.isnative or dt.name not in DTYPES:
        return _caudal.dtype_name(dt.str if dt.isnative else repr(dt))
    return dt.name


def get_include():
    """The directory holding caudal.h and caudal_receiver.h."""
    from ._paths import include_dir

    return include_dir()


def get_lib():
    """The directory holding libcaudal.so."""
    from ._paths import lib_dir

    return lib_dir()


__all__ = [
    "analysis",
    "at_end",
    "blocks",
    "extract",
    "features",
    "md",
    "stats",
    "stencil",
    "temporal",
    "open_run",
    "Context",
    "StepArray",
    "ArrayInfo",
    "Block",
    "CaudalError",
    "Client",
    "DTYPES",
    "EVENT_TYPES",
    "Event",
    "Receiver",
    "dtype_name",
    "dtype_size",
    "get_include",
    "get_lib",
    "strerror",
] + [n for n in dir(_caudal) if n.startswith("ERR_")] + ["NO_VALUE", "OK"]
