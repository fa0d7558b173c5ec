"""aligncore's default matchers.

- ``hist2d``: 2D-histogram initial offset + strictly one-to-one matching;
- ``triangles``: triangle-invariant (asterism) matching for large offsets and
  rotations.

Plain functions for notebooks: :func:`find_offset` (histogram peak, pixels),
:func:`match_one_to_one`, :func:`prune_close` and :func:`find_transform`
(triangle solution).
"""

from __future__ import annotations

import aligncore

__version__ = aligncore.__version__

__all__ = [
    "Hist2dMatcher",
    "HistogramPeak",
    "SimilarityTransform",
    "TriangleMatcher",
    "aligncore_add_matchers",
    "find_offset",
    "find_transform",
    "fit_similarity",
    "match_one_to_one",
    "median_nn_distance",
    "pair_offsets",
    "prune_close",
]

_EXPORTS = {
    "HistogramPeak": "aligncore_hist2d.histogram",
    "find_offset": "aligncore_hist2d.histogram",
    "pair_offsets": "aligncore_hist2d.histogram",
    "Hist2dMatcher": "aligncore_hist2d.matcher",
    "match_one_to_one": "aligncore_hist2d.pairing",
    "median_nn_distance": "aligncore_hist2d.pairing",
    "prune_close": "aligncore_hist2d.pairing",
    "TriangleMatcher": "aligncore_hist2d.triangle_matcher",
    "SimilarityTransform": "aligncore_hist2d.triangles",
    "find_transform": "aligncore_hist2d.triangles",
    "fit_similarity": "aligncore_hist2d.triangles",
}


@aligncore.hookimpl
def aligncore_add_matchers() -> list[str]:
    """Register the ``hist2d`` and ``triangles`` matchers (imported when one is built)."""
    return ["hist2d = aligncore_hist2d.matcher:Hist2dMatcher",
            "triangles = aligncore_hist2d.triangle_matcher:TriangleMatcher"]


# the public names, imported on first use: building a registry imports none of this
# package's modules (its hook returns where the classes are)
__getattr__ = aligncore.lazy_exports(__name__, _EXPORTS)
