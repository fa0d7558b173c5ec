"""aligncore's default WCS correctors (FITS WCS; GWCS comes with the GWCS support)."""

from __future__ import annotations

import aligncore
from aligncore_wcs.fitswcs import FITSWCSCorrector

__all__ = ["FITSWCSCorrector"]
__version__ = aligncore.__version__


@aligncore.hookimpl
def aligncore_add_correctors() -> list[type[aligncore.Corrector]]:
    """Register the FITS WCS corrector."""
    return [FITSWCSCorrector]
