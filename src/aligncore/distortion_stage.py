"""The pipeline's side of the distortion stage: the refiner's settings, the refined
positions, and writing a detector's distortion correction into an image's WCS.

The writers of each format's own terms are `aligncore.distortion_write`
(``apply_to_fits_header``: new SIP A/B and AP/BP; ``apply_to_gwcs``: a polynomial frame
before ``v2v3corr``). Until that module is installed, a FITS WCS is corrected here by
refitting its SIP polynomials (forward and inverse) to the corrected mapping on a grid
over the image, and a GWCS cannot be corrected (a clear `AlignError`).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from aligncore.distortion import DistortionCorrection
from aligncore.errors import AlignError
from aligncore.types import (
    COL_DEC,
    COL_DEC_ERR,
    COL_RA,
    COL_RA_ERR,
    COL_TP_X,
    COL_TP_Y,
    DistortionSettings,
)

__all__ = ["apply_correction", "distortion_settings", "refit_sip", "with_positions"]

_GRID = 41
_MARGIN = 0.05  # the grid extends 5 % beyond the image on each side


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


def _writer() -> Any:
    try:
        return importlib.import_module("aligncore.distortion_write")
    except ModuleNotFoundError:
        return None


def apply_correction(wcs: Any, correction: DistortionCorrection, shape: Sequence[int]) -> Any:
    """A NEW WCS whose pixel -> sky mapping is ``wcs`` at ``(x + dx, y + dy)``.

    With `aligncore.distortion_write` installed, its ``apply_correction`` (or
    ``apply_to_astropy_wcs`` / ``apply_to_fits_header``, ``apply_to_gwcs``) writes it;
    without, a FITS WCS gets `refit_sip` and a GWCS is refused.

    Parameters
    ----------
    wcs : astropy.wcs.WCS or gwcs.WCS
        The nominal WCS (not modified).
    correction : DistortionCorrection
        The correction of its detector.
    shape : (ny, nx)
        The image shape.

    Raises
    ------
    AlignError
        The WCS cannot carry the correction (a GWCS without `aligncore.distortion_write`,
        a FITS WCS with lookup-table distortions).
    """
    writer = _writer()
    if writer is not None and hasattr(writer, "apply_correction"):
        return writer.apply_correction(wcs, correction, shape)  # its own dispatch
    if hasattr(wcs, "all_pix2world"):
        if writer is not None and hasattr(writer, "apply_to_astropy_wcs"):
            return writer.apply_to_astropy_wcs(wcs, correction, shape)
        if writer is not None:
            from astropy.wcs import WCS

            header = writer.apply_to_fits_header(wcs.to_header(relax=True), correction)
            return WCS(header)
        return refit_sip(wcs, correction, shape)
    if writer is None:
        raise AlignError("the distortion correction of a GWCS needs aligncore.distortion_write "
                         "(apply_to_gwcs), which is not installed")
    return writer.apply_to_gwcs(wcs, correction, shape)


def _design(u: np.ndarray, v: np.ndarray, order: int, lowest: int
            ) -> tuple[np.ndarray, list[tuple[int, int]]]:
    terms = [(p, q) for p in range(order + 1) for q in range(order + 1)
             if lowest <= p + q <= order]
    return np.column_stack([u**p * v**q for p, q in terms]), terms


def _fit_poly(u: np.ndarray, v: np.ndarray, target: np.ndarray, order: int, norm: float,
              lowest: int) -> np.ndarray:
    """SIP-style coefficient matrix ``m[p, q]`` of ``target ~ sum m u^p v^q``."""
    design, terms = _design(u / norm, v / norm, order, lowest)
    solution = np.linalg.lstsq(design, target, rcond=None)[0]
    matrix = np.zeros((order + 1, order + 1))
    for (p, q), c in zip(terms, solution, strict=True):
        matrix[p, q] = c / norm ** (p + q)
    return matrix


def refit_sip(wcs: Any, correction: DistortionCorrection, shape: Sequence[int]) -> Any:
    """A FITS WCS with new SIP polynomials: ``A'(u, v) = dx + A(u + dx, v + dy)`` (and B),
    fitted by least squares on a grid over the image, with their inverse (AP, BP).

    The forward order is the correction's degree without SIP, else two more than the
    larger of the SIP order and the degree; the inverse order is one more.
    Lookup-table distortions are refused.
    """
    from astropy.wcs import Sip

    if any(getattr(wcs, name, None) is not None for name in ("cpdis1", "cpdis2", "det2im1",
                                                              "det2im2")):
        raise AlignError("the FITS WCS has lookup-table distortions; its distortion "
                         "correction needs aligncore.distortion_write")
    ny, nx = shape
    gx = np.linspace(-_MARGIN * nx, (1 + _MARGIN) * nx - 1, _GRID)
    gy = np.linspace(-_MARGIN * ny, (1 + _MARGIN) * ny - 1, _GRID)
    xx, yy = (a.ravel() for a in np.meshgrid(gx, gy))
    dx, dy = correction.offsets(xx, yy)
    crpix = np.asarray(wcs.wcs.crpix, float)
    u, v = xx + 1.0 - crpix[0], yy + 1.0 - crpix[1]
    moved = np.column_stack([u + dx, v + dy])
    old = wcs.sip
    if old is not None:
        focal = moved + np.column_stack(_sip_eval(old.a, old.b, moved[:, 0], moved[:, 1]))
        old_order = max(old.a_order, old.b_order)
    else:
        focal = moved
        old_order = 0
    # the composition of two polynomials is of a higher order: two more orders keep it
    # within ~1e-4 px over the image for corrections of a pixel and SIP of a few pixels
    order = max(old_order, int(correction.degree)) + (2 if old_order else 0)
    norm = 0.5 * float(max(nx, ny))
    a = _fit_poly(u, v, focal[:, 0] - u, order, norm, 0)
    b = _fit_poly(u, v, focal[:, 1] - v, order, norm, 0)
    inv_order = order + 1
    ap = _fit_poly(focal[:, 0], focal[:, 1], u - focal[:, 0], inv_order, norm, 0)
    bp = _fit_poly(focal[:, 0], focal[:, 1], v - focal[:, 1], inv_order, norm, 0)
    out = wcs.deepcopy()
    out.sip = Sip(a, b, ap, bp, crpix)
    ctype = list(out.wcs.ctype)
    out.wcs.ctype = [c if c.endswith("-SIP") else c + "-SIP" for c in ctype]
    out.wcs.set()
    return out


def _sip_eval(a: np.ndarray, b: np.ndarray, u: np.ndarray, v: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    du, dv = np.zeros_like(u), np.zeros_like(v)
    for matrix, out in ((a, du), (b, dv)):
        for p in range(matrix.shape[0]):
            for q in range(matrix.shape[1]):
                if matrix[p, q]:
                    out += matrix[p, q] * u**p * v**q
    return du, dv
