"""Per-image figures of the HTML report: which images first, and their SVGs.

Only the images asked for are computed: positions of every image's catalog
are projected once, and each image is paired only with the images whose
footprint box overlaps its own, so a 1000-image run costs about as much as
the few dozen figures it shows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from aligncore.htmlreport import svg as _svg
from aligncore.plots.figures import (
    _DEFAULT_SEARCHRAD,
    _match_radius,
    _mutual_pairs,
    _nominal_tp,
    _pixel_scale,
    _tp,
    offset_histogram,
)
from aligncore.tangent import TangentPlane
from aligncore.types import AlignImage, AlignResult, ImageResult, Status

__all__ = ["ImageFigures", "image_figures", "worst_first"]


@dataclass(frozen=True)
class ImageFigures:
    """The inline SVG figures of one image.

    Attributes
    ----------
    index : int
        Position of the image in the run.
    image : ImageResult
        Its result.
    svgs : tuple of str
        The figures.
    note : str
        A one-line description of the numbers shown.
    """

    index: int
    image: ImageResult
    svgs: tuple[str, ...]
    note: str


def _badness(image: ImageResult) -> tuple[int, float, float]:
    """Sort key, smallest first: failed, then RMS / expected RMS, then RMS."""
    rms = image.fit.rmse * 1000.0 if image.fit is not None and image.fit.n_used else 0.0
    expected = image.meta.get("expected_rms_mas")
    ratio = rms / expected if isinstance(expected, int | float) and expected > 0 else 0.0
    return (0 if image.status == Status.FAILED else 1, -ratio, -rms)


def worst_first(images: Sequence[ImageResult]) -> list[int]:
    """Indices of the images, failed ones first, then the worst fits relative to their noise."""
    return sorted(range(len(images)), key=lambda i: _badness(images[i]))


def _box(xy: np.ndarray, margin: float) -> np.ndarray:
    if len(xy) == 0:
        return np.array([np.inf, np.inf, -np.inf, -np.inf])
    return np.concatenate([xy.min(axis=0) - margin, xy.max(axis=0) + margin])


def _overlapping(boxes: np.ndarray, i: int) -> np.ndarray:
    b = boxes[i]
    hit = ((boxes[:, 0] <= b[2]) & (boxes[:, 2] >= b[0])
           & (boxes[:, 1] <= b[3]) & (boxes[:, 3] >= b[1]))
    hit[i] = False
    return np.flatnonzero(hit)


def _searchrad(image: ImageResult) -> float:
    match = image.meta.get("match") or {}
    value = match.get("searchrad") if isinstance(match, dict) else None
    return float(value) if isinstance(value, int | float) and value > 0 else _DEFAULT_SEARCHRAD


def image_figures(result: AlignResult, plane: TangentPlane, indices: Sequence[int],
                  images: Sequence[AlignImage] | None = None) -> dict[int, ImageFigures]:
    """Residual quiver and offset histogram (or residual scatter) of the given images.

    Parameters
    ----------
    result : AlignResult
        The run.
    plane : TangentPlane
        Its tangent plane.
    indices : sequence of int
        Images to draw.
    images : sequence of AlignImage, optional
        The inputs (their WCS gives the positions before alignment).

    Returns
    -------
    dict
        Index -> figures.
    """
    have_catalogs = any(r.catalog is not None and len(r.catalog) for r in result.images)
    if not have_catalogs:
        return {i: _scatter_only(i, result.images[i]) for i in indices}
    positions = [_tp(r.wcs, r.catalog, plane) for r in result.images]
    radius = _match_radius(result, plane)
    reach = max(_searchrad(result.images[i]) for i in indices) if indices else 0.0
    boxes = np.array([_box(xy, reach + radius) for xy in positions])
    ok = np.array([r.ok for r in result.images])
    out = {}
    for i in indices:
        image = result.images[i]
        others = [j for j in _overlapping(boxes, i) if ok[j]]
        xy, res = [], []
        for j in others:
            ia, jb = _mutual_pairs(positions[i], positions[j], radius)
            xy.append(positions[i][ia])
            res.append(positions[j][jb] - positions[i][ia])
        xy_all = np.concatenate(xy) if xy else np.zeros((0, 2))
        res_all = np.concatenate(res) if res else np.zeros((0, 2))
        quiver = _svg.quiver_svg(xy_all, res_all, title="residuals vs. other images")
        searchrad = _searchrad(image)
        nominal = _nominal_tp(i, image, plane, images)
        reference = (np.concatenate([positions[j] for j in others]) if others
                     else np.zeros((0, 2)))
        hist, centers = offset_histogram(nominal, reference, searchrad,
                                         _pixel_scale(image, plane))
        offset = image.meta.get("offset_arcsec")
        offset = offset if isinstance(offset, list | tuple) and len(offset) == 2 else None
        histogram = _svg.histogram_svg(hist, centers, offset=offset,
                                       title="offsets at the input WCS")
        rms = float(np.sqrt(np.mean(np.sum(res_all**2, axis=1)))) * 1000 if len(res_all) \
            else math.nan
        note = (f"{len(res_all)} pairs with {len(others)} overlapping aligned images, "
                f"RMS {rms:.2f} mas; search radius {searchrad:g}\".")
        out[i] = ImageFigures(i, image, (quiver, histogram), note)
    return out


def _scatter_only(index: int, image: ImageResult) -> ImageFigures:
    """Without catalogs: the fit's own residuals against its noise bound."""
    fit = image.fit
    residuals = fit.residuals[fit.fitmask] if fit is not None and fit.fitmask.size \
        else np.zeros((0, 2))
    expected = image.meta.get("expected_rms_mas")
    expected = float(expected) if isinstance(expected, int | float) else None
    svg = _svg.scatter_svg(residuals, title="fit residuals", expected_mas=expected)
    return ImageFigures(index, image, (svg,), f"{len(residuals)} residuals kept by the fit.")
