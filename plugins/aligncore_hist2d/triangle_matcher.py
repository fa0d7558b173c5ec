"""The ``triangles`` matcher stage: large offsets and rotations."""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from astropy.table import Table
from pydantic import Field

from aligncore import COL_FLUX, COL_MAG, Matcher, MatchResult, Params
from aligncore.stages import require_tables
from aligncore_hist2d.auto import auto_tolerance, finite_min
from aligncore_hist2d.catalog import fwhm_pixels, pixel_scale_of, tangent_positions
from aligncore_hist2d.pairing import match_one_to_one, median_nn_distance
from aligncore_hist2d.triangles import SimilarityTransform, find_transform, fit_similarity

__all__ = ["TriangleMatcher"]

_REFINE_PASSES = 2


def _brightest(table: Table, rows: np.ndarray, n: int) -> np.ndarray:
    """Positions in ``rows`` (indices of usable rows) of the ``n`` brightest sources."""
    if COL_FLUX in table.colnames:
        key = -np.asarray(table[COL_FLUX], dtype=float)[rows]
    elif COL_MAG in table.colnames:
        key = np.asarray(table[COL_MAG], dtype=float)[rows]
    else:
        return np.arange(min(n, rows.size))
    key = np.where(np.isfinite(key), key, np.inf)
    return np.argsort(key, kind="stable")[:n]


class TriangleMatcher(Matcher):
    """Asterism matching with triangle invariants, for offsets and rotations of any size.

    The brightest ``max_sources`` of each catalog form triangles with their
    nearest neighbours; triangles with the same shape (side-ratio invariants,
    independent of shift, rotation and scale) propose similarity transforms,
    and the transform that brings most sources within ``tolerance`` of a
    reference source wins (Beroiz et al. 2020, astroalign). Its significance
    (against chance coincidences) must reach ``min_significance``. All sources are
    then matched strictly one-to-one under that transform, which is refined
    with the matches and applied again.

    Use it when the 2D histogram cannot work: offsets much larger than a
    sensible ``searchrad`` or rotations of degrees. ``meta['transform']``
    holds the similarity transform found; ``MatchResult.offset`` is its
    displacement at the centre of the matched image sources.
    """

    name: ClassVar[str] = "triangles"

    class Params(Params):
        tolerance: Annotated[float, Field(gt=0)] | Literal["auto"] = Field(
            "auto",
            description="Matching radius under the found transform (arcsec), or 'auto' "
            "(from FWHM, pixel scale and source density).",
        )
        max_sources: int = Field(
            50, ge=3, description="Brightest sources of each catalog used to build triangles."
        )
        neighbors: int = Field(
            6, ge=2, description="Nearest neighbours each source forms triangles with."
        )
        invariant_tol: float = Field(
            0.01, gt=0, description="Maximum difference of triangle side ratios."
        )
        min_matches: int = Field(
            5, ge=3, description="Fewer supporting sources than this: no matches (weak)."
        )
        min_significance: float = Field(
            5.0,
            ge=0,
            description="Solutions less significant than this (sigma) give no matches.",
        )
        allow_flip: bool = Field(False, description="Accept mirror-image solutions.")
        max_scale_error: float = Field(
            0.1, ge=0, description="Reject solutions whose scale differs from 1 by more."
        )

    params: Params

    def match(self, image_cat: Table, ref_cat: Table) -> MatchResult:
        """Match ``image_cat`` to ``ref_cat`` (both with ``tp_x``, ``tp_y`` in arcsec)."""
        require_tables(self.name, image_cat, ref_cat)
        p = self.params
        img_xy, img_rows = tangent_positions(image_cat, "image")
        ref_xy, ref_rows = tangent_positions(ref_cat, "reference")
        pscale, pscale_source = pixel_scale_of(image_cat, ref_cat)
        fwhm_px, fwhm_source = fwhm_pixels(image_cat, ref_cat, None)
        warnings: list[str] = []
        meta: dict[str, Any] = {
            "matcher": self.name,
            "pixel_scale": pscale,
            "pixel_scale_source": pscale_source,
            "fwhm_pixels": fwhm_px,
            "fwhm_source": fwhm_source,
            "weak": False,
            "warnings": warnings,
        }
        if p.tolerance == "auto":
            nn = finite_min(median_nn_distance(img_xy), median_nn_distance(ref_xy))
            tolerance = auto_tolerance(fwhm_px * pscale, nn, None)
            meta["nn_distance"] = nn
        else:
            tolerance = float(p.tolerance)
        meta["tolerance"] = tolerance
        meta["tolerance_auto"] = p.tolerance == "auto"
        if min(len(img_xy), len(ref_xy)) < 3:
            warnings.append("fewer than 3 usable sources in a catalog: no triangles")
            meta["weak"] = True
            return _empty(meta)

        bi = _brightest(image_cat, img_rows, p.max_sources)
        br = _brightest(ref_cat, ref_rows, p.max_sources)
        sol = find_transform(
            img_xy[bi],
            ref_xy[br],
            tolerance,
            neighbors=p.neighbors,
            invariant_tol=p.invariant_tol,
            allow_flip=p.allow_flip,
            max_scale_error=p.max_scale_error,
        )
        meta.update(
            {
                "n_triangles": list(sol.n_triangles),
                "n_candidates": sol.n_candidates,
                "n_inliers": sol.n_inliers,
                "expected_random_inliers": sol.expected_random,
                "false_alarm": sol.false_alarm,
                "significance": sol.significance,
            }
        )
        if (
            sol.transform is None
            or sol.n_inliers < p.min_matches
            or sol.significance < p.min_significance
        ):
            meta["weak"] = True
            warnings.append(
                f"no triangle solution supported by {p.min_matches} sources at "
                f"{p.min_significance:g} sigma (best: {sol.n_inliers} sources, "
                f"{sol.significance:.1f} sigma): no matches returned"
            )
            return _empty(meta)

        transform = sol.transform
        ii = jj = np.zeros(0, dtype=np.intp)
        for _ in range(_REFINE_PASSES):
            ii, jj = match_one_to_one(transform.apply(img_xy), ref_xy, tolerance)
            if ii.size < 3:
                break
            transform = fit_similarity(img_xy[ii], ref_xy[jj], p.allow_flip)
        ii, jj = match_one_to_one(transform.apply(img_xy), ref_xy, tolerance)
        center = img_xy[ii].mean(axis=0) if ii.size else img_xy.mean(axis=0)
        offset = transform.apply(center[None, :])[0] - center
        meta["transform"] = _describe(transform)
        meta["n_matched"] = int(ii.size)
        if ii.size < p.min_matches:
            meta["weak"] = True
            warnings.append(f"only {ii.size} matches under the triangle solution")
        return MatchResult(
            image_idx=img_rows[ii],
            ref_idx=ref_rows[jj],
            offset=(float(offset[0]), float(offset[1])),
            meta=meta,
            weak=meta["weak"],
            significance=meta["significance"],
        )

    def tolerance(self) -> float | None:
        """The matching radius (arcsec); None for ``tolerance: auto`` (chosen per match).

        `search_reach` is the base class's None: triangles look at any offset.
        """
        return None if self.params.tolerance == "auto" else float(self.params.tolerance)


def _describe(t: SimilarityTransform) -> dict[str, Any]:
    return {
        "matrix": t.matrix.tolist(),
        "shift": t.shift.tolist(),
        "rotation_deg": t.rotation,
        "scale": t.scale,
        "flipped": t.flipped,
    }


def _empty(meta: dict[str, Any]) -> MatchResult:
    meta["n_matched"] = 0
    empty = np.zeros(0, dtype=np.intp)
    return MatchResult(image_idx=empty, ref_idx=empty, offset=(0.0, 0.0), meta=meta,
                       weak=meta["weak"], significance=meta.get("significance", math.nan))

