"""Fast background mesh with photutils ``Background2D`` semantics.

Differences from photutils, by design:

- unless ``exact``, the clipped statistics of a box are computed on a
  regular sub-grid of its pixels (every ``stride``-th row and column, at
  least ~32000 pixels per box: every other row and column of a 400-pixel
  box) instead of all of them; the median then differs from the full-box
  value by ~0.5% of the noise, which moves the shape statistics of sources
  at the image edge by up to a few 1e-4 (with ``exact`` the catalogs agree
  with photutils' to ~1e-6);
- the clipping runs in rank space on all boxes at once, so every iteration
  costs a few vector operations instead of a median over the image; the
  boxes are not sorted whole: a pilot (every ~10th sample) predicts each
  box's clipped median and standard deviation, the values within 2.5 predicted
  standard deviations of the median (inside every clipping bound) are only
  counted and summed, and only the tails that clipping trims and a narrow
  band around the predicted medians are sorted (~20 % of a 64 px box); a box
  whose clipping leaves what the prediction covers is clipped again with all
  its values sorted, so the statistics are exactly those of sorting
  everything;
- the full-resolution background is never stored: the cubic-spline zoom is
  linear in the mesh and separable, so ``background = Ay @ mesh @ Ax.T`` is
  evaluated for a block of rows at a time (``rows``) or at given pixels, with
  ``Ay = Wy @ Py`` (`zoom_taps`: the spline prefilter, then at most 4
  weights per image row, the same 4 coefficient rows over a whole box).

Everything else follows ``Background2D``: 3-sigma clipping (median centre,
population standard deviation, at most 10 iterations), a box is excluded
when at most ``(1 - exclude_percentile / 100)`` of a full box's pixels
remain after masking and clipping, excluded boxes are filled by inverse
distance weighting of the 10 nearest good boxes, the mesh is median filtered
(NaN outside), zoomed with ``scipy.ndimage.zoom(order=3, mode="reflect",
grid_mode=True)`` and clipped to the mesh's range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise

import numpy as np
from scipy import ndimage

from aligncore_daofind.background import (
    BackgroundError,
    BackgroundEstimate,
    effective_box,
    single_box_message,
)

__all__ = ["MeshBackground", "clipped_stats", "mesh_background"]

TARGET_SAMPLES = 32768
"""Aim for at least this many sampled pixels per box."""

_CHUNK_SAMPLES = 1 << 20
"""Samples given to one `clipped_stats` call (boxes are never split)."""

_ROW_SUM_ELEMENTS = 1 << 18
"""Values converted to float64 at a time by `_row_sums` (2 MB)."""



@dataclass
class MeshBackground(BackgroundEstimate):
    """A background represented by its mesh and the separable zoom operators."""

    mesh: np.ndarray | None = None
    rms_mesh: np.ndarray | None = None
    zoom_y: np.ndarray | None = None
    zoom_x: np.ndarray | None = None

    def __post_init__(self) -> None:
        assert self.mesh is not None and self.rms_mesh is not None
        self._constant = float(np.ptp(self.mesh)) == 0.0
        self._rms_constant = float(np.ptp(self.rms_mesh)) == 0.0
        if not (self._constant and self._rms_constant):
            assert self.zoom_y is not None and self.zoom_x is not None
            self._prefilter, self._taps, self._weights64 = zoom_taps(
                self.mesh.shape[0], self.box_size[0], len(self.zoom_y))
            # float32, column-major: OpenBLAS multiplies (rows x 4) @ (4 x nx) 1.6x
            # faster so
            self._weights = np.asfortranarray(self._weights64, dtype=np.float32)
            self._x_zoom = zoom_taps(self.mesh.shape[1], self.box_size[1], len(self.zoom_x))
        self._coeff: dict[str, np.ndarray] = {}
        self._range = (float(self.mesh.min()), float(self.mesh.max()))
        self._rms_range = (float(self.rms_mesh.min()), float(self.rms_mesh.max()))

    def _zoom_rows(self, which: str, mesh: np.ndarray, start: int, stop: int,
                   lims: tuple[float, float]) -> np.ndarray:
        """Rows ``start:stop`` of ``zoom_y @ mesh @ zoom_x.T`` clipped to ``lims``, from
        the spline coefficients of the mesh's columns: each image row combines at most 4
        of them, with the same 4 over a whole box (one small product per box).

        The interpolation weights of a cubic B-spline are >= 0 and sum to 1: a row is a
        convex combination of its 4 coefficient rows, so where those lie inside ``lims``
        (with a margin for rounding) clipping would change nothing and is skipped."""
        coeff = self._coeff.get(which)
        if coeff is None:
            # the columns zoomed by their own 4 taps (``zoom_x = W_x @ P_x``): a gather
            # instead of a (mesh x mesh) @ (mesh x nx) product, which BLAS spreads over
            # threads (30 ms at 2048 px with 64 px boxes on a loaded 2-core machine)
            prefilter_x, taps_x, weights_x = self._x_zoom
            small = (self._prefilter @ mesh) @ prefilter_x.T
            weights_x = weights_x.astype(np.float32).astype(np.float64)  # as the rows'
            coeff = np.einsum("ijk,jk->ij", small[:, taps_x], weights_x)
            coeff = self._coeff[which] = coeff.astype(np.float32)
            self._coeff[which + ":inside"] = _rows_inside(coeff, lims, self._weights)
        inside = self._coeff[which + ":inside"]
        taps, weights = self._taps[start:stop], self._weights[start:stop]
        out = np.empty((stop - start, coeff.shape[1]), dtype=np.float32)
        change = np.flatnonzero(np.any(taps[1:] != taps[:-1], axis=1)) + 1
        edges = [0, *change.tolist(), stop - start]
        for a, b in pairwise(edges):
            # (rows x 4) @ (4 x nx): too small for BLAS to start threads, 2.5x faster
            # than einsum
            np.matmul(weights[a:b], coeff[taps[a]], out=out[a:b])
            if not inside[taps[a]].all():
                np.clip(out[a:b], *lims, out=out[a:b])
        return out

    def rows(self, start: int, stop: int) -> np.ndarray | float:
        if self._constant:
            return self._range[0]
        assert self.mesh is not None
        return self._zoom_rows("background", self.mesh, start, stop, self._range)

    def rms_rows(self, start: int, stop: int) -> np.ndarray | float:
        if self._rms_constant:
            return self._rms_range[0]
        assert self.rms_mesh is not None
        return self._zoom_rows("rms", self.rms_mesh, start, stop, self._rms_range)

    def _at(self, mesh: np.ndarray, lims: tuple[float, float], y: np.ndarray, x: np.ndarray):
        assert self.zoom_y is not None and self.zoom_x is not None
        y = np.asarray(y, dtype=np.intp)
        x = np.asarray(x, dtype=np.intp)
        # ``zoom_y[y] @ mesh`` as ``W_y[y] @ (P_y @ mesh)``: 4 rows of the prefiltered
        # mesh per pixel instead of a (n x mesh) @ (mesh x mesh) product, then one
        # dense row of ``zoom_x`` per pixel
        rows = np.einsum("ik,ikj->ij", self._weights64[y], (self._prefilter @ mesh)[self._taps[y]])
        values = np.einsum("ij,ij->i", rows, self.zoom_x[x])
        return np.clip(values, *lims)

    def rms_at(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        if self._rms_constant:
            return np.full(np.shape(y), self._rms_range[0])
        return self._at(self.rms_mesh, self._rms_range, y, x)

    def background_at(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        if self._constant:
            return np.full(np.shape(y), self._range[0])
        assert self.mesh is not None
        return self._at(self.mesh, self._range, y, x)


class _RangeSums:
    """Sums and sums of squares of ``values[i, lo:hi]`` for rows sorted in increasing
    order (NaNs last), from running sums over each row's first and last ``width``
    valid values: sigma clipping only ever trims the tails of a sorted row, so the
    running sums never need to cover its middle."""

    def __init__(self, values: np.ndarray, nvalid: np.ndarray) -> None:
        nrows, ncols = values.shape
        self.values, self.nvalid = values, nvalid
        self.width = width = max(1, min(ncols, ncols // 8))
        zero = np.zeros((nrows, 1))
        head = values[:, :width].astype(np.float64)
        head[np.arange(width)[None, :] >= nvalid[:, None]] = 0.0
        position = nvalid[:, None] - 1 - np.arange(width)[None, :]  # last valid first
        tail = np.take_along_axis(values, np.maximum(position, 0), axis=1).astype(np.float64)
        tail[position < 0] = 0.0
        self.head = np.concatenate([zero, np.cumsum(head, axis=1)], axis=1)
        self.head2 = np.concatenate([zero, np.cumsum(head * head, axis=1)], axis=1)
        self.tail = np.concatenate([zero, np.cumsum(tail, axis=1)], axis=1)
        self.tail2 = np.concatenate([zero, np.cumsum(tail * tail, axis=1)], axis=1)
        _, self.total, self.total2 = _row_sums(values)

    def __call__(self, rows: np.ndarray, lo: np.ndarray,
                 hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cut_hi = self.nvalid[rows] - hi
        near = (lo <= self.width) & (cut_hi <= self.width)
        lo_n, cut_n = np.where(near, lo, 0), np.where(near, cut_hi, 0)
        total = self.total[rows] - self.head[rows, lo_n] - self.tail[rows, cut_n]
        total2 = self.total2[rows] - self.head2[rows, lo_n] - self.tail2[rows, cut_n]
        for k in np.flatnonzero(~near):  # clipped deeper than the running sums reach
            part = self.values[rows[k], lo[k]:hi[k]].astype(np.float64)
            total[k], total2[k] = part.sum(), part @ part
        return total, total2


def _row_sums(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Number, sum and sum of squares (float64) of each row's non-NaN values."""
    nrows, ncols = values.shape
    total, total2 = np.empty(nrows), np.empty(nrows)
    # float64 copies of a few rows at a time (they stay in cache): casting inside the
    # reductions (``dtype=np.float64``) is ~40 % slower
    step = max(1, _ROW_SUM_ELEMENTS // max(ncols, 1))
    for i in range(0, nrows, step):
        part = values[i : i + step].astype(np.float64)
        total[i : i + step] = part.sum(axis=1)
        total2[i : i + step] = np.square(part, out=part).sum(axis=1)
    nvalid = np.full(nrows, ncols, dtype=np.intp)
    masked = np.flatnonzero(np.isnan(total))  # NaN sums: rows with masked values
    if masked.size:
        rows = values[masked]
        nan = np.isnan(rows)
        nvalid[masked] = ncols - np.count_nonzero(nan, axis=1)
        rows[nan] = 0.0
        total[masked] = rows.sum(axis=1, dtype=np.float64)
        total2[masked] = np.einsum("ij,ij->i", rows, rows, dtype=np.float64)
    return nvalid, total, total2


class _SortedRows:
    """Rows of increasing float32 values (NaNs last) searched all at once.

    Each value becomes an integer key ``row << 32 | k`` with ``k`` increasing with
    the value, so that one `numpy.searchsorted` on the flattened keys counts the
    values below a bound in every row.
    """

    def __init__(self, values: np.ndarray) -> None:
        nrows, self.width = values.shape
        self.values = None if values.dtype == np.float32 else values
        self.offsets = np.arange(nrows, dtype=np.int64) << 32
        if self.values is not None:
            return  # other dtypes: one search per row
        # +0.0 turns -0.0 into 0.0: both sort as equal, their keys must be too
        bits = (values + np.float32(0.0)).view(np.uint32).astype(np.int64)
        keys = np.where(bits >= _SIGN, _MASK32 - bits, bits + _SIGN)
        keys[np.isnan(values)] = _MASK32
        self.keys = (keys + self.offsets[:, None]).reshape(-1)

    def count(self, row: np.ndarray, bound: np.ndarray,
              inclusive: bool | np.ndarray) -> np.ndarray:
        """How many values of rows ``row`` are ``< bound`` (``<= bound`` where
        ``inclusive``), one bound per entry of ``row``."""
        bound = np.asarray(bound, dtype=np.float64)
        inclusive = np.broadcast_to(inclusive, bound.shape)
        if self.width == 0:
            return np.zeros(len(bound), dtype=np.intp)
        if self.values is not None:
            return np.array(
                [np.searchsorted(self.values[i], b, side="right" if inc else "left")
                 if not np.isnan(b) else 0
                 for i, b, inc in zip(row, bound, inclusive, strict=True)],
                dtype=np.intp,
            )
        # v <= b exactly when v < the next float32 after b rounded down: one key more
        b32 = np.where(inclusive, _bound_in_float32(bound, up=False),
                       _bound_in_float32(bound, up=True))
        bits = b32.view(np.uint32).astype(np.int64)
        keys = np.where(bits >= _SIGN, _MASK32 - bits, bits + _SIGN) + inclusive
        keys[np.isnan(b32)] = 0  # nothing is below a NaN bound
        found = np.searchsorted(self.keys, keys + self.offsets[row], side="left")
        return found - row * self.width

    def counts(self, rows: np.ndarray, below: np.ndarray,
               above: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """How many values of rows ``rows`` are ``< below`` and how many ``<= above``."""
        n = len(below)
        both = self.count(np.concatenate([rows, rows]), np.concatenate([below, above]),
                          np.repeat(np.array([False, True]), n))
        return both[:n], both[n:]


_SIGN = np.int64(1 << 31)
_MASK32 = np.int64((1 << 32) - 1)


def _bound_in_float32(bound: np.ndarray, up: bool) -> np.ndarray:
    """``bound`` rounded up (or down) to float32 (NaN stays NaN): for float32 values,
    ``v < b`` iff ``v < up(b)`` and ``v <= b`` iff ``v <= down(b)``."""
    rounded = bound.astype(np.float32) + np.float32(0.0)
    with np.errstate(invalid="ignore"):
        if up:
            moved = np.nextafter(rounded, np.float32(np.inf))
            return np.where(rounded < bound, moved, rounded) + np.float32(0.0)
        moved = np.nextafter(rounded, np.float32(-np.inf))
        return np.where(rounded > bound, moved, rounded) + np.float32(0.0)


class _SortedView:
    """Every row sorted: each rank, count and range sum is known."""

    def __init__(self, samples: np.ndarray) -> None:
        self.values = np.sort(samples, axis=1)  # NaNs go last
        self.nvalid = self.values.shape[1] - _count_true(np.isnan(self.values))
        self.sums = _RangeSums(self.values, self.nvalid)
        self.search = _SortedRows(self.values)

    def value_at(self, rows: np.ndarray, rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rank = np.minimum(np.maximum(rank, 0), self.values.shape[1] - 1)
        return self.values[rows, rank], np.ones(len(rank), dtype=bool)

    def bound_counts(self, rows: np.ndarray, below: np.ndarray, above: np.ndarray):
        lo, hi = self.search.counts(rows, below, above)
        return lo, hi, np.ones(len(below), dtype=bool)

    def range_sums(self, rows: np.ndarray, lo: np.ndarray, hi: np.ndarray):
        total, total2 = self.sums(rows, lo, hi)
        return total, total2, np.ones(len(lo), dtype=bool)


class _BandView:
    """Rows known only where sigma clipping looks at them.

    A pilot (a regular subset of each row, clipped exactly) predicts a *band*
    ``centre +- half_band`` holding the clipped medians and a *core*
    ``centre +- half_core`` inside every clipping bound. One pass over the rows, a
    few at a time (they stay in the CPU cache), sums the values and their squares
    (float64), counts the values below the band and copies out the values of the
    band and of the tails beyond the core; only these are sorted (~15 % of a 64 px
    box). Clipping only ever trims the tails and only the band can hold a median,
    so the core values are only counted and summed. A clipping bound inside the
    core or a median rank outside the band marks the row as failed (``ok`` false);
    `clipped_stats` then clips it again, so the results never depend on the
    prediction. Every order statistic is one of the values themselves.
    """

    def __init__(self, samples: np.ndarray, ok: np.ndarray, centre: np.ndarray,
                 half_band: np.ndarray, half_core: np.ndarray, trim: bool = True) -> None:
        nrows, ncols = samples.shape
        dtype = samples.dtype
        with np.errstate(invalid="ignore"):
            ok = ok & np.isfinite(centre) & (half_band >= 0) & (half_band < half_core)
        # the classes, in the samples' dtype: low tail < core_lo <= core <= core_hi <
        # high tail, band_lo <= band <= band_hi inside the core (nothing for rows not ok)
        core_lo = np.where(ok, centre - half_core, -np.inf).astype(dtype)
        core_hi = np.where(ok, centre + half_core, np.inf).astype(dtype)
        band_lo = np.where(ok, np.maximum(centre - half_band, core_lo), -np.inf).astype(dtype)
        band_hi = np.where(ok, np.minimum(centre + half_band, core_hi), -np.inf).astype(dtype)
        counts, n_below = np.empty(nrows, np.intp), np.empty(nrows, np.intp)
        total, total2 = np.empty(nrows), np.empty(nrows)
        chosen = []
        step = max(1, min(nrows, _CLASSIFY_ELEMENTS // max(ncols, 1)))
        picked, below, scratch = (np.empty((step, ncols), bool) for _ in range(3))
        wide = np.empty((step, ncols), np.float64)
        for i in range(0, nrows, step):
            part = slice(i, i + step)
            rows = samples[part]
            m = len(rows)
            p, b, t, w = picked[:m], below[:m], scratch[:m], wide[:m]
            with np.errstate(invalid="ignore"):  # NaN (masked) is in no class
                np.less(rows, core_lo[part, None], out=p)
                p |= np.greater(rows, core_hi[part, None], out=t)  # the tails
                np.less(rows, band_lo[part, None], out=b)
                np.less_equal(rows, band_hi[part, None], out=t)
                t ^= b  # the band (below it is a subset of t)
            p |= t
            n_below[part] = _count_true(b)
            counts[part] = _count_true(p)
            chosen.append(np.compress(p.reshape(-1), rows.reshape(-1)))
            np.copyto(w, rows)  # float64 copies: the squares are exact
            total[part] = w.sum(axis=1)
            total2[part] = np.square(w, out=w).sum(axis=1)
        nvalid = np.full(nrows, ncols, dtype=np.intp)
        for i in np.flatnonzero(np.isnan(total)):  # rows with masked values
            s = samples[i][~np.isnan(samples[i])].astype(np.float64)
            nvalid[i], total[i], total2[i] = s.size, s.sum(), s @ s
        ok &= np.isfinite(total) & np.isfinite(total2) & (counts <= ncols // 2)
        self.heavy = np.zeros(nrows, dtype=bool)
        if trim and nrows >= 32 and ok.any():
            # the 2 % of rows with the most values to sort (a bright star) are clipped
            # on their own, so that the others are not padded to their width
            self.heavy = ok & (counts > np.percentile(counts[ok], 98))
            ok &= ~self.heavy
        n_sel = np.where(ok, counts, 0)
        width = -(-int(n_sel.max(initial=0)) // 8) * 8  # a multiple of 8: `_count_true`
        values = np.full((nrows, width), np.nan, dtype=dtype)
        if width:
            flat = values.reshape(-1)
            for i, part in zip(range(0, nrows, step), chosen, strict=True):
                # this block's copied values, row after row: each kept row's to its row
                n = n_sel[i : i + step]
                kept = part[np.repeat(ok[i : i + step], counts[i : i + step])]
                start = np.arange(i, i + len(n)) * width - (np.cumsum(n) - n)
                flat[np.arange(kept.size) + np.repeat(start, n)] = kept
            values.sort(axis=1)  # NaN padding goes last
        with np.errstate(invalid="ignore"):
            n_low = _count_true(values < core_lo[:, None])
            n_high = _count_true(values > core_hi[:, None])
        self.ok, self.nvalid, self.total, self.total2 = ok, nvalid, total, total2
        self.values, self.n_sel, self.n_low, self.n_high = values, n_sel, n_low, n_high
        self.gap = np.where(ok, n_below - n_low, 0)  # core values below the band
        self.n_band = n_sel - n_low - n_high
        self.low, self.low_sums = _tail(values, np.zeros(nrows, np.intp), n_low, np.inf)
        self.high, self.high_sums = _tail(values, n_sel - n_high, n_high, -np.inf)
        self.core_lo, self.core_hi = core_lo.astype(np.float64), core_hi.astype(np.float64)

    def value_at(self, rows: np.ndarray, rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n_low, gap, n_band = self.n_low[rows], self.gap[rows], self.n_band[rows]
        high_start = self.nvalid[rows] - self.n_high[rows]
        skipped = self.nvalid[rows] - self.n_sel[rows]  # core values not copied
        in_low = rank < n_low
        in_band = (rank >= n_low + gap) & (rank < n_low + gap + n_band)
        in_high = rank >= high_start
        if self.values.shape[1] == 0:
            return np.full(len(rank), np.nan), np.zeros(len(rank), dtype=bool)
        index = np.where(in_low, rank, np.where(in_band, rank - gap, rank - skipped))
        index = np.minimum(np.maximum(index, 0), self.values.shape[1] - 1)
        return self.values[rows, index], in_low | in_band | in_high

    def bound_counts(self, rows: np.ndarray, below: np.ndarray, above: np.ndarray):
        # bounds beyond the core only cut into the tails
        with np.errstate(invalid="ignore"):
            n_lo = np.count_nonzero(self.low[rows] < below[:, None], axis=1)
            n_cut = np.count_nonzero(self.high[rows] > above[:, None], axis=1)
        ok = (below <= self.core_lo[rows]) & (above >= self.core_hi[rows])
        return n_lo, self.nvalid[rows] - n_cut, ok

    def range_sums(self, rows: np.ndarray, lo: np.ndarray, hi: np.ndarray):
        n_low, n_high = self.n_low[rows], self.n_high[rows]
        high_start = self.nvalid[rows] - n_high
        ok = (lo <= n_low) & (hi >= high_start)
        lo_c = np.minimum(np.maximum(lo, 0), n_low)
        hi_c = np.minimum(np.maximum(hi - high_start, 0), n_high)
        cut = self.low_sums[rows, lo_c] + self.high_sums[rows, n_high] - self.high_sums[rows, hi_c]
        return self.total[rows] - cut[:, 0], self.total2[rows] - cut[:, 1], ok


def _tail(values: np.ndarray, first: np.ndarray, count: np.ndarray,
          pad: float) -> tuple[np.ndarray, np.ndarray]:
    """``count`` sorted values of each row of ``values`` from column ``first``
    (left-aligned, padded with ``pad``) and the running sums of them and of their
    squares, shape ``(nrows, width + 1, 2)`` (``[:, k]``: of the first ``k``)."""
    nrows, ncols = values.shape
    width = int(count.max(initial=0))
    if width == 0:
        return np.zeros((nrows, 0), values.dtype), np.zeros((nrows, 1, 2))
    cols = np.arange(width)
    if not first.any():
        tail = values[:, :width].copy()
    else:
        index = np.minimum(first[:, None] + cols, ncols - 1) + (np.arange(nrows) * ncols)[:, None]
        tail = values.reshape(-1).take(index)
    outside = cols >= count[:, None]
    np.putmask(tail, outside, pad)
    part = tail.astype(np.float64)
    np.putmask(part, outside, 0.0)
    sums = np.zeros((nrows, width + 1, 2))
    np.cumsum(part, axis=1, out=sums[:, 1:, 0])
    np.cumsum(np.square(part, out=part), axis=1, out=sums[:, 1:, 1])
    return tail, sums


CORE_HALF_WIDTH = 2.5
"""Half width, in predicted standard deviations, of the part of each row that is only
counted and summed (the final clipping bounds are at ~3)."""

BAND_SIGMAS = 2.5
"""Half width of the sorted band around the predicted medians, in standard errors of
the pilot's median."""

RETRY_BAND_FACTOR = 3.0
"""The band is this much wider for the rows whose median fell outside it."""

_CLASSIFY_ELEMENTS = 1 << 17
"""Values `_BandView` classifies at a time (512 kB of float32: they stay in cache)."""


def _count_true(mask: np.ndarray) -> np.ndarray:
    """Number of true values per row of a 2D boolean array."""
    if (mask.shape[1] % 8 == 0 and mask.flags.c_contiguous
            and hasattr(np, "bitwise_count")):
        # eight flags per 64-bit word, counted by popcount: 3x count_nonzero on rows
        return np.bitwise_count(mask.view(np.uint64)).sum(axis=1, dtype=np.intp)
    return np.count_nonzero(mask, axis=1)


def _clip(view, nvalid: np.ndarray, sigma: float, maxiters: int):
    """Sigma clipping in rank space on a view of sorted rows; returns the median,
    standard deviation and count of the values left, the first median and a
    per-row flag false where the view could not answer.

    Each row is clipped until its bounds stop moving (or ``maxiters`` times); rows
    that have converged drop out of the iterations."""
    nrows = len(nvalid)
    lo = np.zeros(nrows, dtype=np.intp)
    hi = nvalid.astype(np.intp).copy()
    ok = np.ones(nrows, dtype=bool)

    def stats(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r_lo, r_hi = lo[rows], hi[rows]
        n = r_hi - r_lo
        half = r_lo + np.maximum(n - 1, 0) // 2
        upper = half + (1 - n % 2)
        both, ok_both = view.value_at(np.concatenate([rows, rows]),
                                      np.concatenate([half, upper]))
        total, total2, ok_sums = view.range_sums(rows, r_lo, r_hi)
        m = len(rows)
        ok[rows] &= ok_both[:m] & ok_both[m:] & ok_sums
        med = 0.5 * (np.asarray(both[:m], dtype=np.float64) + both[m:])
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = total / n
            var = total2 / n - mean**2
        std = np.sqrt(np.maximum(var, 0.0))
        empty = n <= 0
        return np.where(empty, np.nan, med), np.where(empty, np.nan, std)

    first = None
    active = np.arange(nrows)
    for _ in range(maxiters):
        if active.size == 0:
            break
        med, std = stats(active)
        if first is None:
            first = med
        live = ok[active] & np.isfinite(med)
        new_lo, new_hi, ok_bounds = view.bound_counts(active, med - sigma * std,
                                                      med + sigma * std)
        ok[active] &= ~live | ok_bounds
        live &= ok[active]
        old_lo, old_hi = lo[active], hi[active]
        new_lo = np.where(live, np.maximum(old_lo, new_lo), old_lo)
        new_hi = np.maximum(np.where(live, np.minimum(old_hi, new_hi), old_hi), new_lo)
        lo[active], hi[active] = new_lo, new_hi
        active = active[(new_lo != old_lo) | (new_hi != old_hi)]
    med, std = stats(np.arange(nrows))
    return med, std, hi - lo, (med if first is None else first), ok


def clipped_stats(
    samples: np.ndarray, sigma: float = 3.0, maxiters: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Iterative sigma-clipped median, standard deviation and count per row.

    Identical to astropy's ``sigma_clip`` (median centre, population standard
    deviation) on each row. Long rows are not sorted: a pilot of ~``(2 n)^(2/3)``
    regularly spaced values per row predicts the clipping, and only the values
    that clipping trims or that can be the median are sorted (`_BandView`);
    rows where the prediction does not hold are clipped with every value sorted.

    Parameters
    ----------
    samples : ndarray, shape (nrows, n)
        Values, NaN where masked.
    sigma : float
        Clipping limit in standard deviations (values beyond it are removed).
    maxiters : int
        Maximum number of iterations.

    Returns
    -------
    median, std, count : ndarray
        Per row, over the values left after clipping (NaN when none is left).
    """
    nrows, ncols = samples.shape
    step = ncols // math.ceil((2.0 * ncols) ** (2.0 / 3.0))
    if step < 3 or nrows == 0:
        return _clip_sorted(samples, np.arange(nrows), sigma, maxiters)
    pilot = _SortedView(samples[:, ::step])
    p_med, p_std, p_count, p_first, _ = _clip(pilot, pilot.nvalid, sigma, maxiters)
    error = 1.2533 * p_std / np.sqrt(np.maximum(pilot.nvalid, 1))
    usable = (p_count >= 64) & (p_std > 0) & np.isfinite(p_first)
    low = np.fmin(p_med, p_first) - BAND_SIGMAS * error
    high = np.fmax(p_med, p_first) + BAND_SIGMAS * error
    centre, half_band = 0.5 * (low + high), 0.5 * (high - low)
    half_core = CORE_HALF_WIDTH * p_std
    view = _BandView(samples, usable, centre, half_band, half_core)
    med, std, count, _, ok = _clip(view, view.nvalid, sigma, maxiters)
    failed = ~(ok & view.ok)
    retry = np.flatnonzero(failed & usable)
    if retry.size:
        # a bright star (many values to sort: left out not to pad the others) or a
        # median outside the predicted band (~1 % of the rows): these rows once more,
        # the latter with a band three times as wide
        wider = np.where(view.heavy[retry], half_band[retry],
                         np.minimum(RETRY_BAND_FACTOR * half_band[retry],
                                    0.5 * half_core[retry]))
        sub = _BandView(samples[retry], usable[retry], centre[retry], wider,
                        half_core[retry], trim=False)
        r_med, r_std, r_count, _, r_ok = _clip(sub, sub.nvalid, sigma, maxiters)
        good = r_ok & sub.ok
        rows = retry[good]
        med[rows], std[rows], count[rows] = r_med[good], r_std[good], r_count[good]
        failed[rows] = False
    redo = np.flatnonzero(failed)
    if redo.size:
        med[redo], std[redo], count[redo] = _clip_sorted(samples, redo, sigma, maxiters)
    return med, std, count


def _clip_sorted(samples: np.ndarray, rows: np.ndarray, sigma: float, maxiters: int):
    """`clipped_stats` of ``samples[rows]`` with every value sorted, a few rows at a time."""
    chunk = max(1, _CHUNK_SAMPLES // max(samples.shape[1], 1))
    parts = []
    for i in range(0, len(rows), chunk):
        full = _SortedView(samples[rows[i:i + chunk]])
        parts.append(_clip(full, full.nvalid, sigma, maxiters)[:3])
    if not parts:
        return np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.intp)
    return tuple(np.concatenate(column) for column in zip(*parts, strict=True))


def _box_samples(
    data: np.ndarray, bad: np.ndarray, y0: int, y1: int, x0: int, x1: int, by: int, bx: int, s: int
) -> tuple[np.ndarray, int]:
    """Samples of the boxes tiling ``data[y0:y1, x0:x1]`` (boxes of by x bx), one row per box."""
    block = data[y0:y1, x0:x1]
    mask = bad[y0:y1, x0:x1]
    nby, nbx = (y1 - y0) // by, (x1 - x0) // bx
    off_y, off_x = ((by - 1) % s) // 2, ((bx - 1) % s) // 2
    sub = block.reshape(nby, by, nbx, bx)[:, off_y::s, :, off_x::s]
    # one copy, box by box, then NaN at the (few) masked samples: scattered to their
    # places rather than a masked copy over every sample
    samples = np.empty((nby, nbx, sub.shape[1], sub.shape[3]), dtype=np.float32)
    np.copyto(samples, sub.transpose(0, 2, 1, 3), casting="unsafe")
    flat = np.flatnonzero(mask)  # ~15x faster than np.nonzero of a 2D mask
    if flat.size:
        yb, xb = np.divmod(flat, x1 - x0)
        (iy, ry), (ix, rx) = np.divmod(yb, by), np.divmod(xb, bx)
        ry, rx = ry - off_y, rx - off_x
        sampled = (ry >= 0) & (ry % s == 0) & (rx >= 0) & (rx % s == 0)
        samples[iy[sampled], ix[sampled], ry[sampled] // s, rx[sampled] // s] = np.nan
    return samples.reshape(nby * nbx, -1), nby * nbx


def _mesh_stats(
    data: np.ndarray,
    bad: np.ndarray,
    box: tuple[int, int],
    exclude_percentile: float,
    target: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Clipped median and RMS of every box (NaN for excluded boxes)."""
    ny, nx = data.shape
    by, bx = box
    nmy, nmx = math.ceil(ny / by), math.ceil(nx / bx)
    full_y, full_x = (ny // by) * by, (nx // bx) * bx
    target = TARGET_SAMPLES if target is None else target
    stride = max(1, int(math.sqrt(by * bx / target)))
    good_limit = (1.0 - exclude_percentile / 100.0) * by * bx
    bkg = np.full((nmy, nmx), np.nan)
    rms = np.full((nmy, nmx), np.nan)

    # Regions of equal box shapes: the full boxes, the partial last row and
    # column of boxes, and the corner box.
    regions = [(0, full_y, 0, full_x, by, bx)]
    if full_y < ny:
        regions.append((full_y, ny, 0, full_x, ny - full_y, bx))
    if full_x < nx:
        regions.append((0, full_y, full_x, nx, by, nx - full_x))
    if full_y < ny and full_x < nx:
        regions.append((full_y, ny, full_x, nx, ny - full_y, nx - full_x))
    for y0, y1, x0, x1, hy, hx in regions:
        if y1 <= y0 or x1 <= x0 or hy * hx <= good_limit:
            continue  # such boxes can never hold enough pixels: excluded
        samples, _ = _box_samples(data, bad, y0, y1, x0, x1, hy, hx, stride)
        med, std, count = clipped_stats(samples)
        ngood = count / samples.shape[1] * (hy * hx)
        med[ngood <= good_limit] = np.nan
        std[ngood <= good_limit] = np.nan
        iy0, ix0 = y0 // by, x0 // bx
        shape = ((y1 - y0) // hy, (x1 - x0) // hx)
        bkg[iy0 : iy0 + shape[0], ix0 : ix0 + shape[1]] = med.reshape(shape)
        rms[iy0 : iy0 + shape[0], ix0 : ix0 + shape[1]] = std.reshape(shape)
    return bkg, rms


def _fill_excluded(mesh: np.ndarray, n_neighbors: int = 10) -> np.ndarray:
    """Replace NaN mesh cells by the inverse-distance mean of the nearest good cells.

    The neighbours come from a k-d tree built over the good cells in row-major
    order, as in photutils, so that ties between equidistant cells resolve the
    same way.
    """
    from scipy.spatial import cKDTree

    bad = np.isnan(mesh)
    if not bad.any():
        return mesh
    good_values = mesh[~bad]
    tree = cKDTree(np.argwhere(~bad).astype(float), leafsize=10)
    dist, idx = tree.query(np.argwhere(bad).astype(float), k=n_neighbors)
    dist = dist.reshape(len(dist), -1)
    idx = idx.reshape(len(idx), -1)
    valid = np.isfinite(dist)
    weights = np.where(valid, 1.0 / np.where(valid, dist, 1.0), 0.0)
    values = good_values[np.where(valid, idx, 0)]
    out = mesh.copy()
    out[bad] = np.sum(weights * values, axis=1) / np.sum(weights, axis=1)
    return out


def _median_filter(mesh: np.ndarray, size: int) -> np.ndarray:
    """Median filter of a small mesh, ignoring cells beyond its edges and NaN cells
    (``np.nanmedian`` of each window, from one sort of the stacked windows: NaNs sort
    last, and the median of ``n`` values is the mean of the sorted ``(n - 1) // 2``-th
    and ``n // 2``-th)."""
    if size <= 1:
        return mesh
    half = size // 2
    padded = np.pad(mesh, half, constant_values=np.nan)
    stack = np.stack(
        [
            padded[dy : dy + mesh.shape[0], dx : dx + mesh.shape[1]]
            for dy in range(size)
            for dx in range(size)
        ]
    )
    stack.sort(axis=0)
    count = np.count_nonzero(~np.isnan(stack), axis=0)
    lo = np.take_along_axis(stack, np.maximum(count - 1, 0)[None] // 2, axis=0)[0]
    hi = np.take_along_axis(stack, (count // 2)[None], axis=0)[0]
    out = (lo + hi) / 2.0
    out[count == 0] = np.nan
    return out


def _rows_inside(coeff: np.ndarray, lims: tuple[float, float], weights: np.ndarray) -> np.ndarray:
    """Whether every value of each coefficient row lies inside ``lims`` with a margin
    for float32 rounding (all False unless the interpolation weights are >= 0)."""
    if coeff.size == 0 or np.any(weights < 0):
        return np.zeros(coeff.shape[0], dtype=bool)
    lo, hi = lims
    margin = 1e-5 * max(abs(lo), abs(hi), 1e-30)
    return (coeff.min(axis=1) >= lo + margin) & (coeff.max(axis=1) <= hi - margin)


@lru_cache(maxsize=32)
def zoom_operator(n_mesh: int, box: int, n_out: int) -> np.ndarray:
    """Matrix ``A`` (n_out x n_mesh) with ``zoom(v, box)[:n_out] == A @ v`` for the
    background's cubic-spline zoom."""
    eye = np.eye(n_mesh)
    cols = [
        ndimage.zoom(eye[j], box, order=3, mode="reflect", grid_mode=True)[:n_out]
        for j in range(n_mesh)
    ]
    op = np.stack(cols, axis=1)
    op.setflags(write=False)
    return op


@lru_cache(maxsize=32)
def zoom_taps(n_mesh: int, box: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`zoom_operator` factored as ``W @ P``: ``P`` (n_mesh x n_mesh) the cubic spline
    prefilter (coefficients from values), ``W`` the interpolation of the coefficients,
    with at most 4 nonzero weights per row.

    Returns
    -------
    prefilter : ndarray, shape (n_mesh, n_mesh)
    taps : ndarray of int, shape (n_out, k)
        Columns of the nonzero weights of each row of ``W`` (increasing).
    weights : ndarray of float64, shape (n_out, k)
        Those weights.
    """
    eye = np.eye(n_mesh)
    prefilter = ndimage.spline_filter1d(eye, order=3, axis=0, mode="reflect")
    interp = np.stack(
        [
            ndimage.zoom(eye[j], box, order=3, mode="reflect", grid_mode=True,
                         prefilter=False)[:n_out]
            for j in range(n_mesh)
        ],
        axis=1,
    )
    k = min(4, n_mesh)
    taps = np.sort(np.argsort(-np.abs(interp), axis=1, kind="stable")[:, :k], axis=1)
    rest = interp.copy()
    np.put_along_axis(rest, taps, 0.0, axis=1)
    if np.any(rest != 0.0):  # never for a cubic spline; dense rather than wrong
        taps = np.broadcast_to(np.arange(n_mesh), interp.shape).copy()
    weights = np.take_along_axis(interp, taps, axis=1)
    for arr in (prefilter, taps, weights):
        arr.setflags(write=False)
    return prefilter, taps, weights


def mesh_background(
    data: np.ndarray, bad: np.ndarray, box_size: int, filter_size: int, *, exact: bool = False
) -> MeshBackground:
    """Estimate the background mesh of ``data`` ignoring ``bad`` pixels.

    Parameters
    ----------
    data : ndarray
        Science array.
    bad : ndarray of bool
        Pixels to ignore (must include every non-finite pixel).
    box_size : int
        Box size in pixels (clipped to the image).
    filter_size : int
        Size of the median filter applied to the mesh (odd).
    exact : bool
        Clip every pixel of each box (photutils' statistics exactly) instead of a
        sub-grid of at least `TARGET_SAMPLES` of them.

    Returns
    -------
    MeshBackground

    Raises
    ------
    BackgroundError
        When even one box covering the whole image has no usable pixel.
    """
    box = effective_box(data.shape, box_size)
    messages: list[str] = []
    method = "mesh"
    target = data.size if exact else None
    bkg, rms = _mesh_stats(data, bad, box, 10.0, target)
    if np.all(np.isnan(bkg)):
        messages.append(single_box_message(box, "every box is excluded"))
        box = (int(data.shape[0]), int(data.shape[1]))
        method = "single-box"
        bkg, rms = _mesh_stats(data, bad, box, 100.0, target)
        if np.all(np.isnan(bkg)) and not exact:  # the good pixels fell between the samples
            bkg, rms = _mesh_stats(data, bad, box, 100.0, target=data.size)
        if np.all(np.isnan(bkg)):
            raise BackgroundError("cannot estimate the background: no usable pixel")
    bkg = _median_filter(_fill_excluded(bkg), filter_size)
    rms = _median_filter(_fill_excluded(rms), filter_size)
    ny, nx = data.shape
    return MeshBackground(
        rms_median=float(np.median(rms)),
        box_size=box,
        method=method,
        messages=messages,
        mesh=bkg,
        rms_mesh=rms,
        zoom_y=zoom_operator(bkg.shape[0], box[0], ny),
        zoom_x=zoom_operator(bkg.shape[1], box[1], nx),
    )
