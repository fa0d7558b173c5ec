"""Accuracy of WCS solutions against the simulator's truth.

The error of a WCS is measured on a regular grid of pixels over its image:
the distance on the sky between where the WCS puts each pixel and where the
true WCS puts it. Relative alignment cannot observe a transform shared by all
images, so the relative error first removes the best common affine transform
(six parameters fitted by least squares to all images' grid points at once,
in one tangent plane).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from astropy.coordinates import angular_separation

from aligncore.tangent import ARCSEC_PER_RAD, TangentPlane, pixel_scale, pixel_to_world

__all__ = ["FIT_GEOMETRIES", "fit_error_rms", "grid_errors", "reference_variance", "wcs_list"]


def wcs_list(solutions: Any, n_images: int) -> list[Any]:
    """WCS objects from a list of WCS, a list of results with ``.wcs``, or an AlignResult."""
    items = list(getattr(solutions, "images", solutions))
    if len(items) != n_images:
        raise ValueError(f"wcs_list must hold one WCS per image ({n_images}), got {len(items)}")
    out = [getattr(item, "wcs", item) if not _is_wcs(item) else item for item in items]
    for k, item in enumerate(out):
        if not _is_wcs(item):
            raise ValueError(f"wcs_list[{k}] is not a WCS: {type(item).__name__}")
    return out


def _is_wcs(obj: Any) -> bool:
    return hasattr(obj, "all_pix2world") or hasattr(obj, "pixel_to_world_values")


def _grid(shape: Sequence[int], n: int) -> tuple[np.ndarray, np.ndarray]:
    ny, nx = shape
    yy, xx = np.meshgrid(np.linspace(0, ny - 1, n), np.linspace(0, nx - 1, n), indexing="ij")
    return xx.ravel(), yy.ravel()


def _fit_affine(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """``src`` moved by the least-squares affine transform onto ``dst``."""
    centre = src.mean(axis=0)
    design = np.column_stack([src - centre, np.ones(len(src))])
    coeff = np.linalg.lstsq(design, dst, rcond=None)[0]
    return design @ coeff


def grid_errors(
    true_wcs: Sequence[Any],
    solutions: Sequence[Any],
    shapes: Sequence[Sequence[int]],
    plane: TangentPlane,
    *,
    relative: bool,
    grid: int = 16,
) -> tuple[list[np.ndarray], list[float]]:
    """Per-image distances (mas) on the pixel grid, and each image's pixel scale (mas).

    Parameters
    ----------
    true_wcs, solutions : sequence of WCS
        Truth and the WCS to assess, one per image.
    shapes : sequence of (ny, nx)
        Image shapes.
    plane : TangentPlane
        Plane in which the common affine transform is fitted (relative only).
    relative : bool
        Remove the best common affine transform first.
    grid : int
        Number of grid points along each axis.
    """
    true_sky, cand_sky, scales = [], [], []
    for truth, wcs, shape in zip(true_wcs, solutions, shapes, strict=True):
        x, y = _grid(shape, grid)
        true_sky.append(pixel_to_world(truth, x, y))
        cand_sky.append(pixel_to_world(wcs, x, y))
        ny, nx = shape
        scales.append(1000.0 * pixel_scale(truth, (nx - 1) / 2.0, (ny - 1) / 2.0))
    sizes = [len(t[0]) for t in true_sky]
    if relative:
        t_tp = np.vstack([np.column_stack(plane.world_to_tp(*t)) for t in true_sky])
        c_tp = np.vstack([np.column_stack(plane.world_to_tp(*c)) for c in cand_sky])
        moved = _fit_affine(c_tp, t_tp)
        dist = 1000.0 * np.hypot(*(moved - t_tp).T)
    else:
        t_all = np.radians(np.hstack([np.vstack(t) for t in true_sky]))
        c_all = np.radians(np.hstack([np.vstack(c) for c in cand_sky]))
        sep = angular_separation(t_all[0], t_all[1], c_all[0], c_all[1])
        dist = 1000.0 * ARCSEC_PER_RAD * np.asarray(sep)
    return list(np.split(dist, np.cumsum(sizes)[:-1])), scales


FIT_GEOMETRIES = ("shift", "rshift", "rscale", "general")


def _jacobian(xy: np.ndarray, center: np.ndarray, geometry: str) -> np.ndarray:
    """d(displacement)/d(parameters) at ``xy`` (arcsec) for a small correction about
    ``center``: shape (n, 2, p); parameters: shift x, y, then rotation (rshift),
    magnification (rscale), or the four linear terms (general)."""
    if geometry not in FIT_GEOMETRIES:
        raise ValueError(f"geometry must be one of {FIT_GEOMETRIES}, got {geometry!r}")
    d = np.asarray(xy, float) - np.asarray(center, float)
    n = len(d)
    columns = [np.tile([1.0, 0.0], (n, 1)), np.tile([0.0, 1.0], (n, 1))]
    if geometry in ("rshift", "rscale"):
        columns.append(np.column_stack([-d[:, 1], d[:, 0]]))  # rotation by a small angle
    if geometry == "rscale":
        columns.append(d)  # magnification
    if geometry == "general":
        zero = np.zeros(n)
        columns += [np.column_stack([d[:, 0], zero]), np.column_stack([d[:, 1], zero]),
                    np.column_stack([zero, d[:, 0]]), np.column_stack([zero, d[:, 1]])]
    return np.stack(columns, axis=2)


def fit_error_rms(stars_xy: np.ndarray, variance: np.ndarray, points_xy: np.ndarray,
                  geometry: str) -> float:
    """Expected RMS error (2D) over ``points_xy`` of a correction fitted to stars.

    The weighted least-squares fit of a correction of ``geometry`` to stars at
    ``stars_xy`` whose positions carry independent per-axis variances
    ``variance`` has the parameter covariance ``C = F^-1``, ``F = sum_j J_j^T
    J_j / variance_j`` (``J``: the displacement's derivatives with respect to the
    parameters); the mean square error of the fitted displacement at a point q
    is ``trace(J_q C J_q^T)``. Returned: the root of its mean over ``points_xy``
    (units of ``sqrt(variance)``). With a shift and equal variances ``v`` this
    is ``sqrt(2 v / N)``.
    """
    points_xy = np.asarray(points_xy, float)
    center = points_xy.mean(axis=0)
    jac = _jacobian(stars_xy, center, geometry)
    info = np.einsum("nap,naq,n->pq", jac, jac, 1.0 / np.asarray(variance, float))
    covariance = np.linalg.inv(info)
    at = _jacobian(points_xy, center, geometry)
    return float(np.sqrt(np.einsum("nap,pq,naq->", at, covariance, at) / len(points_xy)))


def reference_variance(refcat: Any, ids: Sequence[int], years: float) -> np.ndarray:
    """Per-axis variance (mas^2) of reference stars ``ids`` at ``years`` from the
    catalog epoch, from the errors ``refcat`` states: ``(ra_err^2 + dec_err^2) / 2``
    plus ``(pmra_err^2 + pmdec_err^2) / 2 * years^2`` when it has proper-motion errors."""
    row = {int(i): k for k, i in enumerate(np.asarray(refcat["id"]))}
    index = np.array([row[int(i)] for i in ids], dtype=int)

    def mean_square(a: str, b: str) -> np.ndarray:
        if a not in refcat.colnames or b not in refcat.colnames:
            return np.zeros(index.size)
        return 0.5 * (np.asarray(refcat[a], float)[index] ** 2
                      + np.asarray(refcat[b], float)[index] ** 2)

    return mean_square("ra_err", "dec_err") + mean_square("pmra_err", "pmdec_err") * years**2
