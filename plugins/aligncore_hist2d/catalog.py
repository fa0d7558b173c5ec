"""Read positions and scales from the catalogs a matcher receives."""

from __future__ import annotations

import math
from typing import Any

import astropy.units as u
import numpy as np
from astropy.table import Table

from aligncore import COL_TP_X, COL_TP_Y, META_PIXEL_SCALE, MatchError

__all__ = ["META_FWHM", "fwhm_pixels", "pixel_scale_of", "tangent_positions"]

META_FWHM = "fwhm"
"""Table ``meta`` key read for the PSF FWHM in pixels (used by ``auto`` tolerances)."""

DEFAULT_FWHM = 2.5
"""FWHM (pixels) assumed when neither the parameter nor the catalogs give one."""


def _as_arcsec(column: Any) -> np.ndarray:
    unit = getattr(column, "unit", None)
    if unit is not None and unit != u.dimensionless_unscaled:
        return np.asarray(u.Quantity(column).to_value(u.arcsec), dtype=float)
    return np.asarray(column, dtype=float)


def tangent_positions(table: Table, label: str) -> tuple[np.ndarray, np.ndarray]:
    """Tangent-plane positions (arcsec) of the rows with finite coordinates.

    Parameters
    ----------
    table : Table
        Catalog with ``tp_x`` and ``tp_y`` columns.
    label : str
        Name of the catalog in error messages.

    Returns
    -------
    xy : ndarray, shape (m, 2)
        Positions of the usable rows.
    rows : ndarray of int, shape (m,)
        Their row indices in ``table``.
    """
    missing = [c for c in (COL_TP_X, COL_TP_Y) if c not in table.colnames]
    if missing:
        raise MatchError(
            f"{label} catalog has no {' or '.join(repr(c) for c in missing)} column "
            "(tangent-plane positions in arcsec are required)"
        )
    xy = np.column_stack([_as_arcsec(table[COL_TP_X]), _as_arcsec(table[COL_TP_Y])])
    xy = xy.reshape(-1, 2)
    rows = np.flatnonzero(np.all(np.isfinite(xy), axis=1))
    return xy[rows], rows


def _scalar(value: Any) -> float | None:
    if value is None:
        return None
    try:
        if isinstance(value, u.Quantity):
            value = value.to_value(u.arcsec) if value.unit.physical_type == "angle" else value.value
        out = float(value)
    except (TypeError, ValueError, u.UnitsError):
        return None
    return out if math.isfinite(out) and out > 0 else None


def pixel_scale_of(image_cat: Table, ref_cat: Table) -> tuple[float, str]:
    """Pixel scale (arcsec) from the image catalog, else the reference one, else 1.

    Returns
    -------
    scale : float
    source : str
        ``'image'``, ``'reference'`` or ``'default'``.
    """
    for table, source in ((image_cat, "image"), (ref_cat, "reference")):
        scale = _scalar(getattr(table, "meta", {}).get(META_PIXEL_SCALE))
        if scale is not None:
            return scale, source
    return 1.0, "default"


def fwhm_pixels(image_cat: Table, ref_cat: Table, override: float | None) -> tuple[float, str]:
    """PSF FWHM in pixels: the parameter, else ``meta['fwhm']`` of a catalog, else 2.5."""
    if override is not None:
        return float(override), "parameter"
    for table, source in ((image_cat, "image"), (ref_cat, "reference")):
        value = _scalar(getattr(table, "meta", {}).get(META_FWHM))
        if value is not None:
            return value, source
    return DEFAULT_FWHM, "default"
