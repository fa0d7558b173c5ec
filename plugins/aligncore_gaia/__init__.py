"""aligncore's Gaia reference catalog: STScI GSSS web service or Gaia archive TAP."""

from __future__ import annotations

import aligncore
from aligncore_gaia.gsss import DEFAULT_GSSS_URL, URL_ENV_VAR, GsssClient, parse_gsss_csv
from aligncore_gaia.refcat import GaiaRefCatalog
from aligncore_gaia.tap import DEFAULT_TAP_URL, TapClient, cone_adql

__all__ = [
    "DEFAULT_GSSS_URL",
    "DEFAULT_TAP_URL",
    "URL_ENV_VAR",
    "GaiaRefCatalog",
    "GsssClient",
    "TapClient",
    "cone_adql",
    "parse_gsss_csv",
]
__version__ = aligncore.__version__


@aligncore.hookimpl
def aligncore_add_refcatalogs() -> list[type[aligncore.RefCatalog]]:
    """Register the gaia reference catalog."""
    return [GaiaRefCatalog]
