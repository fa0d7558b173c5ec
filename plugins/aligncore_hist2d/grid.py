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

import numpy as np

__all__ = ["candidate_pairs"]

_MARGIN = 1e-9  # relative widening of the reach when choosing cells (rounding safety)
_DENSE_CELLS_PER_POINT = 8  # a direct cell table when it has at most this many cells per point
_MAX_CELLS_PER_AXIS = 2.0**30  # larger grids (absurdly small reach) use the trees


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
        ``limit`` of them or the grid would be absurdly large.
    """
    lo = np.minimum(a.min(axis=0), b.min(axis=0))
    hi = np.maximum(a.max(axis=0), b.max(axis=0))
    wide = reach + _MARGIN * (reach + float(np.max(np.abs(np.concatenate([lo, hi])))))
    cell = 2.0 * wide * (1.0 + _MARGIN)  # a square of half-width `wide` spans <= 2 cells per axis
    origin = lo - 2.0 * cell
    span = (hi - origin) / cell + 3.0
    if not np.all(np.isfinite(span)) or float(np.max(span)) > _MAX_CELLS_PER_AXIS:
        return None
    ncy = int(span[1])
    ncells = int(span[0]) * ncy

    cb = ((b - origin) / cell).astype(np.int64)  # positive: floor
    key_b = cb[:, 0] * ncy + cb[:, 1]
    order = np.argsort(key_b, kind="stable")
    q0 = ((a - wide - origin) / cell).astype(np.int64)
    q1 = ((a + wide - origin) / cell).astype(np.int64)
    step_x = q1[:, 0] > q0[:, 0]
    step_y = q1[:, 1] > q0[:, 1]
    key0 = q0[:, 0] * ncy + q0[:, 1]

    if ncells <= _DENSE_CELLS_PER_POINT * (len(a) + len(b)) + 1024:
        per_cell = np.bincount(key_b, minlength=ncells)
        ends = np.cumsum(per_cell)
        starts_of = ends - per_cell

        def lookup(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return starts_of[keys], ends[keys]
    else:
        sorted_keys = key_b[order]

        def lookup(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return (np.searchsorted(sorted_keys, keys, side="left"),
                    np.searchsorted(sorted_keys, keys, side="right"))

    rows = np.arange(len(a))
    parts = [(rows, key0), (rows[step_x], key0[step_x] + ncy), (rows[step_y], key0[step_y] + 1)]
    both = step_x & step_y
    parts.append((rows[both], key0[both] + ncy + 1))
    q_list, s_list, c_list = [], [], []
    for q, keys in parts:
        s, e = lookup(keys)
        c = e - s
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
