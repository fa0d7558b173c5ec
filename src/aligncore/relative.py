"""Relative alignment of units to each other: order, match, fit, guard, global refinement.

The sequential pass follows tweakreg: the units are ordered (user order, or by
footprint overlap), each is matched and fitted to the reference catalog, and
with ``expand_refcat`` its unmatched sources join the reference. Every fit is
checked by a guard before it is accepted. The ``align.solver`` plugin then
refines the sequential solution (``global``: all units simultaneously, see
`aligncore.global_solver`; ``sequential``: kept as it is).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from astropy.table import QTable

from aligncore.config import AlignSection
from aligncore.diagnosis import diagnosis_margin, explain_few_matches
from aligncore.errors import AlignError
from aligncore.global_solver import overlap_statistics
from aligncore.overlap import alignment_order, overlap_matrix
from aligncore.registry import PluginRunError, Registry
from aligncore.stages import Fitter, Matcher, Solver
from aligncore.types import (
    COL_FLUX,
    COL_TP_X,
    COL_TP_Y,
    META_FWHM,
    META_PIXEL_SCALE,
    FitResult,
    MatchResult,
    SolverSettings,
    Status,
)
from aligncore.units import (
    TP_ERR,
    Unit,
    UnitOutcome,
    apply_outcomes,
    outcomes_of,
    working_copies,
)

__all__ = [
    "RelativeSettings",
    "correction_size",
    "expected_rms",
    "max_correction",
    "noise_bound",
    "relative_align",
]

_REF_COLUMNS = (COL_TP_X, COL_TP_Y, COL_FLUX, TP_ERR)


@dataclass(frozen=True)
class RelativeSettings:
    """What the relative alignment reads from the config (``align.*``), and nothing else.

    Attributes
    ----------
    minobj : int
        Fewest matches (and sources kept after clipping) for a fit to be accepted.
    use_weights : bool
        Weight the fits by the catalogs' centroid errors.
    max_rms_factor : float
        The guard's limit on the residual RMS, in units of the RMS the errors predict.
    max_correction : float or "auto"
        The largest correction (arcsec) the guard accepts; ``auto``: from the matcher.
    enforce_user_order : bool
        Align in the order given (no ordering by overlap, no retries).
    expand_refcat : bool
        Add each aligned unit's unmatched sources to the reference catalog.
    """

    minobj: int
    use_weights: bool
    max_rms_factor: float
    max_correction: float | Literal["auto"]
    enforce_user_order: bool
    expand_refcat: bool

    @classmethod
    def from_section(cls, align: AlignSection) -> RelativeSettings:
        """The settings of a validated ``align`` config section."""
        return cls(minobj=align.minobj, use_weights=align.use_weights,
                   max_rms_factor=align.max_rms_factor, max_correction=align.max_correction,
                   enforce_user_order=align.enforce_user_order,
                   expand_refcat=align.expand_refcat)


def _order_units(units: Sequence[Unit], settings: RelativeSettings) -> tuple[list[int], np.ndarray]:
    """Unit indices in alignment order (reference first) and their overlap matrix."""
    candidates = [i for i, unit in enumerate(units) if len(unit.catalog) > 0]
    overlaps = np.zeros((len(units), len(units)))
    sub = overlap_matrix([units[i].footprint for i in candidates])
    overlaps[np.ix_(candidates, candidates)] = sub
    if settings.enforce_user_order:
        return candidates, overlaps
    weights = [len(units[i].catalog) for i in candidates]
    return [candidates[k] for k in alignment_order(sub, weights)], overlaps


def _next_unit(pending: np.ndarray, totals: np.ndarray, tried_with: np.ndarray) -> int | None:
    """The pending unit overlapping most with the aligned ones, among those whose overlap
    grew since their last failed attempt (ties: lowest index).

    ``totals`` holds each unit's overlap with the aligned units and ``tried_with``
    that total at its last failed attempt (-inf if never tried).
    """
    eligible = pending & (totals > tried_with)
    if not eligible.any():
        return None
    return int(np.argmax(np.where(eligible, totals, -np.inf)))


def _match_with_fallback(
    unit: Unit,
    reference: _Reference,
    matchers: Sequence[Matcher],
    registry: Registry,
    settings: RelativeSettings,
) -> tuple[MatchResult, Matcher, QTable, list[str]]:
    """Try the matchers in order until one finds >= minobj matches with a clear peak.

    Each matcher sees the reference sources within its `search_margin` of the
    unit's footprint; the table it saw is returned with its result.
    """
    minobj = settings.minobj
    best: tuple[MatchResult, Matcher, QTable] | None = None
    tried = []
    for matcher in matchers:
        ref_cat = reference.near(unit.footprint, search_margin(settings, matcher, unit.footprint))
        result = registry.run_stage(matcher, unit.catalog, ref_cat)
        tried.append(f"{matcher.name}: {result.n_matched} matches"
                     + (" (weak peak)" if result.weak else ""))
        if result.n_matched >= minobj and not result.weak:
            return result, matcher, ref_cat, tried
        if best is None or result.n_matched > best[0].n_matched:
            best = (result, matcher, ref_cat)
    assert best is not None
    return best[0], best[1], best[2], tried


def _columns(table: QTable, idx: np.ndarray) -> np.ndarray:
    return np.column_stack([np.asarray(table[COL_TP_X], float)[idx],
                            np.asarray(table[COL_TP_Y], float)[idx]])


def _pair_variance(unit_cat: QTable, ref_cat: QTable, match: MatchResult) -> np.ndarray | None:
    """Per-pair positional variance (arcsec^2) from the catalogs' centroid errors, if known."""
    if TP_ERR not in unit_cat.colnames or TP_ERR not in ref_cat.colnames:
        return None
    variance = (np.asarray(unit_cat[TP_ERR], float)[match.image_idx] ** 2
                + np.asarray(ref_cat[TP_ERR], float)[match.ref_idx] ** 2)
    if not np.all(np.isfinite(variance)) or not np.all(variance > 0):
        return None
    return variance


def noise_bound(variance: np.ndarray | None, mask: np.ndarray | None = None) -> float:
    """The centroid-noise limit of a fit: ``sqrt(sum sigma_k^2) / N`` (arcsec), NaN if unknown."""
    if variance is None:
        return math.nan
    used = variance if mask is None else variance[mask]
    if used.size == 0:
        return math.nan
    return float(math.sqrt(float(np.sum(used))) / used.size)


def expected_rms(variance: np.ndarray | None, mask: np.ndarray | None = None) -> float:
    """The residual RMS the centroid errors predict: ``sqrt(2 mean sigma_k^2)`` (arcsec).

    ``variance`` holds each pair's per-axis variance, so the expected RMS of the
    2D residual vectors is the square root of twice their mean; NaN if unknown.
    """
    if variance is None:
        return math.nan
    used = variance if mask is None else variance[mask]
    if used.size == 0:
        return math.nan
    return float(math.sqrt(2.0 * float(np.mean(used))))


def correction_size(fit: FitResult, footprint: np.ndarray) -> float:
    """Largest displacement (arcsec) the correction applies to the unit's footprint corners."""
    moved = fit.apply(footprint) - footprint
    return float(np.max(np.hypot(moved[:, 0], moved[:, 1])))


def max_correction(settings: RelativeSettings, matcher: Matcher) -> float:
    """The largest correction the guard accepts (arcsec).

    ``align.max_correction: auto`` derives it from the matcher's
    `~aligncore.Matcher.search_reach` (1.5 x reach, plus 1"); a matcher without
    one (e.g. triangles) is not bounded.
    """
    value = settings.max_correction
    if value != "auto":
        return float(value)
    radius = matcher.search_reach()
    if radius is None:
        return math.inf
    return 1.5 * float(radius) + 1.0


def search_margin(settings: RelativeSettings, matcher: Matcher, footprint: np.ndarray) -> float:
    """How far (arcsec) beyond a unit's footprint the reference is shown to a matcher.

    A reference source farther from the footprint than the largest offset the
    matcher searches (`~aligncore.Matcher.search_reach`) or the guard accepts
    (`max_correction`), plus its `~aligncore.Matcher.match_slack`, can take
    part in no match; the margin is twice that reach plus the slack.
    A matcher without a search reach (e.g. triangles) under
    ``max_correction: auto`` sees one footprint size around the footprint.
    """
    reach = max_correction(settings, matcher)
    if not math.isfinite(reach):
        return float(np.max(np.ptp(footprint, axis=0)))
    radius = matcher.search_reach()
    if radius is not None:
        reach = max(reach, float(radius))
    return 2.0 * reach + float(matcher.match_slack())


def _guard(unit: Unit, fit: FitResult, match: MatchResult, variance: np.ndarray | None,
           settings: RelativeSettings, matcher: Matcher) -> str:
    """Why a fit must not be applied ('' when it passes every check)."""
    minobj = settings.minobj
    if fit.n_used < minobj:
        return f"only {fit.n_used} sources left after clipping (minobj={minobj})"
    if match.weak:
        return ("the match offset is not significant "
                f"(significance {match.significance:.1f} sigma)")
    if variance is not None:
        expected = math.sqrt(2.0 * float(np.median(variance)))
        limit = max(settings.max_rms_factor * expected, 0.5 * unit.pixel_scale)
        if fit.rmse > limit:
            return (f"residual RMS {fit.rmse * 1000:.1f} mas is inconsistent with the centroid "
                    f"errors (expected ~{expected * 1000:.1f} mas, limit {limit * 1000:.1f} mas)")
    size = correction_size(fit, unit.footprint)
    bound = max_correction(settings, matcher)
    if size > bound:
        return (f"correction of {size:.2f}\" exceeds max_correction ({bound:.2f}\"); "
                "raise align.max_correction if the pointing error is really that large")
    return ""


def _fit_unit(unit: Unit, reference: _Reference, matchers: Sequence[Matcher], fitter: Fitter,
              registry: Registry, settings: RelativeSettings) -> UnitOutcome:
    """Match and fit one unit against the reference catalog (the unit is not changed).

    Returns
    -------
    UnitOutcome
        SUCCESS with the fit, or FAILED with the reason; ``meta`` is the unit's
        with this attempt's entries (an earlier attempt's reason and rejected fit
        are not kept on success).
    """
    minobj = settings.minobj
    meta = dict(unit.meta)
    try:
        match, matcher, ref_cat, tried = _match_with_fallback(unit, reference, matchers,
                                                              registry, settings)
    except AlignError as exc:
        return _fail(unit, meta, str(exc), exc)
    n_matched = match.n_matched
    meta.update({"matcher": matcher.name, "match": dict(match.meta),
                 "offset_arcsec": list(match.offset)})
    if len(matchers) > 1:
        meta["matchers_tried"] = tried
    if match.n_matched < minobj:
        reach = matcher.search_reach()
        wide = reference.near(unit.footprint, diagnosis_margin(reach) + search_margin(
            settings, matcher, unit.footprint))
        cause = explain_few_matches(unit.xy, _columns(wide, slice(None)), unit.footprint,
                                    match.n_matched, minobj, reach, matcher.tolerance())
        return _fail(unit, meta, f"only {match.n_matched} matched sources (minobj={minobj}): "
                     f"{cause}; {len(unit.catalog)} sources in the image, {len(ref_cat)} in the "
                     "reference"
                     + (f"; tried {'; '.join(tried)}" if len(tried) > 1 else ""),
                     n_matched=n_matched)
    variance = _pair_variance(unit.catalog, ref_cat, match)
    weights = 1.0 / variance if variance is not None and settings.use_weights else None
    try:
        fit = registry.run_stage(fitter, _columns(unit.catalog, match.image_idx),
                                 _columns(ref_cat, match.ref_idx), weights)
    except PluginRunError as exc:
        return _fail(unit, meta, str(exc), exc, n_matched=n_matched)
    except AlignError as exc:
        return _fail(unit, meta, f"fit failed: {exc}", n_matched=n_matched)
    if not (np.all(np.isfinite(fit.matrix)) and np.all(np.isfinite(fit.shift))):
        return _fail(unit, meta, "fit failed: non-finite solution", n_matched=n_matched)
    meta["noise_bound_mas"] = noise_bound(variance, fit.fitmask) * 1000.0
    meta["expected_rms_mas"] = expected_rms(variance, fit.fitmask) * 1000.0
    reason = _guard(unit, fit, match, variance, settings, matcher)
    if reason:
        meta["rejected_fit"] = fit.summary()
        return _fail(unit, meta, reason, n_matched=n_matched)
    for key in ("traceback", "rejected_fit"):  # nothing left from an earlier attempt
        meta.pop(key, None)
    meta["matched_image_idx"] = match.image_idx
    return UnitOutcome(Status.SUCCESS, "", fit, n_matched, meta)


def _fail(unit: Unit, meta: dict[str, Any], reason: str, error: BaseException | None = None,
          n_matched: int | None = None) -> UnitOutcome:
    """``unit`` FAILED with ``reason`` (its fit kept); a plugin's traceback kept for the report."""
    trace = getattr(error, "trace", "")
    if trace:
        meta["traceback"] = trace
    return UnitOutcome(Status.FAILED, reason, unit.fit,
                       unit.n_matched if n_matched is None else n_matched, meta)


def _reference_catalog(unit: Unit) -> QTable:
    """The reference unit's sources as the first block of the reference catalog."""
    table = QTable({name: np.asarray(unit.catalog[name], float) for name in _REF_COLUMNS
                    if name in unit.catalog.colnames})
    table.meta[META_PIXEL_SCALE] = unit.pixel_scale
    if META_FWHM in unit.catalog.meta:
        table.meta[META_FWHM] = unit.catalog.meta[META_FWHM]
    return table


def _unmatched(unit: Unit) -> dict[str, np.ndarray]:
    """The unit's sources its match did not use, at their corrected positions."""
    matched = np.zeros(len(unit.catalog), dtype=bool)
    matched[unit.meta.get("matched_image_idx", np.zeros(0, int))] = True
    rows = np.flatnonzero(~matched)
    block = {name: np.asarray(unit.catalog[name], float)[rows] for name in _REF_COLUMNS
             if name in unit.catalog.colnames}
    xy = unit.corrected_xy()[rows]
    block[COL_TP_X], block[COL_TP_Y] = xy[:, 0], xy[:, 1]
    return block


class _Reference:
    """The (expanding) reference catalog of the sequential pass, one block per unit.

    The blocks keep their bounding boxes, so `near` hands a matcher only the
    reference sources around one footprint: the cost of a match does not grow
    with the number of units already aligned. Rows keep the order of the
    whole catalog (reference unit first, then the units in alignment order).
    """

    def __init__(self, first: QTable) -> None:
        self.meta = dict(first.meta)
        self.columns = list(first.colnames)
        self.blocks: list[dict[str, np.ndarray]] = []
        self.boxes: list[tuple[float, float, float, float]] = []
        self.add(first)

    def add(self, table: QTable | dict[str, np.ndarray]) -> None:
        """Append the rows of ``table`` (columns missing from it are dropped from all)."""
        names = list(table.keys())
        self.columns = [name for name in self.columns if name in names]
        block = {name: np.asarray(table[name], float) for name in names}
        x, y = block[COL_TP_X], block[COL_TP_Y]
        self.blocks.append(block)
        self.boxes.append((float(x.min()), float(x.max()), float(y.min()), float(y.max()))
                          if x.size else (math.inf, -math.inf, math.inf, -math.inf))

    def near(self, footprint: np.ndarray, margin: float) -> QTable:
        """The reference sources within ``margin`` (arcsec) of the footprint's bounding box."""
        x0, y0 = np.min(footprint, axis=0) - margin
        x1, y1 = np.max(footprint, axis=0) + margin
        boxes = np.asarray(self.boxes)
        hits = np.flatnonzero((boxes[:, 0] <= x1) & (boxes[:, 1] >= x0)
                              & (boxes[:, 2] <= y1) & (boxes[:, 3] >= y0))
        columns = {name: np.concatenate([self.blocks[k][name] for k in hits]
                                        or [np.zeros(0)]) for name in self.columns}
        x, y = columns[COL_TP_X], columns[COL_TP_Y]
        inside = (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)
        table = QTable({name: values[inside] for name, values in columns.items()})
        table.meta.update(self.meta)
        return table


def relative_align(units: Sequence[Unit], settings: RelativeSettings,
                   matchers: Sequence[Matcher], fitter: Fitter, registry: Registry,
                   solver: Solver) -> tuple[dict[str, UnitOutcome], dict[str, Any]]:
    """Align the units to each other; the units are not changed.

    The sequential pass aligns them one by one; ``solver`` (the configured
    ``align.solver``) then refines the corrections.

    Returns
    -------
    outcomes : dict of str to UnitOutcome
        Every unit's status, reason, fit, matched count and report entries, by
        unit key (the pipeline applies them with `aligncore.units.apply_outcomes`).
    info : dict
        Diagnostics: the order, the solver and its statistics, per-overlap residuals.
    """
    work = working_copies(units)
    info = _align_sequential_and_refine(work, settings, matchers, fitter, registry, solver)
    return outcomes_of(work), info


def _set(unit: Unit, outcome: UnitOutcome) -> None:
    """Record an outcome on one of the step's working copies."""
    apply_outcomes([unit], {unit.key: outcome})


def _align_sequential_and_refine(units: list[Unit], settings: RelativeSettings,
                                 matchers: Sequence[Matcher], fitter: Fitter,
                                 registry: Registry, solver: Solver) -> dict[str, Any]:
    """`relative_align` on the step's working copies of the units (updated as it goes)."""
    for unit in units:
        if len(unit.catalog) == 0 and unit.status is None:
            _set(unit, UnitOutcome(Status.FAILED, "no sources detected", unit.fit,
                                   unit.n_matched, unit.meta))
    order, overlaps = _order_units(units, settings)
    info: dict[str, Any] = {"solver": solver.name}
    if not order:
        return info
    reference = units[order[0]]
    _set(reference, UnitOutcome(Status.REFERENCE, reference.reason,
                                FitResult.identity(fitgeometry="shift"), reference.n_matched,
                                reference.meta))
    ref_cat = _Reference(_reference_catalog(reference))
    expand = settings.expand_refcat or solver.grows_reference
    attempts = [order[0]]
    if settings.enforce_user_order or not expand:
        # one pass in a fixed order: the reference catalog does not grow, so a retry is futile
        for index in order[1:]:
            _set(units[index], _fit_unit(units[index], ref_cat, matchers, fitter, registry,
                                         settings))
            attempts.append(index)
            if units[index].status == Status.SUCCESS and expand:
                ref_cat.add(_unmatched(units[index]))
    else:
        # greedy: always the unit overlapping most with what is aligned; a unit that failed
        # is retried once the aligned area around it has grown
        pending = np.zeros(len(units), dtype=bool)
        pending[order[1:]] = True
        totals = overlaps[:, order[0]].copy()
        tried_with = np.full(len(units), -np.inf)
        while (index := _next_unit(pending, totals, tried_with)) is not None:
            _set(units[index], _fit_unit(units[index], ref_cat, matchers, fitter, registry,
                                         settings))
            attempts.append(index)
            if units[index].status == Status.SUCCESS:
                pending[index] = False
                totals += overlaps[:, index]
                ref_cat.add(_unmatched(units[index]))
            else:
                tried_with[index] = totals[index]
    info["order"] = [units[i].key for i in attempts]
    aligned = sum(u.status == Status.SUCCESS for u in units)
    if aligned >= 1:
        nclip, sigma = fitter.clipping()
        refined = registry.run_stage(solver, units, SolverSettings(
            fitter.geometry(), nclip, sigma, settings.use_weights))
        for unit in units:
            if unit.key in refined.outcomes:
                _set(unit, refined.outcomes[unit.key])
        if refined.diagnostics:
            info[solver.name] = refined.diagnostics
    info["overlaps"] = overlap_statistics(units)
    return info
