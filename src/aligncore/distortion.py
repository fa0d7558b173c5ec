"""The residual distortion of one detector: a polynomial of pixel offsets.

`DistortionCorrection` is what the distortion refinement fits and what the writers
(`aligncore.distortion_write`) put back into FITS SIP and GWCS files. The true sky
position of detector pixel ``(x, y)`` is ``nominal_wcs.pixel_to_world(x + dx, y + dy)``,
before the image's own affine tangent-plane correction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["DistortionCorrection"]


@dataclass(frozen=True)
class DistortionCorrection:
    """A polynomial correction of one detector's distortion, in pixels.

    Attributes
    ----------
    detector : str
        ``"INSTRUME/DETECTOR"`` (or a chip key), e.g. ``"NIRCAM/NRCB1"``.
    degree : int
        Largest total order of the terms, >= 2.
    center : tuple of float
        ``(x0, y0)``, 0-based detector pixel of the expansion (usually the centre).
    scale : float
        Normalisation: ``u = (x - x0) / scale``, ``v = (y - y0) / scale``.
    terms : tuple of (int, int)
        Exponents ``(i, j)`` of ``u**i * v**j``, ``2 <= i + j <= degree``.
    coeffs_x, coeffs_y : tuple of float
        ``dx = sum(c * u**i * v**j)`` (pixels), likewise ``dy``.
    """

    detector: str
    degree: int
    center: tuple[float, float]
    scale: float
    terms: tuple[tuple[int, int], ...]
    coeffs_x: tuple[float, ...]
    coeffs_y: tuple[float, ...]

    def offsets(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(dx, dy)`` in pixels at 0-based pixels ``(x, y)``."""
        u = (np.asarray(x, dtype=float) - self.center[0]) / self.scale
        v = (np.asarray(y, dtype=float) - self.center[1]) / self.scale
        dx = np.zeros(np.broadcast(u, v).shape)
        dy = np.zeros_like(dx)
        for (i, j), cx, cy in zip(self.terms, self.coeffs_x, self.coeffs_y, strict=True):
            power = u**i * v**j
            dx = dx + cx * power
            dy = dy + cy * power
        return dx, dy

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dictionary (`from_dict` reads it back)."""
        return {"detector": self.detector, "degree": int(self.degree),
                "center": [float(c) for c in self.center], "scale": float(self.scale),
                "terms": [[int(i), int(j)] for i, j in self.terms],
                "coeffs_x": [float(c) for c in self.coeffs_x],
                "coeffs_y": [float(c) for c in self.coeffs_y]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DistortionCorrection:
        """The correction written by `to_dict`."""
        return cls(detector=str(d["detector"]), degree=int(d["degree"]),
                   center=(float(d["center"][0]), float(d["center"][1])),
                   scale=float(d["scale"]),
                   terms=tuple((int(i), int(j)) for i, j in d["terms"]),
                   coeffs_x=tuple(float(c) for c in d["coeffs_x"]),
                   coeffs_y=tuple(float(c) for c in d["coeffs_y"]))
