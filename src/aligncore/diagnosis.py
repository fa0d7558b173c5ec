"""Why an image found too few matches, and what to change.

When a unit's match falls short of ``align.minobj``, `explain_few_matches`
looks at the two catalogs again and names the limit that was hit:

- **no overlap**: no reference source lies near the image's footprint;
- **search radius**: the catalogs do line up, but at an offset beyond the
  matcher's search reach (a significant peak in a histogram of all pair offsets
  out to several times that reach);
- **too few sources**: the image, or the reference within its footprint, has
  fewer sources than ``minobj``;
- **minobj**: the sources are there and the offset is within reach, but fewer
  of them matched than ``minobj``.

Each explanation ends with the settings to change.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["diagnosis_margin", "explain_few_matches", "offset_peak"]

_MIN_PEAK = 5
"""Fewest pairs at one offset for it to count as the catalogs lining up."""
_MAX_PAIRS = 2_000_000
"""About the most pairs the offset histogram forms (crowded fields are subsampled)."""
_MIN_SIGNIFICANCE = 5.0
"""Poisson significance (sigma) a peak needs above the mean of the offset histogram."""


def offset_peak(image_xy: np.ndarray, ref_xy: np.ndarray, radius: float,
                bin_size: float) -> tuple[np.ndarray, int, float] | None:
    """The most common image-to-reference offset within ``radius`` (arcsec).

    Parameters
    ----------
    image_xy, ref_xy : ndarray, shape (n, 2)
        Positions (arcsec, same tangent plane).
    radius : float
        Largest offset considered.
    bin_size : float
        Width of the histogram's square bins.

    Returns
    -------
    (offset, count, significance) or None
        The peak's offset (reference minus image, mean of the pairs in the peak
        bin and its neighbours), the number of pairs there, and its Poisson
        significance above the mean bin; None without any pair.
    """
    if len(image_xy) == 0 or len(ref_xy) == 0:
        return None
    # a crowded field: every k-th image source, so that ~_MAX_PAIRS pairs are formed
    area = max(float(np.prod(np.ptp(ref_xy, axis=0))), math.pi * radius ** 2)
    expected = len(image_xy) * len(ref_xy) * math.pi * radius ** 2 / area
    step = max(math.ceil(expected / _MAX_PAIRS), 1)
    image_xy = image_xy[::step]
    pairs = cKDTree(image_xy).query_ball_tree(cKDTree(ref_xy), r=radius)
    i = np.repeat(np.arange(len(pairs)), [len(p) for p in pairs])
    j = np.fromiter((k for p in pairs for k in p), dtype=int, count=len(i))
    if len(i) == 0:
        return None
    offsets = ref_xy[j] - image_xy[i]
    nbins = max(math.ceil(2 * radius / bin_size), 1)
    edges = np.linspace(-radius, radius, nbins + 1)
    counts, _, _ = np.histogram2d(offsets[:, 0], offsets[:, 1], bins=[edges, edges])
    # sum 2x2 neighbourhoods so that a peak split over a bin edge is not halved
    summed = counts[:-1, :-1] + counts[1:, :-1] + counts[:-1, 1:] + counts[1:, 1:] \
        if nbins > 1 else counts
    k, m = np.unravel_index(int(np.argmax(summed)), summed.shape)
    peak = int(summed[k, m])
    mean = max(float(np.mean(summed)), 1.0 / summed.size)
    significance = (peak - mean) / math.sqrt(mean)
    span = 2 if nbins > 1 else 1
    lo_x, hi_x = edges[k], edges[k + span]
    lo_y, hi_y = edges[m], edges[m + span]
    inside = ((offsets[:, 0] >= lo_x) & (offsets[:, 0] <= hi_x)
              & (offsets[:, 1] >= lo_y) & (offsets[:, 1] <= hi_y))
    centre = np.mean(offsets[inside], axis=0)
    for _ in range(2):  # re-centre on the pairs within one bin of the estimate
        near = np.hypot(*(offsets - centre).T) <= bin_size
        centre = np.mean(offsets[near], axis=0)
    return centre, peak, significance


def diagnosis_margin(reach: float | None) -> float:
    """How far (arcsec) beyond an image's footprint `explain_few_matches` wants the
    reference: the offset histogram's radius (0 for an unbounded matcher)."""
    if reach is None or not math.isfinite(reach):
        return 0.0
    return max(3.0 * reach, reach + 10.0)


def _inside(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Which points lie inside a simple polygon (even-odd rule)."""
    x, y = points[:, 0], points[:, 1]
    result = np.zeros(len(points), dtype=bool)
    px, py = polygon[:, 0], polygon[:, 1]
    for k in range(len(polygon)):
        x0, y0, x1, y1 = px[k - 1], py[k - 1], px[k], py[k]
        crosses = (y0 > y) != (y1 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            at = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
        result ^= crosses & (x < at)
    return result


def explain_few_matches(image_xy: np.ndarray, ref_xy: np.ndarray, footprint: np.ndarray,
                        n_matched: int, minobj: int, reach: float | None,
                        tolerance: float | None) -> str:
    """What limited a match to fewer than ``minobj`` pairs, and what to change.

    Parameters
    ----------
    image_xy : ndarray, shape (n, 2)
        The image's sources (arcsec, shared tangent plane).
    ref_xy : ndarray, shape (m, 2)
        The reference sources around the image's footprint, out to a margin
        wider than the matcher's reach (a few times it).
    footprint : ndarray, shape (k, 2)
        The image's footprint polygon (same plane).
    n_matched : int
        Pairs the matcher found.
    minobj : int
        ``align.minobj``.
    reach : float or None
        The matcher's search reach (arcsec; search radius plus any user offset);
        None: unbounded.
    tolerance : float or None
        The matcher's match tolerance (arcsec), for the offset histogram's bins.

    Returns
    -------
    str
        One sentence starting with the cause (``no overlap``, ``search radius``,
        ``too few sources``, ``minobj``), then what to change.
    """
    image_xy = np.asarray(image_xy, float).reshape(-1, 2)
    ref_xy = np.asarray(ref_xy, float).reshape(-1, 2)
    n_image = len(image_xy)
    n_ref_in = int(np.count_nonzero(_inside(ref_xy, np.asarray(footprint, float))))
    if n_image == 0 or len(ref_xy) == 0:
        return ("no overlap: " + ("the image has no sources" if n_image == 0 else
                                  "no reference source lies near the image's footprint")
                + "; check its WCS, or align it together with an image that overlaps both")
    if reach is not None and math.isfinite(reach):
        radius = diagnosis_margin(reach)
        bin_size = max(2.0 * (tolerance or 0.25), 0.2)
        peak = offset_peak(image_xy, ref_xy, radius, bin_size)
        if peak is not None:
            offset, count, significance = peak
            distance = float(np.hypot(*offset))
            if (count >= _MIN_PEAK and significance >= _MIN_SIGNIFICANCE
                    and distance > reach):
                return (f"search radius: the catalogs line up at an offset of "
                        f"({offset[0]:.2f}\", {offset[1]:.2f}\") = {distance:.2f}\" ({count} "
                        f"pairs, {significance:.0f} sigma), beyond the matcher's search reach "
                        f"of {reach:.2f}\"; raise the search radius to at least "
                        f"{math.ceil(distance * 1.2 * 10) / 10:g}\" (hist2d: "
                        "matcher.params.searchrad, or 'auto'), or give the offset as "
                        "matcher.params.xoffset/yoffset")
    if n_image < minobj or n_ref_in < minobj:
        return (f"too few sources: the image has {n_image} sources and {n_ref_in} reference "
                f"sources lie in its footprint, fewer than minobj={minobj}; detect more "
                "(lower detector.params.snr_threshold, raise or unset "
                "detector.params.brightest) or lower align.minobj")
    return (f"minobj: {n_matched} matched of {n_image} image and {n_ref_in} reference "
            f"sources in the footprint, fewer than minobj={minobj}; lower align.minobj to "
            f"{max(n_matched, 1)} if a fit of so few is acceptable, or widen the match "
            "(matcher.params.tolerance, or add a fallback matcher to align.fallback)")
