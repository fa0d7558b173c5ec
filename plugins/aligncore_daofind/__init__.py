"""aligncore's default source detectors, packaged as a regular aligncore plugin.

``daofind``
    DAOFIND (Stetson 1987) on a background-subtracted image; engine ``fast``
    (this package's vectorized DAOFIND, the default) or ``photutils``
    (photutils' Background2D and DAOStarFinder, for comparison).
``iraf``
    IRAF's STARFIND (photutils' IRAFStarFinder).
``segmentation``
    Image segmentation with deblending (photutils' SourceFinder and SourceCatalog).

All three share masking, background, saturation and cosmic-ray rejection,
the ``brightest`` selection, the optional ``win``/``gauss`` centroids and the
output columns (`aligncore_daofind.base`).
"""

from __future__ import annotations

import aligncore
from aligncore_daofind.daofind import DaofindDetector
from aligncore_daofind.iraf import IrafDetector
from aligncore_daofind.segmentation import SegmentationDetector

__version__ = "0.1.0"

__all__ = [
    "DaofindDetector",
    "IrafDetector",
    "SegmentationDetector",
    "__version__",
    "aligncore_add_detectors",
]


@aligncore.hookimpl
def aligncore_add_detectors() -> list[type[aligncore.Detector]]:
    """Register this package's detectors."""
    return [DaofindDetector, IrafDetector, SegmentationDetector]
