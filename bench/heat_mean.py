"""The analytics of bench/bench_heat.py: the global mean of every published
step of heat2d's "temperature", the lightest analysis that still reads every
block."""

import caudal


@caudal.analysis("temperature")
def mean(temperature, ctx):
    (t,) = temperature
    ctx.record("mean", float(t.data.mean().compute()))
