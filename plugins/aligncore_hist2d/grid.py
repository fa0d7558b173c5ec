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

_MARGIN = 1e-9  # relative widening of the reach when choosing cells (rounding safety)
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
    # Column by column: a reduction over axis 0 of an (n, 2) array is ~30x slower.
    lo = np.array([np.minimum(a[:, k].min(), b[:, k].min()) for k in (0, 1)])
    hi = np.array([np.maximum(a[:, k].max(), b[:, k].max()) for k in (0, 1)])
    wide = reach + _MARGIN * (reach + float(np.max(np.abs(np.concatenate([lo, hi])))))
    extent = hi - lo
    if not np.all(np.isfinite(extent)):
        return None
    # Cells at least 2 x reach wide (a square of half-width `wide` spans <= 2 per axis),
    # larger when the field would need more than CELLS_PER_POINT cells per point.
    budget = _CELLS_PER_POINT * (len(a) + len(b)) + 1024
    cell = max(2.0 * wide * (1.0 + _MARGIN), math.sqrt(extent[0] * extent[1] / budget),
               float(extent.max()) / budget)
    if not (math.isfinite(cell) and cell > 0):
        return None
    origin = lo - 2.0 * cell
    span = ((hi - origin) / cell).astype(np.int64) + 3
    ncy = int(span[1])
    ncells = int(span[0]) * ncy

    cb = ((b - origin) / cell).astype(np.int64)  # positive: floor
    key_b = cb[:, 0] * ncy + cb[:, 1]
    order = np.argsort(key_b, kind="stable")
    per_cell = np.bincount(key_b, minlength=ncells)
    ends = np.cumsum(per_cell)
    starts = ends - per_cell
    q0 = ((a - wide - origin) / cell).astype(np.int64)
    q1 = ((a + wide - origin) / cell).astype(np.int64)
    step_x = q1[:, 0] > q0[:, 0]
    step_y = q1[:, 1] > q0[:, 1]
    key0 = q0[:, 0] * ncy + q0[:, 1]

    rows = np.arange(len(a))
    parts = [(rows, key0), (rows[step_x], key0[step_x] + ncy), (rows[step_y], key0[step_y] + 1)]
    both = step_x & step_y
    parts.append((rows[both], key0[both] + ncy + 1))
    q_list, s_list, c_list = [], [], []
    for q, keys in parts:
        s = starts[keys]
        c = per_cell[keys]
        has = c > 0
        q_list.append(q[has])
        s_list.append(s[has])
        c_list.append(c[has])
    q = np.concatenate(q_list)
    start = np.concatenate(s_list)
    count = np.concatenate(c_list)
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
