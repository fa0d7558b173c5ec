"""Diagnostic figures of a run: residual vectors and the offset histogram, per image.

Two PNG files per image with a catalog (``aligncore run --plots``):

- ``<stem>_residuals.png``: left, the image's matched sources in the shared
  tangent plane with their residual to the same star in the other aligned
  images drawn as a magnified arrow (after alignment); right, the residuals
  themselves (mas) with their RMS circle;
- ``<stem>_hist2d.png``: the 2D histogram of the offsets ``reference - image``
  of every source pair within the matcher's search radius, for the image at
  its input (nominal) position against the other aligned images at their
  corrected positions: the peak is the correction the matcher found;
- ``distortion_<detector>.png`` per detector when the run refined the distortion
  (`aligncore.plots.distortion`).

Everything is recomputed from the `~aligncore.AlignResult` (each image's
catalog and corrected WCS), so nothing but the figures is stored. Figures
need matplotlib (the ``plots`` extra); it is imported only when one is drawn.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from aligncore.plots._common import _nice, _require_matplotlib
from aligncore.tangent import TangentPlane, footprint_world, pixel_scale, pixel_to_world
from aligncore.types import COL_X, COL_Y, AlignImage, AlignResult, ImageResult, Status

__all__ = ["ResidualSet", "offset_histogram", "residual_sets", "write_plots"]

_DEFAULT_SEARCHRAD = 2.0  # arcsec, when the matcher did not report one
_MAX_HIST_BINS = 401  # per axis
_ZOOM_BINS = 8  # the zoom of the histogram figure spans +- this many bins
_ARROW_FRACTION = 0.05  # an RMS-long residual is drawn this fraction of the field wide


@dataclass(frozen=True)
class ResidualSet:
    """Residuals of one image's sources against the other aligned images.

    Attributes
    ----------
    name : str
        Image name.
    xy : ndarray, shape (n, 2)
        Corrected tangent-plane positions (arcsec) of the image's matched sources
        (a source matched in several other images appears once per match).
    residuals : ndarray, shape (n, 2)
        ``other - this`` (arcsec) for each match.
    partner : ndarray of int, shape (n,)
        Index of the other image of each match.
    footprint : ndarray, shape (4, 2)
        Corrected footprint corners in the tangent plane (arcsec).
    radius : float
        Matching radius used (arcsec).
    """

    name: str
    xy: np.ndarray
    residuals: np.ndarray
    partner: np.ndarray
    footprint: np.ndarray
    radius: float

    @property
    def rms(self) -> float:
        """RMS length of the residuals (arcsec), NaN without matches."""
        if self.residuals.size == 0:
            return math.nan
        return float(np.sqrt(np.mean(np.sum(self.residuals**2, axis=1))))


# --- numbers ---------------------------------------------------------------------------
def _plane(result: AlignResult) -> TangentPlane:
    if isinstance(result.tangent_plane, TangentPlane):
        return result.tangent_plane
    raise ValueError("the result has no tangent plane; was it produced by aligncore.align?")


def _tp(wcs: Any, catalog: Any, plane: TangentPlane) -> np.ndarray:
    """Tangent-plane positions (arcsec) of a catalog's sources through ``wcs``."""
    if catalog is None or len(catalog) == 0:
        return np.zeros((0, 2))
    x = np.asarray(catalog[COL_X], dtype=float)
    y = np.asarray(catalog[COL_Y], dtype=float)
    xy = np.column_stack(plane.world_to_tp(*pixel_to_world(wcs, x, y)))
    return xy[np.all(np.isfinite(xy), axis=1)]


def _footprint(wcs: Any, shape: Sequence[int], plane: TangentPlane) -> np.ndarray:
    return np.column_stack(plane.world_to_tp(*footprint_world(wcs, shape)))


def _pixel_scale(image: ImageResult, plane: TangentPlane) -> float:
    catalog = image.catalog
    if catalog is not None and len(catalog):
        x0, y0 = float(np.median(catalog[COL_X])), float(np.median(catalog[COL_Y]))
    else:
        x0 = y0 = 0.0
    return pixel_scale(image.wcs, x0, y0, plane)


def _match_radius(result: AlignResult, plane: TangentPlane) -> float:
    """A few times the typical fit residual, and at least half a pixel."""
    scales = [_pixel_scale(r, plane) for r in result.images if r.ok]
    scale = float(np.median(scales)) if scales else 0.1
    rmses = [r.fit.rmse for r in result.images
             if r.status == Status.SUCCESS and r.fit is not None and r.fit.n_used > 0]
    typical = float(np.median(rmses)) if rmses else 0.0
    return max(5.0 * typical, 0.5 * scale)


def _mutual_pairs(a: np.ndarray, b: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Mutual nearest neighbours within ``radius``: indices into ``a`` and ``b``."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    dist, near_b = cKDTree(b).query(a, distance_upper_bound=radius)
    _, near_a = cKDTree(a).query(b, distance_upper_bound=radius)
    found = np.flatnonzero(np.isfinite(dist))
    mutual = found[near_a[near_b[found]] == found]
    return mutual, near_b[mutual]


def residual_sets(result: AlignResult, radius: float | None = None,
                  shapes: Sequence[Sequence[int]] | None = None) -> list[ResidualSet]:
    """Per image, the residuals of its sources against every other aligned image.

    Positions come from each image's catalog and its final WCS (for a failed
    image: its untouched input WCS), projected into the run's tangent plane;
    sources are paired as mutual nearest neighbours within ``radius``.

    Parameters
    ----------
    result : AlignResult
        A run with catalogs (``ImageResult.catalog``).
    radius : float, optional
        Matching radius in arcsec (default: 5 x the median fit RMS, at least
        half a pixel).
    shapes : sequence of (ny, nx), optional
        Image shapes for the footprints (default: the WCS's ``pixel_shape``,
        else the extent of the catalog).

    Returns
    -------
    list of ResidualSet
        One per image, in input order (empty arrays when nothing matched).
    """
    plane = _plane(result)
    radius = _match_radius(result, plane) if radius is None else float(radius)
    positions = [_tp(r.wcs, r.catalog, plane) for r in result.images]
    out = []
    for i, image in enumerate(result.images):
        xy, res, partner = [], [], []
        for j, other in enumerate(result.images):
            if j == i or not other.ok:
                continue
            ia, jb = _mutual_pairs(positions[i], positions[j], radius)
            xy.append(positions[i][ia])
            res.append(positions[j][jb] - positions[i][ia])
            partner.append(np.full(ia.size, j))
        shape = shapes[i] if shapes is not None else _shape(image)
        footprint = _footprint(image.wcs, shape, plane) if shape else np.zeros((0, 2))
        out.append(ResidualSet(
            name=image.name,
            xy=np.concatenate(xy) if xy else np.zeros((0, 2)),
            residuals=np.concatenate(res) if res else np.zeros((0, 2)),
            partner=np.concatenate(partner) if partner else np.zeros(0, dtype=int),
            footprint=footprint,
            radius=radius,
        ))
    return out


def _shape(image: ImageResult) -> tuple[int, int] | None:
    """``(ny, nx)`` from the WCS's ``pixel_shape``, else the extent of the catalog."""
    pixel_shape = getattr(image.wcs, "pixel_shape", None)
    if pixel_shape is not None:
        return int(pixel_shape[1]), int(pixel_shape[0])
    catalog = image.catalog
    if catalog is None or len(catalog) == 0:
        return None
    return (int(np.ceil(np.max(catalog[COL_Y]))) + 1, int(np.ceil(np.max(catalog[COL_X]))) + 1)


def offset_histogram(image_xy: np.ndarray, ref_xy: np.ndarray, searchrad: float,
                     bin_size: float) -> tuple[np.ndarray, np.ndarray]:
    """2D histogram of the offsets ``ref - image`` of all pairs within ``searchrad``.

    Bins are ``bin_size`` wide and centred on the multiples of ``bin_size``
    from ``-R`` to ``R`` bins (``R = ceil(searchrad / bin_size)``), as in the
    ``hist2d`` matcher.

    Parameters
    ----------
    image_xy, ref_xy : ndarray, shape (n, 2) and (m, 2)
        Positions (e.g. arcsec in the tangent plane).
    searchrad : float
        Largest offset per axis (same unit), > 0.
    bin_size : float
        Bin width (same unit; one pixel), > 0.

    Returns
    -------
    hist : ndarray of int, shape (2R + 1, 2R + 1)
        Counts, ``hist[iy, ix]``.
    centers : ndarray, shape (2R + 1,)
        Offset at the centre of each bin (both axes).
    """
    if not (searchrad > 0 and bin_size > 0):
        raise ValueError(f"searchrad and bin_size must be > 0, got {searchrad}, {bin_size}")
    half = max(math.ceil(searchrad / bin_size - 1e-9), 1)
    if 2 * half + 1 > _MAX_HIST_BINS:
        half = (_MAX_HIST_BINS - 1) // 2
        bin_size = searchrad / half
    n = 2 * half + 1
    centers = (np.arange(n) - half) * bin_size
    hist = np.zeros((n, n), dtype=np.int64)
    image_xy = np.asarray(image_xy, dtype=float).reshape(-1, 2)
    ref_xy = np.asarray(ref_xy, dtype=float).reshape(-1, 2)
    if len(image_xy) == 0 or len(ref_xy) == 0:
        return hist, centers
    pairs = cKDTree(image_xy).sparse_distance_matrix(
        cKDTree(ref_xy), (half + 0.5) * bin_size, p=np.inf, output_type="ndarray")
    d = (ref_xy[pairs["j"]] - image_xy[pairs["i"]]) / bin_size
    idx = np.floor(d + half + 0.5).astype(np.int64)
    keep = np.all((idx >= 0) & (idx < n), axis=1)
    np.add.at(hist, (idx[keep, 1], idx[keep, 0]), 1)
    return hist, centers


# --- figures ---------------------------------------------------------------------------
def _status_line(image: ImageResult) -> str:
    """The figure title: status, the counts and the fit RMS under the names the table, the
    FITS keywords and report.json use (matched = pairs found, used = pairs kept by the fit)."""
    line = f"{image.name}: {image.status.value}, {image.n_matched} matched"
    if image.fit is not None:
        line += f", {image.fit.n_used} used, fit rms {1000.0 * image.fit.rmse:.2f} mas"
    if image.reason:
        reason = image.reason if len(image.reason) <= 70 else image.reason[:67] + "..."
        line += f"\n{reason}"
    return line


def plot_residuals(image: ImageResult, residuals: ResidualSet, path: Path,
                   names: Sequence[str]) -> Path:
    """Write the residual vector figure of one image."""
    figure_cls = _require_matplotlib()
    fig = figure_cls(figsize=(11.0, 5.2))
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.1, top=0.86, wspace=0.2)
    ax_map, ax_res = fig.subplots(1, 2, width_ratios=[1.35, 1.0])
    mas = 1000.0 * residuals.residuals
    rms_mas = 1000.0 * residuals.rms
    if len(residuals.footprint):
        corners = np.vstack([residuals.footprint, residuals.footprint[:1]])
        ax_map.plot(corners[:, 0], corners[:, 1], color="0.5", lw=1.0)
    partners = sorted(set(residuals.partner.tolist()))
    colors = {j: f"C{k % 10}" for k, j in enumerate(partners)}
    if residuals.xy.size:
        extent = float(np.ptp(residuals.footprint[:, 0])) if len(residuals.footprint) else float(
            np.ptp(residuals.xy[:, 0]) or 1.0)
        magnify = _nice(_ARROW_FRACTION * extent / max(residuals.rms, 1e-12))
        arrows = None
        for j in partners:
            sel = residuals.partner == j
            arrows = ax_map.quiver(residuals.xy[sel, 0], residuals.xy[sel, 1],
                                   residuals.residuals[sel, 0], residuals.residuals[sel, 1],
                                   color=colors[j], angles="xy", scale_units="xy",
                                   scale=1.0 / magnify, width=0.0025, label=f"vs {names[j]}")
            ax_res.scatter(mas[sel, 0], mas[sel, 1], s=8, color=colors[j], alpha=0.7)
        key = _nice(2.0 * max(rms_mas, 1e-6))
        ax_map.quiverkey(arrows, 0.80, 1.03, key / 1000.0, f"{key:g} mas", labelpos="E",
                         coordinates="axes")
        ax_map.set_title(f"residuals x {magnify:g}", loc="left", fontsize="medium")
        if len(partners) <= 10:
            ax_map.legend(fontsize="x-small", loc="lower left")
        circle = np.linspace(0.0, 2.0 * np.pi, 200)
        ax_res.plot(rms_mas * np.cos(circle), rms_mas * np.sin(circle), color="k", lw=1.0,
                    label=f"pair rms {rms_mas:.2f} mas (vs other images)")
        limit = max(float(np.max(np.abs(mas))), rms_mas) * 1.1
        ax_res.set_xlim(limit, -limit)
        ax_res.set_ylim(-limit, limit)
        ax_res.legend(fontsize="small", loc="upper right")
    else:
        for ax in (ax_map, ax_res):
            ax.text(0.5, 0.5, "no source matched in another aligned image",
                    transform=ax.transAxes, ha="center", va="center")
    ax_map.invert_xaxis()
    ax_map.set_aspect("equal", adjustable="datalim")
    ax_map.set_xlabel("xi [arcsec] (East to the left)")
    ax_map.set_ylabel("eta [arcsec] (North up)")
    ax_res.set_aspect("equal")
    ax_res.axhline(0.0, color="0.8", lw=0.8)
    ax_res.axvline(0.0, color="0.8", lw=0.8)
    ax_res.set_xlabel("d xi [mas]")
    ax_res.set_ylabel("d eta [mas]")
    bound = image.meta.get("noise_bound_mas")
    extra = f", noise bound {bound:.2f} mas" if isinstance(bound, float) and math.isfinite(
        bound) else ""
    ax_res.set_title(f"{len(mas)} pairs with other images within "
                     f"{1000.0 * residuals.radius:.0f} mas{extra}",
                     fontsize="medium")
    fig.suptitle(_status_line(image))
    fig.savefig(path, dpi=100)
    return path


def plot_histogram(image: ImageResult, hist: np.ndarray, centers: np.ndarray, path: Path,
                   offset: Sequence[float] | None) -> Path:
    """Write the offset-histogram figure of one image: the whole search box, and a
    zoom around the peak (the matcher's offset, else the fullest bin)."""
    figure_cls = _require_matplotlib()
    from matplotlib.colors import PowerNorm

    fig = figure_cls(figsize=(11.0, 5.2))
    fig.subplots_adjust(left=0.07, right=0.92, bottom=0.1, top=0.86, wspace=0.25)
    ax_all, ax_zoom = fig.subplots(1, 2)
    step = float(centers[1] - centers[0]) if len(centers) > 1 else 1.0
    lo, hi = centers[0] - step / 2.0, centers[-1] + step / 2.0
    if offset is not None:
        peak = np.asarray(offset, dtype=float)
    else:
        iy, ix = np.unravel_index(int(np.argmax(hist)), hist.shape)
        peak = np.array([centers[ix], centers[iy]])
    half = _ZOOM_BINS * step
    for ax, box in ((ax_all, (lo, hi, lo, hi)),
                    (ax_zoom, (peak[0] - half, peak[0] + half, peak[1] - half, peak[1] + half))):
        shown = ax.imshow(hist, origin="lower", extent=(lo, hi, lo, hi), cmap="magma",
                          interpolation="nearest", norm=PowerNorm(0.5, vmin=0.0))
        ax.plot([0.0], [0.0], marker="x", color="c", ms=8, ls="none", label="no offset")
        if offset is not None:
            ax.plot([offset[0]], [offset[1]], marker="o", mfc="none", mec="lime", ms=14,
                    mew=1.5, ls="none",
                    label=f"matcher offset ({offset[0]:.3f}, {offset[1]:.3f})\"")
        ax.set_xlim(box[0], box[1])
        ax.set_ylim(box[2], box[3])
        ax.set_xlabel("reference - image, xi [arcsec]")
        ax.set_ylabel("reference - image, eta [arcsec]")
    ax_all.legend(fontsize="small", loc="upper right")
    ax_all.add_patch(_rectangle(peak, half))
    fig.colorbar(shown, ax=ax_zoom, label="pairs per bin (square-root scale)", shrink=0.85)
    match = image.meta.get("match") or {}
    significance = match.get("peak_significance", match.get("significance"))
    detail = (f"peak significance {significance:.1f} sigma, " if isinstance(
        significance, int | float) and math.isfinite(significance) else "")
    ax_all.set_title(f"{detail}{int(hist.sum())} candidate pairs, bins {1000.0 * step:.0f} mas",
                     fontsize="medium")
    ax_zoom.set_title(f"zoom: +-{_ZOOM_BINS} bins around the peak", fontsize="medium")
    fig.suptitle(_status_line(image))
    fig.savefig(path, dpi=100)
    return path


def _rectangle(center: np.ndarray, half: float) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((center[0] - half, center[1] - half), 2.0 * half, 2.0 * half,
                     fill=False, ec="w", lw=0.8, ls="--")


def _nominal_tp(index: int, image: ImageResult, plane: TangentPlane,
                images: Sequence[AlignImage] | None) -> np.ndarray:
    """The image's source positions before alignment (input WCS)."""
    if images is not None:
        return _tp(images[index].wcs, image.catalog, plane)
    corrected = _tp(image.wcs, image.catalog, plane)
    if image.status == Status.SUCCESS and image.fit is not None:
        return image.fit.inverse().apply(corrected)
    return corrected


def write_plots(result: AlignResult, outdir: str | Path,
                images: Sequence[AlignImage] | None = None,
                distortion: Mapping[str, Any] | None = None) -> list[Path]:
    """Write ``<stem>_residuals.png`` and ``<stem>_hist2d.png`` for every image, and
    ``distortion_<detector>.png`` per detector of a distortion refinement.

    Parameters
    ----------
    result : AlignResult
        The run (with catalogs).
    outdir : str or Path
        Directory for the figures (created if needed).
    images : sequence of AlignImage, optional
        The inputs, in the order of ``result.images``; their WCS gives the
        positions before alignment for the histogram (default: the inverse
        of each image's fit).
    distortion : mapping, optional
        The report's ``distortion`` (detector -> entry, see
        `aligncore.plots.distortion`); default: ``result.meta["distortion"]``.

    Returns
    -------
    list of Path
        Files written.

    Raises
    ------
    ImportError
        When matplotlib is not installed (``pip install 'aligncore[plots]'``).
    """
    _require_matplotlib()
    if images is not None and len(images) != len(result.images):
        raise ValueError(f"{len(images)} images given for a result of {len(result.images)}")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    plane = _plane(result)
    names = [r.name for r in result.images]
    corrected = [_tp(r.wcs, r.catalog, plane) for r in result.images]
    written = []
    shapes = [image.shape for image in images] if images is not None else None
    sets = residual_sets(result, shapes=shapes)
    for i, (image, residuals) in enumerate(zip(result.images, sets, strict=True)):
        if image.catalog is None or len(image.catalog) == 0:
            continue
        stem = Path(image.name).stem
        written.append(plot_residuals(image, residuals, outdir / f"{stem}_residuals.png", names))
        others = [corrected[j] for j, r in enumerate(result.images) if j != i and r.ok]
        reference = np.concatenate(others) if others else np.zeros((0, 2))
        match = image.meta.get("match") or {}
        searchrad = match.get("searchrad")
        if not (isinstance(searchrad, int | float) and searchrad > 0):
            searchrad = _DEFAULT_SEARCHRAD
        hist, centers = offset_histogram(_nominal_tp(i, image, plane, images), reference,
                                         float(searchrad), _pixel_scale(image, plane))
        offset = image.meta.get("offset_arcsec")
        written.append(plot_histogram(image, hist, centers, outdir / f"{stem}_hist2d.png",
                                      offset if isinstance(offset, list | tuple) else None))
    if distortion is None:  # the run's refinement, wherever the result carries it
        distortion = getattr(result, "distortion", None)
        if not isinstance(distortion, Mapping):
            distortion = result.meta.get("distortion")
    if isinstance(distortion, Mapping):
        from aligncore.plots.distortion import write_distortion_plots

        written += write_distortion_plots(distortion, outdir)
    return written
