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
from aligncore_hist2d.histogram import HistogramPeak, find_offset, pair_offsets
from aligncore_hist2d.matcher import Hist2dMatcher
from aligncore_hist2d.pairing import match_one_to_one, median_nn_distance, prune_close
from aligncore_hist2d.triangle_matcher import TriangleMatcher
from aligncore_hist2d.triangles import SimilarityTransform, find_transform, fit_similarity

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


@aligncore.hookimpl
def aligncore_add_matchers() -> list[type[aligncore.Matcher]]:
    """Register the ``hist2d`` and ``triangles`` matchers."""
    return [Hist2dMatcher, TriangleMatcher]
