"""The matched stars of a distortion fit: detector pixels, detectors and local Jacobians."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import aligncore
from aligncore.distortion import detector_key

__all__ = ["DetectorInfo", "UnitStars", "unit_stars"]

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


def _jacobians(wcs: Any, pix: np.ndarray, plane: aligncore.TangentPlane) -> np.ndarray:
    """Central differences of pixel -> tangent plane through the full nominal WCS."""
    jac = np.empty((len(pix), 2, 2))
    for axis in (0, 1):
        step = np.zeros(2)
        step[axis] = _STEP
        hi = np.column_stack(plane.world_to_tp(*aligncore.pixel_to_world(
            wcs, pix[:, 0] + step[0], pix[:, 1] + step[1])))
        lo = np.column_stack(plane.world_to_tp(*aligncore.pixel_to_world(
            wcs, pix[:, 0] - step[0], pix[:, 1] - step[1])))
        jac[:, :, axis] = (hi - lo) / (2.0 * _STEP)
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
        jac[rows] = _jacobians(images[index].wcs, pix[rows], plane)
    err = np.zeros(n)
    if "tp_err" in catalog.colnames:
        err = np.asarray(catalog["tp_err"], float)
        err = np.where(np.isfinite(err), err, 0.0)
    return UnitStars(pix, det, jac, np.array(unit.xy, dtype=float), err)
