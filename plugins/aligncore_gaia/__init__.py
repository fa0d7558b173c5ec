"""aligncore's Gaia reference catalog: STScI GSSS web service or Gaia archive TAP."""

from __future__ import annotations

import aligncore

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

_EXPORTS = {
    "DEFAULT_GSSS_URL": "aligncore_gaia.gsss",
    "URL_ENV_VAR": "aligncore_gaia.gsss",
    "GsssClient": "aligncore_gaia.gsss",
    "parse_gsss_csv": "aligncore_gaia.gsss",
    "GaiaRefCatalog": "aligncore_gaia.refcat",
    "DEFAULT_TAP_URL": "aligncore_gaia.tap",
    "TapClient": "aligncore_gaia.tap",
    "cone_adql": "aligncore_gaia.tap",
}
__version__ = aligncore.__version__


@aligncore.hookimpl
def aligncore_add_refcatalogs() -> list[str]:
    """Register the gaia reference catalog (imported when one is built)."""
    return ["gaia = aligncore_gaia.refcat:GaiaRefCatalog"]


# the public names, imported on first use: building a registry imports none of this
# package's modules (its hook returns where the classes are)
__getattr__ = aligncore.lazy_exports(__name__, _EXPORTS)
