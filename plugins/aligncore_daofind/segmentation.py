"""The ``segmentation`` detector: photutils image segmentation and source catalog."""

from __future__ import annotations

import inspect
import math
import warnings
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from aligncore_daofind.background import BackgroundEstimate
from aligncore_daofind.base import CommonParams, Prepared, SourceDetector
from aligncore_daofind.engine import RawSources, empty_sources
from aligncore_daofind.kernel import FWHM_TO_SIGMA, dao_kernel
from aligncore_daofind.meshbkg import mesh_background

__all__ = ["SegmentationDetector"]


class SegmentationParams(CommonParams):
    """Parameters of the ``segmentation`` detector (jwst's defaults)."""

    kernel_fwhm: float = Field(
        2.5, gt=0, description="FWHM (pixels) of the Gaussian smoothing the detection image."
    )
    npixels: int = Field(10, ge=1, description="Minimum number of connected pixels of a source.")
    deblend: bool = Field(True, description="Split blended sources (multi-thresholding).")
    nlevels: int = Field(32, ge=1, description="Number of deblending thresholds.")
    contrast: float = Field(
        0.001, ge=0, le=1, description="Minimum flux fraction of a deblended component."
    )
    centroid: Literal["native", "win", "gauss"] = Field(
        "native",
        description="Centroid: 'native' (segment moments), 'win' (windowed) or 'gauss' (fit).",
    )


class SegmentationDetector(SourceDetector):
    """Detect sources by image segmentation (photutils ``SourceFinder`` + ``SourceCatalog``).

    The background-subtracted image is smoothed with a normalised Gaussian of
    FWHM ``kernel_fwhm``; connected regions of at least ``npixels`` pixels
    above ``snr_threshold`` times the local background RMS are sources,
    optionally deblended; centroids are the first moments of each segment.
    Masks, background, saturation and selection as for ``daofind``. Columns as
    for ``daofind``: ``flux`` is the segment flux, ``peak`` its maximum,
    ``snr`` DAOFIND's detection significance at the centroid; ``sharpness``,
    ``roundness1`` and ``roundness2`` are NaN (not defined for segments).
    """

    name: ClassVar[str] = "segmentation"
    Params: ClassVar[type[SegmentationParams]] = SegmentationParams

    def estimate_background(self, data: np.ndarray, mask: np.ndarray) -> BackgroundEstimate:
        return mesh_background(data, mask, self.params.bkg_boxsize, self.params.bkg_filter_size,
                               exact=self.params.bkg_exact)

    def pad_width(self) -> int:
        return dao_kernel(self.params.kernel_fwhm).radius

    def find(self, prepared: Prepared) -> RawSources:
        from astropy.convolution import Gaussian2DKernel
        from photutils.segmentation import SourceCatalog, SourceFinder
        from photutils.utils import NoDetectionsWarning
        from scipy import ndimage

        p = self.params
        data = np.ascontiguousarray(prepared.data)
        ny = data.shape[0]
        sigma = p.kernel_fwhm * FWHM_TO_SIGMA
        kernel = Gaussian2DKernel(sigma)
        kernel.normalize()
        smoothed = ndimage.convolve(data, kernel.array.astype(data.dtype), mode="constant")
        rms = prepared.background.rms_rows(0, ny)
        threshold = p.snr_threshold * np.broadcast_to(np.asarray(rms, dtype=float), data.shape)
        if not np.all(np.isfinite(threshold)):
            return empty_sources()
        # photutils 3 renamed npixels / nlevels; accept both generations
        names = inspect.signature(SourceFinder).parameters
        finder = SourceFinder(
            p.npixels,
            deblend=p.deblend,
            contrast=p.contrast,
            progress_bar=False,
            **({"n_levels": p.nlevels} if "n_levels" in names else {"nlevels": p.nlevels}),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NoDetectionsWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            segments = finder(smoothed, threshold, mask=prepared.bad)
            if segments is None or len(segments.labels) == 0:
                return empty_sources()
            catalog = SourceCatalog(data, segments, convolved_data=smoothed, mask=prepared.bad)
            x = np.asarray(catalog.x_centroid, dtype=float)
            y = np.asarray(catalog.y_centroid, dtype=float)
            flux = np.asarray(catalog.segment_flux, dtype=float)
            peak = np.asarray(catalog.max_value, dtype=float)
        n = x.size
        nan = np.full(n, math.nan)
        return RawSources(
            x=x,
            y=y,
            flux=flux,
            peak=peak,
            sharpness=nan,
            roundness1=nan.copy(),
            roundness2=nan.copy(),
            convpeak=nan.copy(),
        )
