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
from scipy.spatial import cKDTree

from aligncore.config import AlignSection
from aligncore.diagnosis import diagnosis_margin, explain_few_matches
from aligncore.errors import AlignError
from aligncore.geometry import AUTO
from aligncore.global_solver import overlap_statistics, restricted
from aligncore.overlap import overlap_matrix
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
    "confirmation",
    "correction_size",
    "expected_rms",
    "max_correction",
    "noise_bound",
    "relative_align",
    "sources_in_overlaps",
    "without_scale",
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


def _order_units(units: Sequence[Unit], settings: RelativeSettings,
                 rank: int = 0) -> tuple[list[int], np.ndarray]:
    """Unit indices in alignment order (reference first) and their overlap matrix.

    The reference is the unit with the most sources inside the other units'
    footprints (`sources_in_overlaps`; ties: the larger total overlap, then the
    earlier unit), or with ``rank`` the unit ranked that far below it (an empty
    list when there is none); the others follow by their overlap with the units
    before them.
    """
    candidates = [i for i, unit in enumerate(units) if len(unit.catalog) > 0]
    overlaps = np.zeros((len(units), len(units)))
    sub = overlap_matrix([units[i].footprint for i in candidates])
    overlaps[np.ix_(candidates, candidates)] = sub
    if settings.enforce_user_order or not candidates:
        return (candidates if rank == 0 else []), overlaps
    shared = sources_in_overlaps([units[i] for i in candidates], sub)
    ranking = np.lexsort((np.arange(len(candidates)), -sub.sum(axis=1), -shared))
    if rank >= len(ranking):
        return [], overlaps
    return [candidates[k] for k in _greedy_order(sub, int(ranking[rank]))], overlaps


def _greedy_order(overlaps: np.ndarray, first: int) -> list[int]:
    """``first``, then each time the unit with the largest total overlap with those placed
    (ties: the lowest index)."""
    order = [first]
    placed = np.zeros(overlaps.shape[0], dtype=bool)
    placed[first] = True
    totals = overlaps[:, first].astype(float)
    while not placed.all():
        best = int(np.argmax(np.where(placed, -np.inf, totals)))
        order.append(best)
        placed[best] = True
        totals += overlaps[:, best]
    return order


def sources_in_overlaps(units: Sequence[Unit], overlaps: np.ndarray) -> np.ndarray:
    """How many of each unit's sources lie inside another unit's footprint it overlaps.

    What a reference has to offer: sources that other units can match. A unit
    whose sources fall outside its neighbours (or its own footprint, with a
    wrong WCS) counts few, whatever its footprint overlap.
    """
    counts = np.zeros(len(units), dtype=int)
    for i, unit in enumerate(units):
        xy = unit.xy
        inside = np.zeros(len(xy), dtype=bool)
        for j in np.flatnonzero(overlaps[i] > 0):
            if j != i:
                inside |= _inside_convex(xy, units[j].footprint)
        counts[i] = int(np.count_nonzero(inside))
    return counts


def _inside_convex(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Which points lie inside a convex polygon (vertices in either winding)."""
    edges = np.roll(polygon, -1, axis=0) - polygon
    rel = points[:, None, :] - polygon[None, :, :]
    cross = edges[None, :, 0] * rel[:, :, 1] - edges[None, :, 1] * rel[:, :, 0]
    return np.all(cross >= 0, axis=1) | np.all(cross <= 0, axis=1)


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
        limit = _rms_limit(unit, variance, settings)
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
              registry: Registry, settings: RelativeSettings,
              scale_free: bool = False) -> UnitOutcome:
    """Match and fit one unit against the reference catalog (the unit is not changed),
    climbing the retry ladder until the guard accepts a fit.

    The rungs, in order: the first matcher (``match``); the other offsets it
    listed (``next_peak``, `MatchResult.alternatives` through `Matcher.match_at`);
    the matchers of ``align.fallback`` (``fallback``); each aligned unit around
    this one alone as the reference (``single_reference``: a unit whose
    neighbours were aligned along different chains agrees with each of them);
    and the catalog corrected by the best refused fit, matched with the guard's
    residual limit as tolerance (``tight``). Every attempt is recorded in
    ``meta["attempts"]`` (rung, matcher, outcome, matches, RMS).

    Returns
    -------
    UnitOutcome
        SUCCESS with the first accepted fit, or FAILED with the first attempt's
        reason (the unit's fit kept); ``meta`` is the unit's with this call's
        entries (an earlier call's reason and rejected fit are not kept on success).
    """
    ladder = _Ladder(unit, fitter, registry, settings, reference, scale_free)
    primary = matchers[0]
    ref_cat = reference.near(unit.footprint, search_margin(settings, primary, unit.footprint))
    first = ladder.attempt("match", primary, ref_cat,
                           lambda: registry.run_stage(primary, unit.catalog, ref_cat))
    for offset in () if first is None else first.alternatives:
        ladder.attempt("next_peak", primary, ref_cat,
                       lambda offset=offset: primary.match_at(unit.catalog, ref_cat, offset))
    for matcher in matchers[1:]:
        near = reference.near(unit.footprint, search_margin(settings, matcher, unit.footprint))
        ladder.attempt("fallback", matcher, near,
                       lambda m=matcher, c=near: registry.run_stage(m, unit.catalog, c))
    blocks = [] if ladder.accepted is not None else reference.blocks_near(
        unit.footprint, search_margin(settings, primary, unit.footprint))
    blocks = [b for b in blocks if len(b) >= settings.minobj]  # others cannot give minobj
    for k, block in enumerate(blocks[:_MAX_SINGLE_REFERENCES] if len(blocks) > 1 else []):
        others = _stack([b for j, b in enumerate(blocks) if j != k])
        ladder.attempt("single_reference", primary, block,
                       lambda c=block: registry.run_stage(primary, unit.catalog, c),
                       check=others)
    if ladder.refused is not None:
        fit, matcher, near, limit = ladder.refused
        corrected = unit.catalog.copy(copy_data=False)
        xy = fit.apply(_columns(unit.catalog, np.arange(len(unit.catalog))))
        corrected[COL_TP_X], corrected[COL_TP_Y] = xy[:, 0], xy[:, 1]
        # most of the refused fit's pairs must stay: a chance clump inside a wrong match
        # is consistent with itself and must not be rescued
        ladder.attempt("tight", matcher, near,
                       lambda: matcher.match_at(corrected, near, (0.0, 0.0), limit),
                       min_matched=math.ceil(_TIGHT_KEEP * fit.n_matched))
    return ladder.outcome()


_TIGHT_KEEP = 2.0 / 3.0
"""The ``tight`` rung needs this fraction of the refused fit's pairs within the tolerance."""
_CONFIRM_FRACTION = 0.25
"""A ``single_reference`` fit must put this fraction of the others' sources on a source."""
_CONFIRM_MIN = 5
"""Fewest checking sources inside the corrected footprint for the check to be made."""
_CONFIRM_PIXELS = 2.0
"""The check's radius, pixels: chains that disagree by tens of mas still agree."""


def _stack(tables: Sequence[QTable]) -> QTable | None:
    """The rows of several reference tables (positions only); None for none."""
    if not tables:
        return None
    return QTable({name: np.concatenate([np.asarray(t[name], float) for t in tables])
                   for name in (COL_TP_X, COL_TP_Y)})


def confirmation(unit: Unit, fit: FitResult, check: QTable | None) -> str:
    """Why the sources of ``check`` do not confirm ``fit`` ('' when they do or cannot tell).

    A fit found on one aligned neighbour alone (the ``single_reference`` rung)
    should agree with the other neighbours' sources, which it was not fitted to: of
    those inside the corrected footprint, at least `_CONFIRM_FRACTION` must
    have a source of the unit within `_CONFIRM_PIXELS` pixels. A chance
    solution puts almost none there; when fewer than `_CONFIRM_MIN` lie
    inside, nothing can be told and the fit stands. During the sequential
    pass the others may be the ones that are off (chains that the global
    solver has yet to reconcile), so an unconfirmed fit is not thrown away:
    the ladder takes it when no later rung gives a confirmed one.
    """
    if check is None or len(check) == 0:
        return ""
    xy = _columns(check, np.arange(len(check)))
    inside = xy[_inside_convex(xy, fit.apply(unit.footprint))]
    if len(inside) < _CONFIRM_MIN:
        return ""
    radius = _CONFIRM_PIXELS * unit.pixel_scale
    distance, _ = cKDTree(fit.apply(unit.xy)).query(inside, distance_upper_bound=radius)
    found = int(np.count_nonzero(np.isfinite(distance)))
    if found >= _CONFIRM_FRACTION * len(inside):
        return ""
    return (f"not confirmed by the other overlapping sources: {found} of the {len(inside)} "
            f"inside the corrected footprint have a source within {radius:.2f}\"")


_MAX_SINGLE_REFERENCES = 4
"""Most aligned neighbours tried one by one as the reference (the largest first)."""


class _Ladder:
    """The attempts made to align one unit; the first accepted one ends the climb."""

    def __init__(self, unit: Unit, fitter: Fitter, registry: Registry,
                 settings: RelativeSettings, reference: _Reference,
                 scale_free: bool = False) -> None:
        self.unit, self.fitter, self.registry, self.settings = unit, fitter, registry, settings
        self.reference, self.scale_free = reference, scale_free
        self.meta = {k: v for k, v in unit.meta.items()
                     if k not in ("traceback", "rejected_fit", "attempts")}
        self.attempts: list[dict[str, Any]] = []
        self.accepted: UnitOutcome | None = None
        self.failure: UnitOutcome | None = None
        # the refused fit with the smallest RMS: (fit, matcher, reference, guard limit)
        self.refused: tuple[FitResult, Matcher, QTable, float] | None = None
        self._refused_rms = math.inf
        # the first fit the guard accepted but the other neighbours did not confirm
        self.unconfirmed: tuple[UnitOutcome, dict[str, Any]] | None = None
        self.crashed = False  # the matcher raised: the climb stops

    def attempt(self, rung: str, matcher: Matcher, ref_cat: QTable, run: Any,
                min_matched: int = 0, check: QTable | None = None) -> MatchResult | None:
        """Match with ``run()`` and fit, unless a fit was already accepted; the match
        (None when the matcher raised or cannot do it) is returned. A match with fewer
        than ``min_matched`` pairs is refused before any fit; a fit the guard accepts
        must also be confirmed by the sources of ``check`` (`confirmation`)."""
        if self.accepted is not None or self.crashed:
            return None
        record: dict[str, Any] = {"rung": rung, "matcher": matcher.name}
        try:
            match = run()
        except AlignError as exc:
            # a matcher that raised (a crash, or its own MatchError) fails the image with
            # its message, as docs/plugins.md says: no rung hides it
            self.crashed = True
            self._record(record, _fail(self.unit, self._meta(), str(exc), exc))
            return None
        if match is None:
            return None
        record["n_matched"] = match.n_matched
        record["offset_arcsec"] = list(match.offset)
        if match.n_matched < min_matched:
            self._record(record, _fail(self.unit, self._meta(), (
                f"only {match.n_matched} pairs within the tight tolerance, fewer than "
                f"{min_matched}"), n_matched=match.n_matched))
            return match
        outcome = _fit_match(self.unit, match, matcher, ref_cat, self.fitter, self.registry,
                             self.settings, self._meta(), self.reference, self.scale_free)
        if outcome.status == Status.SUCCESS:
            reason = confirmation(self.unit, outcome.fit, check)
            if reason:
                # the others may be the ones off (chains not yet refined): kept as a last
                # resort, taken if no later rung gives a confirmed fit
                record.update(outcome="unconfirmed: " + reason,
                              rms_mas=outcome.fit.rmse * 1000.0)
                self.attempts.append(record)
                if self.unconfirmed is None:
                    self.unconfirmed = (outcome, record)
                return match
        if outcome.status == Status.FAILED and "rejected_fit" in outcome.meta:
            rejected = outcome.meta["rejected_fit_result"]
            if rejected.rmse < self._refused_rms:
                self._refused_rms = rejected.rmse
                self.refused = (rejected, matcher, ref_cat, outcome.meta["guard_limit"])
        self._record(record, outcome)
        return match

    def _meta(self) -> dict[str, Any]:
        return dict(self.meta)

    def _record(self, record: dict[str, Any], outcome: UnitOutcome) -> None:
        fit = outcome.fit if outcome.status == Status.SUCCESS else \
            outcome.meta.get("rejected_fit_result")
        record["outcome"] = "accepted" if outcome.status == Status.SUCCESS else outcome.reason
        record["rms_mas"] = fit.rmse * 1000.0 if fit is not None else None
        self.attempts.append(record)
        outcome.meta.pop("rejected_fit_result", None)
        outcome.meta.pop("guard_limit", None)
        if outcome.status == Status.SUCCESS:
            self.accepted = outcome
        elif self.failure is None:
            self.failure = outcome

    def outcome(self) -> UnitOutcome:
        """The accepted outcome, else the unconfirmed one, else the first failure; each
        carries every attempt."""
        if self.accepted is None and self.unconfirmed is not None:
            self.accepted, record = self.unconfirmed
            record["outcome"] = "accepted"
            record["confirmed"] = False
        outcome = self.accepted or self.failure
        assert outcome is not None
        outcome.meta["attempts"] = self.attempts
        if self.accepted is None and len(self.attempts) > 1:
            rungs = ", ".join(a["rung"] for a in self.attempts[1:])
            return UnitOutcome(outcome.status, f"{outcome.reason} (retried: {rungs}; "
                               "no fit accepted)", outcome.fit, outcome.n_matched, outcome.meta)
        return outcome


def _fit_match(unit: Unit, match: MatchResult, matcher: Matcher, ref_cat: QTable,
               fitter: Fitter, registry: Registry, settings: RelativeSettings,
               meta: dict[str, Any], reference: _Reference | None = None,
               scale_free: bool = False) -> UnitOutcome:
    """Fit one match and guard the fit: SUCCESS, or FAILED with the reason (a refused
    fit is left in ``meta["rejected_fit_result"]`` with the guard's RMS limit). Too few
    matches are explained from the sources of ``reference`` around the unit. With
    ``scale_free``, an ``auto`` fit keeps no scale (`without_scale`)."""
    minobj = settings.minobj
    n_matched = match.n_matched
    meta.update({"matcher": matcher.name, "match": dict(match.meta),
                 "offset_arcsec": list(match.offset)})
    if match.n_matched < minobj:
        reach = matcher.search_reach()
        cause = ""
        if reference is not None:
            wide = reference.near(unit.footprint, diagnosis_margin(reach) + search_margin(
                settings, matcher, unit.footprint))
            cause = ": " + explain_few_matches(
                unit.xy, _columns(wide, slice(None)), unit.footprint, match.n_matched, minobj,
                reach, matcher.tolerance())
        return _fail(unit, meta, f"only {match.n_matched} matched sources (minobj={minobj})"
                     f"{cause}; {len(unit.catalog)} sources in the image, {len(ref_cat)} in "
                     "the reference", n_matched=n_matched)
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
    if scale_free and fitter.geometry() == AUTO:
        fit = without_scale(fit, _columns(unit.catalog, match.image_idx),
                            _columns(ref_cat, match.ref_idx), weights)
    meta["noise_bound_mas"] = noise_bound(variance, fit.fitmask) * 1000.0
    meta["expected_rms_mas"] = expected_rms(variance, fit.fitmask) * 1000.0
    reason = _guard(unit, fit, match, variance, settings, matcher)
    if reason:
        meta["rejected_fit"] = fit.summary()
        meta["rejected_fit_result"] = fit
        meta["guard_limit"] = _rms_limit(unit, variance, settings)
        return _fail(unit, meta, reason, n_matched=n_matched)
    meta["matched_image_idx"] = match.image_idx
    return UnitOutcome(Status.SUCCESS, "", fit, n_matched, meta)


def without_scale(fit: FitResult, image_xy: np.ndarray, ref_xy: np.ndarray,
                  weights: np.ndarray | None) -> FitResult:
    """An ``rscale`` fit reduced to its rotation and shift (any other fit unchanged).

    Under ``fitgeometry: auto`` with a solver that refines every unit at once
    (``global``), the sequential pass keeps no per-unit scale: each unit is
    matched to a reference that holds its predecessors' sources at their
    corrected positions, so a scale fitted to one narrow overlap is carried to
    the far side of that unit and then looks significant to the next unit along
    the chain. On a 16 x 16 mosaic with scales true to 1e-5 the per-unit scales
    so chosen drifted to 1e-3 - 5e-3 (up to 0.28" at a tile's corner) and the
    guard refused fits it accepted in ``rshift``. The global solver then
    chooses the geometry for all units from the overlaps it holds back.

    The rotation and the shift at the kept matches' weighted centroid are the
    fit's (a centred rotation and scale are uncorrelated in a least-squares
    fit, so this is the ``rshift`` fit to the same kept matches); the residuals
    and RMS are those of the reduced fit.
    """
    if fit.fitgeometry != "rscale" or fit.n_used == 0:
        return fit
    mask = fit.fitmask
    w = np.ones(len(image_xy)) if weights is None else np.asarray(weights, float)
    center = np.average(image_xy[mask], axis=0, weights=w[mask])
    reduced = restricted(fit, "rshift", center)
    residuals = ref_xy - reduced.apply(image_xy)
    length = np.hypot(residuals[mask, 0], residuals[mask, 1])
    wm = w[mask] / float(np.sum(w[mask]))
    return FitResult(matrix=reduced.matrix, shift=reduced.shift, center=center,
                     fitgeometry="rshift", fitmask=mask, residuals=residuals,
                     rmse=float(np.sqrt(wm @ length**2)), mae=float(wm @ length),
                     meta={**fit.meta, "scale_dropped": float(
                         math.sqrt(abs(np.linalg.det(fit.matrix))) - 1.0)})


def _rms_limit(unit: Unit, variance: np.ndarray | None, settings: RelativeSettings) -> float:
    """The guard's limit on a fit's residual RMS (arcsec): ``max_rms_factor`` times the
    RMS the centroid errors predict, at least half a pixel (half a pixel when unknown)."""
    floor = 0.5 * unit.pixel_scale
    if variance is None:
        return floor
    return max(settings.max_rms_factor * math.sqrt(2.0 * float(np.median(variance))), floor)


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
        hits, window = self._hits(footprint, margin)
        return self._table(hits, window)

    def blocks_near(self, footprint: np.ndarray, margin: float) -> list[QTable]:
        """`near`, one table per block (an aligned unit's sources) that has sources there,
        the fullest first (ties: the earlier block)."""
        hits, window = self._hits(footprint, margin)
        tables = [self._table(np.array([k]), window) for k in hits]
        sizes = [-len(t) for t in tables]
        return [tables[k] for k in np.argsort(sizes, kind="stable") if sizes[k] < 0]

    def _hits(self, footprint: np.ndarray, margin: float
              ) -> tuple[np.ndarray, tuple[float, float, float, float]]:
        x0, y0 = np.min(footprint, axis=0) - margin
        x1, y1 = np.max(footprint, axis=0) + margin
        boxes = np.asarray(self.boxes)
        hits = np.flatnonzero((boxes[:, 0] <= x1) & (boxes[:, 1] >= x0)
                              & (boxes[:, 2] <= y1) & (boxes[:, 3] >= y0))
        return hits, (float(x0), float(x1), float(y0), float(y1))

    def _table(self, hits: np.ndarray, window: tuple[float, float, float, float]) -> QTable:
        x0, x1, y0, y1 = window
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
    info: dict[str, Any] = {"solver": solver.name}
    initial = outcomes_of(units)
    order, overlaps = _order_units(units, settings)
    if not order:
        return info
    attempts = _sequential_pass(units, order, overlaps, settings, matchers, fitter, registry,
                                solver)
    first = (outcomes_of(units), attempts)
    for rank in range(1, _MAX_REFERENCES):
        if any(u.status == Status.SUCCESS for u in units):
            break
        # the reference gave nobody a fit: start again from the next one
        following, _ = _order_units(units, settings, rank)
        if len(following) < 2:
            break
        info.setdefault("references_refused", []).append(units[order[0]].key)
        apply_outcomes(units, initial)
        order = following
        attempts = _sequential_pass(units, order, overlaps, settings, matchers, fitter,
                                    registry, solver)
    if not any(u.status == Status.SUCCESS for u in units) and "references_refused" in info:
        # no reference gave anybody a fit: the first one's outcome stands
        apply_outcomes(units, first[0])
        attempts = first[1]
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


_MAX_REFERENCES = 3
"""Most reference units tried when the first gives no other unit a fit."""


def _sequential_pass(units: list[Unit], order: list[int], overlaps: np.ndarray,
                     settings: RelativeSettings, matchers: Sequence[Matcher], fitter: Fitter,
                     registry: Registry, solver: Solver) -> list[int]:
    """One sequential pass from the reference ``order[0]``; the units in the order
    they were attempted (a unit retried is listed again)."""
    reference = units[order[0]]
    _set(reference, UnitOutcome(Status.REFERENCE, reference.reason,
                                FitResult.identity(fitgeometry="shift"), reference.n_matched,
                                reference.meta))
    ref_cat = _Reference(_reference_catalog(reference))
    expand = settings.expand_refcat or solver.grows_reference
    scale_free = solver.grows_reference  # the solver chooses the geometry (`without_scale`)
    attempts = [order[0]]
    if settings.enforce_user_order or not expand:
        # one pass in a fixed order: the reference catalog does not grow, so a retry is futile
        for index in order[1:]:
            _set(units[index], _fit_unit(units[index], ref_cat, matchers, fitter, registry,
                                         settings, scale_free))
            attempts.append(index)
            if units[index].status == Status.SUCCESS and expand:
                ref_cat.add(_unmatched(units[index]))
        return attempts
    # greedy: always the unit overlapping most with what is aligned; a unit that failed
    # is retried once the aligned area around it has grown
    pending = np.zeros(len(units), dtype=bool)
    pending[order[1:]] = True
    totals = overlaps[:, order[0]].copy()
    tried_with = np.full(len(units), -np.inf)
    while (index := _next_unit(pending, totals, tried_with)) is not None:
        _set(units[index], _fit_unit(units[index], ref_cat, matchers, fitter, registry,
                                     settings, scale_free))
        attempts.append(index)
        if units[index].status == Status.SUCCESS:
            pending[index] = False
            totals += overlaps[:, index]
            ref_cat.add(_unmatched(units[index]))
        else:
            tried_with[index] = totals[index]
    return attempts
