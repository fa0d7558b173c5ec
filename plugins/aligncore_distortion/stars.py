"""The matched stars of a distortion fit: detector pixels, detectors and local Jacobians."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import aligncore
from aligncore.distortion import detector_key

__all__ = ["DetectorInfo", "UnitStars", "unit_stars", "usable"]

_STEP = 0.5  # pixels: half the step of the central differences of the Jacobian


@dataclass(frozen=True)
class DetectorInfo:
    """One detector: its key, shape, and the polynomial's centre and normalisation."""

    key: str
    shape: tuple[int, int]

    @property
    def center(self) -> tuple[float, float]:
        return (0.5 * (self.shape[1] - 1), 0.5 * (self.shape[0] - 1))

    @property
    def scale(self) -> float:
        return 0.5 * float(max(self.shape))

    def basis(self, pix: np.ndarray, terms: Sequence[tuple[int, int]]) -> np.ndarray:
        """``u**i v**j`` of each term at pixels ``pix`` ``(n, 2)``: ``(n, n_terms)``."""
        u = (pix[:, 0] - self.center[0]) / self.scale
        v = (pix[:, 1] - self.center[1]) / self.scale
        if not terms:
            return np.zeros((len(pix), 0))
        return np.column_stack([u**i * v**j for i, j in terms])


@dataclass(frozen=True)
class UnitStars:
    """Per catalog row of a unit: detector pixel, detector index, Jacobian, nominal tp."""

    pix: np.ndarray  # (n, 2) 0-based detector pixels
    det: np.ndarray  # (n,) index into the detectors
    jac: np.ndarray  # (n, 2, 2) d(tp_x, tp_y) / d(x, y), arcsec per pixel
    tp: np.ndarray  # (n, 2) nominal tangent-plane positions (arcsec)
    err: np.ndarray  # (n,) centroid uncertainty per axis (arcsec; 0 when unknown)
    valid: np.ndarray  # (n,) finite Jacobian (the others' Jacobian is set to zero)


def _jacobians(wcs: Any, pix: np.ndarray, plane: aligncore.TangentPlane,
               shape: tuple[int, int]) -> np.ndarray:
    """Differences of pixel -> tangent plane through the full nominal WCS (central, or
    one-sided within the image's bounds at its edges, where a GWCS gives NaN beyond)."""
    jac = np.empty((len(pix), 2, 2))
    limits = (shape[1] - 0.5 - 1e-6, shape[0] - 0.5 - 1e-6)
    for axis in (0, 1):
        hi_pix, lo_pix = pix.copy(), pix.copy()
        hi_pix[:, axis] = np.minimum(pix[:, axis] + _STEP, limits[axis])
        lo_pix[:, axis] = np.maximum(pix[:, axis] - _STEP, -0.5 + 1e-6)
        hi = np.column_stack(plane.world_to_tp(*aligncore.pixel_to_world(
            wcs, hi_pix[:, 0], hi_pix[:, 1])))
        lo = np.column_stack(plane.world_to_tp(*aligncore.pixel_to_world(
            wcs, lo_pix[:, 0], lo_pix[:, 1])))
        step = hi_pix[:, axis] - lo_pix[:, axis]
        with np.errstate(divide="ignore", invalid="ignore"):
            jac[:, :, axis] = (hi - lo) / step[:, None]
    return jac


def unit_stars(unit: Any, images: Sequence[aligncore.AlignImage],
               detectors: dict[str, int], plane: aligncore.TangentPlane) -> UnitStars:
    """The stars of one unit; ``detectors`` (key -> index) grows with new detectors."""
    catalog = unit.catalog
    n = len(catalog)
    pix = np.column_stack([np.asarray(catalog[aligncore.COL_X], float),
                           np.asarray(catalog[aligncore.COL_Y], float)]) if n else np.zeros(
        (0, 2))
    image_index = np.asarray(catalog["image"], int) if n else np.zeros(0, int)
    det = np.zeros(n, int)
    jac = np.zeros((n, 2, 2))
    for index in np.unique(image_index):
        rows = image_index == index
        key = detector_key(images[index])
        det[rows] = detectors.setdefault(key, len(detectors))
        jac[rows] = _jacobians(images[index].wcs, pix[rows], plane,
                               tuple(images[index].shape))
    err = np.zeros(n)
    if "tp_err" in catalog.colnames:
        err = np.asarray(catalog["tp_err"], float)
        err = np.where(np.isfinite(err), err, 0.0)
    tp = np.array(unit.xy, dtype=float)
    valid = (np.all(np.isfinite(jac.reshape(n, 4)), axis=1) & np.all(np.isfinite(tp), axis=1)
             & np.all(np.isfinite(pix), axis=1))
    jac[~valid] = 0.0
    return UnitStars(pix, det, jac, tp, err, valid)


def usable(stars: UnitStars) -> np.ndarray:
    """Rows whose Jacobian and position are finite (others take no part in the fit)."""
    return stars.valid
