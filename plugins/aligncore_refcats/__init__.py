"""aligncore's reference catalogs that need no network: the ``file`` catalog."""

from __future__ import annotations

import aligncore
from aligncore_refcats.file import FileRefCatalog

__all__ = ["FileRefCatalog"]
__version__ = aligncore.__version__


@aligncore.hookimpl
def aligncore_add_refcatalogs() -> list[type[aligncore.RefCatalog]]:
    """Register the file reference catalog."""
    return [FileRefCatalog]
