"""The pipeline's side of the distortion stage: the refiner's settings, the refined
positions, and writing a detector's distortion correction into an image's WCS.

The writers of each format's own terms are `aligncore.distortion_write`
(``apply_to_fits_header``: new SIP A/B and AP/BP; ``apply_to_gwcs``: a ``v2v3dist``
frame).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from aligncore import distortion_write
from aligncore.distortion import DistortionCorrection
from aligncore.types import (
    COL_DEC,
    COL_DEC_ERR,
    COL_RA,
    COL_RA_ERR,
    COL_TP_X,
    COL_TP_Y,
    DistortionSettings,
)

__all__ = ["apply_correction", "distortion_settings", "with_positions"]


def distortion_settings(fitter: Any, weighted: bool, plane: Any,
                        reference_catalog: Any | None) -> DistortionSettings:
    """The refiner's settings: the fitter's geometry and clipping, the weighting, the
    plane, and the applied absolute reference catalog in it (positions, errors, arcsec)."""
    nclip, sigma = fitter.clipping()
    reference = None
    if reference_catalog is not None and len(reference_catalog):
        ra = np.asarray(getattr(reference_catalog[COL_RA], "value", reference_catalog[COL_RA]),
                        float)
        dec = np.asarray(getattr(reference_catalog[COL_DEC], "value",
                                 reference_catalog[COL_DEC]), float)
        xi, eta = plane.world_to_tp(ra, dec)
        err = np.full(ra.size, np.nan)
        if COL_RA_ERR in reference_catalog.colnames and COL_DEC_ERR in reference_catalog.colnames:
            e_ra = np.asarray(getattr(reference_catalog[COL_RA_ERR], "value",
                                      reference_catalog[COL_RA_ERR]), float)
            e_dec = np.asarray(getattr(reference_catalog[COL_DEC_ERR], "value",
                                       reference_catalog[COL_DEC_ERR]), float)
            err = np.sqrt(0.5 * (e_ra**2 + e_dec**2)) / 1000.0  # mas -> arcsec
        good = np.isfinite(xi) & np.isfinite(eta)
        reference = np.column_stack([xi, eta, err])[good]
    return DistortionSettings(fitter.geometry(), nclip, sigma, weighted, plane, reference)


def with_positions(catalog: Any, positions: np.ndarray) -> Any:
    """A copy of a unit's catalog with new tangent-plane positions (``tp_x, tp_y``)."""
    out = catalog.copy(copy_data=False)
    out.replace_column(COL_TP_X, np.asarray(positions[:, 0], float))
    out.replace_column(COL_TP_Y, np.asarray(positions[:, 1], float))
    return out


def apply_correction(wcs: Any, correction: DistortionCorrection, shape: Sequence[int]) -> Any:
    """A NEW WCS whose pixel -> sky mapping is ``wcs`` at ``(x + dx, y + dy)``: new SIP
    coefficients (and their inverse) for a FITS WCS, a ``v2v3dist`` frame for a GWCS
    (`aligncore.distortion_write.apply_correction`)."""
    return distortion_write.apply_correction(wcs, correction, shape)
