"""The ``photutils`` engine: DAOFIND as implemented by `photutils.detection.DAOStarFinder`.

Kept so that anyone can check the ``fast`` engine against the reference
implementation on their own data.
"""

from __future__ import annotations

import warnings

import numpy as np

from aligncore_daofind.engine import FinderSettings, RawSources, empty_sources
from aligncore_daofind.kernel import dao_kernel

__all__ = ["find_photutils"]


def find_photutils(
    data: np.ndarray, mask: np.ndarray | None, threshold: float, settings: FinderSettings
) -> RawSources:
    """Run `~photutils.detection.DAOStarFinder` on background-subtracted data.

    Parameters
    ----------
    data : ndarray
        Background-subtracted image with bad pixels already filled (finite).
    mask : ndarray of bool or None
        Pixels where no peak may be found.
    threshold : float
        Detection threshold on the image (before DAOFIND's kernel scaling).
    settings : FinderSettings
        Kernel and selection settings.

    Returns
    -------
    RawSources
        Every source passing the sharpness and roundness bounds (no
        ``brightest`` or ``peakmax`` selection).
    """
    from photutils.detection import DAOStarFinder
    from photutils.utils import NoDetectionsWarning

    finder = DAOStarFinder(
        threshold=threshold,
        fwhm=settings.fwhm,
        sigma_radius=settings.sigma_radius,
        sharpness_range=settings.sharpness_range,
        roundness_range=settings.roundness_range,
        min_separation=settings.min_separation,
        n_brightest=None,
        peak_max=None,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoDetectionsWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        table = finder.find_stars(data, mask=mask)
    if table is None or len(table) == 0:
        return empty_sources()
    kernel = dao_kernel(settings.fwhm, settings.sigma_radius)
    threshold_eff = threshold * kernel.rel_err
    # DAOFIND's "mag" is -2.5 log10(convolved peak / effective threshold).
    convpeak = threshold_eff * 10.0 ** (-0.4 * np.asarray(table["daofind_mag"], dtype=float))
    return RawSources(
        x=np.asarray(table["x_centroid"], dtype=float),
        y=np.asarray(table["y_centroid"], dtype=float),
        flux=np.asarray(table["flux"], dtype=float),
        peak=np.asarray(table["peak"], dtype=float),
        sharpness=np.asarray(table["sharpness"], dtype=float),
        roundness1=np.asarray(table["roundness1"], dtype=float),
        roundness2=np.asarray(table["roundness2"], dtype=float),
        convpeak=convpeak,
    )
