"""Background and background-RMS estimates (photutils ``Background2D`` semantics).

The image is divided into boxes of ``box_size`` pixels; in each box the
background is the 3-sigma clipped median and the RMS the clipped standard
deviation. Boxes with more than 10% of their pixels masked or clipped are
excluded and filled from their neighbours, the low-resolution mesh is median
filtered with ``filter_size`` and zoomed back to the image with a cubic
spline.

When the box does not fit the image it is shrunk to the image; when the
boxes cannot be used (too much masked), a single box the size of the image
is used instead (the fallback of jwst's ``make_tweakreg_catalog``).

Two estimators share this interface: :func:`photutils_background` (photutils
itself) and `aligncore_daofind.meshbkg.mesh_background` (the fast one).
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "BackgroundError",
    "BackgroundEstimate",
    "MapBackground",
    "effective_box",
    "photutils_background",
]


class BackgroundError(ValueError):
    """No background can be computed (e.g. every pixel is masked)."""


@dataclass
class BackgroundEstimate(ABC):
    """A background and RMS estimate of one image.

    Attributes
    ----------
    rms_median : float
        Median of the RMS mesh: the scalar noise used for the DAOFIND threshold.
    box_size : tuple of int
        ``(ny, nx)`` box actually used.
    method : str
        ``"mesh"``, ``"single-box"`` (the fallback) or ``"none"``.
    messages : list of str
        Notes about fallbacks, for the catalog's warnings.
    """

    rms_median: float
    box_size: tuple[int, int]
    method: str
    messages: list[str] = field(default_factory=list)

    @abstractmethod
    def rows(self, start: int, stop: int) -> np.ndarray | float:
        """The background of image rows ``start:stop`` (broadcastable to them)."""

    @abstractmethod
    def rms_rows(self, start: int, stop: int) -> np.ndarray | float:
        """The background RMS of image rows ``start:stop`` (broadcastable to them)."""

    @abstractmethod
    def rms_at(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """The background RMS at integer pixels ``(y, x)``."""

    @abstractmethod
    def background_at(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """The background at integer pixels ``(y, x)``."""


@dataclass
class MapBackground(BackgroundEstimate):
    """A background given as full-size maps or scalars."""

    background: np.ndarray | float = 0.0
    rms: np.ndarray | float = np.nan

    def rows(self, start: int, stop: int) -> np.ndarray | float:
        if np.ndim(self.background) == 2:
            return np.asarray(self.background)[start:stop]
        return float(self.background)

    def rms_rows(self, start: int, stop: int) -> np.ndarray | float:
        if np.ndim(self.rms) == 2:
            return np.asarray(self.rms)[start:stop]
        return float(self.rms)

    def rms_at(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        if np.ndim(self.rms) == 2:
            return np.asarray(self.rms)[y, x].astype(float)
        return np.full(np.shape(y), float(self.rms))

    def background_at(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        if np.ndim(self.background) == 2:
            return np.asarray(self.background)[y, x].astype(float)
        return np.full(np.shape(y), float(self.background))


def effective_box(shape: tuple[int, ...], box_size: int) -> tuple[int, int]:
    """The box shape used for an image: ``box_size`` clipped to the image."""
    return (min(int(box_size), int(shape[0])), min(int(box_size), int(shape[1])))


def photutils_background(
    data: np.ndarray, mask: np.ndarray, box_size: int, filter_size: int
) -> MapBackground:
    """Estimate the background with `photutils.background.Background2D`.

    Parameters
    ----------
    data : ndarray
        Science array (non-finite pixels must be in ``mask``).
    mask : ndarray of bool
        Pixels to ignore.
    box_size : int
        Box size in pixels (clipped to the image shape).
    filter_size : int
        Size of the median filter applied to the mesh (odd).

    Returns
    -------
    MapBackground

    Raises
    ------
    BackgroundError
        When even a single box covering the image cannot be used.
    """
    from astropy.stats import SigmaClip
    from astropy.utils.exceptions import AstropyUserWarning
    from photutils.background import Background2D, MedianBackground, StdBackgroundRMS

    box = effective_box(data.shape, box_size)
    messages: list[str] = []

    def run(box_shape: tuple[int, int], exclude_percentile: float) -> Background2D:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyUserWarning)
            return Background2D(
                data,
                box_shape,
                mask=mask,
                filter_size=(filter_size, filter_size),
                sigma_clip=SigmaClip(sigma=3.0, maxiters=10),
                bkg_estimator=MedianBackground(),
                bkg_rms_estimator=StdBackgroundRMS(),
                exclude_percentile=exclude_percentile,
            )

    method = "mesh"
    try:
        bkg = run(box, 10.0)
    except ValueError as exc:
        messages.append(single_box_message(box, str(exc)))
        box = (int(data.shape[0]), int(data.shape[1]))
        method = "single-box"
        try:
            bkg = run(box, 100.0)
        except ValueError as exc2:
            raise BackgroundError(f"cannot estimate the background: {exc2}") from exc2
    return MapBackground(
        rms_median=float(bkg.background_rms_median),
        box_size=box,
        method=method,
        messages=messages,
        background=np.asarray(bkg.background),
        rms=np.asarray(bkg.background_rms),
    )


def single_box_message(box: tuple[int, int], why: str) -> str:
    """The warning recorded when the mesh is replaced by a single box."""
    return f"background mesh with box {box} failed ({why}); used one box for the image"
