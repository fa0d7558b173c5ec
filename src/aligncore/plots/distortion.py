"""Figures of the distortion refinement: one per detector, from the report's ``distortion``.

``report.json`` holds, under ``"distortion"``, one entry per detector: the fitted
correction (`aligncore.distortion.DistortionCorrection.to_dict`, or null when none was
fitted), whether it was applied and why, the held-back check and the matched stars'
residuals (pixels) before and after. `distortion_field` and `residual_vectors` compute
what the figures show without matplotlib (the HTML report draws the same as SVG);
`plot_distortion` writes ``distortion_<INSTRUME>_<DETECTOR>.png``:

- top left, the correction field ``(dx, dy)`` as arrows over the detector, magnified;
- top right, its length as a map (pixels; milliarcseconds too when the entry carries
  ``pixel_scale``, arcsec per pixel);
- bottom, the residuals of the matched stars before and after the refinement, drawn
  with the same magnification, with their RMS; from 100 stars on, the mean residual
  in each of 8 x 8 cells (the pattern a distortion leaves, which the centroid noise
  hides star by star).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aligncore.distortion import DistortionCorrection
from aligncore.plots._common import _nice, _require_matplotlib

__all__ = ["DistortionField", "ResidualArrows", "ResidualVectors", "distortion_field",
           "distortion_filename", "plot_distortion", "residual_arrows", "residual_vectors",
           "write_distortion_plots"]

_FIELD_GRID = 15  # arrows per axis of the field
_MAP_GRID = 64  # cells per axis of the magnitude map
_ARROW_FRACTION = 0.12  # the largest arrow is drawn this fraction of the detector wide
_BIN_CELLS = 8  # cells per axis of the binned residuals
_BIN_STARS = 100  # residuals are binned from this many stars on
_CELL_STARS = 3  # fewest stars of a cell drawn


@dataclass(frozen=True)
class DistortionField:
    """A correction evaluated over a detector.

    Attributes
    ----------
    extent : tuple of float
        ``(x_min, x_max, y_min, y_max)``, 0-based pixels.
    x, y : ndarray, shape (n, n)
        Grid of the arrows.
    dx, dy : ndarray, shape (n, n)
        The correction there, pixels.
    magnitude : ndarray, shape (m, m)
        ``hypot(dx, dy)`` on a finer grid over ``extent`` (``magnitude[iy, ix]``).
    """

    extent: tuple[float, float, float, float]
    x: np.ndarray
    y: np.ndarray
    dx: np.ndarray
    dy: np.ndarray
    magnitude: np.ndarray

    @property
    def max_px(self) -> float:
        """Largest correction over the detector, pixels."""
        return float(np.max(self.magnitude)) if self.magnitude.size else 0.0


@dataclass(frozen=True)
class ResidualVectors:
    """Residuals of the matched stars of one detector, before and after (pixels).

    Attributes
    ----------
    x, y : ndarray
        Star positions, 0-based pixels.
    before, after : ndarray, shape (n, 2)
        Residual vectors; ``after`` empty when not reported.
    """

    x: np.ndarray
    y: np.ndarray
    before: np.ndarray
    after: np.ndarray

    @staticmethod
    def _rms(vectors: np.ndarray) -> float:
        if vectors.size == 0:
            return math.nan
        return float(np.sqrt(np.mean(np.sum(vectors**2, axis=1))))

    @property
    def rms_before(self) -> float:
        """RMS length of the residuals before, pixels (NaN without any)."""
        return self._rms(self.before)

    @property
    def rms_after(self) -> float:
        """RMS length of the residuals after, pixels (NaN without any)."""
        return self._rms(self.after)


def _floats(values: Any) -> np.ndarray:
    if values is None:
        return np.zeros(0)
    return np.asarray([math.nan if v is None else v for v in values], dtype=float)


def residual_vectors(entry: Mapping[str, Any]) -> ResidualVectors:
    """The ``residuals`` of a report entry as arrays (empty when absent)."""
    res = entry.get("residuals") or {}
    x, y = _floats(res.get("x")), _floats(res.get("y"))
    n = min(x.size, y.size)
    before = np.column_stack([_floats(res.get("dx_before")), _floats(res.get("dy_before"))]) \
        if len(res.get("dx_before") or ()) == n and len(res.get("dy_before") or ()) == n \
        else np.zeros((0, 2))
    after = np.column_stack([_floats(res.get("dx_after")), _floats(res.get("dy_after"))]) \
        if len(res.get("dx_after") or ()) == n and len(res.get("dy_after") or ()) == n \
        else np.zeros((0, 2))
    if n == 0 or before.shape[0] != n:
        return ResidualVectors(np.zeros(0), np.zeros(0), np.zeros((0, 2)), np.zeros((0, 2)))
    ok = np.isfinite(x[:n]) & np.isfinite(y[:n]) & np.all(np.isfinite(before), axis=1)
    if after.shape[0] == n:
        ok &= np.all(np.isfinite(after), axis=1)
        after = after[ok]
    return ResidualVectors(x[:n][ok], y[:n][ok], before[ok], after)


@dataclass(frozen=True)
class ResidualArrows:
    """The residual arrows a figure draws: per star, or per cell when the stars are many.

    Attributes
    ----------
    x, y : ndarray
        Arrow positions (stars, or the centres of cells holding stars), pixels.
    before, after : ndarray, shape (n, 2)
        The residual (mean residual of the cell's stars), pixels; ``after`` empty when
        not reported.
    binned : bool
        True for cell means.
    n_stars : int
        Stars behind the arrows.
    """

    x: np.ndarray
    y: np.ndarray
    before: np.ndarray
    after: np.ndarray
    binned: bool
    n_stars: int

    @property
    def typical(self) -> float:
        """95th percentile of the ``before`` arrow lengths, pixels (0 without arrows)."""
        if self.before.size == 0:
            return 0.0
        return float(np.percentile(np.hypot(self.before[:, 0], self.before[:, 1]), 95))

    def gain(self, width: float) -> float:
        """Magnification drawing the `typical` arrow ``_ARROW_FRACTION`` of ``width`` long
        (1 without arrows)."""
        return _ARROW_FRACTION * width / self.typical if self.typical > 0 else 1.0


def residual_arrows(stars: ResidualVectors, extent: tuple[float, float, float, float],
                    cells: int = _BIN_CELLS) -> ResidualArrows:
    """Per-star arrows, or with at least `_BIN_STARS` stars the mean residual in each of
    ``cells x cells`` cells over ``extent`` holding at least `_CELL_STARS` stars: the
    systematic pattern a distortion leaves, which centroid noise hides star by star."""
    n = stars.x.size
    if n < _BIN_STARS:
        return ResidualArrows(stars.x, stars.y, stars.before, stars.after, False, n)
    x0, x1, y0, y1 = extent
    ix = np.clip(((stars.x - x0) / max(x1 - x0, 1e-9) * cells).astype(int), 0, cells - 1)
    iy = np.clip(((stars.y - y0) / max(y1 - y0, 1e-9) * cells).astype(int), 0, cells - 1)
    cell = iy * cells + ix
    counts = np.bincount(cell, minlength=cells * cells)
    keep = np.flatnonzero(counts >= _CELL_STARS)

    def means(vectors: np.ndarray) -> np.ndarray:
        if vectors.shape[0] != n:
            return np.zeros((0, 2))
        return np.column_stack([np.bincount(cell, weights=vectors[:, k],
                                            minlength=cells * cells)[keep] / counts[keep]
                                for k in (0, 1)])

    cx = x0 + (keep % cells + 0.5) * (x1 - x0) / cells
    cy = y0 + (keep // cells + 0.5) * (y1 - y0) / cells
    return ResidualArrows(cx, cy, means(stars.before), means(stars.after), True,
                          int(counts[keep].sum()))


def correction_of(entry: Mapping[str, Any]) -> DistortionCorrection | None:
    """The entry's correction, or None when none was fitted."""
    data = entry.get("correction")
    return DistortionCorrection.from_dict(data) if isinstance(data, Mapping) else None


def _extent(entry: Mapping[str, Any], correction: DistortionCorrection
            ) -> tuple[float, float, float, float]:
    """The detector: ``shape`` of the entry when given, else the stars' extent, else
    the correction's centre +- scale."""
    shape = entry.get("shape")
    if isinstance(shape, list | tuple) and len(shape) == 2:
        return (-0.5, float(shape[1]) - 0.5, -0.5, float(shape[0]) - 0.5)
    stars = residual_vectors(entry)
    if stars.x.size >= 4 and np.ptp(stars.x) > 0 and np.ptp(stars.y) > 0:
        return (float(stars.x.min()), float(stars.x.max()),
                float(stars.y.min()), float(stars.y.max()))
    (x0, y0), s = correction.center, correction.scale
    return (x0 - s, x0 + s, y0 - s, y0 + s)


def distortion_field(entry: Mapping[str, Any], n: int = _FIELD_GRID,
                     n_map: int = _MAP_GRID) -> DistortionField | None:
    """The entry's correction over its detector, or None when none was fitted.

    Parameters
    ----------
    entry : mapping
        One detector of the report's ``distortion``.
    n, n_map : int
        Arrows per axis, cells per axis of the magnitude map.
    """
    correction = correction_of(entry)
    if correction is None:
        return None
    extent = _extent(entry, correction)
    gx, gy = np.linspace(extent[0], extent[1], n), np.linspace(extent[2], extent[3], n)
    x, y = np.meshgrid(gx, gy)
    dx, dy = correction.offsets(x, y)
    # cell centres of the map
    mx = extent[0] + (np.arange(n_map) + 0.5) * (extent[1] - extent[0]) / n_map
    my = extent[2] + (np.arange(n_map) + 0.5) * (extent[3] - extent[2]) / n_map
    mdx, mdy = correction.offsets(*np.meshgrid(mx, my))
    return DistortionField(extent, x, y, dx, dy, np.hypot(mdx, mdy))


def distortion_filename(detector: str) -> str:
    """``distortion_<detector>.png`` with every character but letters, digits, ``-`` and
    ``.`` replaced by ``_`` (``NIRCAM/NRCB1`` -> ``distortion_NIRCAM_NRCB1.png``)."""
    return f"distortion_{re.sub(r'[^A-Za-z0-9.-]+', '_', detector).strip('_') or 'detector'}.png"


def _title(detector: str, entry: Mapping[str, Any]) -> str:
    applied = "applied" if entry.get("applied") else "not applied"
    line = f"{detector}: degree {entry.get('degree', '-')}, {applied}"
    held = entry.get("held_back") or {}
    before, after = held.get("rms_before_mas"), held.get("rms_after_mas")
    if isinstance(before, int | float) and isinstance(after, int | float):
        line += (f"; held-back {held.get('n', '-')} pairs: rms {before:.2f} -> "
                 f"{after:.2f} mas")
    reason = str(entry.get("reason") or "")
    if reason:
        line += "\n" + (reason if len(reason) <= 90 else reason[:87] + "...")
    return line


def plot_distortion(detector: str, entry: Mapping[str, Any], path: str | Path) -> Path:
    """Write the figure of one detector (see the module docstring)."""
    figure_cls = _require_matplotlib()
    path = Path(path)
    field = distortion_field(entry)
    stars = residual_vectors(entry)
    fig = figure_cls(figsize=(11.0, 9.6))
    fig.subplots_adjust(left=0.07, right=0.95, bottom=0.06, top=0.88, wspace=0.35, hspace=0.38)
    (ax_field, ax_map), (ax_before, ax_after) = fig.subplots(2, 2)
    extent = field.extent if field is not None else (
        (float(stars.x.min()), float(stars.x.max()), float(stars.y.min()), float(stars.y.max()))
        if stars.x.size else (0.0, 1.0, 0.0, 1.0))
    width = max(extent[1] - extent[0], extent[3] - extent[2])
    if field is not None:
        largest = max(field.max_px, 1e-12)
        magnify = _nice(_ARROW_FRACTION * width / largest)
        arrows = ax_field.quiver(field.x, field.y, field.dx, field.dy, angles="xy",
                                 scale_units="xy", scale=1.0 / magnify, width=0.003,
                                 color="C0")
        key = _nice(largest)
        ax_field.quiverkey(arrows, 0.78, 1.03, key, f"{key:g} px", labelpos="E",
                           coordinates="axes")
        ax_field.set_title(f"correction\narrows x {magnify:g}", loc="left", fontsize="medium")
        shown = ax_map.imshow(field.magnitude, origin="lower", extent=field.extent,
                              cmap="viridis", aspect="equal")
        bar = fig.colorbar(shown, ax=ax_map, shrink=0.85, label="|correction| [px]")
        pixel_scale = entry.get("pixel_scale")
        if isinstance(pixel_scale, int | float) and pixel_scale > 0:
            mas = bar.ax.secondary_yaxis("left", functions=(
                lambda px: px * 1000.0 * pixel_scale, lambda m: m / (1000.0 * pixel_scale)))
            mas.set_ylabel("[mas]")
        ax_map.set_title(f"|correction|\nlargest {field.max_px:.3f} px", loc="left",
                         fontsize="medium")
    else:
        magnify = 1.0
        for ax in (ax_field, ax_map):
            ax.text(0.5, 0.5, "no correction fitted", transform=ax.transAxes, ha="center",
                    va="center")
    arrows_of = residual_arrows(stars, extent)
    res_magnify = _nice(arrows_of.gain(width))
    key = _nice(arrows_of.typical)
    for ax, vectors, label, every in ((ax_before, arrows_of.before, "before", stars.before),
                                      (ax_after, arrows_of.after, "after", stars.after)):
        if vectors.size:
            arrows = ax.quiver(arrows_of.x, arrows_of.y, vectors[:, 0], vectors[:, 1],
                               angles="xy", scale_units="xy", scale=1.0 / res_magnify,
                               width=0.004 if arrows_of.binned else 0.0025,
                               color="C3" if label == "before" else "C2")
            ax.quiverkey(arrows, 0.88, 1.03, key, f"{key:g} px", labelpos="E",
                         coordinates="axes")
            what = (f"{arrows_of.n_stars} stars, mean per cell" if arrows_of.binned
                    else f"{len(vectors)} stars")
            ax.set_title(f"{label}: {what}\nrms {ResidualVectors._rms(every):.3f} px, "
                         f"arrows x {res_magnify:g}", loc="left", fontsize="medium")
        else:
            ax.text(0.5, 0.5, f"no residuals {label}", transform=ax.transAxes, ha="center",
                    va="center")
    for ax in (ax_field, ax_map, ax_before, ax_after):
        ax.set_xlim(extent[0], extent[1])
        ax.set_ylim(extent[2], extent[3])
        ax.set_aspect("equal")
        ax.set_xlabel("x [px]")
        ax.set_ylabel("y [px]")
    fig.suptitle(_title(detector, entry))
    fig.savefig(path, dpi=90)
    return path


def write_distortion_plots(distortion: Mapping[str, Any] | None, outdir: str | Path
                           ) -> list[Path]:
    """One ``distortion_<detector>.png`` per detector of a report's ``distortion``.

    Parameters
    ----------
    distortion : mapping or None
        ``report["distortion"]``: detector -> entry. None or empty: nothing written.
    outdir : str or Path
        Directory of the figures (created if needed).

    Returns
    -------
    list of Path
        Files written.
    """
    if not distortion:
        return []
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    return [plot_distortion(str(detector), entry, outdir / distortion_filename(str(detector)))
            for detector, entry in distortion.items() if isinstance(entry, Mapping)]
