"""Analytics for the heat examples: run with

    caudal run -n 4 --analytics examples/analytics/heat_stats.py -- ./heat2d 256 192 200

- stats: per-step global mean, min and max of the temperature;
- rate: the largest rate of change over a window of two published steps;
- cap: steering, the source strength "q" goes to zero once the mean passes
  CAUDAL_DEMO_THRESHOLD (default 1.0) and the simulation cools from then on.
"""

import os

import dask.array as da

import caudal

THRESHOLD = float(os.environ.get("CAUDAL_DEMO_THRESHOLD", "1.0"))


@caudal.analysis("temperature")
def stats(temperature, ctx):
    (t,) = temperature
    mean, lo, hi = da.compute(t.data.mean(), t.data.min(), t.data.max())
    ctx.record("mean", float(mean))
    ctx.record("min", float(lo))
    ctx.record("max", float(hi))


@caudal.analysis("temperature", window=2)
def rate(temperature, ctx):
    old, new = temperature
    d = (new.data - old.data) / (new.step - old.step)
    ctx.record("max_rate", float(abs(d).max().compute()))


@caudal.analysis("temperature")
def cap(temperature, ctx):
    (t,) = temperature
    if float(t.data.mean().compute()) > THRESHOLD:
        ctx.steer("q", 0.0)
