"""The common analysis on deisa-ray, as its Quick Start's analytics snippet
does: a Deisa() handle (connects to the Ray cluster at RAY_ADDRESS and creates
the head actor), one callback registered with the window API for
Window("temperature") (size 1), then execute_callbacks() until the
simulation's bridges close. The callback computes on the Dask array deisa-ray
assembled from the ranks' chunks, with Dask-on-Ray (deisa-ray's default
scheduler, ray_dask_get)."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

import dask  # noqa: E402
import dask.array as da  # noqa: E402
from deisa.ray import Deisa  # noqa: E402
from deisa.ray.types import Window  # noqa: E402

import common  # noqa: E402

out_dir = os.environ["DEISA_PEERS_OUT"]
results = common.Results(out_dir)
failures = []


def on_error(exc):
    failures.append(repr(exc))
    print("deisa-ray analytics: callback failed: %r" % (exc,), file=sys.stderr, flush=True)


d = Deisa()


@d.register(Window("temperature"), exception_handler=on_error)
def common_analysis(temperature):
    t = temperature[-1]
    hist, _ = da.histogram(t, bins=common.HIST_BINS, range=(0.0, common.HIST_MAX))
    mean, lo, hi, counts = dask.compute(t.mean(), t.min(), t.max(), hist)
    results.write(t.t, mean, lo, hi, counts)


# registered: Ray is connected and the head actor exists, the ranks may start
ready = os.environ.get("DEISA_PEERS_READY")
if ready:
    open(ready, "w").close()
try:
    d.execute_callbacks()
finally:
    results.close()
    # the ranks keep their blocks alive until now (see deisa_ray.Bridge.close)
    done = os.environ.get("DEISA_PEERS_DONE")
    if done:
        open(done, "w").close()
sys.exit(1 if failures else 0)
