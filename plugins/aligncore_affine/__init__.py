"""aligncore's default fitter: ``affine`` (shift, rshift, rscale, general + sigma clipping).

Clipping can be measured in tweakwcs' statistics (:data:`CLIP_STATISTICS`,
:func:`residual_statistic`) and accumulated (``clip_accum``); ``rscale`` can hold a
fixed scale.

Also provides plain functions for notebooks: :func:`fit_affine` (one pass) and
:func:`iter_fit` (with sigma clipping), :func:`select_fit` (``fitgeometry: auto``),
and (re-exported from `aligncore.geometry`) the tables :data:`MIN_POINTS` and
:data:`N_PARAMS`.
"""

from __future__ import annotations

import aligncore

__version__ = aligncore.__version__

__all__ = [
    "AUTO_GEOMETRIES",
    "CLIP_STATISTICS",
    "GEOMETRIES",
    "MIN_POINTS",
    "N_PARAMS",
    "AffineFitter",
    "aligncore_add_fitters",
    "combine_weights",
    "fit_affine",
    "iter_fit",
    "residual_statistic",
    "select_fit",
]

_EXPORTS = {
    "AUTO_GEOMETRIES": "aligncore.geometry",
    "GEOMETRIES": "aligncore.geometry",
    "MIN_POINTS": "aligncore.geometry",
    "N_PARAMS": "aligncore.geometry",
    "AffineFitter": "aligncore_affine.fitter",
    "CLIP_STATISTICS": "aligncore_affine.fitting",
    "residual_statistic": "aligncore_affine.fitting",
    "combine_weights": "aligncore_affine.fitting",
    "fit_affine": "aligncore_affine.fitting",
    "iter_fit": "aligncore_affine.fitting",
    "select_fit": "aligncore_affine.fitting",
}


@aligncore.hookimpl
def aligncore_add_fitters() -> list[str]:
    """Register the ``affine`` fitter (imported when one is built)."""
    return ["affine = aligncore_affine.fitter:AffineFitter"]


# the public names, imported on first use: building a registry imports none of this
# package's modules (its hook returns where the classes are)
__getattr__ = aligncore.lazy_exports(__name__, _EXPORTS)
