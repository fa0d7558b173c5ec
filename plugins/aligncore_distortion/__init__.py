"""aligncore's distortion refiners: ``none`` (the default) and ``poly``.

A distortion refiner runs after the alignment and may correct each detector's
distortion model, the same correction for every exposure taken with it; the
config picks one with ``distortion: {plugin: NAME}`` (docs/distortion.md).
"""

from __future__ import annotations

import aligncore

__version__ = aligncore.__version__

__all__ = ["NoDistortion", "PolyDistortion", "aligncore_add_distortion_refiners"]

_EXPORTS = {
    "NoDistortion": "aligncore_distortion.refiners",
    "PolyDistortion": "aligncore_distortion.refiners",
}


@aligncore.hookimpl
def aligncore_add_distortion_refiners() -> list[str]:
    """Register the ``none`` and ``poly`` distortion refiners (imported when one is built)."""
    return ["none = aligncore_distortion.refiners:NoDistortion",
            "poly = aligncore_distortion.refiners:PolyDistortion"]


# the public names, imported on first use: building a registry imports none of this
# package's modules (its hook returns where the classes are)
__getattr__ = aligncore.lazy_exports(__name__, _EXPORTS)
