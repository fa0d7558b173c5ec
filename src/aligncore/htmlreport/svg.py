"""Inline SVG figures drawn with numpy only: footprint maps, residual quivers and scatters,
2D offset histograms.

Sky coordinates are tangent-plane arcsec (``xi`` East, ``eta`` North) and are
drawn East to the left, North up, as on the sky. Figures are strings to be
inlined in an HTML page; matplotlib is not needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from aligncore.htmlreport.markup import esc

__all__ = ["STATUS_COLORS", "Footprint", "histogram_svg", "quiver_svg", "scatter_svg",
           "sky_map_svg"]

STATUS_COLORS = {"SUCCESS": "#2e8b57", "REFERENCE": "#1f5fbf", "FAILED": "#d62728",
                 "SKIPPED": "#999999"}
"""Fill colour of each image status in the maps."""

_MAX_POINTS = 3000  # points or arrows drawn per figure (an even subsample beyond)


@dataclass(frozen=True)
class Footprint:
    """One image outline on the sky map.

    Attributes
    ----------
    name : str
        Image name (the tooltip).
    status : str
        ``SUCCESS``, ``REFERENCE``, ``FAILED`` or ``SKIPPED``.
    corners : ndarray, shape (k, 2)
        Tangent-plane corners in arcsec.
    anchor : str
        Fragment the outline links to (e.g. the image's table row), empty for none.
    """

    name: str
    status: str
    corners: np.ndarray
    anchor: str = ""


class _Frame:
    """Linear mapping of a data box onto an SVG box (y up; x reversed for the sky)."""

    def __init__(self, xlim: tuple[float, float], ylim: tuple[float, float], width: float,
                 height: float, pad: float = 30.0, flip_x: bool = False) -> None:
        self.x0, self.x1 = xlim
        self.y0, self.y1 = ylim
        self.width, self.height, self.pad, self.flip_x = width, height, pad, flip_x
        self.sx = (width - 2 * pad) / max(self.x1 - self.x0, 1e-12)
        self.sy = (height - 2 * pad) / max(self.y1 - self.y0, 1e-12)

    def x(self, value: np.ndarray | float) -> np.ndarray:
        offset = (self.x1 - np.asarray(value)) if self.flip_x else (np.asarray(value) - self.x0)
        return self.pad + offset * self.sx

    def y(self, value: np.ndarray | float) -> np.ndarray:
        return self.height - self.pad - (np.asarray(value) - self.y0) * self.sy


def _limits(values: np.ndarray, margin: float = 0.05) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return (-1.0, 1.0)
    low, high = float(finite.min()), float(finite.max())
    span = max(high - low, 1e-9)
    return (low - margin * span, high + margin * span)


def _square(xlim: tuple[float, float], ylim: tuple[float, float]
            ) -> tuple[tuple[float, float], tuple[float, float]]:
    """Grow the smaller axis so that both have the same span (equal aspect)."""
    half = max(xlim[1] - xlim[0], ylim[1] - ylim[0]) / 2.0
    cx, cy = sum(xlim) / 2.0, sum(ylim) / 2.0
    return (cx - half, cx + half), (cy - half, cy + half)


def _nice(value: float) -> float:
    """The largest 1, 2 or 5 times a power of ten not above ``value``."""
    if not (value > 0 and math.isfinite(value)):
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (5.0, 2.0, 1.0):
        if step * power <= value:
            return step * power
    return power


def _svg(width: float, height: float, body: Sequence[str], label: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" '
            f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
            f'aria-label="{esc(label)}">{"".join(body)}</svg>')


def _points(xs: np.ndarray, ys: np.ndarray) -> str:
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))


def _subsample(n: int) -> np.ndarray:
    if n <= _MAX_POINTS:
        return np.arange(n)
    return np.linspace(0, n - 1, _MAX_POINTS).astype(int)


def _scale_bar(frame: _Frame, length: float, text: str) -> str:
    """A horizontal bar ``length`` data units long in the bottom-left corner."""
    pixels = length * frame.sx
    x0, y0 = frame.pad, frame.height - frame.pad / 3
    return (f'<line x1="{x0:.1f}" y1="{y0:.1f}" x2="{x0 + pixels:.1f}" y2="{y0:.1f}" '
            f'stroke="#000" stroke-width="2"/><text x="{x0 + pixels + 4:.1f}" '
            f'y="{y0 + 4:.1f}">{esc(text)}</text>')


def sky_map_svg(footprints: Sequence[Footprint], *, width: float = 640.0) -> str:
    """All image outlines coloured by status; the reference image drawn thick with a star.

    One polygon per image (with a tooltip and a link to ``#anchor``), East
    left, North up, and a scale bar in arcsec.
    """
    usable = [f for f in footprints if f.corners.size and np.all(np.isfinite(f.corners))]
    allxy = np.concatenate([f.corners for f in usable]) if usable else np.zeros((0, 2))
    xlim, ylim = _square(_limits(allxy[:, 0]) if len(allxy) else (-1.0, 1.0),
                         _limits(allxy[:, 1]) if len(allxy) else (-1.0, 1.0))
    frame = _Frame(xlim, ylim, width, width, flip_x=True)
    stroke = 0.4 if len(usable) > 200 else 1.0
    body = ['<rect width="100%" height="100%" fill="#fff"/>']
    # failed images on top so that they are never hidden under aligned neighbours
    order = sorted(usable, key=lambda f: (f.status == "FAILED", f.status == "REFERENCE"))
    for fp in order:
        color = STATUS_COLORS.get(fp.status, "#999999")
        reference = fp.status == "REFERENCE"
        poly = (f'<polygon class="fp {esc(fp.status.lower())}" '
                f'points="{_points(frame.x(fp.corners[:, 0]), frame.y(fp.corners[:, 1]))}" '
                f'fill="{color}" fill-opacity="{0.6 if fp.status == "FAILED" else 0.25}" '
                f'stroke="{color}" '
                f'stroke-width="{3 * stroke if reference else stroke}">'
                f"<title>{esc(fp.name)}: {esc(fp.status)}</title></polygon>")
        if fp.anchor:
            poly = f'<a href="#{esc(fp.anchor)}">{poly}</a>'
        body.append(poly)
        if reference:
            cx, cy = fp.corners.mean(axis=0)
            body.append(f'<text x="{float(frame.x(cx)):.1f}" y="{float(frame.y(cy)) + 6:.1f}" '
                        f'text-anchor="middle" font-size="18" fill="{color}">&#9733;</text>')
    span = xlim[1] - xlim[0]
    bar = _nice(span / 4.0)
    body.append(_scale_bar(frame, bar, f'{bar:g}"'))
    body.append(f'<text x="{width - 8:.0f}" y="16" text-anchor="end">N &#8593;  E &#8592;</text>')
    return _svg(width, width, body, "sky map of the image footprints")


def quiver_svg(xy: np.ndarray, residuals: np.ndarray, *, outline: np.ndarray | None = None,
               width: float = 360.0, title: str = "") -> str:
    """Residual vectors (arcsec) at their sky positions (arcsec), magnified to be visible.

    An RMS-long residual is drawn 6 % of the field wide; the key gives the
    length of a drawn arrow in mas.
    """
    xy = np.asarray(xy, dtype=float).reshape(-1, 2)
    res = np.asarray(residuals, dtype=float).reshape(-1, 2)
    box = np.concatenate([xy, outline]) if outline is not None and outline.size else xy
    xlim, ylim = _square(_limits(box[:, 0]), _limits(box[:, 1]))
    frame = _Frame(xlim, ylim, width, width, flip_x=True)
    body = ['<rect width="100%" height="100%" fill="#fff"/>']
    if title:
        body.append(f'<text x="6" y="14">{esc(title)}</text>')
    if outline is not None and outline.size:
        body.append(f'<polygon points="{_points(frame.x(outline[:, 0]), frame.y(outline[:, 1]))}"'
                    ' fill="none" stroke="#888"/>')
    if len(xy) == 0:
        body.append(f'<text x="{width / 2:.0f}" y="{width / 2:.0f}" text-anchor="middle" '
                    'class="muted">no matched sources</text>')
        return _svg(width, width, body, "residual quiver")
    rms = float(np.sqrt(np.mean(np.sum(res**2, axis=1))))
    gain = 0.06 * (xlim[1] - xlim[0]) / rms if rms > 0 else 1.0
    keep = _subsample(len(xy))
    x0, y0 = frame.x(xy[keep, 0]), frame.y(xy[keep, 1])
    x1 = frame.x(xy[keep, 0] + gain * res[keep, 0])
    y1 = frame.y(xy[keep, 1] + gain * res[keep, 1])
    path = "".join(f"M{a:.1f} {b:.1f}L{c:.1f} {d:.1f}"
                   for a, b, c, d in zip(x0, y0, x1, y1, strict=True))
    body.append(f'<path d="{path}" stroke="#c0392b" stroke-width="1" fill="none"/>')
    dots = "".join(f"M{a:.1f} {b:.1f}h0.01" for a, b in zip(x0, y0, strict=True))
    body.append(f'<path d="{dots}" stroke="#000" stroke-width="2.5" stroke-linecap="round"/>')
    key_mas = _nice(rms * 1000.0)
    body.append(_scale_bar(frame, gain * key_mas / 1000.0, f"{key_mas:g} mas"))
    return _svg(width, width, body, "residual quiver")


def scatter_svg(residuals: np.ndarray, *, width: float = 300.0, title: str = "",
                expected_mas: float | None = None) -> str:
    """Residuals (arcsec) as points in mas, with their RMS circle (and the expected RMS)."""
    res = np.asarray(residuals, dtype=float).reshape(-1, 2) * 1000.0
    res = res[np.all(np.isfinite(res), axis=1)]
    body = ['<rect width="100%" height="100%" fill="#fff"/>']
    if title:
        body.append(f'<text x="6" y="14">{esc(title)}</text>')
    if len(res) == 0:
        body.append(f'<text x="{width / 2:.0f}" y="{width / 2:.0f}" text-anchor="middle" '
                    'class="muted">no residuals</text>')
        return _svg(width, width, body, "residual scatter")
    rms = float(np.sqrt(np.mean(np.sum(res**2, axis=1))))
    reach = max(float(np.percentile(np.abs(res), 99)), rms, 1e-6) * 1.15
    frame = _Frame((-reach, reach), (-reach, reach), width, width)
    cx, cy = float(frame.x(0.0)), float(frame.y(0.0))
    body.append(f'<path d="M{frame.pad} {cy:.1f}H{width - frame.pad}M{cx:.1f} {frame.pad}'
                f'V{width - frame.pad}" stroke="#ccc"/>')
    keep = _subsample(len(res))
    inside = np.all(np.abs(res[keep]) <= reach, axis=1)
    px, py = frame.x(res[keep][inside, 0]), frame.y(res[keep][inside, 1])
    dots = "".join(f"M{a:.1f} {b:.1f}h0.01" for a, b in zip(px, py, strict=True))
    body.append(f'<path d="{dots}" stroke="#1f5fbf" stroke-width="3" stroke-linecap="round" '
                'stroke-opacity="0.6"/>')
    body.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{rms * frame.sx:.1f}" fill="none" '
                'stroke="#c0392b"><title>RMS</title></circle>')
    if expected_mas is not None and math.isfinite(expected_mas) and expected_mas > 0:
        body.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{expected_mas * frame.sx:.1f}" '
                    'fill="none" stroke="#2e8b57" stroke-dasharray="4 3">'
                    '<title>expected RMS</title></circle>')
    body.append(f'<text x="6" y="{width - 6:.0f}">RMS {rms:.2f} mas; axes &#177;{reach:.3g} mas'
                f"{f'; expected {expected_mas:.2f} mas' if expected_mas else ''}</text>")
    return _svg(width, width, body, "residual scatter")


def _merge_bins(hist: np.ndarray, centers: np.ndarray, max_bins: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Sum ``factor x factor`` blocks of a square histogram with an odd number of bins,
    zero-padded symmetrically so that the middle bin stays in the middle and no bin is lost.
    """
    size = hist.shape[0]
    factor = max(1, math.ceil(size / max_bins))
    if factor == 1:
        return hist, centers
    factor += 1 - factor % 2  # odd blocks keep the middle bin centred
    n = math.ceil(size / factor)
    n += 1 - n % 2
    low = (n * factor - size) // 2
    padded = np.zeros((n * factor, n * factor))
    padded[low:low + size, low:low + size] = hist
    merged = padded.reshape(n, factor, n, factor).sum(axis=(1, 3))
    step = float(centers[1] - centers[0]) * factor
    middle = float(centers[size // 2])
    return merged, middle + (np.arange(n) - n // 2) * step


def histogram_svg(hist: np.ndarray, centers: np.ndarray, *, offset: Sequence[float] | None = None,
                  width: float = 300.0, max_bins: int = 41, title: str = "") -> str:
    """A 2D histogram ``hist[iy, ix]`` over offsets ``centers`` (arcsec, both axes).

    Bins are merged to at most ``max_bins`` per axis; darker cells hold more
    pairs. The cross marks the zero offset, the circle ``offset`` (e.g. the
    matcher's peak).
    """
    hist, centers = _merge_bins(np.asarray(hist, dtype=float),
                                np.asarray(centers, dtype=float), max_bins)
    step = float(centers[1] - centers[0]) if len(centers) > 1 else 1.0
    low, high = float(centers[0]) - step / 2, float(centers[-1]) + step / 2
    frame = _Frame((low, high), (low, high), width, width)
    body = ['<rect width="100%" height="100%" fill="#fff"/>']
    if title:
        body.append(f'<text x="6" y="14">{esc(title)}</text>')
    peak = float(hist.max()) if hist.size else 0.0
    cell = step * frame.sx
    for iy, ix in zip(*np.nonzero(hist), strict=True):
        level = hist[iy, ix] / peak
        x = float(frame.x(centers[ix] - step / 2))
        y = float(frame.y(centers[iy] + step / 2))
        body.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{cell + 0.2:.1f}" '
                    f'height="{cell + 0.2:.1f}" fill="#08306b" '
                    f'fill-opacity="{0.08 + 0.92 * level:.2f}"/>')
    cx, cy = float(frame.x(0.0)), float(frame.y(0.0))
    body.append(f'<path d="M{cx - 8:.1f} {cy:.1f}h16M{cx:.1f} {cy - 8:.1f}v16" stroke="#888"/>')
    if offset is not None and all(math.isfinite(v) for v in offset):
        body.append(f'<circle cx="{float(frame.x(offset[0])):.1f}" '
                    f'cy="{float(frame.y(offset[1])):.1f}" r="7" fill="none" stroke="#d62728" '
                    'stroke-width="2"><title>matcher offset</title></circle>')
    body.append(f'<text x="6" y="{width - 6:.0f}">offsets &#177;{high:.3g}"; '
                f"peak {peak:.0f} pairs</text>")
    return _svg(width, width, body, "offset histogram")
