"""A detector's distortion correction: a 2D polynomial shared by all its exposures.

The nominal WCS of an image maps detector pixels to the sky through a
distortion model (FITS SIP, a GWCS polynomial). When that model is wrong, the
error is the same in every exposure taken with the detector. A
`DistortionCorrection` describes it: the TRUE sky position of detector pixel
``(x, y)`` is ``nominal_wcs.pixel_to_world(x + dx, y + dy)`` (before the
image's affine tangent-plane correction), with

.. math::

    dx = \\sum_t c^x_t\\, u^{i_t} v^{j_t}, \\quad dy = \\sum_t c^y_t\\, u^{i_t} v^{j_t},
    \\quad u = (x - x_0)/s, \\quad v = (y - y_0)/s .

Orders 0 and 1 (a shift, a rotation, scale or skew) are absorbed by each
exposure's affine fit and never appear in ``terms``: every term has
``2 <= i + j <= degree``.

This module is public: plugins (distortion refiners, writers) may import it.

Examples
--------
>>> corr = DistortionCorrection("NIRCAM/NRCB1", 2, (1023.5, 1023.5), 1024.0,
...                             ((2, 0),), (0.1,), (0.0,))
>>> dx, dy = corr.offsets(2047.5, 1023.5)
>>> round(float(dx), 3), round(float(dy), 3)
(0.1, 0.0)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["DistortionCorrection", "detector_key", "polynomial_terms"]


def detector_key(image: Any) -> str:
    """The detector an image was taken with: ``INSTRUME/DETECTOR`` (or a chip key).

    Read from ``image.meta``: ``detector_key`` if set, else ``instrument`` and
    ``detector``; an image that says neither is keyed by its shape
    (``unknown/NYxNX``), so that images of one size share one correction.

    Parameters
    ----------
    image : AlignImage
        An opened image.
    """
    meta = image.meta
    if meta.get("detector_key"):
        return str(meta["detector_key"])
    instrument, detector = meta.get("instrument"), meta.get("detector")
    if instrument or detector:
        return f"{str(instrument or 'unknown').upper()}/{str(detector or 'unknown').upper()}"
    return f"unknown/{image.shape[0]}x{image.shape[1]}"


def polynomial_terms(degree: int) -> tuple[tuple[int, int], ...]:
    """Every exponent pair ``(i, j)`` with ``2 <= i + j <= degree``, by order then by ``j``.

    Parameters
    ----------
    degree : int
        Highest total order (>= 2).
    """
    if int(degree) < 2:
        raise ValueError(f"degree must be >= 2, got {degree!r}")
    return tuple((order - j, j) for order in range(2, int(degree) + 1) for j in range(order + 1))


@dataclass(frozen=True)
class DistortionCorrection:
    """The polynomial correction of one detector's distortion model (pixels).

    Attributes
    ----------
    detector : str
        ``"INSTRUME/DETECTOR"`` (or a chip key), e.g. ``"NIRCAM/NRCB1"``.
    degree : int
        Highest total order of the terms (>= 2).
    center : (float, float)
        ``(x0, y0)``: detector pixel (0-based) about which the polynomial is expanded,
        usually the detector centre.
    scale : float
        Normalisation (pixels): ``u = (x - x0) / scale``, ``v = (y - y0) / scale``.
    terms : tuple of (int, int)
        Exponents ``(i, j)`` of ``u**i * v**j``, each with ``2 <= i + j <= degree``.
    coeffs_x, coeffs_y : tuple of float
        Coefficients (pixels) of ``dx`` and ``dy``, one per term.
    """

    detector: str
    degree: int
    center: tuple[float, float]
    scale: float
    terms: tuple[tuple[int, int], ...]
    coeffs_x: tuple[float, ...]
    coeffs_y: tuple[float, ...]

    def __post_init__(self) -> None:
        if int(self.degree) < 2:
            raise ValueError(f"{self.detector}: degree must be >= 2, got {self.degree!r}")
        if not (np.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"{self.detector}: scale must be a positive number, "
                             f"got {self.scale!r}")
        for i, j in self.terms:
            if not 2 <= i + j <= self.degree or min(i, j) < 0:
                raise ValueError(f"{self.detector}: term ({i}, {j}) is not of order 2 to "
                                 f"{self.degree}")
        if not len(self.coeffs_x) == len(self.coeffs_y) == len(self.terms):
            raise ValueError(f"{self.detector}: {len(self.terms)} terms but "
                             f"{len(self.coeffs_x)} x and {len(self.coeffs_y)} y coefficients")

    def basis(self, x: Any, y: Any) -> np.ndarray:
        """The term values ``u**i v**j`` at pixels ``(x, y)``: shape ``(n, n_terms)``."""
        u = (np.ravel(np.asarray(x, dtype=float)) - self.center[0]) / self.scale
        v = (np.ravel(np.asarray(y, dtype=float)) - self.center[1]) / self.scale
        if not self.terms:
            return np.zeros((u.size, 0))
        return np.column_stack([u**i * v**j for i, j in self.terms])

    def offsets(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(dx, dy)`` in pixels at detector pixels ``(x, y)`` (arrays of the shape of x)."""
        shape = np.shape(np.asarray(x, dtype=float))
        design = self.basis(x, y)
        dx = design @ np.asarray(self.coeffs_x, dtype=float)
        dy = design @ np.asarray(self.coeffs_y, dtype=float)
        return dx.reshape(shape), dy.reshape(shape)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (``report.json``); `from_dict` reads it back."""
        return {"detector": self.detector, "degree": int(self.degree),
                "center": [float(c) for c in self.center], "scale": float(self.scale),
                "terms": [[int(i), int(j)] for i, j in self.terms],
                "coeffs_x": [float(c) for c in self.coeffs_x],
                "coeffs_y": [float(c) for c in self.coeffs_y]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DistortionCorrection:
        """The correction described by a `to_dict` dict."""
        return cls(detector=str(d["detector"]), degree=int(d["degree"]),
                   center=(float(d["center"][0]), float(d["center"][1])),
                   scale=float(d["scale"]),
                   terms=tuple((int(i), int(j)) for i, j in d["terms"]),
                   coeffs_x=tuple(float(c) for c in d["coeffs_x"]),
                   coeffs_y=tuple(float(c) for c in d["coeffs_y"]))
