"""Rules for ``auto`` matching parameters (tolerance, separation, search radii).

- ``tolerance``: a few FWHM, but below the typical nearest-neighbour distance
  so that a position is not confused with a neighbour:
  ``min(3 FWHM, max(0.35 d_nn, 1 FWHM))`` where ``d_nn`` is the median
  nearest-neighbour distance of the denser catalog. The ``hist2d`` matcher
  then tightens it to ``max(5 sigma, 1 FWHM)`` with sigma the measured
  scatter of its first matches.
- ``separation``: ``1.5 x tolerance`` (always above ``sqrt(2) x tolerance``).
  With an explicit separation, an ``auto`` tolerance is capped at
  ``separation / 1.5``.
- ``searchrad``: start at ``max(1", 5 pixels)`` and double up to
  ``max_searchrad`` until the histogram peak is significant and not on the
  edge of the search box.
"""

from __future__ import annotations

import math

__all__ = [
    "SEPARATION_FACTOR",
    "auto_separation",
    "auto_tolerance",
    "finite_min",
    "search_radii",
]

TOL_MAX_FWHM = 3.0
TOL_MIN_FWHM = 1.0
TOL_NN_FRACTION = 0.35
SEPARATION_FACTOR = 1.5
SEARCH_START_ARCSEC = 1.0
SEARCH_START_PIXELS = 5.0


def auto_tolerance(fwhm_arcsec: float, nn_distance: float, separation: float | None) -> float:
    """Matching tolerance (arcsec) from the FWHM and the crowding.

    Parameters
    ----------
    fwhm_arcsec : float
        PSF FWHM in arcsec.
    nn_distance : float
        Median nearest-neighbour distance (arcsec) of the denser catalog (NaN if unknown).
    separation : float or None
        Explicit separation, which caps the tolerance at ``separation / 1.5``.
    """
    tol = TOL_MAX_FWHM * fwhm_arcsec
    if math.isfinite(nn_distance) and nn_distance > 0:
        tol = min(tol, max(TOL_NN_FRACTION * nn_distance, TOL_MIN_FWHM * fwhm_arcsec))
    if separation is not None:
        tol = min(tol, separation / SEPARATION_FACTOR)
    return tol


def finite_min(*values: float) -> float:
    """Smallest finite value (NaN when there is none)."""
    finite = [v for v in values if math.isfinite(v)]
    return min(finite) if finite else math.nan


def auto_separation(tolerance: float) -> float:
    """Confusion separation (arcsec) for a tolerance: ``1.5 x tolerance``."""
    return SEPARATION_FACTOR * tolerance


def search_radii(pixel_scale: float, max_searchrad: float) -> list[float]:
    """Increasing search radii (arcsec) tried by ``searchrad: auto``."""
    start = min(max(SEARCH_START_ARCSEC, SEARCH_START_PIXELS * pixel_scale), max_searchrad)
    radii = [start]
    while radii[-1] < max_searchrad:
        radii.append(min(2.0 * radii[-1], max_searchrad))
    return radii
