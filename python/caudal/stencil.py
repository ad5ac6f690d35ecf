"""Derivatives of global arrays across block borders: gradient, Laplacian,
divergence and curl (vorticity).

A stencil at a block's edge needs its neighbours' values: each block first
gives its boundary planes (one small task on its node), then each block's
stencil runs on its own node with its neighbours' facing planes as halos.
Only planes cross nodes, never blocks, and the result is a global array with
the same blocks (a StepArray whose blocks stay where the input's were; a Dask
array for Dask input; NumPy for NumPy).

Conventions are NumPy's: axis d of the array is coordinate x_d, `spacing` is
one number or one per axis, derivatives are numpy.gradient's (second-order
central inside, first-order one-sided at the global borders), and results
are float64. The Laplacian takes the value beyond a global border equal to
the border value (zero flux; scipy.ndimage.laplace's mode="nearest").
"""

import numpy as np

from . import _kernels
from .blocks import as_grid, c_view, require_alike, view_axis

__all__ = ["curl", "divergence", "gradient", "laplacian"]


def _spacing(g, spacing, kernel):
    h = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (g.ndim,)) \
        if np.ndim(spacing) == 0 else np.asarray(spacing, dtype=np.float64)
    if h.shape != (g.ndim,) or not np.all(np.isfinite(h)) or np.any(h <= 0):
        g.fail("%s needs one positive spacing or one per axis (%d), not %r"
               % (kernel, g.ndim, spacing))
    return tuple(float(v) for v in h)


def _prepare(grids, kernel, min_points_axes=()):
    g = grids[0]
    require_alike(grids, kernel)
    for a in min_points_axes:
        if g.shape[a] < 2:
            g.fail("%s along axis %d needs at least 2 points; the array has %d"
                   % (kernel, a, g.shape[a]))


def _run(grids, fn, consts, num_returns=1):
    """fn(consts, n_arrays, *blocks, *halos) per block position, on the node
    of the first array's block; pos -> result(s)."""
    g = grids[0]
    faces = [x.faces() for x in grids]

    def args(b):
        blocks = [a for x in grids for a in x.blocks[b.pos].args()]
        halos = [f for x, fx in zip(grids, faces) for f in x.halo(fx, b.pos)]
        return (fn, consts, len(grids), *blocks, *halos)

    return g.map_each(_call, args, num_returns)


def _call(fn, consts, n, *rest):
    return fn(consts, rest[:n], rest[n:])


def _derivative(v, flipped, axis, h, global_n, halos, ndim):
    """d v / d x_axis of one C view, with the halos of the original axes."""
    out = np.empty(v.shape, dtype=np.float64)
    _kernels.gradient(v, view_axis(axis, ndim, flipped), h[axis], global_n[axis],
                      halos[2 * axis], halos[2 * axis + 1], out)
    return out


def _unflip(a, flipped):
    return a.T if flipped else a


# ---------------------------------------------------------------- per block


def _gradient_block(consts, blocks, halos):
    axes, h, global_n, order = consts
    v, flipped = c_view(blocks[0], order)
    outs = [_unflip(_derivative(v, flipped, a, h, global_n, halos, v.ndim), flipped)
            for a in axes]
    return outs[0] if len(outs) == 1 else tuple(outs)


def _laplacian_block(consts, blocks, halos):
    h, order = consts
    v, flipped = c_view(blocks[0], order)
    nd = v.ndim
    # The C kernel wants spacings and halos in the C view's axis order.
    order = [view_axis(va, nd, flipped) for va in range(nd)]
    out = np.empty(v.shape, dtype=np.float64)
    _kernels.laplacian(v, [h[a] for a in order], [halos[2 * a] for a in order],
                       [halos[2 * a + 1] for a in order], out)
    return _unflip(out, flipped)


def _component_derivative(blocks, halos, i, axis, h, global_n, order):
    """d v_i / d x_axis, where v_i is component i of the blocks."""
    ndim = len(h)
    v, flipped = c_view(blocks[i], order)
    per = 2 * ndim
    return _unflip(_derivative(v, flipped, axis, h, global_n, halos[i * per:(i + 1) * per],
                               ndim), flipped)


def _divergence_block(consts, blocks, halos):
    h, global_n, order = consts
    total = _component_derivative(blocks, halos, 0, 0, h, global_n, order)
    for i in range(1, len(blocks)):
        total += _component_derivative(blocks, halos, i, i, h, global_n, order)
    return total


def _curl_block(consts, blocks, halos):
    h, global_n, order = consts

    def d(i, axis):
        return _component_derivative(blocks, halos, i, axis, h, global_n, order)

    if len(blocks) == 2:
        return d(1, 0) - d(0, 1)
    return d(2, 1) - d(1, 2), d(0, 2) - d(2, 0), d(1, 0) - d(0, 1)


# ---------------------------------------------------------------- kernels


def gradient(f, axis=None, spacing=1.0):
    """numpy.gradient of f: one derivative per axis (a list), or the one
    along `axis`."""
    g = as_grid(f)
    axes = list(range(g.ndim)) if axis is None else [int(axis)]
    if any(not 0 <= a < g.ndim for a in axes):
        g.fail("gradient: axis %r is not one of the array's %d axes" % (axis, g.ndim))
    _prepare([g], "gradient", axes)
    h = _spacing(g, spacing, "gradient")
    out = _run([g], _gradient_block, (tuple(axes), h, g.shape, g.order), len(axes))
    if len(axes) == 1:
        return g.derive(out, np.float64, "d%s/dx%d" % (g.name or "f", axes[0])).assemble()
    return [g.derive({p: o[i] for p, o in out.items()}, np.float64,
                     "d%s/dx%d" % (g.name or "f", a)).assemble()
            for i, a in enumerate(axes)]


def laplacian(f, spacing=1.0):
    """Sum over axes of the second differences, zero flux at the borders."""
    g = as_grid(f)
    _prepare([g], "laplacian")
    h = _spacing(g, spacing, "laplacian")
    out = _run([g], _laplacian_block, (h, g.order))
    return g.derive(out, np.float64, "laplacian(%s)" % (g.name or "f")).assemble()


def divergence(*components, spacing=1.0):
    """sum_i d v_i / d x_i of a vector field given as one array per axis."""
    grids = [as_grid(c) for c in components]
    if not grids or len(grids) != grids[0].ndim:
        raise ValueError("divergence needs one component per axis: %d given for %s"
                         % (len(grids), "%d-D arrays" % grids[0].ndim if grids else "no arrays"))
    _prepare(grids, "divergence", range(grids[0].ndim))
    g = grids[0]
    h = _spacing(g, spacing, "divergence")
    out = _run(grids, _divergence_block, (h, g.shape, g.order))
    return g.derive(out, np.float64, "div").assemble()


def curl(*components, spacing=1.0):
    """Curl of a 2-D (u, v) or 3-D (u, v, w) vector field, components along
    axes 0, 1 (, 2): in 2-D the vorticity dv/dx0 - du/dx1, in 3-D the three
    components of the curl."""
    grids = [as_grid(c) for c in components]
    if len(grids) not in (2, 3) or any(x.ndim != len(grids) for x in grids):
        raise ValueError("curl needs 2 components of 2-D arrays or 3 of 3-D arrays, not %d "
                         "of %s-D" % (len(grids), sorted({x.ndim for x in grids})))
    _prepare(grids, "curl", range(len(grids)))
    g = grids[0]
    h = _spacing(g, spacing, "curl")
    n = 1 if len(grids) == 2 else 3
    out = _run(grids, _curl_block, (h, g.shape, g.order), n)
    if n == 1:
        return g.derive(out, np.float64, "vorticity").assemble()
    return tuple(g.derive({p: o[i] for p, o in out.items()}, np.float64, "curl%d" % i)
                 .assemble() for i in range(3))
