"""aligncore's default WCS correctors: FITS WCS and JWST-style GWCS (``v2v3corr``)."""

from __future__ import annotations

import aligncore
from aligncore_wcs.fitswcs import FITSWCSCorrector
from aligncore_wcs.gwcs_corrector import GWCSCorrector

__all__ = ["FITSWCSCorrector", "GWCSCorrector"]
__version__ = aligncore.__version__


@aligncore.hookimpl
def aligncore_add_correctors() -> list[type[aligncore.Corrector]]:
    """Register the FITS WCS and GWCS correctors."""
    return [FITSWCSCorrector, GWCSCorrector]
