"""Data types passed between stages, and the frozen column names of every table.

Column names are part of the public contract: plugins read and write tables
through these constants, never through ad-hoc strings, so a name can never
drift between a detector and the matcher that consumes its output.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # astropy.modeling and astropy.time load on first use (fast import)
    from astropy.modeling.models import AffineTransformation2D
    from astropy.time import Time

__all__ = [
    "COL_DEC",
    "COL_DEC_ERR",
    "COL_EPOCH",
    "COL_FLUX",
    "COL_FLUX_ERR",
    "COL_ID",
    "COL_MAG",
    "COL_PEAK",
    "COL_PMDEC",
    "COL_PMDEC_ERR",
    "COL_PMRA",
    "COL_PMRA_ERR",
    "COL_RA",
    "COL_RA_ERR",
    "COL_ROUNDNESS1",
    "COL_ROUNDNESS2",
    "COL_SHARPNESS",
    "COL_SNR",
    "COL_TP_X",
    "COL_TP_Y",
    "COL_X",
    "COL_X_ERR",
    "COL_Y",
    "COL_Y_ERR",
    "META_CATALOG",
    "META_DROPPED_ROWS",
    "META_FWHM",
    "META_PIXEL_SCALE",
    "META_REFCAT_REPORTED",
    "META_WARNINGS",
    "AlignImage",
    "AlignResult",
    "DistortionResult",
    "DistortionSettings",
    "FitResult",
    "ImageResult",
    "MatchResult",
    "SolverResult",
    "SolverSettings",
    "Status",
    "UnitOutcome",
]

# --- catalog columns (frozen) -------------------------------------------------
COL_ID = "id"
"""Source identifier (int), unique within one catalog."""
COL_X = "x"
"""Column pixel coordinate, 0-based (centre of the first pixel is 0)."""
COL_Y = "y"
"""Row pixel coordinate, 0-based."""
COL_X_ERR = "x_err"
"""1-sigma uncertainty of ``x`` in pixels."""
COL_Y_ERR = "y_err"
"""1-sigma uncertainty of ``y`` in pixels."""
COL_FLUX = "flux"
"""Source flux in image units (background subtracted)."""
COL_FLUX_ERR = "flux_err"
COL_PEAK = "peak"
"""Peak pixel value above the background."""
COL_SHARPNESS = "sharpness"
COL_ROUNDNESS1 = "roundness1"
COL_ROUNDNESS2 = "roundness2"
COL_SNR = "snr"
COL_RA = "ra"
"""Right ascension in degrees (ICRS)."""
COL_DEC = "dec"
"""Declination in degrees (ICRS)."""
COL_RA_ERR = "ra_err"
"""Uncertainty of ``ra`` (times cos dec) in milliarcseconds."""
COL_DEC_ERR = "dec_err"
"""Uncertainty of ``dec`` in milliarcseconds."""
COL_MAG = "mag"
COL_PMRA = "pmra"
"""Proper motion in RA (times cos dec), mas/yr."""
COL_PMDEC = "pmdec"
"""Proper motion in Dec, mas/yr."""
COL_PMRA_ERR = "pmra_err"
"""Uncertainty of ``pmra`` in mas/yr (optional column of reference tables)."""
COL_PMDEC_ERR = "pmdec_err"
"""Uncertainty of ``pmdec`` in mas/yr (optional column of reference tables)."""
COL_EPOCH = "epoch"
"""Epoch of the position as a decimal Julian year."""
COL_TP_X = "tp_x"
"""Position in the shared tangent plane, arcsec (towards East)."""
COL_TP_Y = "tp_y"
"""Position in the shared tangent plane, arcsec (towards North)."""

# --- catalog meta keys (frozen) ------------------------------------------------
# The table ``meta`` keys core and plugins exchange; every other meta key is
# free-form provenance that core reports but never reads.
META_PIXEL_SCALE = "tp_pixel_scale"
"""Table ``meta`` key holding the image pixel scale (arcsec) in the tangent plane.

The pipeline sets it on both catalogs it passes to ``Matcher.match`` so that a
matcher can bin or scale its search in pixels.
"""
META_FWHM = "fwhm"
"""Table ``meta`` key holding the PSF FWHM (pixels) a detector worked with.

A detector writes it; the pipeline copies it to the catalogs it passes to
``Matcher.match`` (a matcher may size its tolerance from it).
"""
META_WARNINGS = "warnings"
"""Table ``meta`` key holding a list of human-readable warnings (str).

A detector or reference catalog appends to it; the pipeline reports them
(``detector_warnings`` of an image, ``warnings`` of the absolute step).
"""
META_DROPPED_ROWS = "dropped_rows"
"""Table ``meta`` key holding how many rows were dropped as unusable (int).

Written by `aligncore.refcat.drop_unusable_rows` (a reference catalog's or a
detector's rows without finite positions); reported per image and for the
reference catalog.
"""
META_CATALOG = "catalog"
"""Reference-catalog table ``meta`` key: the catalog's name (e.g. ``"GAIADR3"``).

The absolute step reports it and derives the corrected WCS name from it
(``FIT-REL-GAIADR3``); without it the plugin name is used.
"""
META_REFCAT_REPORTED: tuple[str, ...] = (META_CATALOG, "service", "url", "cache",
                                          META_DROPPED_ROWS)
"""Reference-catalog table ``meta`` keys copied, when present, into the run report
(``meta.absolute.refcat``): the catalog, the service and its URL, the cache use
(``"hit"``, ``"miss"``, ...) and the rows dropped. Other keys are not read."""


class Status(enum.StrEnum):
    """Outcome of the alignment of one image."""

    SUCCESS = "SUCCESS"
    REFERENCE = "REFERENCE"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"

    def __str__(self) -> str:
        return self.value


@dataclass(eq=False)
class AlignImage:
    """One input image, opened lazily.

    Only the header-level information (WCS, shape, epoch, grouping) is held in
    memory; pixels are read on demand through :meth:`load_pixels`, which only
    the detector calls.

    Parameters
    ----------
    name : str
        Short name used in reports and output file names (usually the file name).
    wcs : object
        The image's WCS: an `astropy.wcs.WCS` (FITS) or a `gwcs.WCS`.
    shape : tuple of int
        ``(ny, nx)`` of the science array.
    path : Path or None
        File the image came from, if any.
    group_id : str or None
        Images with the same group id move as one rigid body.
    epoch : `~astropy.time.Time` or None
        Observation epoch (for proper motions of reference catalogs).
    loader : callable or None
        ``loader() -> (data, dq)`` returning the science array (float) and
        either an integer data-quality array (nonzero bits = flags, e.g. a
        FITS ``DQ`` extension), a boolean mask (True = bad) or ``None``.
    meta : dict
        Extra information (header values such as the saturation level).
    """

    name: str
    wcs: Any
    shape: tuple[int, int]
    path: Path | None = None
    group_id: str | None = None
    epoch: Time | None = None
    loader: Callable[[], tuple[np.ndarray, np.ndarray | None]] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def load_pixels(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Read the science array and the bad-pixel mask.

        Returns
        -------
        data : ndarray
            2D float array.
        dq : ndarray or None
            Integer data-quality flags (nonzero = flagged; a detector may
            select bits), a boolean mask (True = bad), or None.
        """
        if self.loader is None:
            raise ValueError(f"{self.name}: image has no pixel data")
        return self.loader()

    @classmethod
    def from_arrays(
        cls,
        data: np.ndarray,
        wcs: Any,
        *,
        name: str = "image",
        mask: np.ndarray | None = None,
        group_id: str | None = None,
        epoch: Time | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> AlignImage:
        """Wrap in-memory arrays (handy in notebooks and tests)."""
        data = np.asarray(data)
        if data.ndim != 2:
            raise ValueError(f"{name}: image data must be 2D, got shape {data.shape}")
        return cls(
            name=name,
            wcs=wcs,
            shape=(int(data.shape[0]), int(data.shape[1])),
            group_id=group_id,
            epoch=epoch,
            loader=lambda: (data, mask),
            meta=dict(meta or {}),
        )


def _has_repeats(idx: np.ndarray) -> bool:
    """Whether an integer array holds some value twice (a count table when compact)."""
    if idx.size < 2:
        return False
    lo, hi = int(idx.min()), int(idx.max())
    if hi - lo <= 4 * idx.size + 1024:
        return bool(np.bincount(idx - lo).max() > 1)
    s = np.sort(idx)
    return bool(np.any(s[1:] == s[:-1]))


@dataclass(frozen=True)
class MatchResult:
    """One-to-one matches between an image catalog and a reference catalog.

    Attributes
    ----------
    image_idx, ref_idx : ndarray of int
        Row indices into the image and the reference catalog; ``image_idx[k]``
        matches ``ref_idx[k]``. No index appears twice in either array.
    offset : tuple of float
        Initial offset (arcsec, tangent plane) that was applied to the image
        positions before matching (reference - image).
    meta : dict
        Matcher-specific diagnostics (e.g. the radii used), reported as they are;
        core reads nothing from it.
    weak : bool
        True when the matcher does not trust its own result (no clear offset,
        too few supporting sources). The pipeline then tries the next matcher
        of ``align.fallback`` and never applies a fit built on a weak match.
    significance : float
        How clearly the offset stands out (Gaussian-equivalent sigma of a
        histogram peak, or a matcher's own measure); NaN when not measured.
        Reported in the reason of a fit rejected for a weak match.
    alternatives : tuple of (float, float)
        Other candidate offsets (arcsec, reference - image, like ``offset``),
        most likely first: e.g. the next peaks of an offset histogram. When the
        fit built on this match is refused, the pipeline's retry ladder matches
        again at each of them with `Matcher.match_at`. Empty (the default)
        when the matcher has none.
    """

    image_idx: np.ndarray
    ref_idx: np.ndarray
    offset: tuple[float, float] = (0.0, 0.0)
    meta: Mapping[str, Any] = field(default_factory=dict)
    weak: bool = False
    significance: float = math.nan
    alternatives: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        img = np.asarray(self.image_idx, dtype=np.intp).reshape(-1)
        ref = np.asarray(self.ref_idx, dtype=np.intp).reshape(-1)
        if img.shape != ref.shape:
            raise ValueError("image_idx and ref_idx must have the same length")
        if _has_repeats(img) or _has_repeats(ref):
            raise ValueError("matches must be one-to-one: an index appears twice")
        object.__setattr__(self, "image_idx", img)
        object.__setattr__(self, "ref_idx", ref)
        object.__setattr__(self, "offset", (float(self.offset[0]), float(self.offset[1])))
        object.__setattr__(self, "meta", dict(self.meta))
        object.__setattr__(self, "weak", bool(self.weak))
        object.__setattr__(self, "significance", float(self.significance))
        object.__setattr__(self, "alternatives", tuple(
            (float(a[0]), float(a[1])) for a in self.alternatives))

    @property
    def n_matched(self) -> int:
        """Number of matched pairs."""
        return int(self.image_idx.size)

    def __len__(self) -> int:
        return self.n_matched


@dataclass(frozen=True)
class FitResult:
    """An affine correction ``ref = matrix @ image + shift`` and its statistics.

    Coordinates are those passed to the fitter (for the pipeline: arcsec in the
    shared tangent plane). All arrays are read-only.

    Attributes
    ----------
    matrix : ndarray, shape (2, 2)
        Linear part.
    shift : ndarray, shape (2,)
        Translation, for an origin at 0.
    center : ndarray, shape (2,)
        Centre of the image points used in the solution (weighted mean).
    fitgeometry : str
        ``shift``, ``rshift``, ``rscale`` or ``general``.
    fitmask : ndarray of bool
        True for the points kept after sigma clipping.
    residuals : ndarray, shape (n, 2)
        ``ref - model(image)`` for every input point (clipped ones included).
    rmse, mae : float
        Root-mean-square and mean absolute residual of the kept points.
    shift_err : ndarray, shape (2,)
        1-sigma uncertainty of the shift at ``center``.
    rotation_err, scale_err : float
        1-sigma uncertainty of the rotation (deg) and scale (NaN where not fitted).
    covariance : ndarray or None
        Covariance of the fitted parameters, in the order of ``param_names``.
    param_names : tuple of str
        Names of the fitted parameters.
    meta : dict
        Free-form provenance.
    """

    matrix: np.ndarray
    shift: np.ndarray
    center: np.ndarray = field(default_factory=lambda: np.zeros(2))
    fitgeometry: str = "general"
    fitmask: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    residuals: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    rmse: float = 0.0
    mae: float = 0.0
    shift_err: np.ndarray = field(default_factory=lambda: np.full(2, np.nan))
    rotation_err: float = math.nan
    scale_err: float = math.nan
    covariance: np.ndarray | None = None
    param_names: tuple[str, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        def frozen(value: Any, dtype: Any, shape: tuple[int, ...] | None = None) -> np.ndarray:
            arr = np.array(value, dtype=dtype)
            if shape is not None:
                arr = arr.reshape(shape)
            arr.setflags(write=False)
            return arr

        object.__setattr__(self, "matrix", frozen(self.matrix, float, (2, 2)))
        object.__setattr__(self, "shift", frozen(self.shift, float, (2,)))
        object.__setattr__(self, "center", frozen(self.center, float, (2,)))
        object.__setattr__(self, "fitmask", frozen(self.fitmask, bool))
        object.__setattr__(self, "residuals", frozen(self.residuals, float).reshape(-1, 2))
        object.__setattr__(self, "shift_err", frozen(self.shift_err, float, (2,)))
        if self.covariance is not None:
            object.__setattr__(self, "covariance", frozen(self.covariance, float))
        object.__setattr__(self, "meta", dict(self.meta))

    # --- constructors -----------------------------------------------------------
    @classmethod
    def identity(cls, **kwargs: Any) -> FitResult:
        """The null correction."""
        return cls(matrix=np.eye(2), shift=np.zeros(2), **kwargs)

    # --- derived geometry ---------------------------------------------------------
    @property
    def n_matched(self) -> int:
        """Number of points given to the fit."""
        return int(self.fitmask.size)

    @property
    def n_used(self) -> int:
        """Number of points kept after clipping."""
        return int(np.count_nonzero(self.fitmask))

    @property
    def determinant(self) -> float:
        return float(np.linalg.det(self.matrix))

    @property
    def proper(self) -> bool:
        """False when the transform includes a reflection (a flip)."""
        return self.determinant >= 0

    @property
    def scale(self) -> float:
        """Mean scale, ``sqrt(|det|)``."""
        return math.sqrt(abs(self.determinant))

    @property
    def scales(self) -> tuple[float, float]:
        """Per-axis scales: the norms of the matrix columns."""
        m = self.matrix
        return (float(math.hypot(m[0, 0], m[1, 0])), float(math.hypot(m[0, 1], m[1, 1])))

    @property
    def rotations(self) -> tuple[float, float]:
        """Rotation of the x and y axes in degrees (counter-clockwise)."""
        m = self.matrix
        rotx = math.degrees(math.atan2(m[1, 0], m[0, 0]))
        roty = math.degrees(math.atan2(-m[0, 1], m[1, 1]))
        return (rotx, roty)

    @property
    def rotation(self) -> float:
        """Mean rotation in degrees (counter-clockwise), ``(rotx + roty) / 2``."""
        rotx, roty = self.rotations
        delta = (roty - rotx + 180.0) % 360.0 - 180.0
        return (rotx + delta / 2.0 + 180.0) % 360.0 - 180.0

    @property
    def skew(self) -> float:
        """Non-perpendicularity of the axes in degrees, ``roty - rotx`` wrapped."""
        rotx, roty = self.rotations
        return (roty - rotx + 180.0) % 360.0 - 180.0

    # --- use ---------------------------------------------------------------------
    def apply(self, xy: np.ndarray) -> np.ndarray:
        """Transform points of shape ``(n, 2)``."""
        xy = np.asarray(xy, dtype=float).reshape(-1, 2)
        return xy @ self.matrix.T + self.shift

    def inverse(self) -> FitResult:
        """The transform that undoes this one (statistics are not carried)."""
        minv = np.linalg.inv(self.matrix)
        return FitResult(matrix=minv, shift=-minv @ self.shift, fitgeometry=self.fitgeometry)

    def compose(self, first: FitResult) -> FitResult:
        """``self ∘ first``: apply ``first``, then ``self``. Statistics are those of ``self``."""
        return FitResult(
            matrix=self.matrix @ first.matrix,
            shift=self.matrix @ first.shift + self.shift,
            center=self.center,
            fitgeometry=self.fitgeometry,
            fitmask=self.fitmask,
            residuals=self.residuals,
            rmse=self.rmse,
            mae=self.mae,
            shift_err=self.shift_err,
            rotation_err=self.rotation_err,
            scale_err=self.scale_err,
            covariance=self.covariance,
            param_names=self.param_names,
            meta=self.meta,
        )

    def to_model(self) -> AffineTransformation2D:
        """The transform as an astropy ``AffineTransformation2D``."""
        from astropy.modeling.models import AffineTransformation2D

        return AffineTransformation2D(
            matrix=np.array(self.matrix), translation=np.array(self.shift)
        )

    def summary(self) -> dict[str, Any]:
        """JSON-ready parameters and statistics."""
        return {
            "fitgeometry": self.fitgeometry,
            "matrix": self.matrix.tolist(),
            "shift": self.shift.tolist(),
            "shift_err": _nan_to_none(self.shift_err.tolist()),
            "rotation_deg": self.rotation,
            "rotation_err_deg": _nan_to_none(self.rotation_err),
            "scale": self.scale,
            "scale_err": _nan_to_none(self.scale_err),
            "skew_deg": self.skew,
            "proper": self.proper,
            "rmse": self.rmse,
            "mae": self.mae,
            "n_matched": self.n_matched,
            "n_used": self.n_used,
        }


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass(frozen=True)
class ImageResult:
    """Outcome of the alignment of one image (or one image of a group).

    Attributes
    ----------
    name : str
        Image name.
    status : Status
        SUCCESS, REFERENCE, FAILED or SKIPPED.
    reason : str
        Why it failed or was skipped (empty on success).
    fit : FitResult or None
        Correction in the shared tangent plane (arcsec); None when not aligned.
    wcs : object
        The corrected WCS, or the original one (the same object) when not aligned.
    n_sources : int
        Sources detected.
    n_matched : int
        Matched pairs used for the fit of this image's group.
    group_id : str or None
        Group the image was aligned with.
    timings : dict
        Seconds spent per stage.
    catalog : QTable or None
        The detected source catalog (pixel coordinates).
    meta : dict
        Matcher diagnostics and other information.
    """

    name: str
    status: Status
    reason: str = ""
    fit: FitResult | None = None
    wcs: Any = None
    n_sources: int = 0
    n_matched: int = 0
    group_id: str | None = None
    path: Path | None = None
    timings: Mapping[str, float] = field(default_factory=dict)
    catalog: Any = field(default=None, repr=False)
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True for SUCCESS and REFERENCE."""
        return self.status in (Status.SUCCESS, Status.REFERENCE)

    def summary(self) -> dict[str, Any]:
        """JSON-ready description."""
        return {
            "name": self.name,
            "path": str(self.path) if self.path else None,
            "group_id": self.group_id,
            "status": self.status.value,
            "reason": self.reason,
            "n_sources": self.n_sources,
            "n_matched": self.n_matched,
            "fit": self.fit.summary() if self.fit is not None else None,
            "timings": dict(self.timings),
            "meta": _jsonable(self.meta),
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


@dataclass(frozen=True)
class AlignResult:
    """Outcome of a whole run.

    Attributes
    ----------
    images : tuple of ImageResult
        One entry per input image, in input order.
    absolute : FitResult or None
        The absolute (reference catalog) fit applied to all images, if any.
    tangent_plane : object
        The shared tangent plane the fits are expressed in.
    timings : dict
        Seconds per phase.
    combined_catalog : QTable or None
        The aligned images' sources merged into one mosaic catalog.
    reference_catalog : QTable or None
        The absolute reference catalog used (with ``save_gaia_catalog``).
    meta : dict
        Run information (versions, config, warnings).
    """

    images: tuple[ImageResult, ...]
    absolute: FitResult | None = None
    tangent_plane: Any = None
    timings: Mapping[str, float] = field(default_factory=dict)
    combined_catalog: Any = field(default=None, repr=False)
    reference_catalog: Any = field(default=None, repr=False)
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[ImageResult]:
        return iter(self.images)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: int | str) -> ImageResult:
        if isinstance(key, str):
            for image in self.images:
                if image.name == key:
                    return image
            raise KeyError(key)
        return self.images[key]

    @property
    def ok(self) -> bool:
        """True when no image failed."""
        return all(image.status != Status.FAILED for image in self.images)

    @property
    def failed(self) -> tuple[ImageResult, ...]:
        return tuple(image for image in self.images if image.status == Status.FAILED)

    def summary(self) -> dict[str, Any]:
        """JSON-ready description of the run."""
        return {
            "ok": self.ok,
            "images": [image.summary() for image in self.images],
            "absolute": self.absolute.summary() if self.absolute is not None else None,
            "timings": dict(self.timings),
            "meta": _jsonable(self.meta),
        }


@dataclass(frozen=True)
class UnitOutcome:
    """What a step found for one alignment unit: the new values of its output fields.

    Steps (the relative and absolute alignment, a `~aligncore.Solver`) return
    outcomes; the pipeline applies them to its units, the one place that does.

    Attributes
    ----------
    status : Status or None
        SUCCESS, REFERENCE or FAILED (None: not decided).
    reason : str
        Why the unit failed ('' otherwise).
    fit : FitResult or None
        The unit's correction (tangent plane to tangent plane).
    n_matched : int
        Matched sources (pairs) behind the fit.
    meta : Mapping
        The unit's report entries, complete: they replace the unit's.
    """

    status: Status | None
    reason: str = ""
    fit: FitResult | None = None
    n_matched: int = 0
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SolverSettings:
    """What a `~aligncore.Solver` is given besides the units.

    Attributes
    ----------
    geometry : str
        The fitter's `~aligncore.Fitter.geometry` (one of
        `aligncore.geometry.GEOMETRIES`, or ``auto``).
    nclip, sigma : int, float
        The fitter's `~aligncore.Fitter.clipping`.
    weighted : bool
        ``align.use_weights``: weight by the catalogs' centroid errors.
    """

    geometry: str
    nclip: int
    sigma: float
    weighted: bool


@dataclass(frozen=True)
class SolverResult:
    """What a `~aligncore.Solver` returns.

    Attributes
    ----------
    outcomes : Mapping of str to UnitOutcome
        The new outputs of the units it changed, by unit key (units not named
        keep their sequential solution).
    diagnostics : dict
        JSON-ready diagnostics for the report (``meta.relative[NAME]``); empty
        when there is nothing to say.
    """

    outcomes: Mapping[str, UnitOutcome] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DistortionSettings:
    """What a `~aligncore.DistortionRefiner` is given besides the units and images.

    Attributes
    ----------
    geometry : str
        The fitter's `~aligncore.Fitter.geometry` (one of
        `aligncore.geometry.GEOMETRIES`, or ``auto``: the geometry of the units' fits).
    nclip, sigma : int, float
        The fitter's `~aligncore.Fitter.clipping`.
    weighted : bool
        ``align.use_weights``: weight by the catalogs' centroid errors.
    plane : TangentPlane
        The shared tangent plane of the units' catalogs (``tp_x, tp_y``).
    reference : ndarray or None
        ``(n, 3)``: tangent-plane positions (arcsec) and per-axis uncertainties
        (arcsec, NaN when unknown) of the absolute reference catalog when absolute
        alignment was applied; None otherwise.
    """

    geometry: str
    nclip: int
    sigma: float
    weighted: bool
    plane: Any
    reference: np.ndarray | None = None


@dataclass(frozen=True)
class DistortionResult:
    """What a `~aligncore.DistortionRefiner` returns.

    Attributes
    ----------
    corrections : Mapping of str to DistortionCorrection
        The corrections to apply, by detector key (only those that passed the checks).
    outcomes : Mapping of str to UnitOutcome
        The new outputs (affine fits refitted jointly with the corrections) of the units
        it changed, by unit key.
    positions : Mapping of str to ndarray
        The corrected tangent-plane positions ``(n, 2)`` of each changed unit's catalog
        (the positions its new fit applies to).
    report : dict
        JSON-ready entries per detector for ``report.json`` (key ``distortion``); empty:
        nothing is reported (the ``none`` refiner).
    """

    corrections: Mapping[str, Any] = field(default_factory=dict)
    outcomes: Mapping[str, UnitOutcome] = field(default_factory=dict)
    positions: Mapping[str, np.ndarray] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
