"""The ``daofind`` detector: DAOFIND (Stetson 1987) on a background-subtracted image."""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from aligncore_daofind.background import BackgroundEstimate, photutils_background
from aligncore_daofind.base import CommonParams, Prepared, SourceDetector
from aligncore_daofind.engine import FinderSettings, RawSources
from aligncore_daofind.engine_fast import find_fast, pad_width
from aligncore_daofind.kernel import dao_kernel
from aligncore_daofind.meshbkg import mesh_background

__all__ = ["DaofindDetector"]


class DaofindParams(CommonParams):
    """Parameters of the ``daofind`` detector."""

    kernel_fwhm: float = Field(2.5, gt=0, description="FWHM of the Gaussian kernel in pixels.")
    sigma_radius: float = Field(
        1.5, gt=0, description="Truncation radius of the kernel in units of sigma."
    )
    sharplo: float = Field(0.2, description="Lower bound on sharpness (DAOFIND: 0.2).")
    sharphi: float = Field(1.0, description="Upper bound on sharpness (DAOFIND: 1.0).")
    roundlo: float = Field(-1.0, description="Lower bound on both roundness measures.")
    roundhi: float = Field(1.0, description="Upper bound on both roundness measures.")
    minsep_fwhm: float = Field(
        0.0,
        ge=0,
        description=(
            "Minimum separation of sources in units of kernel_fwhm; 0 means a source must "
            "be the maximum within the kernel footprint (DAOFIND, jwst default)."
        ),
    )
    engine: Literal["fast", "photutils"] = Field(
        "fast",
        description=(
            "'fast': this package's vectorized DAOFIND and background mesh; 'photutils': "
            "photutils Background2D and DAOStarFinder (same results, ~10x slower)."
        ),
    )

    centroid: Literal["dao", "win", "gauss"] = Field(
        "dao",
        description=(
            "Centroid: 'dao' (DAOFIND's marginal fits), 'win' (SExtractor-like windowed "
            "centroid) or 'gauss' (2D Gaussian fit, closest to the Cramer-Rao limit)."
        ),
    )

    @model_validator(mode="after")
    def _check_ranges(self) -> DaofindParams:
        if self.sharplo > self.sharphi:
            raise ValueError(f"sharplo ({self.sharplo}) must be <= sharphi ({self.sharphi})")
        if self.roundlo > self.roundhi:
            raise ValueError(f"roundlo ({self.roundlo}) must be <= roundhi ({self.roundhi})")
        return self


class DaofindDetector(SourceDetector):
    """Detect point sources with the DAOFIND algorithm (Stetson 1987, PASP 99, 191).

    The image, minus a 2D background, is convolved with a zero-sum truncated
    Gaussian of FWHM ``kernel_fwhm``; local maxima of the result above
    ``snr_threshold`` times the background RMS (scaled to the kernel) are
    candidates. Candidates are kept when their sharpness and both roundness
    measures are within bounds; their centroid comes from fitting the
    marginal x and y profiles with the kernel's 1D Gaussians. See
    :mod:`aligncore_daofind.base` for masking, saturation and selection.

    Output columns: ``id, x, y, x_err, y_err, flux, peak, sharpness,
    roundness1, roundness2, snr``. ``flux`` is the sum of the
    background-subtracted pixels in the kernel box, ``peak`` the peak pixel
    above the background, ``snr`` the convolved peak over its noise (the
    detection significance, same scale as ``snr_threshold``), and
    ``x_err, y_err`` the background-limited Cramér-Rao bound for a Gaussian of
    the kernel's FWHM with that amplitude.

    Parameters
    ----------
    params : DaofindDetector.Params or dict, optional
    **kwargs
        Parameter values, e.g. ``DaofindDetector(kernel_fwhm=2.0, brightest=None)``.
    """

    name: ClassVar[str] = "daofind"
    Params: ClassVar[type[DaofindParams]] = DaofindParams

    @property
    def settings(self) -> FinderSettings:
        """The engine settings implied by the parameters."""
        p = self.params
        return FinderSettings(
            fwhm=p.kernel_fwhm,
            sigma_radius=p.sigma_radius,
            sharpness_range=(p.sharplo, p.sharphi),
            roundness_range=(p.roundlo, p.roundhi),
            min_separation=p.minsep_fwhm * p.kernel_fwhm,
        )

    def estimate_background(self, data: np.ndarray, mask: np.ndarray) -> BackgroundEstimate:
        p = self.params
        if p.engine == "photutils":
            return photutils_background(data, mask, p.bkg_boxsize, p.bkg_filter_size)
        return mesh_background(data, mask, p.bkg_boxsize, p.bkg_filter_size, exact=p.bkg_exact)

    def pad_width(self) -> int:
        return pad_width(self.settings)

    def find(self, prepared: Prepared) -> RawSources:
        threshold = prepared.threshold if math.isfinite(prepared.threshold) else 0.0
        if self.params.engine == "photutils":
            from aligncore_daofind.engine_photutils import find_photutils

            return find_photutils(prepared.data, prepared.bad, threshold, self.settings)
        return find_fast(prepared.padded, prepared.pad, prepared.bad, threshold, self.settings)

    def _kernel_rel_err(self) -> float:
        return dao_kernel(self.params.kernel_fwhm, self.params.sigma_radius).rel_err

    def snr(self, raw: RawSources, prepared: Prepared, rms: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return raw.convpeak / (rms * self._kernel_rel_err())
