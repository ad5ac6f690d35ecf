"""The analysis of bench/bench_ranks.py: the per-step global mean of the
light publisher's "x" (caudal.stats), and the wall time when it was known."""

import time

import caudal


@caudal.analysis("x")
def mean(x, ctx):
    m = caudal.stats.moments(x[-1])
    ctx.record("mean", m.mean)
    ctx.record("t", time.time())
