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

__all__ = ["grid_errors", "wcs_list"]


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
