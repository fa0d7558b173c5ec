"""The ``iraf`` detector: IRAF's STARFIND via `photutils.detection.IRAFStarFinder`."""

from __future__ import annotations

import math
import warnings
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from aligncore_daofind.background import BackgroundEstimate
from aligncore_daofind.base import CommonParams, Prepared, SourceDetector
from aligncore_daofind.engine import RawSources, empty_sources
from aligncore_daofind.kernel import dao_kernel
from aligncore_daofind.meshbkg import mesh_background

__all__ = ["IrafDetector"]


class IrafParams(CommonParams):
    """Parameters of the ``iraf`` detector (defaults of IRAF's STARFIND)."""

    kernel_fwhm: float = Field(2.5, gt=0, description="FWHM of the Gaussian kernel in pixels.")
    sigma_radius: float = Field(
        1.5, gt=0, description="Truncation radius of the kernel in units of sigma."
    )
    sharplo: float = Field(0.5, description="Lower bound on sharpness (STARFIND: 0.5).")
    sharphi: float = Field(2.0, description="Upper bound on sharpness (STARFIND: 2.0).")
    roundlo: float = Field(0.0, description="Lower bound on roundness (STARFIND: 0.0).")
    roundhi: float = Field(0.2, description="Upper bound on roundness (STARFIND: 0.2).")
    minsep_fwhm: float = Field(
        2.5, ge=0, description="Minimum separation of sources in units of kernel_fwhm."
    )
    centroid: Literal["native", "win", "gauss"] = Field(
        "native",
        description="Centroid: 'native' (image moments), 'win' (windowed) or 'gauss' (fit).",
    )

    @model_validator(mode="after")
    def _check_ranges(self) -> IrafParams:
        if self.sharplo > self.sharphi:
            raise ValueError(f"sharplo ({self.sharplo}) must be <= sharphi ({self.sharphi})")
        if self.roundlo > self.roundhi:
            raise ValueError(f"roundlo ({self.roundlo}) must be <= roundhi ({self.roundhi})")
        return self


class IrafDetector(SourceDetector):
    """Detect point sources with IRAF's STARFIND algorithm (photutils ``IRAFStarFinder``).

    Peaks of the image convolved with the DAOFIND kernel; centroid, FWHM,
    sharpness (FWHM / kernel FWHM) and roundness (from the ellipse of the
    second moments) from image moments of the sky-subtracted pixels above
    the local sky. Masks, background, saturation and selection as for
    ``daofind`` (`aligncore_daofind.base`). The threshold is scaled as in
    DAOFIND so that ``snr_threshold`` has the same meaning for every
    detector of this package. Columns as for ``daofind``; ``roundness1`` is
    STARFIND's roundness and ``roundness2`` is NaN.
    """

    name: ClassVar[str] = "iraf"
    Params: ClassVar[type[IrafParams]] = IrafParams

    def estimate_background(self, data: np.ndarray, mask: np.ndarray) -> BackgroundEstimate:
        return mesh_background(data, mask, self.params.bkg_boxsize, self.params.bkg_filter_size,
                               exact=self.params.bkg_exact)

    def pad_width(self) -> int:
        return dao_kernel(self.params.kernel_fwhm, self.params.sigma_radius).radius

    def find(self, prepared: Prepared) -> RawSources:
        from photutils.detection import IRAFStarFinder
        from photutils.utils import NoDetectionsWarning

        p = self.params
        kernel = dao_kernel(p.kernel_fwhm, p.sigma_radius)
        threshold = prepared.threshold if math.isfinite(prepared.threshold) else 0.0
        finder = IRAFStarFinder(
            threshold=threshold * kernel.rel_err,
            fwhm=p.kernel_fwhm,
            sigma_radius=p.sigma_radius,
            min_separation=p.minsep_fwhm * p.kernel_fwhm,
            sharpness_range=(p.sharplo, p.sharphi),
            roundness_range=(p.roundlo, p.roundhi),
            n_brightest=None,
            peak_max=None,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NoDetectionsWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            table = finder.find_stars(np.ascontiguousarray(prepared.data), mask=prepared.bad)
        if table is None or len(table) == 0:
            return empty_sources()

        def col(name: str) -> np.ndarray:
            return np.asarray(table[name], dtype=float)

        n = len(table)
        return RawSources(
            x=col("x_centroid"),
            y=col("y_centroid"),
            flux=col("flux"),
            peak=col("peak"),
            sharpness=col("sharpness"),
            roundness1=col("roundness"),
            roundness2=np.full(n, np.nan),
            convpeak=np.full(n, np.nan),
        )
