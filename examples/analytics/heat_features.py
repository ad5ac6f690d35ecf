"""The kernels on the heat examples' temperature, every step:

    caudal run -n 4 --analytics examples/analytics/heat_features.py -- ./heat2d 256 192 200

- shape: skewness and kurtosis, a 64-bin histogram over [0, 2], and the
  median and 99th percentile from a quantile sketch;
- flux: the largest |Laplacian| (where heat flows fastest), computed across
  the ranks' block borders;
- hot: the number of hot spots (connected regions above CAUDAL_HOT_THRESHOLD,
  default 1.0) and the size and centroid of the largest;
- coarse: every 10th step, the field coarsened 8x8 (a light extract);
- at the end, the per-point mean, variance, min and max of the temperature
  over all steps (kept next to the blocks, gathered once) in point_stats.npz.
"""

import os

import numpy as np

import caudal

HOT = float(os.environ.get("CAUDAL_HOT_THRESHOLD", "1.0"))
point = caudal.temporal.PointStats()


@caudal.analysis("temperature")
def shape(temperature, ctx):
    t = temperature[-1]
    m = caudal.stats.moments(t)
    ctx.record("skewness", m.skewness)
    ctx.record("kurtosis", m.kurtosis)
    ctx.record("histogram", caudal.stats.histogram(t, bins=64, range=(0.0, 2.0)).counts)
    ctx.record("quantiles", caudal.stats.quantile(t, [0.5, 0.99]))


@caudal.analysis("temperature")
def flux(temperature, ctx):
    lap = caudal.stencil.laplacian(temperature[-1])
    m = caudal.stats.moments(lap)
    ctx.record("max_abs_laplacian", max(abs(m.min), abs(m.max)))


@caudal.analysis("temperature")
def hot(temperature, ctx):
    c = caudal.features.components(temperature[-1], HOT)
    ctx.record("hot_spots", c.count)
    if c.count:
        ctx.record("largest_hot_spot", [int(c.sizes[0])] + c.centroids[0].tolist())


@caudal.analysis("temperature")
def coarse(temperature, ctx):
    t = temperature[-1]
    if t.step % 10 == 0:
        ctx.record("coarse", caudal.extract.coarsen(t, 8))


@caudal.analysis("temperature")
def follow(temperature, ctx):
    point.update(temperature[-1])


@caudal.at_end
def save(ctx):
    np.savez(ctx.run_dir / "point_stats.npz", **point.result())
