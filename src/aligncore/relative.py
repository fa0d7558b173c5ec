"""Relative alignment of units to each other: order, match, fit, guard."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from astropy.table import QTable

from aligncore.config import Config
from aligncore.errors import AlignError
from aligncore.overlap import alignment_order, overlap_matrix
from aligncore.registry import Registry
from aligncore.stages import Fitter, Matcher
from aligncore.types import COL_TP_X, COL_TP_Y, META_PIXEL_SCALE, FitResult, MatchResult, Status
from aligncore.units import Unit

__all__ = ["relative_align"]


def _order_units(units: Sequence[Unit], config: Config) -> list[int]:
    candidates = [i for i, unit in enumerate(units) if len(unit.catalog) > 0]
    if config.align.enforce_user_order:
        return candidates
    overlaps = overlap_matrix([units[i].footprint for i in candidates])
    weights = [len(units[i].catalog) for i in candidates]
    return [candidates[k] for k in alignment_order(overlaps, weights)]


def _match_with_fallback(
    unit_cat: QTable,
    ref_cat: QTable,
    matchers: Sequence[Matcher],
    registry: Registry,
    minobj: int,
) -> tuple[MatchResult, Matcher]:
    best: tuple[MatchResult, Matcher] | None = None
    for matcher in matchers:
        result = registry.run_stage(matcher, unit_cat, ref_cat)
        if best is None or result.n_matched > best[0].n_matched:
            best = (result, matcher)
        if result.n_matched >= minobj and not result.meta.get("weak", False):
            return result, matcher
    assert best is not None
    return best


def _fit_unit(unit: Unit, ref_cat: QTable, matchers: Sequence[Matcher], fitter: Fitter,
              registry: Registry, minobj: int) -> None:
    """Match and fit one unit against the reference catalog; sets status/fit on the unit."""
    unit_cat = unit.catalog
    ref_cat.meta[META_PIXEL_SCALE] = ref_cat.meta.get(META_PIXEL_SCALE, unit.pixel_scale)
    match, matcher = _match_with_fallback(unit_cat, ref_cat, matchers, registry, minobj)
    unit.n_matched = match.n_matched
    unit.meta["matcher"] = matcher.name
    unit.meta["match"] = dict(match.meta)
    unit.meta["offset_arcsec"] = list(match.offset)
    if match.n_matched < minobj:
        unit.status = Status.FAILED
        unit.reason = (f"only {match.n_matched} matched sources (minobj={minobj}); "
                       f"{len(unit_cat)} sources in the image, {len(ref_cat)} in the reference")
        return
    image_xy = np.column_stack([np.asarray(unit_cat[COL_TP_X], float)[match.image_idx],
                                np.asarray(unit_cat[COL_TP_Y], float)[match.image_idx]])
    ref_xy = np.column_stack([np.asarray(ref_cat[COL_TP_X], float)[match.ref_idx],
                              np.asarray(ref_cat[COL_TP_Y], float)[match.ref_idx]])
    try:
        fit = registry.run_stage(fitter, image_xy, ref_xy)
    except AlignError as exc:
        unit.status = Status.FAILED
        unit.reason = f"fit failed: {exc}"
        return
    if not (np.all(np.isfinite(fit.matrix)) and np.all(np.isfinite(fit.shift))):
        unit.status = Status.FAILED
        unit.reason = "fit failed: non-finite solution"
        return
    if fit.n_used < minobj:
        unit.status = Status.FAILED
        unit.reason = (f"only {fit.n_used} sources left after clipping (minobj={minobj})")
        return
    unit.fit = fit
    unit.status = Status.SUCCESS
    unit.meta["matched_ref_idx"] = match.ref_idx
    unit.meta["matched_image_idx"] = match.image_idx


def _append_unmatched(ref_cat: QTable, unit: Unit) -> QTable:
    matched = np.zeros(len(unit.catalog), dtype=bool)
    matched[unit.meta.get("matched_image_idx", np.zeros(0, int))] = True
    extra = unit.catalog[~matched]
    corrected = unit.fit.apply(np.column_stack([np.asarray(extra[COL_TP_X], float),
                                                np.asarray(extra[COL_TP_Y], float)]))
    addition = QTable({COL_TP_X: corrected[:, 0], COL_TP_Y: corrected[:, 1]})
    merged = QTable({
        COL_TP_X: np.concatenate([np.asarray(ref_cat[COL_TP_X], float), addition[COL_TP_X]]),
        COL_TP_Y: np.concatenate([np.asarray(ref_cat[COL_TP_Y], float), addition[COL_TP_Y]]),
    })
    merged.meta.update(ref_cat.meta)
    return merged


def relative_align(units: list[Unit], config: Config, matchers: Sequence[Matcher],
                   fitter: Fitter, registry: Registry) -> None:
    """Sequential relative alignment of the units (sets fit/status on each)."""
    for unit in units:
        if len(unit.catalog) == 0:
            unit.status = Status.FAILED
            unit.reason = "no sources detected"
    order = _order_units(units, config)
    if not order:
        return
    reference = units[order[0]]
    reference.status = Status.REFERENCE
    reference.fit = FitResult.identity(fitgeometry="shift")
    ref_cat = QTable({COL_TP_X: np.asarray(reference.catalog[COL_TP_X], float),
                      COL_TP_Y: np.asarray(reference.catalog[COL_TP_Y], float)})
    ref_cat.meta[META_PIXEL_SCALE] = reference.pixel_scale
    minobj = config.align.minobj
    for index in order[1:]:
        unit = units[index]
        _fit_unit(unit, ref_cat, matchers, fitter, registry, minobj)
        if unit.status == Status.SUCCESS and config.align.expand_refcat:
            ref_cat = _append_unmatched(ref_cat, unit)
