"""The distortion section of the HTML report: one block per detector, SVG only.

Shown when the run's report has a ``distortion`` entry (the distortion refinement
ran): per detector, the facts (applied or not and why, degree, the held-back check),
the fitted correction field (arrows over its magnitude) and the matched stars'
residuals before and after, all in detector pixels. The numbers come from
`aligncore.plots.distortion` (no matplotlib).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from aligncore.htmlreport.markup import esc, key_value_table
from aligncore.htmlreport.svg import _Frame, _nice, _scale_bar, _subsample, _svg
from aligncore.plots.distortion import (
    DistortionField,
    ResidualArrows,
    ResidualVectors,
    distortion_field,
    residual_arrows,
    residual_vectors,
)

__all__ = ["distortion_section", "field_svg", "residuals_svg"]

_MAP_CELLS = 24  # cells per axis of the magnitude map
_ARROW_FRACTION = 0.07  # the largest arrow is drawn this fraction of the detector wide


def _frame(extent: tuple[float, float, float, float], width: float) -> _Frame:
    """Pixels, x right and y up, equal aspect."""
    span = max(extent[1] - extent[0], extent[3] - extent[2], 1e-9)
    cx, cy = (extent[0] + extent[1]) / 2.0, (extent[2] + extent[3]) / 2.0
    return _Frame((cx - span / 2, cx + span / 2), (cy - span / 2, cy + span / 2), width, width)


def _arrows(frame: _Frame, x: np.ndarray, y: np.ndarray, dx: np.ndarray, dy: np.ndarray,
            gain: float, color: str) -> str:
    keep = _subsample(x.size)
    x0, y0 = frame.x(x[keep]), frame.y(y[keep])
    x1, y1 = frame.x(x[keep] + gain * dx[keep]), frame.y(y[keep] + gain * dy[keep])
    path = "".join(f"M{a:.1f} {b:.1f}L{c:.1f} {d:.1f}"
                   for a, b, c, d in zip(x0, y0, x1, y1, strict=True))
    dots = "".join(f"M{a:.1f} {b:.1f}h0.01" for a, b in zip(x0, y0, strict=True))
    return (f'<path d="{path}" stroke="{color}" stroke-width="1.2" fill="none"/>'
            f'<path d="{dots}" stroke="#000" stroke-width="2" stroke-linecap="round"/>')


def _outline(frame: _Frame, extent: tuple[float, float, float, float]) -> str:
    x0, x1, y0, y1 = (float(v) for v in (frame.x(extent[0]), frame.x(extent[1]),
                                         frame.y(extent[2]), frame.y(extent[3])))
    return (f'<rect x="{min(x0, x1):.1f}" y="{min(y0, y1):.1f}" width="{abs(x1 - x0):.1f}" '
            f'height="{abs(y1 - y0):.1f}" fill="none" stroke="#888"/>')


def field_svg(field: DistortionField, *, width: float = 340.0) -> str:
    """The correction as arrows (magnified) over a map of its length (darker: longer)."""
    frame = _frame(field.extent, width)
    body = ['<rect width="100%" height="100%" fill="#fff"/>']
    cells = field.magnitude
    if cells.shape[0] > _MAP_CELLS:  # average blocks down to at most _MAP_CELLS per axis
        k = math.ceil(cells.shape[0] / _MAP_CELLS)
        n = cells.shape[0] // k
        cells = cells[:n * k, :n * k].reshape(n, k, n, k).mean(axis=(1, 3))
    peak = max(float(np.max(cells)) if cells.size else 0.0, 1e-12)
    ny, nx = cells.shape
    x0, x1, y0, y1 = field.extent
    cw, ch = (x1 - x0) / nx, (y1 - y0) / ny
    for iy in range(ny):
        for ix in range(nx):
            left, top = float(frame.x(x0 + ix * cw)), float(frame.y(y0 + (iy + 1) * ch))
            body.append(f'<rect x="{left:.1f}" y="{top:.1f}" width="{cw * frame.sx + 0.3:.1f}" '
                        f'height="{ch * frame.sy + 0.3:.1f}" fill="#08306b" '
                        f'fill-opacity="{0.05 + 0.55 * cells[iy, ix] / peak:.2f}"/>')
    body.append(_outline(frame, field.extent))
    largest = max(field.max_px, 1e-12)
    gain = _ARROW_FRACTION * max(x1 - x0, y1 - y0) / largest
    body.append(_arrows(frame, field.x.ravel(), field.y.ravel(), field.dx.ravel(),
                        field.dy.ravel(), gain, "#f0a020"))
    key = _nice(largest)
    body.append(_scale_bar(frame, gain * key, f"{key:g} px"))
    body.append(f'<text x="6" y="14">correction, largest {field.max_px:.3f} px</text>')
    return _svg(width, width, body, "distortion correction field")


def residuals_svg(arrows: ResidualArrows, vectors: np.ndarray, every: np.ndarray, gain: float,
                  extent: tuple[float, float, float, float], *, title: str, key: float,
                  width: float = 300.0) -> str:
    """Residual arrows (pixels; per star or per cell) magnified by ``gain``, with a scale
    bar ``key`` pixels long; the RMS is that of every star's residual (``every``)."""
    frame = _frame(extent, width)
    body = ['<rect width="100%" height="100%" fill="#fff"/>', _outline(frame, extent)]
    if vectors.size == 0:
        body.append(f'<text x="{width / 2:.0f}" y="{width / 2:.0f}" text-anchor="middle" '
                    'class="muted">no residuals</text>')
    else:
        body.append(_arrows(frame, arrows.x, arrows.y, vectors[:, 0], vectors[:, 1], gain,
                            "#c0392b"))
        body.append(_scale_bar(frame, gain * key, f"{key:g} px"))
        title = f"{title}: rms {ResidualVectors._rms(every):.3f} px"
    body.append(f'<text x="6" y="14">{esc(title)}</text>')
    return _svg(width, width, body, esc(title))


def _anchor(detector: str) -> str:
    return "distortion-" + (re.sub(r"[^A-Za-z0-9-]+", "-", detector).strip("-") or "detector")


def _number(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, int | float) and math.isfinite(value) \
        else "-"


def _block(detector: str, entry: Mapping[str, Any]) -> str:
    held = entry.get("held_back") or {}
    facts = {"applied": "yes" if entry.get("applied") else "no",
             "reason": entry.get("reason") or "-",
             "degree": entry.get("degree", "-"),
             "held-back pairs": held.get("n", "-"),
             "held-back rms before [mas]": _number(held.get("rms_before_mas"), ".3f"),
             "held-back rms after [mas]": _number(held.get("rms_after_mas"), ".3f")}
    field = distortion_field(entry)
    stars = residual_vectors(entry)
    svgs = []
    if field is not None:
        svgs.append(field_svg(field))
        extent = field.extent
    elif stars.x.size:
        extent = (float(stars.x.min()), float(stars.x.max()),
                  float(stars.y.min()), float(stars.y.max()))
    else:
        extent = (0.0, 1.0, 0.0, 1.0)
    if stars.before.size:
        arrows = residual_arrows(stars, extent)
        span = max(extent[1] - extent[0], extent[3] - extent[2])
        gain, key = arrows.gain(span), _nice(arrows.typical)
        what = f"{arrows.n_stars} stars" + (", mean per cell" if arrows.binned else "")
        for vectors, every, label in ((arrows.before, stars.before, "before"),
                                      (arrows.after, stars.after, "after")):
            svgs.append(residuals_svg(arrows, vectors, every, gain, extent, key=key,
                                      title=f"{label} ({what})"))
    return (f'<div class="fig" id="{esc(_anchor(detector))}"><h3>{esc(detector)}</h3>'
            f'<div class="figs"><div>{key_value_table(facts)}</div>{"".join(svgs)}</div>'
            "</div>")


def distortion_section(distortion: Mapping[str, Any] | None) -> str:
    """The report's distortion section, or ``""`` when the run refined no distortion."""
    if not isinstance(distortion, Mapping) or not distortion:
        return ""
    blocks = "".join(_block(str(detector), entry) for detector, entry in distortion.items()
                     if isinstance(entry, Mapping))
    return ('<h2 id="distortion">Distortion</h2>'
            '<p class="muted">Per detector: the fitted correction in pixels (arrows magnified, '
            "darker cells: larger corrections) and the residuals of the matched stars before "
            "and after it, drawn at the same magnification (from 100 stars on, the mean "
            "residual in each of 8 x 8 cells). The correction is applied only when the "
            "held-back pairs improve.</p>" + blocks)
