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

__version__ = "0.1.0"

__all__ = [
    "DaofindDetector",
    "IrafDetector",
    "SegmentationDetector",
    "__version__",
    "aligncore_add_detectors",
]

_EXPORTS = {
    "DaofindDetector": "aligncore_daofind.daofind",
    "IrafDetector": "aligncore_daofind.iraf",
    "SegmentationDetector": "aligncore_daofind.segmentation",
}


@aligncore.hookimpl
def aligncore_add_detectors() -> list[str]:
    """Register this package's detectors (imported when one is built)."""
    return [f"{name} = {_EXPORTS[cls]}:{cls}" for name, cls in (
        ("daofind", "DaofindDetector"), ("iraf", "IrafDetector"),
        ("segmentation", "SegmentationDetector"))]


# the public names, imported on first use: building a registry imports none of this
# package's modules (its hook returns where the classes are)
__getattr__ = aligncore.lazy_exports(__name__, _EXPORTS)
