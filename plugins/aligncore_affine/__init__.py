"""aligncore's default fitter: ``affine`` (shift, rshift, rscale, general + sigma clipping).

Also provides plain functions for notebooks: :func:`fit_affine` (one pass) and
:func:`iter_fit` (with sigma clipping), and the table :data:`MIN_POINTS`.
"""

from __future__ import annotations

import aligncore
from aligncore_affine.fitter import AffineFitter
from aligncore_affine.fitting import combine_weights, fit_affine, iter_fit
from aligncore_affine.geometry import GEOMETRIES, MIN_POINTS

__version__ = aligncore.__version__

__all__ = [
    "GEOMETRIES",
    "MIN_POINTS",
    "AffineFitter",
    "aligncore_add_fitters",
    "combine_weights",
    "fit_affine",
    "iter_fit",
]


@aligncore.hookimpl
def aligncore_add_fitters() -> list[type[aligncore.Fitter]]:
    """Register the ``affine`` fitter."""
    return [AffineFitter]
