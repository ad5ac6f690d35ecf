"""Features: threshold a global array and find its connected components
across block borders.

Each block labels its own foreground on its node (face connectivity, as
scipy.ndimage.label's default structure) and sends back only its component
sizes, coordinate sums and the labels on its boundary planes. Components that
touch across a block border are joined here from those planes, so a feature
spread over many ranks is counted once, with its global size and centroid.
The label array itself stays on the nodes unless asked for.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _kernels
from .blocks import as_grid, c_view

__all__ = ["Components", "components"]

_OPS = (">", ">=", "<", "<=")


@dataclass(frozen=True)
class Components:
    """Connected components, largest first: ``sizes[i]`` elements with
    centroid ``centroids[i]`` (global coordinates, one per axis). ``labels``
    (when asked for) is a global int32 array of the same blocks: 0 for the
    background, i + 1 for component i."""

    count: int
    sizes: np.ndarray
    centroids: np.ndarray
    labels: Any = None


def _label_block(block, start, threshold, op, order):
    v, flipped = c_view(block, order)
    labels = np.empty(v.shape, dtype=np.int32)
    n = _kernels.label(v, threshold, op, labels)
    vstart = tuple(start)[::-1] if flipped else tuple(start)
    size = np.empty(n, dtype=np.int64)
    sums = np.empty(n * v.ndim, dtype=np.float64)
    _kernels.label_stats(labels, vstart, size, sums)
    sums = sums.reshape(n, v.ndim)
    if flipped:
        labels, sums = labels.T, sums[:, ::-1]
    planes = []
    for d in range(labels.ndim):
        planes.append(np.asarray(np.take(labels, 0, axis=d)))
        planes.append(np.asarray(np.take(labels, labels.shape[d] - 1, axis=d)))
    return labels, (n, size, sums, planes)


def _relabel_block(labels, table):
    return table[labels]


def _roots(n, a, b):
    """Component of each of n nodes joined by the edges (a[i], b[i]): every
    node ends with the smallest node of its component (min-label
    propagation with pointer jumping: a few vectorised rounds)."""
    root = np.arange(n, dtype=np.int64)
    if len(a) == 0:
        return root
    while True:
        m = np.minimum(root[a], root[b])
        new = root.copy()
        np.minimum.at(new, a, m)
        np.minimum.at(new, b, m)
        new = new[new]
        if np.array_equal(new, root):
            return root
        root = new


def components(x, threshold, op=">", labels=False):
    """Connected components of the elements x OP threshold (OP one of >,
    >=, <, <=; NaN is never in a component). labels=True also returns the
    global label array."""
    g = as_grid(x)
    g.require_real("components")
    g.require_fixed("components")
    if op not in _OPS:
        g.fail("components op must be one of %s, not %r" % (", ".join(_OPS), op))
    threshold = float(threshold)
    out = g.map_each(_label_block, lambda b: (*b.args(), b.start, threshold, op, g.order),
                     num_returns=2)
    keys = sorted(out)
    summaries = dict(zip(keys, g.fetch([out[k][1] for k in keys])))

    offset, total = {}, 0
    for k in keys:
        offset[k] = total
        total += summaries[k][0]
    size = np.zeros(total, dtype=np.int64)
    sums = np.zeros((total, g.ndim), dtype=np.float64)
    ea, eb = [], []
    for k in keys:
        n, s, c, planes = summaries[k]
        size[offset[k]:offset[k] + n] = s
        sums[offset[k]:offset[k] + n] = c
        for d in range(g.ndim):
            nb = k[:d] + (k[d] + 1,) + k[d + 1:]
            if nb not in summaries:
                continue
            mine, theirs = planes[2 * d + 1], summaries[nb][3][2 * d]
            both = (mine > 0) & (theirs > 0)
            if both.any():
                pairs = np.unique(np.stack([mine[both], theirs[both]]), axis=1)
                ea.append(offset[k] + pairs[0].astype(np.int64) - 1)
                eb.append(offset[nb] + pairs[1].astype(np.int64) - 1)
    ea = np.concatenate(ea) if ea else np.empty(0, dtype=np.int64)
    eb = np.concatenate(eb) if eb else np.empty(0, dtype=np.int64)
    root = _roots(total, ea, eb)
    uniq, comp = np.unique(root, return_inverse=True)
    csize = np.bincount(comp, weights=size, minlength=len(uniq)).astype(np.int64)
    csum = np.stack([np.bincount(comp, weights=sums[:, d], minlength=len(uniq))
                     for d in range(g.ndim)], axis=1) if len(uniq) else np.zeros((0, g.ndim))
    centroids = csum / np.maximum(csize, 1)[:, None]
    order = np.lexsort(tuple(centroids[:, d] for d in reversed(range(g.ndim))) + (-csize,))
    rank_of = np.empty(len(uniq), dtype=np.int64)
    rank_of[order] = np.arange(len(uniq))
    result = Components(len(uniq), csize[order], centroids[order])
    if not labels:
        return result
    if len(uniq) >= 2 ** 31:
        g.fail("components: %d components do not fit int32 labels" % len(uniq))
    global_label = (rank_of[comp] + 1).astype(np.int32)
    tables = {k: np.concatenate([[0], global_label[offset[k]:offset[k] + summaries[k][0]]])
              .astype(np.int32) for k in keys}
    relabelled = {k: g.backend.submit(_relabel_block, (out[k][0], tables[k]), g.blocks[k].node)
                  for k in keys}
    lab = g.derive(relabelled, np.int32, "labels(%s)" % (g.name or "x")).assemble()
    return Components(result.count, result.sizes, result.centroids, lab)
