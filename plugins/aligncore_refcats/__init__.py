"""aligncore's reference catalogs that need no network: the ``file`` catalog."""

from __future__ import annotations

from importlib import import_module
from typing import Any

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


def __getattr__(name: str) -> Any:
    """The public names, imported on first use: building a registry imports none of
    this package's modules (its hook returns where the classes are)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(module), name)
