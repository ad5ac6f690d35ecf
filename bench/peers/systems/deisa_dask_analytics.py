"""The common analysis on deisa-dask, as its getting-started analysis.py does:
a Deisa() handle (connects through DEISA_DASK_SCHEDULER_ADDRESS and waits for
the bridges), one callback registered for "temperature" with the default
sliding window of 1, then execute_callbacks() until the bridges are closed
and every callback has run. The callback computes on the Dask array that
deisa assembled from the ranks' chunks (on the Dask worker)."""

import os
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

import dask  # noqa: E402
import dask.array as da  # noqa: E402
from deisa.dask import Deisa  # noqa: E402

import common  # noqa: E402

out_dir = os.environ["DEISA_PEERS_OUT"]
results = common.Results(out_dir)
lock = threading.Lock()  # deisa-dask runs callbacks in threads (asyncio.to_thread)
failures = []


def on_error(exc):
    failures.append(repr(exc))
    print("deisa-dask analytics: callback failed: %r" % (exc,), file=sys.stderr, flush=True)


deisa = Deisa()


@deisa.register("temperature", exception_handler=on_error)
def common_analysis(temperature):
    t = temperature[-1]
    hist, _ = da.histogram(t, bins=common.HIST_BINS, range=(0.0, common.HIST_MAX))
    mean, lo, hi, counts = dask.compute(t.mean(), t.min(), t.max(), hist)
    with lock:
        results.write(t.timestep, mean, lo, hi, counts)


deisa.execute_callbacks()
results.close()
deisa.client.close()
sys.exit(1 if failures else 0)
