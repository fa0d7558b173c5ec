"""Footprint overlaps in the tangent plane and the alignment order they imply."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "alignment_order",
    "candidate_pairs",
    "convex_overlap_area",
    "overlap_matrix",
    "polygon_area",
]


def polygon_area(poly: np.ndarray) -> float:
    """Area of a simple polygon given as an ``(n, 2)`` array of vertices."""
    if len(poly) < 3:
        return 0.0
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _ccw(poly: np.ndarray) -> np.ndarray:
    x, y = poly[:, 0], poly[:, 1]
    signed = float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
    return poly if signed >= 0 else poly[::-1]


def convex_overlap_area(a: np.ndarray, b: np.ndarray) -> float:
    """Area of the intersection of two convex polygons (Sutherland-Hodgman clipping)."""
    subject = [tuple(p) for p in _ccw(np.asarray(a, dtype=float))]
    clip = _ccw(np.asarray(b, dtype=float))
    for i in range(len(clip)):
        if not subject:
            return 0.0
        cx0, cy0 = clip[i]
        cx1, cy1 = clip[(i + 1) % len(clip)]

        def inside(p: tuple[float, float], cx0=cx0, cy0=cy0, cx1=cx1, cy1=cy1) -> bool:
            return (cx1 - cx0) * (p[1] - cy0) - (cy1 - cy0) * (p[0] - cx0) >= 0

        def crossing(p: tuple[float, float], q: tuple[float, float],
                     cx0=cx0, cy0=cy0, cx1=cx1, cy1=cy1) -> tuple[float, float]:
            dx, dy = q[0] - p[0], q[1] - p[1]
            ex, ey = cx1 - cx0, cy1 - cy0
            denom = dx * ey - dy * ex
            t = ((cx0 - p[0]) * ey - (cy0 - p[1]) * ex) / denom
            return (p[0] + t * dx, p[1] + t * dy)

        output = []
        for j in range(len(subject)):
            current, previous = subject[j], subject[j - 1]
            if inside(current):
                if not inside(previous):
                    output.append(crossing(previous, current))
                output.append(current)
            elif inside(previous):
                output.append(crossing(previous, current))
        subject = output
    return polygon_area(np.array(subject)) if len(subject) >= 3 else 0.0


def candidate_pairs(footprints: Sequence[np.ndarray]) -> list[tuple[int, int]]:
    """Pairs ``(i, j)``, ``i < j``, whose bounding boxes intersect.

    A sweep over the boxes sorted by their lower x edge: only boxes that can
    still reach the current one are compared, so a tiled mosaic costs about
    N log N instead of N^2.
    """
    n = len(footprints)
    if n < 2:
        return []
    boxes = np.array([[f[:, 0].min(), f[:, 0].max(), f[:, 1].min(), f[:, 1].max()]
                      for f in footprints])
    order = np.argsort(boxes[:, 0], kind="stable")
    sorted_boxes = boxes[order]
    pairs = []
    for k in range(n):
        _, x1, y0, y1 = sorted_boxes[k]
        stop = int(np.searchsorted(sorted_boxes[:, 0], x1, side="right"))
        if stop <= k + 1:
            continue
        others = sorted_boxes[k + 1:stop]
        hits = np.flatnonzero((others[:, 2] <= y1) & (others[:, 3] >= y0))
        for h in hits:
            i, j = int(order[k]), int(order[k + 1 + h])
            pairs.append((min(i, j), max(i, j)))
    return sorted(pairs)


def overlap_matrix(footprints: Sequence[np.ndarray]) -> np.ndarray:
    """Pairwise overlap areas of convex footprints (symmetric, zero diagonal).

    Only pairs whose bounding boxes intersect are clipped.
    """
    n = len(footprints)
    areas = np.zeros((n, n))
    for i, j in candidate_pairs(footprints):
        areas[i, j] = areas[j, i] = convex_overlap_area(footprints[i], footprints[j])
    return areas


def alignment_order(overlaps: np.ndarray, weights: Sequence[float] | None = None) -> list[int]:
    """Order units for sequential alignment by footprint overlap.

    The pair with the largest overlap seeds the order (its member with the
    larger ``weight``, e.g. more sources, first: it becomes the reference);
    then each next unit is the one with the largest total overlap with the
    units already ordered. Ties keep the input order, so the result does not
    depend on floating-point noise in equal overlaps.

    Parameters
    ----------
    overlaps : ndarray, shape (n, n)
        Symmetric overlap areas.
    weights : sequence of float, optional
        Tie-breaker for the reference of the seed pair.

    Returns
    -------
    list of int
        A permutation of ``range(n)``.
    """
    n = overlaps.shape[0]
    if n == 0:
        return []
    if n == 1:
        return [0]
    weights = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    upper = np.triu(overlaps, 1)
    i, j = np.unravel_index(int(np.argmax(upper)), upper.shape)
    if upper[i, j] <= 0:
        first = int(np.argmax(weights))
        order = [first]
    else:
        order = [int(i), int(j)] if weights[i] >= weights[j] else [int(j), int(i)]
    placed = np.zeros(n, dtype=bool)
    placed[order] = True
    totals = overlaps[:, order].sum(axis=1)
    while not placed.all():
        candidates = np.where(placed, -np.inf, totals)
        best = int(np.argmax(candidates))  # first index wins ties
        order.append(best)
        placed[best] = True
        totals += overlaps[:, best]
    return order
