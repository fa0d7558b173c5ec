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
from aligncore.geometry import AUTO_GEOMETRIES, GEOMETRIES, MIN_POINTS, N_PARAMS
from aligncore_affine.fitter import AffineFitter
from aligncore_affine.fitting import (
    CLIP_STATISTICS,
    combine_weights,
    fit_affine,
    iter_fit,
    residual_statistic,
    select_fit,
)

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


@aligncore.hookimpl
def aligncore_add_fitters() -> list[type[aligncore.Fitter]]:
    """Register the ``affine`` fitter."""
    return [AffineFitter]
