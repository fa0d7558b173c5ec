"""Shared machinery of this package's detectors: pixels in, catalog out.

Every detector here runs the same steps around its own source finder:

1. read the pixels; bad pixels are NaN/inf ones and flagged ones (a boolean
   mask, or an integer DQ array filtered by ``dq_bitmask``);
2. saturated pixels: at or above the image's saturation level
   (``meta["saturate"]``, flagged or not) or, once the background is known,
   more than ``peakmax`` above it;
3. background and RMS (Background2D semantics, single-box fallback);
4. the finder runs on ``data - background`` with bad pixels filled from their
   neighbours (`aligncore_daofind.inpaint`) and excluded as peaks; the
   threshold is ``snr_threshold`` times the median background RMS;
5. sources are dropped when their peak exceeds ``peakmax``, a saturated pixel
   lies within 2 pixels, a bad pixel within 1 pixel (or 3 within 2 pixels),
   or (``cr_reject``) they look like cosmic rays (`aligncore_daofind.quality`);
6. the ``brightest`` by flux are kept, sorted by decreasing flux;
7. positions are refined with ``centroid: win | gauss`` if asked
   (`aligncore_daofind.centroids`) and get 1-sigma errors.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from astropy.table import QTable
from pydantic import Field, model_validator

from aligncore import (
    COL_FLUX,
    COL_PEAK,
    COL_ROUNDNESS1,
    COL_ROUNDNESS2,
    COL_SHARPNESS,
    COL_SNR,
    COL_X,
    COL_X_ERR,
    COL_Y,
    COL_Y_ERR,
    META_FWHM,
    AlignImage,
    Detector,
    InputError,
    Params,
)
from aligncore.stages import require_type
from aligncore_daofind.background import BackgroundError, BackgroundEstimate, MapBackground
from aligncore_daofind.catalog import CATALOG_COLUMNS, make_catalog
from aligncore_daofind.centroids import gauss_centroids, window_centroids
from aligncore_daofind.engine import RawSources, empty_sources
from aligncore_daofind.inpaint import fill_bad_pixels
from aligncore_daofind.kernel import dao_kernel
from aligncore_daofind.masking import (
    bad_pixel_mask,
    count_flagged,
    dq_bitmask_of,
    saturation_level,
)
from aligncore_daofind.quality import cosmic_ray_like

__all__ = ["MAX_FWHM_FRACTION", "MIN_FWHM_LIMIT", "CommonParams", "Prepared", "SourceDetector"]

MAX_FWHM_FRACTION = 8.0
"""The PSF FWHM may be at most the image's smaller side divided by this (kernels, boxes
and centroid cut-outs are sized from it; a larger one is refused instead of allocating)."""
MIN_FWHM_LIMIT = 4.0
"""The largest FWHM accepted is never below this many pixels (tiny test images)."""


class CommonParams(Params):
    """Parameters shared by this package's detectors."""

    snr_threshold: float = Field(
        5.0, gt=0, description="Detection threshold in units of the background RMS."
    )
    brightest: int | None = Field(
        100, gt=0, description="Keep only this many sources, brightest first (None: all)."
    )
    peakmax: float | None = Field(
        None,
        gt=0,
        description=(
            "Reject sources whose peak pixel, above the background, exceeds this value; "
            "pixels above it also count as saturated (None: no limit)."
        ),
    )
    bkg_boxsize: int = Field(
        400, gt=0, description="Background mesh box size in pixels (clipped to the image)."
    )
    bkg_filter_size: int = Field(
        3, ge=1, description="Size of the median filter applied to the background mesh (odd)."
    )
    bkg_exact: bool = Field(
        False,
        description=(
            "Clipped statistics of each background box over all its pixels, exactly as "
            "photutils' Background2D (catalogs identical to photutils'); false: over a "
            "regular sub-grid of >= 32768 pixels per box, ~1.5x faster with 400 px boxes, "
            "the box medians within ~0.5% of the noise (shape statistics of edge sources "
            "within ~3e-4); boxes of up to 181 px use every pixel either way."
        ),
    )
    centroid_floor: float = Field(
        0.005,
        ge=0,
        description=(
            "Systematic error (pixels) added in quadrature to the x_err/y_err of 'win' and "
            "'gauss' centroids: a Gaussian fitted to a real PSF is off by ~0.005 px however "
            "bright the star, and fits weighted by 1/err^2 must not trust bright stars more."
        ),
    )
    dq_bitmask: int | None = Field(
        None,
        ge=0,
        description=(
            "DQ bits that make a pixel unusable when the image mask is an integer DQ array "
            "(None: the image's own convention, meta['dq_bitmask'], e.g. 15263 for HST "
            "files; without one, any nonzero flag)."
        ),
    )

    cr_reject: bool = Field(
        True,
        description=(
            "Reject cosmic-ray-like sources: in some direction, both neighbours of the "
            "brightest pixel are far darker than a PSF of the kernel's width allows."
        ),
    )

    @model_validator(mode="after")
    def _check_filter_size(self) -> CommonParams:
        if self.bkg_filter_size % 2 == 0:
            raise ValueError(f"bkg_filter_size must be odd, got {self.bkg_filter_size}")
        return self


@dataclass
class Prepared:
    """Pixels ready for a source finder.

    Attributes
    ----------
    padded : ndarray
        ``data - background`` with a margin of ``pad`` zeros on every side;
        bad pixels are filled (see `aligncore_daofind.inpaint`).
    pad : int
        Margin width.
    bad : ndarray of bool
        Unusable pixels (non-finite or flagged), image shape.
    saturated : ndarray of bool or None
        Saturated pixels (their values are kept), or None when there are none.
    background : BackgroundEstimate
        The background estimate.
    threshold : float
        ``snr_threshold * background.rms_median``.
    warnings : list of str
        Notes for the catalog's ``meta["warnings"]``.
    """

    padded: np.ndarray
    pad: int
    bad: np.ndarray
    saturated: np.ndarray | None
    background: BackgroundEstimate
    threshold: float
    warnings: list[str] = field(default_factory=list)

    @property
    def data(self) -> np.ndarray:
        """The background-subtracted image (a view without the margin)."""
        p = self.pad
        ny, nx = self.padded.shape
        return self.padded[p : ny - p, p : nx - p]


class SourceDetector(Detector):
    """Base class of the detectors in this package (not registered itself).

    Subclasses set ``name`` and ``Params`` (derived from
    :class:`CommonParams`) and implement :meth:`find`.
    """

    Params: ClassVar[type[Params]] = CommonParams
    core_half_width: ClassVar[int] = 1
    """A bad pixel within this many pixels of a source's centre rejects it."""
    native_centroid_floor: ClassVar[float] = 0.03
    """Systematic error (pixels) added in quadrature to the finder's own centroids:
    DAOFIND's marginal fits are biased by up to a few hundredths of a pixel
    depending on the sub-pixel phase (measured on simulated Moffat stars of
    FWHM 2-2.5 pixels, ``benchmarks/bench_detect.py``)."""

    # --- the steps --------------------------------------------------------------
    def detect(self, image: AlignImage) -> QTable:
        """Detect sources in ``image``.

        Returns
        -------
        QTable
            Columns ``id, x, y, x_err, y_err, flux, peak, sharpness,
            roundness1, roundness2, snr`` (0-based pixels), sorted by
            decreasing flux; empty (with ``meta["warnings"]``) when nothing is
            found.

        Raises
        ------
        aligncore.InputError
            If the pixels are not a 2D array or none of them is finite.
        """
        require_type(image, AlignImage, f"{self.name}.detect: image")
        data, mask = image.load_pixels()
        prepared = self.prepare(image.name, data, mask, image.meta)
        if prepared.data.size == 0:
            return self._catalog(image, empty_sources(), prepared, {})
        raw = self.find(prepared)
        raw, counts = self._select(raw, prepared)
        return self._catalog(image, raw, prepared, counts)

    def prepare(
        self, name: str, data: Any, mask: Any, meta: dict[str, Any] | None = None
    ) -> Prepared:
        """Mask, measure the background and subtract it (steps 1-4)."""
        p = self.params
        data = np.asarray(data)
        if data.ndim != 2:
            raise InputError(f"{name}: image data must be 2D, got shape {data.shape}")
        self._check_fwhm(name, data.shape)
        if not np.issubdtype(data.dtype, np.floating) or data.itemsize < 4:
            data = data.astype(np.float32 if data.itemsize <= 2 else np.float64)
        try:
            bad = bad_pixel_mask(data, mask, dq_bitmask_of(p.dq_bitmask, meta or {}))
        except ValueError as exc:
            raise InputError(f"{name}: {exc}") from exc
        if data.size == 0 or (bad.all() and not np.isfinite(data).any()):
            raise InputError(f"{name}: image has no finite pixels")
        if bad.all():
            return self._nothing_usable(data, bad, "every pixel is flagged or non-finite")

        saturated = None
        level = saturation_level(meta or {})
        if level is not None:
            with np.errstate(invalid="ignore"):
                saturated = data >= level  # flagged or not
        try:
            background = self.estimate_background(
                data, bad if saturated is None else bad | saturated
            )
        except BackgroundError as exc:
            return self._nothing_usable(data, bad, str(exc))

        pad = max(1, self.pad_width())
        ny, nx = data.shape
        padded = _with_zero_margin((ny + 2 * pad, nx + 2 * pad), pad, data.dtype)
        step = max(8, (1 << 16) // max(nx, 1))
        # a block of rows at a time into a contiguous scratch, then copied into place:
        # numpy's loops are ~3x slower on 2D slices
        scratch = np.empty((min(step, ny), nx), dtype=data.dtype)
        with np.errstate(invalid="ignore"):
            for y0 in range(0, ny, step):
                y1 = min(ny, y0 + step)
                out = scratch[: y1 - y0]
                np.subtract(data[y0:y1], background.rows(y0, y1), out=out, casting="unsafe")
                padded[pad + y0 : pad + y1, pad : pad + nx] = out
                if p.peakmax is not None:
                    above = (out > p.peakmax) & ~bad[y0:y1]
                    if above.any():
                        if saturated is None:
                            saturated = np.zeros(data.shape, dtype=bool)
                        saturated[y0:y1] |= above
        fill_bad_pixels(padded, pad, bad)
        return Prepared(
            padded=padded,
            pad=pad,
            bad=bad,
            saturated=saturated,
            background=background,
            threshold=float(p.snr_threshold * background.rms_median),
            warnings=list(background.messages),
        )

    def pad_width(self) -> int:
        """Margin of zeros the finder needs around the image (at least 1)."""
        return 1

    @abstractmethod
    def estimate_background(self, data: np.ndarray, mask: np.ndarray) -> BackgroundEstimate:
        """Background and RMS of ``data`` ignoring ``mask`` (step 3)."""

    @abstractmethod
    def find(self, prepared: Prepared) -> RawSources:
        """Find sources in ``prepared.data`` above ``prepared.threshold``."""

    def kernel_snr(self, prepared: Prepared, x: np.ndarray, y: np.ndarray, rms: np.ndarray):
        """DAOFIND's detection significance at the pixels nearest ``(x, y)``: the
        kernel-fitted amplitude over its noise (the scale of ``snr_threshold``)."""
        kernel = dao_kernel(self.psf_fwhm(), float(getattr(self.params, "sigma_radius", 1.5)))
        r, pad = kernel.radius, prepared.pad
        ny, nx = prepared.data.shape
        xc = np.clip(np.round(np.nan_to_num(x)), 0, nx - 1).astype(np.intp) + pad
        yc = np.clip(np.round(np.nan_to_num(y)), 0, ny - 1).astype(np.intp) + pad
        off = np.arange(-r, r + 1)
        if pad < r:
            return np.full(np.shape(x), np.nan)
        cut = prepared.padded[(yc[:, None] + off)[:, :, None], (xc[:, None] + off)[:, None, :]]
        amplitude = np.einsum("nij,ij->n", cut.astype(np.float64), kernel.data)
        with np.errstate(divide="ignore", invalid="ignore"):
            return amplitude / (rms * kernel.rel_err)

    def _check_fwhm(self, name: str, shape: tuple[int, ...]) -> None:
        """The PSF FWHM must fit in the image (kernels and boxes are sized from it)."""
        fwhm, limit = self.psf_fwhm(), max(min(shape) / MAX_FWHM_FRACTION, MIN_FWHM_LIMIT)
        if fwhm > limit:
            raise InputError(f"{name}: kernel_fwhm {fwhm:g} px is too large for a {shape[1]} x "
                             f"{shape[0]} image (at most {limit:g} px)")

    def psf_fwhm(self) -> float:
        """FWHM (pixels) assumed for the stars by the centroid refinements."""
        return float(getattr(self.params, "kernel_fwhm", 2.5))

    def refine(
        self, raw: RawSources, prepared: Prepared, rms: np.ndarray, gain: float | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
        """Final positions and 1-sigma errors (pixels) of the selected sources.

        With ``params.centroid`` ``"win"`` or ``"gauss"`` the finder's positions
        are refined (see `aligncore_daofind.centroids`); otherwise they are
        kept. The finder's own positions get the statistical error of a
        windowed centroid at that position combined with
        :attr:`native_centroid_floor`. Returns ``x, y, x_err, y_err,
        n_failed`` (sources whose refinement failed keep the finder's values).
        """
        fwhm = self.psf_fwhm()
        image = prepared.data
        native = window_centroids(image, prepared.bad, raw.x, raw.y, fwhm, rms, gain, max_iter=0)
        floor = self.native_centroid_floor
        native_x_err = np.hypot(native.x_err, floor)
        native_y_err = np.hypot(native.y_err, floor)
        method = getattr(self.params, "centroid", "native")
        if method == "win":
            res = window_centroids(image, prepared.bad, raw.x, raw.y, fwhm, rms, gain)
        elif method == "gauss":
            res = gauss_centroids(image, prepared.bad, raw.x, raw.y, fwhm, rms, gain)
        else:
            return raw.x, raw.y, native_x_err, native_y_err, 0
        floor = float(getattr(self.params, "centroid_floor", 0.0))
        return (
            np.where(res.ok, res.x, raw.x),
            np.where(res.ok, res.y, raw.y),
            np.where(res.ok, np.hypot(res.x_err, floor), native_x_err),
            np.where(res.ok, np.hypot(res.y_err, floor), native_y_err),
            int(np.count_nonzero(~res.ok)),
        )

    def snr(self, raw: RawSources, prepared: Prepared, rms: np.ndarray) -> np.ndarray:
        """Detection significance of each source (:meth:`kernel_snr` by default)."""
        return self.kernel_snr(prepared, raw.x, raw.y, rms)

    # --- helpers -----------------------------------------------------------------
    def _nothing_usable(self, data: np.ndarray, bad: np.ndarray, why: str) -> Prepared:
        background = MapBackground(
            rms_median=math.nan, box_size=(0, 0), method="none", background=0.0, rms=math.nan
        )
        return Prepared(
            padded=np.zeros((0, 0), dtype=data.dtype),
            pad=0,
            bad=bad,
            saturated=None,
            background=background,
            threshold=math.nan,
            warnings=[f"no sources: {why}"],
        )

    def _select(self, raw: RawSources, prepared: Prepared) -> tuple[RawSources, dict[str, int]]:
        """Steps 5 and 6."""
        p = self.params
        counts = {"found": len(raw)}
        if len(raw) == 0:
            return raw, counts
        ny, nx = prepared.data.shape
        keep = np.isfinite(raw.x) & np.isfinite(raw.y) & np.isfinite(raw.flux)
        xpix = np.clip(np.round(np.nan_to_num(raw.x)), 0, nx - 1).astype(np.intp)
        ypix = np.clip(np.round(np.nan_to_num(raw.y)), 0, ny - 1).astype(np.intp)

        def reject(name: str, bad: np.ndarray) -> None:
            nonlocal keep
            counts[name] = int(np.count_nonzero(keep & bad))
            keep &= ~bad

        if p.peakmax is not None:
            reject("rejected_peakmax", ~(raw.peak <= p.peakmax))
        if prepared.saturated is not None:
            near = count_flagged(prepared.saturated, xpix, ypix, self.saturation_half_width())
            reject("rejected_saturated", near > 0)
        core = count_flagged(prepared.bad, xpix, ypix, self.core_half_width)
        box = count_flagged(prepared.bad, xpix, ypix, self.core_half_width + 1)
        reject("rejected_flagged", (core > 0) | (box >= 3))
        if p.cr_reject:
            rms = prepared.background.rms_at(ypix, xpix)
            crs = cosmic_ray_like(prepared.data, raw.x, raw.y, self.psf_fwhm(), rms)
            reject("rejected_cosmic_ray", crs)
        raw = raw.select(keep)
        order = np.argsort(-raw.flux, kind="stable")
        if p.brightest is not None:
            order = order[: p.brightest]
        return raw.select(order), counts

    def saturation_half_width(self) -> int:
        """Half width of the box around a source in which a saturated pixel rejects it."""
        return 2

    def _catalog(
        self, image: AlignImage, raw: RawSources, prepared: Prepared, counts: dict[str, int]
    ) -> QTable:
        warnings_ = list(prepared.warnings)
        n_failed = 0
        if len(raw) and prepared.data.size:
            ny, nx = prepared.data.shape
            xpix = np.clip(np.round(raw.x), 0, nx - 1).astype(np.intp)
            ypix = np.clip(np.round(raw.y), 0, ny - 1).astype(np.intp)
            rms = prepared.background.rms_at(ypix, xpix)
            snr = self.snr(raw, prepared, rms)
            x, y, x_err, y_err, n_failed = self.refine(raw, prepared, rms, gain_of(image.meta))
            if n_failed:
                warnings_.append(
                    f"centroid refinement failed for {n_failed} source(s); kept the finder's"
                )
        else:
            x, y = raw.x, raw.y
            x_err = y_err = snr = np.zeros(0)
        if len(raw) == 0 and not any(w.startswith("no sources") for w in warnings_):
            warnings_.append(f"no sources found above {self.params.snr_threshold} sigma")
        meta: dict[str, Any] = {
            **self.provenance(),
            "image": image.name,
            "warnings": warnings_,
            META_FWHM: self.psf_fwhm(),
            "threshold": prepared.threshold,
            "background": {
                "method": prepared.background.method,
                "box_size": list(prepared.background.box_size),
                "rms_median": prepared.background.rms_median,
            },
            "n_found": counts.get("found", 0),
            **{f"n_{key}": value for key, value in counts.items() if key != "found"},
        }
        columns = {
            COL_X: x,
            COL_Y: y,
            COL_X_ERR: x_err,
            COL_Y_ERR: y_err,
            COL_FLUX: raw.flux,
            COL_PEAK: raw.peak,
            COL_SHARPNESS: raw.sharpness,
            COL_ROUNDNESS1: raw.roundness1,
            COL_ROUNDNESS2: raw.roundness2,
            COL_SNR: snr,
        }
        assert set(columns) | {"id"} == set(CATALOG_COLUMNS)
        return make_catalog(columns, meta)


def _with_zero_margin(shape: tuple[int, int], pad: int, dtype: Any) -> np.ndarray:
    """An uninitialised array whose ``pad`` outer rows and columns are 0 (the inside is
    written next: zeroing it all would be one more pass over the image)."""
    out = np.empty(shape, dtype=dtype)
    out[:pad] = 0
    out[shape[0] - pad :] = 0
    out[:, :pad] = 0
    out[:, shape[1] - pad :] = 0
    return out


def gain_of(meta: dict[str, Any]) -> float | None:
    """The gain (electrons per data unit) recorded in an image's ``meta``, if any."""
    for key in ("gain", "GAIN"):
        value = meta.get(key)
        try:
            gain = float(value) if value is not None else math.nan
        except (TypeError, ValueError):
            continue
        if math.isfinite(gain) and gain > 0:
            return gain
    return None
