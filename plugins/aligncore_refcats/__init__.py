"""aligncore's reference catalogs that need no network: the ``file`` catalog."""

from __future__ import annotations

import aligncore

__all__ = ["FileRefCatalog"]

_EXPORTS = {
    "FileRefCatalog": "aligncore_refcats.file",
}
__version__ = aligncore.__version__


@aligncore.hookimpl
def aligncore_add_refcatalogs() -> list[str]:
    """Register the file reference catalog (imported when one is built)."""
    return ["file = aligncore_refcats.file:FileRefCatalog"]


# the public names, imported on first use: building a registry imports none of this
# package's modules (its hook returns where the classes are)
__getattr__ = aligncore.lazy_exports(__name__, _EXPORTS)
