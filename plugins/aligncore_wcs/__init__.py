"""aligncore's default WCS correctors: FITS WCS and JWST-style GWCS (``v2v3corr``)."""

from __future__ import annotations

import aligncore

__all__ = ["FITSWCSCorrector", "GWCSCorrector"]

_EXPORTS = {
    "FITSWCSCorrector": "aligncore_wcs.fitswcs",
    "GWCSCorrector": "aligncore_wcs.gwcs_corrector",
}
__version__ = aligncore.__version__


@aligncore.hookimpl
def aligncore_add_correctors() -> list[str]:
    """Register the FITS WCS and GWCS correctors (imported when one is asked for)."""
    return ["fitswcs = aligncore_wcs.fitswcs:FITSWCSCorrector",
            "gwcs = aligncore_wcs.gwcs_corrector:GWCSCorrector"]


# the public names, imported on first use: building a registry imports none of this
# package's modules (its hook returns where the classes are)
__getattr__ = aligncore.lazy_exports(__name__, _EXPORTS)
