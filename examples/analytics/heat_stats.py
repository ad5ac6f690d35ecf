"""Analytics for the heat examples: run with

    caudal run -n 4 --analytics examples/analytics/heat_stats.py -- ./heat2d 256 192 200

- stats: per-step global mean, min and max of the temperature (the C moments
  kernel, run next to each rank's block);
- rate: the largest rate of change over a window of two published steps
  (caudal.temporal.change: each rank's two blocks differenced and reduced
  where they lie; `(new.data - old.data)` as Dask arrays gives the same
  value through a Dask graph, at several times the cost);
- cap: steering, the source strength "q" goes to zero once the mean passes
  CAUDAL_DEMO_THRESHOLD (default 1.0) and the simulation cools from then on.

Each is declared reductions_only: it reads the temperature only through
caudal's reductions, so once they are learned (the first few steps) they are
computed on each block in its rank's slot as it arrives, the pair of rate
against the rank's previous step, and the field is never copied into Ray's
object store.
"""

import os

import caudal

THRESHOLD = float(os.environ.get("CAUDAL_DEMO_THRESHOLD", "1.0"))


@caudal.analysis("temperature", reductions_only=True)
def stats(temperature, ctx):
    m = caudal.stats.moments(temperature[-1])
    ctx.record("mean", m.mean)
    ctx.record("min", m.min)
    ctx.record("max", m.max)


@caudal.analysis("temperature", window=2, reductions_only=True)
def rate(temperature, ctx):
    old, new = temperature
    m = caudal.temporal.change(old, new)  # (new - old) / steps, next to each block
    ctx.record("max_rate", max(abs(m.min), abs(m.max)))


@caudal.analysis("temperature", reductions_only=True)
def cap(temperature, ctx):
    if caudal.stats.moments(temperature[-1]).mean > THRESHOLD:
        ctx.steer("q", 0.0)
