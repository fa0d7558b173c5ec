"""The shared tangent plane: gnomonic projection of the sky in arcsec.

All matching and fitting happens in one tangent plane. Its axes are ``xi``
(towards East) and ``eta`` (towards North) in arcsec, tangent at ``center``.
A shift in this plane is a pointing correction, a rotation a roll correction.
With ``align.fit_frame: reference_pixels`` the plane's coordinates are a
reference image's pixels instead (`FramedPlane`, tweakwcs' fitting frame).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # astropy.coordinates loads on first use (fast import)
    from astropy.coordinates import SkyCoord

__all__ = ["ARCSEC_PER_RAD", "FramedPlane", "TangentPlane", "footprint_world", "pixel_scale",
           "pixel_to_world", "reference_pixel_frame", "world_to_pixel"]

ARCSEC_PER_RAD = 180.0 / np.pi * 3600.0


@dataclass(frozen=True)
class TangentPlane:
    """Gnomonic (TAN) projection tangent at ``(ra0, dec0)`` (degrees), in arcsec."""

    ra0: float
    dec0: float

    @classmethod
    def from_skycoord(cls, center: SkyCoord) -> TangentPlane:
        icrs = center.icrs
        return cls(float(icrs.ra.deg), float(icrs.dec.deg))

    @property
    def center(self) -> SkyCoord:
        from astropy.coordinates import SkyCoord

        return SkyCoord(self.ra0, self.dec0, unit="deg", frame="icrs")

    def world_to_tp(self, ra: Any, dec: Any) -> tuple[np.ndarray, np.ndarray]:
        """Sky (deg) -> tangent plane (arcsec). Points on the far hemisphere give NaN."""
        ra = np.radians(np.asarray(ra, dtype=float))
        dec = np.radians(np.asarray(dec, dtype=float))
        a0, d0 = np.radians(self.ra0), np.radians(self.dec0)
        dra = ra - a0
        cos_c = np.sin(d0) * np.sin(dec) + np.cos(d0) * np.cos(dec) * np.cos(dra)
        with np.errstate(divide="ignore", invalid="ignore"):
            xi = np.cos(dec) * np.sin(dra) / cos_c
            eta = (np.cos(d0) * np.sin(dec) - np.sin(d0) * np.cos(dec) * np.cos(dra)) / cos_c
        bad = cos_c <= 0
        xi = np.where(bad, np.nan, xi) * ARCSEC_PER_RAD
        eta = np.where(bad, np.nan, eta) * ARCSEC_PER_RAD
        return xi, eta

    def tp_to_world(self, xi: Any, eta: Any) -> tuple[np.ndarray, np.ndarray]:
        """Tangent plane (arcsec) -> sky (deg), RA in [0, 360)."""
        x = np.asarray(xi, dtype=float) / ARCSEC_PER_RAD
        y = np.asarray(eta, dtype=float) / ARCSEC_PER_RAD
        a0, d0 = np.radians(self.ra0), np.radians(self.dec0)
        denom = np.cos(d0) - y * np.sin(d0)
        ra = a0 + np.arctan2(x, denom)
        dec = np.arctan2(np.sin(d0) + y * np.cos(d0), np.hypot(x, denom))
        return np.degrees(ra) % 360.0, np.degrees(dec)

    def summary(self) -> dict[str, float]:
        return {"ra0": self.ra0, "dec0": self.dec0}


@dataclass(frozen=True)
class FramedPlane(TangentPlane):
    """A tangent plane whose coordinates are mapped by a fixed linear ``frame`` matrix.

    ``world_to_tp`` returns ``frame @ (xi, eta)`` of the plane tangent at
    ``(ra0, dec0)``; ``tp_to_world`` inverts it. With `reference_pixel_frame` the
    coordinates are a reference image's pixels (its linear WCS part), scaled to
    arcsec: fits of a geometry (``rscale``, ``rshift``) in this plane are that
    geometry in the reference's pixel frame, as tweakwcs fits.
    """

    frame: tuple[tuple[float, float], tuple[float, float]] = ((1.0, 0.0), (0.0, 1.0))

    def world_to_tp(self, ra: Any, dec: Any) -> tuple[np.ndarray, np.ndarray]:
        xi, eta = super().world_to_tp(ra, dec)
        (a, b), (c, d) = self.frame
        return a * xi + b * eta, c * xi + d * eta

    def tp_to_world(self, xi: Any, eta: Any) -> tuple[np.ndarray, np.ndarray]:
        inverse = np.linalg.inv(np.array(self.frame))
        xi, eta = np.asarray(xi, dtype=float), np.asarray(eta, dtype=float)
        return super().tp_to_world(inverse[0, 0] * xi + inverse[0, 1] * eta,
                                   inverse[1, 0] * xi + inverse[1, 1] * eta)

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "frame": [list(row) for row in self.frame]}


def reference_pixel_frame(wcs: Any, shape: Sequence[int], plane: TangentPlane) -> FramedPlane:
    """``plane`` with coordinates in the pixel frame of the image of ``wcs``, in arcsec.

    The frame is the inverse of the image's pixel-to-plane Jacobian at its centre,
    times its pixel scale (so that areas, and distances on an unskewed WCS, keep
    their size in arcsec): a skewed or anisotropic CD matrix makes a similarity in
    this frame differ from one on the sky.
    """
    ny, nx = shape
    x0, y0 = (nx - 1) / 2.0, (ny - 1) / 2.0
    xs = np.array([x0 - 0.5, x0 + 0.5, x0, x0])
    ys = np.array([y0, y0, y0 - 0.5, y0 + 0.5])
    xi, eta = plane.world_to_tp(*pixel_to_world(wcs, xs, ys))
    jacobian = np.array([[xi[1] - xi[0], xi[3] - xi[2]], [eta[1] - eta[0], eta[3] - eta[2]]])
    scale = math.sqrt(abs(float(np.linalg.det(jacobian))))
    frame = scale * np.linalg.inv(jacobian)
    return FramedPlane(plane.ra0, plane.dec0,
                       frame=tuple(tuple(float(v) for v in row) for row in frame))


def pixel_to_world(wcs: Any, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """0-based pixels -> (ra, dec) degrees through the full WCS (distortions included).

    Works for `astropy.wcs.WCS` and for any object with the APE 14
    ``pixel_to_world_values`` method (e.g. `gwcs.WCS`).
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if hasattr(wcs, "all_pix2world"):
        ra, dec = wcs.all_pix2world(x, y, 0)
    else:
        ra, dec = wcs.pixel_to_world_values(x, y)
    return np.asarray(ra, dtype=float), np.asarray(dec, dtype=float)


def world_to_pixel(wcs: Any, ra: Any, dec: Any) -> tuple[np.ndarray, np.ndarray]:
    """(ra, dec) degrees -> 0-based pixels through the full WCS (the inverse of
    `pixel_to_world`; `astropy.wcs.WCS` or any APE 14 WCS such as `gwcs.WCS`)."""
    ra = np.asarray(ra, dtype=float)
    dec = np.asarray(dec, dtype=float)
    if hasattr(wcs, "all_world2pix"):
        x, y = wcs.all_world2pix(ra, dec, 0)
    else:
        x, y = wcs.world_to_pixel_values(ra, dec)
    return np.asarray(x, dtype=float), np.asarray(y, dtype=float)


def footprint_world(wcs: Any, shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Sky positions (deg) of the four outer pixel corners, counter-clockwise."""
    ny, nx = shape
    x = np.array([-0.5, nx - 0.5, nx - 0.5, -0.5])
    y = np.array([-0.5, -0.5, ny - 0.5, ny - 0.5])
    return pixel_to_world(wcs, x, y)


def pixel_scale(wcs: Any, x: float, y: float, plane: TangentPlane | None = None) -> float:
    """Pixel scale (arcsec) at pixel ``(x, y)``: sqrt of the area of a unit pixel square."""
    xs = np.array([x - 0.5, x + 0.5, x + 0.5, x - 0.5])
    ys = np.array([y - 0.5, y - 0.5, y + 0.5, y + 0.5])
    ra, dec = pixel_to_world(wcs, xs, ys)
    if plane is None:
        plane = TangentPlane(float(ra[0]), float(dec[0]))
    u, v = plane.world_to_tp(ra, dec)
    area = 0.5 * abs(np.dot(u, np.roll(v, -1)) - np.dot(v, np.roll(u, -1)))
    return float(np.sqrt(area))
