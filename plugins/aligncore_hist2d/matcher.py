"""The ``hist2d`` matcher stage."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from astropy.table import Table
from pydantic import Field, model_validator

from aligncore import Matcher, MatchError, MatchResult, Params
from aligncore.stages import require_tables
from aligncore_hist2d.auto import auto_separation, auto_tolerance, finite_min, search_radii
from aligncore_hist2d.catalog import fwhm_pixels, pixel_scale_of, tangent_positions
from aligncore_hist2d.histogram import HistogramPeak, find_offset
from aligncore_hist2d.pairing import (
    match_one_to_one,
    median_nn_distance,
    prune_close,
)

__all__ = ["Hist2dMatcher"]

_SQRT2 = math.sqrt(2.0)
_MIN_FOR_SCATTER = 10  # matches needed to measure their scatter (auto tolerance)
_RAYLEIGH_MEDIAN = math.sqrt(2.0 * math.log(2.0))  # median / sigma of a 2D Gaussian distance
_TIGHTEN_SIGMAS = 5.0

PositiveArcsec = Annotated[float, Field(gt=0)]

SEED_SEPARATION_TOLERANCE = (0.5, 1.0)
"""The seed's (tweakreg's historical) ``separation, tolerance`` defaults.

They break the ``separation > sqrt(2) x tolerance`` rule, which only matters
for matchers that are not one-to-one; this matcher is, so the pair is accepted
for compatibility (with a warning in ``meta``). Any other inconsistent pair
is refused.
"""


CONFIRMED_SIGNIFICANCE = 3.0
"""A peak this many times ``min_significance`` is accepted without a wider look."""


class Hist2dMatcher(Matcher):
    """2D-histogram initial offset, then strictly one-to-one nearest-neighbour matching.

    1. With ``use2dhist``, the offset ``reference - image`` is the peak of the
       2D histogram of all pair offsets within ``searchrad`` (cell grid, pixel
       bins centred on integer offsets, sub-bin quadratic peak refined with
       the unbinned offsets: no bin bias). Its significance (Gaussian-equivalent
       sigma of the false-alarm probability against the Poisson background of
       random pairs) is reported (``MatchResult.significance``); a peak below
       ``min_significance`` gives no matches and ``MatchResult.weak``. ``xoffset``/``yoffset`` are
       applied first.
    2. In each catalog, a source closer than ``separation`` to an earlier
       (brighter) one is dropped (confusion guard).
    3. Image positions shifted by the offset are matched to the reference
       within ``tolerance``, mutual nearest neighbours first, repeatedly: no
       source is ever used twice.

    ``auto`` values: ``searchrad`` doubles from ``max(1", 5 px)`` up to
    ``max_searchrad`` until the peak is significant and off the edge;
    ``tolerance`` starts at ``min(3 FWHM, max(0.35 x median nearest-neighbour
    distance, 1 FWHM))`` and is then tightened to ``max(5 sigma, 1 FWHM)``,
    sigma being the measured scatter of the first mutual matches;
    ``separation`` is ``1.5 x tolerance``. The values used are reported in
    ``MatchResult.meta`` (``searchrad``, ``tolerance``, ``separation``).

    All distances are arcsec in the shared tangent plane; the pixel scale is
    read from the catalogs' ``meta['tp_pixel_scale']`` and the FWHM (pixels)
    from the ``fwhm`` parameter or the catalogs' ``meta['fwhm']`` (else 2.5).

    Examples
    --------
    >>> m = Hist2dMatcher(searchrad="auto", tolerance="auto", separation="auto")  # doctest: +SKIP
    >>> result = m.match(image_cat, ref_cat)                                      # doctest: +SKIP
    >>> result.offset, result.significance, result.weak                           # doctest: +SKIP
    """

    name: ClassVar[str] = "hist2d"

    class Params(Params):
        searchrad: PositiveArcsec | Literal["auto"] = Field(
            1.0,
            description="Search radius of the 2D histogram (arcsec), or 'auto' to widen it "
            "up to max_searchrad until the peak is significant.",
        )
        max_searchrad: float = Field(
            10.0, gt=0, description="Largest search radius tried by searchrad: auto (arcsec)."
        )
        separation: PositiveArcsec | Literal["auto"] = Field(
            0.5,
            description="Sources closer than this to a brighter one are dropped (arcsec), "
            "or 'auto' (1.5 x tolerance).",
        )
        tolerance: PositiveArcsec | Literal["auto"] = Field(
            1.0,
            description="Matching radius after the offset (arcsec), or 'auto' (from FWHM, "
            "pixel scale and source density).",
        )
        use2dhist: bool = Field(True, description="Find the initial offset with a 2D histogram.")
        xoffset: float = Field(0.0, description="Initial offset in x, reference - image (arcsec).")
        yoffset: float = Field(0.0, description="Initial offset in y, reference - image (arcsec).")
        min_significance: float = Field(
            5.0,
            ge=0,
            description="Histogram peaks below this significance (sigma) give no matches.",
        )
        fwhm: float | None = Field(
            None,
            gt=0,
            description="PSF FWHM in pixels for auto tolerance (default: catalog "
            "meta['fwhm'], else 2.5).",
        )

        @model_validator(mode="after")
        def _check_separation(self) -> Hist2dMatcher.Params:
            sep, tol = self.separation, self.tolerance
            if (sep, tol) == SEED_SEPARATION_TOLERANCE:
                return self  # tweakreg's historical defaults: accepted, warned at match time
            if isinstance(sep, float) and isinstance(tol, float) and sep <= _SQRT2 * tol:
                raise MatchError(
                    f"separation ({sep:g}\") must be larger than sqrt(2) x tolerance "
                    f"({_SQRT2 * tol:.4g}\" for tolerance {tol:g}\"): otherwise one source "
                    "can be within tolerance of two sources that were both kept; "
                    "increase separation, decrease tolerance, or use 'auto'"
                )
            return self

    params: Params

    # ------------------------------------------------------------------------------------
    def match(self, image_cat: Table, ref_cat: Table) -> MatchResult:
        """Match ``image_cat`` to ``ref_cat`` (both with ``tp_x``, ``tp_y`` in arcsec).

        Returns
        -------
        aligncore.MatchResult
            One-to-one pairs (possibly none), the offset applied (arcsec,
            reference - image) and diagnostics in ``meta``.
        """
        require_tables(self.name, image_cat, ref_cat)
        p = self.params
        img_all, img_rows_all = tangent_positions(image_cat, "image")
        ref_all, ref_rows_all = tangent_positions(ref_cat, "reference")
        pscale, pscale_source = pixel_scale_of(image_cat, ref_cat)
        fwhm_px, fwhm_source = fwhm_pixels(image_cat, ref_cat, p.fwhm)
        warnings: list[str] = []
        meta: dict[str, Any] = {
            "matcher": self.name,
            "pixel_scale": pscale,
            "pixel_scale_source": pscale_source,
            "fwhm_pixels": fwhm_px,
            "fwhm_source": fwhm_source,
            "n_image_input": len(image_cat),
            "n_ref_input": len(ref_cat),
            "weak": False,
            "warnings": warnings,
        }
        offset0 = np.array([p.xoffset, p.yoffset], dtype=float)
        if (p.separation, p.tolerance) == SEED_SEPARATION_TOLERANCE:
            warnings.append(
                "separation 0.5\" <= sqrt(2) x tolerance 1.0\" (tweakreg's historical defaults) "
                "is accepted because matching is strictly one-to-one; prefer 'auto'"
            )
        if pscale_source == "default":
            warnings.append("no pixel scale in the catalogs' meta; histogram bins of 1 arcsec")

        # Shift the reference instead of the image: (xoffset, yoffset) applied once.
        raw = _Lists(img_all, img_rows_all, ref_all - offset0, ref_rows_all)
        tolerance, separation = self._radii(raw, fwhm_px * pscale, meta)
        if raw.empty:
            which = "image" if raw.img.shape[0] == 0 else "reference"
            warnings.append(f"the {which} catalog has no usable source")
            meta["weak"] = True
            raw.describe(meta, (0, 0))
            return _empty(offset0, meta)

        delta = np.zeros(2)  # offset found here, on top of (xoffset, yoffset)
        if p.use2dhist:
            peak = self._histogram(raw, pscale, meta)
            if peak.significance < p.min_significance:
                meta["weak"] = True
                warnings.append(
                    f"2D histogram peak is not significant ({peak.significance:.1f} sigma < "
                    f"min_significance {p.min_significance:g}; {peak.peak_counts} pairs at the "
                    f"peak, {peak.background:.3g} expected per bin): no matches returned"
                )
                raw.describe(meta, (0, 0))
                return _empty(offset0, meta)
            delta = peak.offset

        result = self._pair(raw, delta, offset0, tolerance, separation,
                            fwhm_px * pscale if p.tolerance == "auto" else None, meta)
        if p.use2dhist:
            result = replace(result, alternatives=tuple(
                (float(a[0]), float(a[1])) for a in offset0 + np.asarray(
                    [*peak.alternatives], dtype=float).reshape(-1, 2)))
        return result

    def match_at(self, image_cat: Table, ref_cat: Table, offset: tuple[float, float],
                 tolerance: float | None = None) -> MatchResult:
        """Match at the offset given (arcsec, reference - image), without a histogram.

        ``tolerance`` (arcsec) replaces the configured one (``separation: auto``
        follows it); otherwise the tolerance and separation are chosen as in
        `match`. ``xoffset``/``yoffset`` are not added: ``offset`` is the whole one.
        """
        require_tables(self.name, image_cat, ref_cat)
        p = self.params
        img_all, img_rows_all = tangent_positions(image_cat, "image")
        ref_all, ref_rows_all = tangent_positions(ref_cat, "reference")
        pscale, _ = pixel_scale_of(image_cat, ref_cat)
        fwhm_px, _ = fwhm_pixels(image_cat, ref_cat, p.fwhm)
        meta: dict[str, Any] = {"matcher": self.name, "match_at": list(offset), "weak": False,
                                "warnings": []}
        offset0 = np.asarray(offset, dtype=float)
        raw = _Lists(img_all, img_rows_all, ref_all - offset0, ref_rows_all)
        if tolerance is None:
            tolerance, separation = self._radii(raw, fwhm_px * pscale, meta)
            tighten = fwhm_px * pscale if p.tolerance == "auto" else None
        else:
            tolerance = float(tolerance)
            separation = (auto_separation(tolerance) if p.separation == "auto"
                          else min(float(p.separation), auto_separation(tolerance)))
            meta.update({"tolerance": tolerance, "separation": separation})
            tighten = None
        if raw.empty:
            meta["weak"] = True
            raw.describe(meta, (0, 0))
            return _empty(offset0, meta)
        return self._pair(raw, np.zeros(2), offset0, tolerance, separation, tighten, meta)

    def _pair(self, raw: _Lists, delta: np.ndarray, offset0: np.ndarray, tolerance: float,
              separation: float, tighten_floor: float | None,
              meta: dict[str, Any]) -> MatchResult:
        """One-to-one pairs at offset ``delta`` (on top of ``offset0``); with
        ``tighten_floor`` (the FWHM, arcsec) the tolerance is first tightened to the
        scatter of the first mutual matches (never widened)."""
        if tighten_floor is not None:
            ii, jj = raw.match(tolerance, delta, max_rounds=1)
            if ii.size >= _MIN_FOR_SCATTER:
                d = np.hypot(*(raw.ref[jj] - raw.img[ii] - delta).T)
                sigma = float(np.median(d)) / _RAYLEIGH_MEDIAN
                tight = max(_TIGHTEN_SIGMAS * sigma, tighten_floor)
                meta["match_sigma"] = sigma
                if tight < tolerance:
                    meta["tolerance_initial"] = tolerance
                    tolerance = tight
                    meta["tolerance"] = tolerance
                    if self.params.separation == "auto":
                        separation = auto_separation(tolerance)
                        meta["separation"] = separation

        lists, n_pruned = raw.pruned(separation)
        lists.describe(meta, n_pruned)
        ii, jj = lists.match(tolerance, delta)

        offset = offset0 + delta
        meta["n_matched"] = int(ii.size)
        if ii.size:
            d = np.hypot(*(lists.ref[jj] - lists.img[ii] - delta).T)
            meta["match_rms"] = float(np.sqrt(np.mean(d * d)))
        else:
            meta["warnings"].append("no source pair within tolerance")
            meta["weak"] = True
        return MatchResult(
            image_idx=lists.img_rows[ii],
            ref_idx=lists.ref_rows[jj],
            offset=(float(offset[0]), float(offset[1])),
            meta=meta,
            weak=meta["weak"],
            significance=meta.get("peak_significance", math.nan),
        )

    # --- the contract core reads ----------------------------------------------------------
    def search_reach(self) -> float | None:
        """The largest offset searched (arcsec): the user's initial offset
        (``xoffset``, ``yoffset``) plus ``searchrad`` (``max_searchrad`` for auto)."""
        p = self.params
        radius = float(p.max_searchrad if p.searchrad == "auto" else p.searchrad)
        return math.hypot(p.xoffset, p.yoffset) + radius

    def tolerance(self) -> float | None:
        """The pair tolerance (arcsec); None for ``tolerance: auto`` (chosen per match)."""
        return None if self.params.tolerance == "auto" else float(self.params.tolerance)

    def match_slack(self) -> float:
        """Tolerance plus separation (arcsec), the fixed ones only (``auto`` counts 0)."""
        p = self.params
        return sum(float(v) for v in (p.tolerance, p.separation) if not isinstance(v, str))

    # ------------------------------------------------------------------------------------
    def _radii(
        self, lists: _Lists, fwhm_arcsec: float, meta: dict[str, Any]
    ) -> tuple[float, float]:
        """Resolve ``auto`` tolerance and separation; record them in ``meta``."""
        p = self.params
        tol_auto = p.tolerance == "auto"
        sep_auto = p.separation == "auto"
        if tol_auto:
            nn = finite_min(
                median_nn_distance(lists.img),
                median_nn_distance(lists.ref),
            )
            meta["nn_distance"] = nn
            sep_fixed = None if sep_auto else float(p.separation)
            tolerance = auto_tolerance(fwhm_arcsec, nn, sep_fixed)
        else:
            tolerance = float(p.tolerance)
        separation = auto_separation(tolerance) if sep_auto else float(p.separation)
        meta["tolerance"] = tolerance
        meta["separation"] = separation
        meta["tolerance_auto"] = tol_auto
        meta["separation_auto"] = sep_auto
        return tolerance, separation

    def _histogram(self, lists: _Lists, pscale: float, meta: dict[str, Any]) -> HistogramPeak:
        """Find the offset peak, widening the search for ``searchrad: auto``."""
        p = self.params
        if p.searchrad == "auto":
            radii = search_radii(pscale, p.max_searchrad)
        else:
            radii = [float(p.searchrad)]
        tried: list[dict[str, Any]] = []
        best: HistogramPeak | None = None
        accepted: HistogramPeak | None = None
        used = radii[0]
        for radius in radii:
            peak = find_offset(
                lists.img,
                lists.ref,
                radius,
                bin_size=pscale,
            )
            tried.append(
                {"searchrad": radius, "significance": peak.significance, "edge": peak.edge}
            )
            if accepted is None and (best is None or peak.significance > best.significance):
                best, used = peak, radius
            if peak.significance < p.min_significance or peak.edge:
                continue
            if accepted is None:
                accepted, best, used = peak, peak, radius
                if peak.significance >= CONFIRMED_SIGNIFICANCE * p.min_significance:
                    break
                # a modest peak: look one radius further before trusting it, since a
                # chance clump inside a too small search box can look significant
                continue
            if np.hypot(*(peak.offset - accepted.offset)) <= 2.0 * pscale:
                break  # the wider search confirms the peak
            if peak.peak_counts > accepted.peak_counts:
                accepted, best, used = peak, peak, radius  # a stronger peak further out
                continue
            break
        assert best is not None
        meta.update(
            {
                "searchrad": used,
                "searchrad_auto": p.searchrad == "auto",
                "searchrad_tried": tried,
                "hist_offset": best.offset.tolist(),
                "hist_method": best.method,
                "n_candidates": best.n_pairs,
                "peak_counts": best.peak_counts,
                "peak_background": best.background,
                "peak_false_alarm": best.false_alarm,
                "peak_significance": best.significance,
                "peak_ratio": best.peak_ratio,
                "peak_edge": best.edge,
            }
        )
        meta["warnings"].extend(best.warnings)
        return best


@dataclass
class _Lists:
    """Both source lists: positions and their rows in the input tables."""

    img: np.ndarray
    img_rows: np.ndarray
    ref: np.ndarray
    ref_rows: np.ndarray

    @property
    def empty(self) -> bool:
        return self.img.shape[0] == 0 or self.ref.shape[0] == 0

    def pruned(self, separation: float) -> tuple[_Lists, tuple[int, int]]:
        """The lists without confused sources, and how many were dropped from each."""
        keep_i = prune_close(self.img, separation)
        keep_r = prune_close(self.ref, separation)
        n_pruned = (int(np.count_nonzero(~keep_i)), int(np.count_nonzero(~keep_r)))
        out = _Lists(
            self.img[keep_i],
            self.img_rows[keep_i],
            self.ref[keep_r],
            self.ref_rows[keep_r],
        )
        return out, n_pruned

    def match(
        self, tolerance: float, shift: np.ndarray, max_rounds: int = 50
    ) -> tuple[np.ndarray, np.ndarray]:
        return match_one_to_one(
            self.img,
            self.ref,
            tolerance,
            shift=shift,
            max_rounds=max_rounds,
        )

    def describe(self, meta: dict[str, Any], n_pruned: tuple[int, int]) -> None:
        meta["n_image"] = int(self.img.shape[0])
        meta["n_ref"] = int(self.ref.shape[0])
        meta["n_pruned_image"], meta["n_pruned_ref"] = n_pruned


def _empty(offset: np.ndarray, meta: dict[str, Any]) -> MatchResult:
    meta["n_matched"] = 0
    empty = np.zeros(0, dtype=np.intp)
    return MatchResult(
        image_idx=empty, ref_idx=empty, offset=(float(offset[0]), float(offset[1])), meta=meta,
        weak=meta["weak"], significance=meta.get("peak_significance", math.nan),
    )
