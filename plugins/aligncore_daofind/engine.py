"""What every DAOFIND engine takes and returns."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

__all__ = ["FinderSettings", "RawSources", "empty_sources"]


@dataclass(frozen=True)
class FinderSettings:
    """Kernel and selection settings shared by the DAOFIND engines.

    Attributes
    ----------
    fwhm : float
        Kernel FWHM in pixels.
    sigma_radius : float
        Kernel truncation radius in sigma.
    sharpness_range, roundness_range : tuple of float
        Inclusive bounds; roundness bounds apply to both roundness measures.
    min_separation : float
        Peaks must be the maximum of the convolved image within this radius
        (pixels); 0 means within the kernel footprint (DAOFIND).
    """

    fwhm: float
    sigma_radius: float = 1.5
    sharpness_range: tuple[float, float] = (0.2, 1.0)
    roundness_range: tuple[float, float] = (-1.0, 1.0)
    min_separation: float = 0.0


@dataclass
class RawSources:
    """Per-source DAOFIND measurements (0-based pixel positions), one array each.

    ``convpeak`` is the convolved image at the peak pixel: the least-squares
    amplitude of the kernel Gaussian (NaN when the engine cannot tell).
    """

    x: np.ndarray
    y: np.ndarray
    flux: np.ndarray
    peak: np.ndarray
    sharpness: np.ndarray
    roundness1: np.ndarray
    roundness2: np.ndarray
    convpeak: np.ndarray

    def __len__(self) -> int:
        return int(np.size(self.x))

    def select(self, keep: np.ndarray) -> RawSources:
        """The sources at ``keep`` (boolean mask or index array)."""
        return RawSources(**{f.name: np.asarray(getattr(self, f.name))[keep] for f in fields(self)})


def empty_sources() -> RawSources:
    """No sources."""
    empty = np.zeros(0, dtype=float)
    return RawSources(*(empty.copy() for _ in fields(RawSources)))
