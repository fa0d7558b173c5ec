"""Correct a FITS WCS (TAN, TAN-SIP) by a tangent-plane affine fit."""

from __future__ import annotations

from typing import Any

import numpy as np
from astropy.wcs import WCS

import aligncore
from aligncore import FitResult, TangentPlane
from aligncore.stages import require_fit_types

__all__ = ["FITSWCSCorrector", "local_jacobian"]

_STEP_DEG = 1.0 / 3600.0  # finite-difference step in intermediate world coordinates


def _intermediate_to_world(wcs: WCS, w: np.ndarray) -> np.ndarray:
    """Intermediate world coordinates (deg, undistorted) -> sky (deg), through the core WCS."""
    linear = _linear_matrix(wcs)
    pixels = np.linalg.solve(linear, w.T).T + (wcs.wcs.crpix - 1.0)
    return np.column_stack(wcs.wcs_pix2world(pixels[:, 0], pixels[:, 1], 0))


def _world_to_intermediate(wcs: WCS, sky: np.ndarray) -> np.ndarray:
    pixels = np.column_stack(wcs.wcs_world2pix(sky[:, 0], sky[:, 1], 0))
    return (pixels - (wcs.wcs.crpix - 1.0)) @ _linear_matrix(wcs).T


def _linear_matrix(wcs: WCS) -> np.ndarray:
    """The CD matrix (deg/pixel), whether the header used CD or PC/CDELT."""
    return np.asarray(wcs.wcs.get_pc(), dtype=float) * np.asarray(wcs.wcs.get_cdelt())[:, None]


def local_jacobian(
    wcs: WCS, new_wcs: WCS, correct: Any, step: float = _STEP_DEG
) -> np.ndarray:
    """d(new intermediate coords)/d(old intermediate coords) of a sky correction at CRPIX.

    ``correct(sky) -> sky`` maps (n, 2) arrays of degrees.
    """
    columns = []
    for axis in range(2):
        offsets = np.zeros((2, 2))
        offsets[0, axis] = step
        offsets[1, axis] = -step
        moved = correct(_intermediate_to_world(wcs, offsets))
        w_new = _world_to_intermediate(new_wcs, moved)
        columns.append((w_new[0] - w_new[1]) / (2.0 * step))
    return np.column_stack(columns)


class FITSWCSCorrector(aligncore.Corrector):
    """Apply a tangent-plane fit to an `astropy.wcs.WCS` (TAN or TAN-SIP).

    CRPIX is kept; CRVAL moves to the sky position of the corrected reference
    point; the CD (or PC) matrix is multiplied by the Jacobian of the
    correction expressed in the image's own intermediate world coordinates.
    SIP and other distortion terms are left untouched. The result reproduces
    the corrected sky positions to well below a micro-arcsecond over a
    detector (the correction is locally affine in every tangent plane).
    """

    name = "fitswcs"

    class Params(aligncore.Params):
        """The FITS WCS corrector has no parameters."""

    @classmethod
    def accepts(cls, wcs: Any) -> bool:
        return isinstance(wcs, WCS) and wcs.has_celestial and wcs.naxis == 2

    def correct(self, wcs: WCS, fit: FitResult, tangent_plane: TangentPlane) -> WCS:
        if not self.accepts(wcs):
            raise aligncore.AlignError(
                f"fitswcs corrects 2D celestial astropy WCS objects, got {type(wcs).__name__}"
            )
        require_fit_types(self.name, fit, tangent_plane)
        if wcs.wcs.lng != 0 or wcs.wcs.lat != 1:
            raise aligncore.AlignError("fitswcs needs the longitude axis first (RA, Dec order)")

        def correct_sky(sky: np.ndarray) -> np.ndarray:
            xi, eta = tangent_plane.world_to_tp(sky[:, 0], sky[:, 1])
            moved = fit.apply(np.column_stack([xi, eta]))
            return np.column_stack(tangent_plane.tp_to_world(moved[:, 0], moved[:, 1]))

        new = wcs.deepcopy()
        crval = np.array([wcs.wcs.crval], dtype=float)
        new.wcs.crval = correct_sky(crval)[0]
        new.wcs.set()
        jacobian = local_jacobian(wcs, new, correct_sky)
        linear = jacobian @ _linear_matrix(wcs)
        if new.wcs.has_cd():
            new.wcs.cd = linear
        else:
            cdelt = np.asarray(new.wcs.get_cdelt(), dtype=float)
            new.wcs.pc = linear / cdelt[:, None]
        new.wcs.set()
        return new
