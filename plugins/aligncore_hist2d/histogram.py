"""Initial offset from a 2D histogram of pair offsets, with a significance.

Bins are one pixel (``bin_size`` in the unit of the positions). Every pair
(image source, reference source) whose offset ``ref - image`` lies in the box
``|dx|, |dy| <= r + 0.5`` is found on a grid of cells (`aligncore_hist2d.grid`;
never an N x M array; KD-trees count and refuse absurd radii) and binned in
``2R + 1`` unit bins per axis centred on the integer offsets ``-R .. R``
(``R = ceil(r)``). Bin ``k`` therefore means
offset ``k - R``: there is no bias when ``r`` is not an integer (tweakwcs'
``idx * pscale - searchrad`` is off by up to one bin in that case).

The peak is located with a quadratic surface fit in a 5 x 5 box (falling back
to the centroid of the 3 x 3 box, or the bin itself), then refined with the
mean of the *unbinned* pair offsets near it, so the result is not quantised.

Significance: the background per bin ``lam`` is estimated from the bins away
from the peak; the peak count is the largest 2 x 2 sum containing the peak bin
(a real peak can straddle bins). The false-alarm probability is the chance that
any of the ``(2R)^2`` 2 x 2 windows of a pure Poisson(4 lam) background
reaches that count; ``significance`` is its Gaussian-equivalent in sigma.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree
from scipy.special import gammaln, ndtri_exp, pdtrc, xlogy

from aligncore import MatchError
from aligncore_hist2d import pairing
from aligncore_hist2d.grid import candidate_pairs
from aligncore_hist2d.pairing import check_pair_count, make_tree

__all__ = ["MAX_ALTERNATIVES", "MAX_BINS", "MIN_ALTERNATIVE_COUNTS", "HistogramPeak",
           "false_alarm", "find_offset", "pair_offsets"]

MAX_BINS = 4001
"""Most histogram bins per axis (a search radius of 2000 pixels); more is refused."""

_REFINE_RADIUS = 1.5  # pixels around the binned peak used for the unbinned refinement
_REFINE_ITER = 3
MAX_ALTERNATIVES = 3
"""How many further histogram peaks `find_offset` reports."""
MIN_ALTERNATIVE_COUNTS = 4
"""Fewest pairs (2 x 2 window) for a further peak to be reported."""


@dataclass(frozen=True)
class HistogramPeak:
    """The histogram peak and how much to trust it.

    Attributes
    ----------
    offset : ndarray, shape (2,)
        ``ref - image`` offset (refined, not quantised), in the unit of the positions.
    binned : ndarray, shape (2,)
        Sub-bin peak position from the histogram alone.
    method : str
        ``'quadratic'``, ``'centroid'``, ``'bin'`` or ``'none'`` (empty histogram).
    n_pairs : int
        Pairs in the histogram.
    peak_counts : int
        Largest 2 x 2 sum containing the peak bin.
    background : float
        Estimated background counts per bin.
    false_alarm : float
        Probability that a pure background gives such a peak somewhere.
    significance : float
        Gaussian-equivalent significance of the peak (sigma, >= 0).
    peak_ratio : float
        Peak bin count over the mean of the other non-zero bins.
    edge : bool
        The peak is in the outermost ring of bins (the true offset may lie
        beyond the search radius).
    radius : float
        Search radius, in the unit of the positions.
    warnings : list of str
    alternatives : list of ndarray
        The next peaks, strongest first (offsets, refined like ``offset``): local
        maxima of the 2 x 2 window counts at least two bins from every stronger
        peak, with at least `MIN_ALTERNATIVE_COUNTS` pairs.
    """

    offset: np.ndarray
    binned: np.ndarray
    method: str
    n_pairs: int
    peak_counts: int
    background: float
    false_alarm: float
    significance: float
    peak_ratio: float
    edge: bool
    radius: float
    warnings: list[str] = field(default_factory=list)
    alternatives: list[np.ndarray] = field(default_factory=list)


def pair_offsets(
    image_xy: np.ndarray,
    ref_xy: np.ndarray,
    half_width: float,
    *,
    image_tree: cKDTree | None = None,
    ref_tree: cKDTree | None = None,
) -> np.ndarray:
    """Offsets ``ref - image`` of every pair within a square of ``half_width``.

    Parameters
    ----------
    image_xy, ref_xy : ndarray, shape (n, 2) and (m, 2)
    half_width : float
        Pairs with ``|dx| <= half_width`` and ``|dy| <= half_width`` are kept.
    image_tree, ref_tree : cKDTree, optional
        Trees already built on ``image_xy`` and ``ref_xy``, used only when the
        cell grid would give more than ``MAX_PAIRS`` candidates.

    Returns
    -------
    ndarray, shape (k, 2)
    """
    if len(image_xy) == 0 or len(ref_xy) == 0:
        return np.zeros((0, 2))
    cand = (candidate_pairs(image_xy, ref_xy, half_width, pairing.MAX_PAIRS)
            if math.isfinite(half_width) else None)
    if cand is not None:
        ii, jj = cand
        dx = ref_xy[jj, 0] - image_xy[ii, 0]
        dy = ref_xy[jj, 1] - image_xy[ii, 1]
        keep = (np.abs(dx) <= half_width) & (np.abs(dy) <= half_width)
        return np.column_stack([dx[keep], dy[keep]])
    # Too many candidates for the grid: count (and refuse) them with the trees.
    tree_img = image_tree if image_tree is not None else make_tree(image_xy)
    tree_ref = ref_tree if ref_tree is not None else make_tree(ref_xy)
    check_pair_count(tree_img, tree_ref, half_width, "2D histogram", p=np.inf)
    pairs = tree_img.sparse_distance_matrix(
        tree_ref, half_width, p=np.inf, output_type="ndarray"
    )
    return ref_xy[pairs["j"]] - image_xy[pairs["i"]]


def _quadratic_design(ny: int, nx: int) -> np.ndarray:
    """Design matrix of a 2D quadratic over an ``ny x nx`` box centred on its middle bin."""
    cy, cx = ny // 2, nx // 2
    yy, xx = np.mgrid[-cy : ny - cy, -cx : nx - cx]
    x, y = xx.ravel().astype(float), yy.ravel().astype(float)
    return np.column_stack([np.ones_like(x), x, y, x * y, x * x, y * y])


_QUADRATIC_5X5 = np.linalg.pinv(_quadratic_design(5, 5))


def _quadratic_vertex(box: np.ndarray) -> tuple[float, float] | None:
    """Vertex of ``c0 + c1 x + c2 y + c3 x y + c4 x^2 + c5 y^2`` fitted to ``box``.

    ``box`` is centred on the maximum; returns (x, y) relative to the centre or
    None when the fit is not a maximum inside the box.
    """
    ny, nx = box.shape
    if ny * nx < 6:
        return None
    cy, cx = ny // 2, nx // 2
    if (ny, nx) == (5, 5):
        coef = _QUADRATIC_5X5 @ box.ravel().astype(float)  # the same least squares, solved once
    else:
        coef, *_ = np.linalg.lstsq(_quadratic_design(ny, nx), box.ravel().astype(float),
                                   rcond=None)
    _c0, c1, c2, c3, c4, c5 = coef
    det = 4.0 * c4 * c5 - c3 * c3
    if not (det > 0 and c4 < 0 and c5 < 0):
        return None
    vx = (c2 * c3 - 2.0 * c5 * c1) / det
    vy = (c1 * c3 - 2.0 * c2 * c4) / det
    if not (-cx <= vx <= nx - 1 - cx and -cy <= vy <= ny - 1 - cy):
        return None
    return float(vx), float(vy)


def _binned_peak(hist: np.ndarray, iy: int, ix: int) -> tuple[np.ndarray, str]:
    """Sub-bin peak position (bin coordinates) around the maximum bin ``(iy, ix)``."""
    ny, nx = hist.shape
    if np.count_nonzero(hist) == 1:
        return np.array([ix, iy], dtype=float), "bin"
    if iy in (0, ny - 1) or ix in (0, nx - 1):
        return np.array([ix, iy], dtype=float), "bin"
    if 2 <= iy <= ny - 3 and 2 <= ix <= nx - 3:
        vertex = _quadratic_vertex(hist[iy - 2 : iy + 3, ix - 2 : ix + 3])
        if vertex is not None:
            return np.array([ix + vertex[0], iy + vertex[1]]), "quadratic"
    box = hist[iy - 1 : iy + 2, ix - 1 : ix + 2].astype(float)
    yy, xx = np.mgrid[-1:2, -1:2]
    total = box.sum()
    return np.array([ix + (box * xx).sum() / total, iy + (box * yy).sum() / total]), "centroid"


def false_alarm(k: int, mu: float, trials: int) -> tuple[float, float]:
    """Chance that any of ``trials`` Poisson(``mu``) counts reaches ``k``, and its sigma.

    Returns
    -------
    fap : float
        False-alarm probability.
    sigma : float
        Gaussian-equivalent significance (one-sided, >= 0).
    """
    log_p = _log_tail(k, mu)
    if log_p < -30.0:
        log_fap = math.log(max(trials, 1)) + log_p
    else:
        p = min(math.exp(log_p), 1.0 - 1e-16)
        log_fap = math.log(max(-math.expm1(max(trials, 1) * math.log1p(-p)), 1e-300))
    log_fap = min(log_fap, 0.0)
    sigma = max(float(-ndtri_exp(log_fap)), 0.0) if log_fap < 0 else 0.0
    return math.exp(log_fap), sigma


def _log_tail(k: int, mu: float) -> float:
    """``log P(X >= k)`` for ``X ~ Poisson(mu)``, finite even far in the tail."""
    if k <= 0:
        return 0.0
    # scipy.special directly: scipy.stats.poisson computes the same, 50x slower per call.
    p = float(pdtrc(k - 1, mu))  # P(X > k - 1)
    log_p = math.log(p) if p > 0 else -math.inf
    if math.isfinite(log_p) or k <= mu:
        return log_p
    # P(X >= k) = pmf(k) (1 + mu/(k+1) + ...) <= pmf(k) / (1 - mu/(k+1)): tight for k >> mu.
    log_pmf = float(xlogy(k, mu) - gammaln(k + 1.0)) - mu
    return log_pmf - math.log1p(-mu / (k + 1.0))


def _significance(hist: np.ndarray, iy: int, ix: int) -> tuple[int, float, float, float]:
    """Peak count, background per bin, false-alarm probability and sigma."""
    ny, nx = hist.shape
    total = float(hist.sum())
    # Largest 2x2 window containing the peak bin.
    k = 0
    for y0 in (iy - 1, iy):
        for x0 in (ix - 1, ix):
            if 0 <= y0 and y0 + 1 < ny and 0 <= x0 and x0 + 1 < nx:
                k = max(k, int(hist[y0 : y0 + 2, x0 : x0 + 2].sum()))
    if k == 0:  # histogram narrower than 2 bins
        k = int(hist[iy, ix])
    near = hist[max(iy - 1, 0) : iy + 2, max(ix - 1, 0) : ix + 2]
    n_far = hist.size - near.size
    # One pseudo-count keeps a background-free histogram from looking infinitely sure.
    lam = (total - float(near.sum()) + 1.0) / (n_far + 1.0)
    windows = max((ny - 1) * (nx - 1), 1)
    fap, sigma = false_alarm(k, 4.0 * lam, windows)
    return k, lam, fap, sigma


def _bins(radius: float, bin_size: float) -> tuple[int, int]:
    """Half-width ``R`` (bins) and bins per axis ``2R + 1`` of the histogram.

    Raises
    ------
    MatchError
        The radius or bin size is not a positive finite number, or the histogram
        would need more than `MAX_BINS` bins per axis.
    """
    if not (math.isfinite(radius) and math.isfinite(bin_size) and radius > 0 and bin_size > 0):
        raise MatchError(f"2D histogram: search radius {radius} and bin size {bin_size} must be "
                         "positive and finite")
    r = radius / bin_size
    if 2 * r + 1 > MAX_BINS:
        raise MatchError(f"2D histogram: a search radius of {radius:.4g} is {r:.4g} bins of "
                         f"{bin_size:.4g} (the pixel scale); at most {MAX_BINS // 2} bins are "
                         "allowed: check the pixel scale of the WCS or lower searchrad")
    big_r = max(math.ceil(r - 1e-9), 1)
    return big_r, 2 * big_r + 1


def find_offset(
    image_xy: np.ndarray,
    ref_xy: np.ndarray,
    radius: float,
    *,
    bin_size: float = 1.0,
    image_tree: cKDTree | None = None,
    ref_tree: cKDTree | None = None,
) -> HistogramPeak:
    """Most common offset ``ref - image`` within ``radius``.

    Parameters
    ----------
    image_xy, ref_xy : ndarray, shape (n, 2) and (m, 2)
        Positions (pixels, or any unit with ``bin_size`` one pixel in it).
    radius : float
        Search radius ``r`` (> 0): offsets up to ``r`` in x and y are considered.
    bin_size : float, optional
        Histogram bin size (one pixel) in the unit of the positions.
    image_tree, ref_tree : cKDTree, optional
        Trees already built on ``image_xy`` and ``ref_xy``.

    Returns
    -------
    HistogramPeak
        Offsets and radius in the unit of the positions; counts per bin.

    Raises
    ------
    MatchError
        The histogram or the list of pairs would be unreasonably large (see
        `MAX_BINS` and `aligncore_hist2d.pairing.MAX_PAIRS`).
    """
    big_r, nbin = _bins(radius, bin_size)
    r = radius / bin_size
    d = pair_offsets(
        image_xy, ref_xy, (r + 0.5) * bin_size, image_tree=image_tree, ref_tree=ref_tree
    )
    d /= bin_size
    if d.shape[0] == 0:
        return HistogramPeak(
            offset=np.zeros(2),
            binned=np.zeros(2),
            method="none",
            n_pairs=0,
            peak_counts=0,
            background=0.0,
            false_alarm=1.0,
            significance=0.0,
            peak_ratio=0.0,
            edge=False,
            radius=radius,
            warnings=["2D histogram is empty: no pair of sources within the search radius"],
        )
    # Column by column: reductions over axis 0 of an (n, 2) array are many times slower.
    dx, dy = d[:, 0], d[:, 1]
    ix_all = np.floor(dx + (big_r + 0.5)).astype(np.int64)
    iy_all = np.floor(dy + (big_r + 0.5)).astype(np.int64)
    for i_all in (ix_all, iy_all):
        np.minimum(i_all, nbin - 1, out=i_all)
        np.maximum(i_all, 0, out=i_all)
    hist = np.bincount(iy_all * nbin + ix_all, minlength=nbin * nbin).reshape(nbin, nbin)
    iy, ix = divmod(int(np.argmax(hist)), nbin)
    binned, method = _binned_peak(hist, iy, ix)
    binned = binned - big_r
    offset = _refined(dx, dy, ix_all, iy_all, (iy, ix), binned)
    k, lam, fap, sigma = _significance(hist, iy, ix)
    others = hist.ravel()[hist.ravel() > 0]
    peak_bin = int(hist[iy, ix])
    mean_other = (others.sum() - peak_bin) / max(others.size - 1, 1)
    ratio = peak_bin / mean_other if mean_other > 0 else math.inf
    # Within one pixel of the search box: the true offset may lie beyond it.
    on_rim = max(abs(iy - big_r), abs(ix - big_r)) >= big_r
    edge = bool(on_rim or np.max(np.abs(offset)) > r - 1.0)
    warnings = []
    if edge:
        warnings.append(
            f"2D histogram peak at ({offset[0]:.2f}, {offset[1]:.2f}) px is on the edge of the "
            f"search box (radius {r:.2f} px): the true offset may be larger"
        )
    alternatives = [alt * bin_size for alt in _next_peaks(hist, (iy, ix), big_r, dx, dy,
                                                          ix_all, iy_all)]
    return HistogramPeak(
        offset=offset * bin_size,
        binned=binned * bin_size,
        method=method,
        n_pairs=int(d.shape[0]),
        peak_counts=k,
        background=lam,
        false_alarm=fap,
        significance=sigma,
        peak_ratio=float(ratio),
        edge=edge,
        radius=radius,
        warnings=warnings,
        alternatives=alternatives,
    )


def _refined(dx: np.ndarray, dy: np.ndarray, ix_all: np.ndarray, iy_all: np.ndarray,
             peak: tuple[int, int], start: np.ndarray) -> np.ndarray:
    """A peak refined with the unbinned offsets near it (no quantisation), using only
    the pairs in the bins around the peak bin ``(iy, ix)``."""
    iy, ix = peak
    reach = math.ceil(_REFINE_RADIUS + 1.0)
    box = (np.abs(ix_all - ix) <= reach) & (np.abs(iy_all - iy) <= reach)
    local_x, local_y = dx[box], dy[box]
    offset = np.asarray(start, dtype=float).copy()
    for _ in range(_REFINE_ITER):
        near = np.hypot(local_x - offset[0], local_y - offset[1]) <= _REFINE_RADIUS
        n_near = int(np.count_nonzero(near))
        if n_near == 0:
            break
        offset = np.array([local_x[near].sum() / n_near, local_y[near].sum() / n_near])
    return offset


def _next_peaks(hist: np.ndarray, peak: tuple[int, int], big_r: int, dx: np.ndarray,
                dy: np.ndarray, ix_all: np.ndarray, iy_all: np.ndarray) -> list[np.ndarray]:
    """Up to `MAX_ALTERNATIVES` further peaks (offsets in bins), strongest first.

    Peaks are ranked by their 2 x 2 window counts; a window within two bins of a
    stronger peak (the main one included) is the same peak's shoulder and skipped.
    """
    if min(hist.shape) < 2:
        return []
    windows = hist[:-1, :-1] + hist[1:, :-1] + hist[:-1, 1:] + hist[1:, 1:]
    flat_windows = windows.ravel()
    top = min(flat_windows.size, 256)  # enough for a few peaks and their shoulders
    best = np.argpartition(-flat_windows, top - 1)[:top]
    order = best[np.lexsort((best, -flat_windows[best]))]
    taken = [np.array(peak, dtype=float)]
    found: list[np.ndarray] = []
    for flat in order:
        wy, wx = divmod(int(flat), windows.shape[1])
        if windows[wy, wx] < MIN_ALTERNATIVE_COUNTS or len(found) >= MAX_ALTERNATIVES:
            break
        block = hist[wy:wy + 2, wx:wx + 2]
        by, bx = divmod(int(np.argmax(block)), 2)
        cell = np.array([wy + by, wx + bx], dtype=float)
        if min(float(np.max(np.abs(cell - t))) for t in taken) <= 2:
            continue
        taken.append(cell)
        start = np.array([cell[1] - big_r, cell[0] - big_r])
        found.append(_refined(dx, dy, ix_all, iy_all, (int(cell[0]), int(cell[1])), start))
    return found
