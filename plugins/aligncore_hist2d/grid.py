"""Candidate pairs of nearby points from a grid of square cells (no tree).

The points of ``b`` are sorted by the cell of side ``2 x reach`` they fall in;
the square of half-width ``reach`` around a point of ``a`` overlaps at most
2 x 2 cells, whose points are the candidates. Every pair closer than
``reach`` in x and in y is among them (the cells are chosen with a small
margin, so rounding cannot lose one); the caller filters them exactly.

For the sparse point sets of source catalogs this is several times faster
than building KD-trees and traversing them: one sort, four look-ups per point
and a few vectorised gathers. When there would be too many candidates (a
reach comparable to the field) it returns ``None`` and the caller uses its
KD-tree path instead.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["candidate_pairs"]

_MARGIN = 1e-7  # relative widening of the reach when choosing cells (rounding safety)
_CELLS_PER_POINT = 4  # at most about this many cells per point (coarser cells beyond)


def candidate_pairs(
    a: np.ndarray, b: np.ndarray, reach: float, limit: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """Index pairs ``(i, j)`` that include every ``|a[i] - b[j]| <= reach`` in x and y.

    Parameters
    ----------
    a, b : ndarray, shape (n, 2) and (m, 2)
        Finite positions (both non-empty).
    reach : float
        Half-width of the square searched around each point of ``a`` (> 0, finite).
    limit : int
        Most candidates built; beyond it nothing is built.

    Returns
    -------
    (i, j) : tuple of ndarray of intp, or None
        Candidate pairs, a superset of the pairs within ``reach`` (Chebyshev),
        grouped by cell of ``b``; ``None`` when there would be more than
        ``limit`` of them (or the reach is not finite).
    """
    # Column by column, in Python floats: a reduction over axis 0 of an (n, 2) array is
    # ~30x slower, and scalar arithmetic on 2-element arrays costs more than the data.
    ax, ay, bx, by = a[:, 0], a[:, 1], b[:, 0], b[:, 1]
    x0 = float(np.minimum(ax.min(), bx.min()))  # NaN-propagating
    y0 = float(np.minimum(ay.min(), by.min()))
    x1 = float(np.maximum(ax.max(), bx.max()))
    y1 = float(np.maximum(ay.max(), by.max()))
    ex, ey = x1 - x0, y1 - y0
    if not (math.isfinite(ex) and math.isfinite(ey) and math.isfinite(reach)):
        return None
    wide = reach + _MARGIN * (reach + max(abs(x0), abs(y0), abs(x1), abs(y1)))
    # Cells at least 2 x wide (a square of half-width `wide` spans <= 2 per axis),
    # larger when the field would need more than _CELLS_PER_POINT cells per point.
    budget = _CELLS_PER_POINT * (len(a) + len(b)) + 1024
    cell = max(2.0 * wide * (1.0 + _MARGIN), math.sqrt(ex * ey / budget), max(ex, ey) / budget)
    if not cell > 0:
        return None
    inv = 1.0 / cell
    ox, oy = x0 - 2.0 * cell, y0 - 2.0 * cell  # every cell index below is >= 1
    ncy = int((y1 - oy) * inv) + 3
    ncells = (int((x1 - ox) * inv) + 3) * ncy

    # int64 truncation is the floor here: every coordinate is above the origin.
    key_b = ((bx - ox) * inv).astype(np.int64) * ncy + ((by - oy) * inv).astype(np.int64)
    order = np.argsort(key_b)
    per_cell = np.bincount(key_b, minlength=ncells)
    starts = np.cumsum(per_cell) - per_cell
    cx = ((ax - (ox + wide)) * inv).astype(np.int64)
    cy = ((ay - (oy + wide)) * inv).astype(np.int64)
    step_x = ((ax - (ox - wide)) * inv).astype(np.int64) > cx
    step_y = ((ay - (oy - wide)) * inv).astype(np.int64) > cy
    key0 = cx * ncy + cy
    both = step_x & step_y
    rows = np.arange(len(a))
    q = np.concatenate([rows, rows[step_x], rows[step_y], rows[both]])
    keys = np.concatenate([key0, key0[step_x] + ncy, key0[step_y] + 1, key0[both] + (ncy + 1)])
    count = per_cell[keys]
    has = count > 0
    q, count = q[has], count[has]
    start = starts[keys[has]]
    total = int(count.sum())
    if total > limit:
        return None
    if total == 0:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty
    # Expand the ranges [start, start + count) into one index per candidate.
    first = np.cumsum(count) - count
    pos = np.arange(total, dtype=np.intp) + np.repeat(start - first, count)
    return np.repeat(q, count).astype(np.intp, copy=False), order[pos].astype(np.intp, copy=False)
