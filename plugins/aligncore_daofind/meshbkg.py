"""Fast background mesh with photutils ``Background2D`` semantics.

Differences from photutils, by design:

- unless ``exact``, the clipped statistics of a box are computed on a
  regular sub-grid of its pixels (every ``stride``-th row and column, at
  least ~32000 pixels per box: every other row and column of a 400-pixel
  box) instead of all of them; the median then differs from the full-box
  value by ~0.5% of the noise, which moves the shape statistics of sources
  at the image edge by up to a few 1e-4 (with ``exact`` the catalogs agree
  with photutils' to ~1e-6);
- the clipping runs on each box's sorted samples, so every iteration costs a
  few vector operations instead of a median over the image;
- the full-resolution background is never stored: the cubic-spline zoom is
  linear in the mesh and separable, so ``background = Ay @ mesh @ Ax.T`` is
  evaluated for a block of rows at a time (``rows``) or at given pixels.

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

_CHUNK_SAMPLES = 1 << 19
"""Samples given to one `clipped_stats` call (boxes are never split)."""


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
        if not self._constant:
            assert self.zoom_x is not None
            self._mesh_x = np.einsum("ij,kj->ik", self.mesh, self.zoom_x).astype(np.float32)
            self._zoom_y32 = np.asarray(self.zoom_y, dtype=np.float32)
        self._range = (float(self.mesh.min()), float(self.mesh.max()))
        self._rms_range = (float(self.rms_mesh.min()), float(self.rms_mesh.max()))

    def rows(self, start: int, stop: int) -> np.ndarray | float:
        if self._constant:
            return self._range[0]
        # einsum rather than a matmul: BLAS threads cost more than they save
        # on such thin products (and compete with other processes).
        block = np.einsum("ij,jk->ik", self._zoom_y32[start:stop], self._mesh_x)
        return np.clip(block, *self._range, out=block)

    def rms_rows(self, start: int, stop: int) -> np.ndarray | float:
        if self._rms_constant:
            return self._rms_range[0]
        if not hasattr(self, "_rms_x"):
            assert self.rms_mesh is not None and self.zoom_x is not None
            self._rms_x = np.einsum("ij,kj->ik", self.rms_mesh, self.zoom_x).astype(np.float32)
        zoom_y = np.asarray(self.zoom_y, dtype=np.float32)[start:stop]
        block = np.einsum("ij,jk->ik", zoom_y, self._rms_x)
        return np.clip(block, *self._rms_range, out=block)

    def _at(self, mesh: np.ndarray, lims: tuple[float, float], y: np.ndarray, x: np.ndarray):
        assert self.zoom_y is not None and self.zoom_x is not None
        y = np.asarray(y, dtype=np.intp)
        x = np.asarray(x, dtype=np.intp)
        values = np.einsum("ij,jk,ik->i", self.zoom_y[y], mesh, self.zoom_x[x])
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
        self.rows = np.arange(nrows)
        self.width = width = max(1, min(ncols, ncols // 8))
        zero = np.zeros((nrows, 1))
        head = values[:, :width].astype(np.float64)
        head[np.arange(width)[None, :] >= nvalid[:, None]] = 0.0
        position = nvalid[:, None] - 1 - np.arange(width)[None, :]  # last valid first
        tail = values[self.rows[:, None], np.maximum(position, 0)].astype(np.float64)
        tail[position < 0] = 0.0
        self.head = np.concatenate([zero, np.cumsum(head, axis=1)], axis=1)
        self.head2 = np.concatenate([zero, np.cumsum(head * head, axis=1)], axis=1)
        self.tail = np.concatenate([zero, np.cumsum(tail, axis=1)], axis=1)
        self.tail2 = np.concatenate([zero, np.cumsum(tail * tail, axis=1)], axis=1)
        self.total = np.empty(nrows)
        self.total2 = np.empty(nrows)
        full = nvalid == ncols  # most boxes: no masked pixel, no NaN at the row's end
        rows = values if full.all() else values[full]
        self.total[full] = rows.sum(axis=1, dtype=np.float64)
        self.total2[full] = np.einsum("ij,ij->i", rows, rows, dtype=np.float64)
        for i in np.flatnonzero(~full):
            row = values[i, :nvalid[i]].astype(np.float64)
            self.total[i], self.total2[i] = row.sum(), row @ row

    def __call__(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cut_hi = self.nvalid - hi
        near = (lo <= self.width) & (cut_hi <= self.width)
        lo_n, cut_n = np.where(near, lo, 0), np.where(near, cut_hi, 0)
        total = self.total - self.head[self.rows, lo_n] - self.tail[self.rows, cut_n]
        total2 = self.total2 - self.head2[self.rows, lo_n] - self.tail2[self.rows, cut_n]
        for i in np.flatnonzero(~near):  # clipped deeper than the running sums reach
            part = self.values[i, lo[i]:hi[i]].astype(np.float64)
            total[i], total2[i] = part.sum(), part @ part
        return total, total2


def _bound_in_dtype(bound: np.ndarray, dtype: np.dtype, up: bool) -> np.ndarray:
    """``bound`` rounded up (or down) to ``dtype``: for values of that dtype, ``v < b`` iff
    ``v < ceil(b)`` and ``v <= b`` iff ``v <= floor(b)``, and bisecting with a bound of
    the array's own dtype spares numpy converting the whole row."""
    rounded = bound.astype(dtype)
    with np.errstate(invalid="ignore"):
        if up:
            return np.where(rounded < bound, np.nextafter(rounded, dtype.type(np.inf)), rounded)
        return np.where(rounded > bound, np.nextafter(rounded, dtype.type(-np.inf)), rounded)


def clipped_stats(
    samples: np.ndarray, sigma: float = 3.0, maxiters: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Iterative sigma-clipped median, standard deviation and count per row.

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
    values = np.sort(samples, axis=1)  # NaNs go last
    nrows, ncols = values.shape
    rows = np.arange(nrows)
    nvalid = np.count_nonzero(~np.isnan(values), axis=1).astype(np.intp)
    if not nvalid.any():
        nan = np.full(nrows, np.nan)
        return nan, nan.copy(), nvalid
    sums = _RangeSums(values, nvalid)
    lo = np.zeros(nrows, dtype=np.intp)
    hi = nvalid.copy()

    def stats(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = hi - lo
        ok = n > 0
        half = lo + np.maximum(n - 1, 0) // 2
        upper = np.minimum(half + (1 - n % 2), ncols - 1)
        med = 0.5 * (values[rows, half].astype(np.float64) + values[rows, upper])
        total, total2 = sums(lo, hi)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = total / n
            var = total2 / n - mean**2
        std = np.sqrt(np.maximum(var, 0.0))
        return np.where(ok, med, np.nan), np.where(ok, std, np.nan)

    for _ in range(maxiters):
        med, std = stats(lo, hi)
        ok = np.isfinite(med)
        new_lo, new_hi = lo.copy(), hi.copy()
        below = _bound_in_dtype(med - sigma * std, values.dtype, up=True)
        above = _bound_in_dtype(med + sigma * std, values.dtype, up=False)
        for i in np.flatnonzero(ok):  # each row is sorted: the clip bounds are two bisections
            row = values[i, :nvalid[i]]
            new_lo[i] = max(lo[i], np.searchsorted(row, below[i], side="left"))
            new_hi[i] = min(hi[i], np.searchsorted(row, above[i], side="right"))
        new_hi = np.maximum(new_hi, new_lo)
        if np.array_equal(new_lo, lo) and np.array_equal(new_hi, hi):
            break
        lo, hi = new_lo, new_hi
    med, std = stats(lo, hi)
    return med, std, hi - lo


def _box_samples(
    data: np.ndarray, bad: np.ndarray, y0: int, y1: int, x0: int, x1: int, by: int, bx: int, s: int
) -> tuple[np.ndarray, int]:
    """Samples of the boxes tiling ``data[y0:y1, x0:x1]`` (boxes of by x bx), one row per box."""
    block = data[y0:y1, x0:x1]
    mask = bad[y0:y1, x0:x1]
    nby, nbx = (y1 - y0) // by, (x1 - x0) // bx
    off_y, off_x = ((by - 1) % s) // 2, ((bx - 1) % s) // 2
    sub = block.reshape(nby, by, nbx, bx)[:, off_y::s, :, off_x::s]
    msub = mask.reshape(nby, by, nbx, bx)[:, off_y::s, :, off_x::s]
    samples = np.where(msub, np.float32(np.nan), sub).astype(np.float32, copy=False)
    samples = samples.transpose(0, 2, 1, 3).reshape(nby * nbx, -1)
    return samples, nby * nbx


def _clipped_stats_by_chunks(samples: np.ndarray) -> tuple[np.ndarray, ...]:
    """`clipped_stats` a few boxes (rows) at a time, so that the sort and the running
    sums stay in the fast part of memory."""
    chunk = max(1, _CHUNK_SAMPLES // samples.shape[1])
    parts = [clipped_stats(samples[i:i + chunk]) for i in range(0, len(samples), chunk)]
    return tuple(np.concatenate(column) for column in zip(*parts, strict=True))


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
        med, std, count = _clipped_stats_by_chunks(samples)
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
    """Median filter of a small mesh, ignoring cells beyond its edges."""
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
    return np.nanmedian(stack, axis=0)


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
