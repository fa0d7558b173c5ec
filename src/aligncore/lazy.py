"""Lazy public names for a plugin package (Scientific Python SPEC 1).

A plugin's ``__init__`` lists where each public name lives and lets
:func:`lazy_exports` import the module on first use, so building a registry
imports none of the plugin's stage modules::

    _EXPORTS = {"MyMatcher": "my_plugin.matcher"}
    __getattr__ = aligncore.lazy_exports(__name__, _EXPORTS)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports each public name from its module on first use.

    Parameters
    ----------
    package : str
        The package's ``__name__`` (for the error message).
    exports : mapping of str to str
        Public name -> the module that defines it.

    Returns
    -------
    callable
        ``__getattr__(name)``: the attribute, or AttributeError for a name not listed.
    """
    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(module), name)

    return __getattr__
