"""The ``poly`` refinement: set-up, degree choice, held-back check, guard and report."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import aligncore
from aligncore.distortion import DistortionCorrection, detector_key, polynomial_terms
from aligncore.geometry import GEOMETRIES, N_PARAMS
from aligncore.global_solver import match_pairs, match_radius, restricted
from aligncore_distortion.joint import (
    JointProblem,
    JointState,
    Link,
    reference_links,
    start_state,
)
from aligncore_distortion.stars import DetectorInfo, unit_stars, usable

__all__ = ["PolyOptions", "refine_poly"]

_ALIGNED = ("success", "reference")
_COVERAGE_CELLS = 4  # the detector is cut into 4 x 4 cells to measure the stars' coverage
_REPORT_POINTS = 2000


@dataclass(frozen=True)
class PolyOptions:
    """The ``poly`` plugin's parameters, as the refinement uses them."""

    degree: int | str
    max_degree: int
    holdout: float
    seed: int
    min_matches: int
    min_cells: int
    max_error: float
    significance: float
    guard_tolerance: float
    geometry: str


class Declined(Exception):
    """The refinement is not attempted or not applied; the message says why."""


def _status(unit: Any) -> str:
    return str(getattr(unit.status, "value", unit.status) or "").lower()


def _geometry(units: Sequence[Any], free: Sequence[int], asked: str) -> str:
    """``asked``, or for ``auto`` the most common geometry of the units' fits."""
    if asked in GEOMETRIES:
        return asked
    found = Counter(units[u].fit.fitgeometry for u in free if units[u].fit is not None)
    for geometry, _ in found.most_common():
        if geometry in GEOMETRIES:
            return geometry
    return "rscale"


def _restricted(fit: aligncore.FitResult, geometry: str, center: np.ndarray,
                scale: float) -> aligncore.FitResult:
    """A unit's fit reduced to ``geometry`` with the reference unit's ``scale`` (rshift,
    shift), with the same effect at ``center``; richer geometries are kept as they are.

    Decided by the matrix, not by ``fit.fitgeometry``: after absolute alignment a unit's
    fit is labelled with the absolute fit's geometry (rshift) but carries its relative
    fit's own scale, which an rshift joint fit could then never change."""
    if geometry not in ("rshift", "shift"):
        return fit
    if geometry == "shift" or np.linalg.det(fit.matrix) <= 0:
        matrix = np.eye(2) * scale
    else:
        matrix = restricted(fit, geometry, center).matrix * scale
    shift = fit.apply(center[None, :])[0] - matrix @ center
    return aligncore.FitResult(matrix=matrix, shift=shift, fitgeometry=geometry,
                               meta=dict(fit.meta))


@dataclass
class _Placed:
    """A unit as `match_pairs` reads it, at the positions of a joint solution."""

    status: Any
    footprint: np.ndarray
    positions: np.ndarray

    def corrected_xy(self) -> np.ndarray:
        return self.positions


def _rematch(units: Sequence[Any], problem: JointProblem, state: JointState,
             radius: float) -> list[Link]:
    """Image-image matches made again on the corrected positions of ``state``."""
    positions = problem.positions(state)
    placed = [_Placed(u.status if i in positions else None, u.footprint,
                      positions.get(i, np.zeros((0, 2)))) for i, u in enumerate(units)]
    return [Link(p.a, p.b, p.idx_a, p.idx_b, np.ones(p.idx_a.size, bool),
                 np.zeros(p.idx_a.size, bool)) for p in match_pairs(placed, radius)
            if p.a in positions and p.b in positions]


def _only_usable(links: list[Link], good: dict[int, np.ndarray]) -> list[Link]:
    """The links without matches of stars whose Jacobian is unknown."""
    out = []
    for lk in links:
        ok = good[lk.a][lk.idx_a]
        if lk.b >= 0:
            ok = ok & good[lk.b][lk.idx_b]
        if np.any(ok):
            out.append(Link(lk.a, lk.b, lk.idx_a[ok], lk.idx_b[ok], lk.keep[ok], lk.held[ok]))
    return out


def _connected(n: int, links: Sequence[Link], root: int) -> set[int]:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    pairs = [(lk.a, lk.b) for lk in links if lk.b >= 0]
    if not pairs:
        return {root}
    a, b = np.array(pairs).T
    graph = coo_matrix((np.ones(a.size), (a, b)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return {i for i in range(n) if labels[i] == labels[root]}


def _hold_back(links: Sequence[Link], fraction: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for link in links:
        link.held = rng.random(link.idx_a.size) < fraction


def _coverage(problem: JointProblem, links: Sequence[Link], d: int) -> tuple[int, int]:
    """Matched fit stars on detector ``d`` and the cells of the detector they cover."""
    info = problem.detectors[d]
    cells = set()
    count = 0
    for link in links:
        use = link.keep & ~link.held
        sides = [(link.a, link.idx_a)] + ([(link.b, link.idx_b)] if link.b >= 0 else [])
        for unit, idx in sides:
            stars = problem.stars[unit]
            on = use & (stars.det[idx] == d)
            count += int(np.count_nonzero(on))
            pix = stars.pix[idx[on]]
            cx = np.clip((pix[:, 0] + 0.5) * _COVERAGE_CELLS // info.shape[1], 0,
                         _COVERAGE_CELLS - 1)
            cy = np.clip((pix[:, 1] + 0.5) * _COVERAGE_CELLS // info.shape[0], 0,
                         _COVERAGE_CELLS - 1)
            cells.update(zip(cx.astype(int).tolist(), cy.astype(int).tolist(), strict=True))
    return count, len(cells)


def _rms_mas(problem: JointProblem, state: JointState, links: Sequence[Link],
             select: str, limit: np.ndarray | None = None) -> tuple[float, int]:
    """RMS separation (mas) of the held-back (``held``) or fitted (``fit``) matches."""
    positions = problem.positions(state)
    seps = []
    for k, link in enumerate(links):
        use = link.held if select == "held" else link.keep & ~link.held
        if limit is not None:
            use = use & limit[k]
        d = problem.separations(state, link, positions)[use]
        seps.append(np.hypot(d[:, 0], d[:, 1]))
    sep = np.concatenate(seps) if seps else np.zeros(0)
    return (float(np.sqrt(np.mean(sep**2))) * 1000.0 if sep.size else math.nan), int(sep.size)


def _held_limit(problem: JointProblem, state: JointState, links: Sequence[Link],
                sigma: float) -> list[np.ndarray]:
    """Held-back matches that are not outliers before the refinement (sigma x RMS of the
    fitted matches): the held-back check compares the same matches before and after."""
    positions = problem.positions(state)
    seps = [np.hypot(*problem.separations(state, lk, positions).T) for lk in links]
    fitted = np.concatenate([s[lk.keep & ~lk.held] for s, lk in zip(seps, links, strict=True)])
    limit = sigma * math.sqrt(float(np.mean(fitted**2))) if fitted.size else math.inf
    return [s < limit for s in seps]


def _unit_rms(problem: JointProblem, state: JointState, links: Sequence[Link]
              ) -> dict[int, tuple[float, int]]:
    """Per unit: RMS separation (arcsec) over its kept matches, and their number."""
    positions = problem.positions(state)
    sums: dict[int, list[float]] = {}
    for link in links:
        d = problem.separations(state, link, positions)[link.keep]
        s2 = np.sum(d**2, axis=1)
        for unit in (link.a, link.b):
            if unit >= 0:
                entry = sums.setdefault(unit, [0.0, 0])
                entry[0] += float(s2.sum())
                entry[1] += int(s2.size)
    return {u: (math.sqrt(v[0] / v[1]) if v[1] else 0.0, int(v[1])) for u, v in sums.items()}


def _degrees(options: PolyOptions, n_matches: int) -> list[int]:
    if options.degree != "auto":
        return [int(options.degree)]
    top = options.max_degree
    while top > 2 and 2 * len(polynomial_terms(top)) * 10 > n_matches:
        top -= 1
    return list(range(2, top + 1))


def refine_poly(units: Sequence[Any], images: Sequence[aligncore.AlignImage],
                settings: aligncore.DistortionSettings,
                options: PolyOptions) -> aligncore.DistortionResult:
    """Fit each detector's distortion with every unit's affine correction; see `PolyDistortion`."""
    report: dict[str, Any] = {}
    try:
        return _refine(units, images, settings, options, report)
    except Declined as exc:
        if not report:
            report["all"] = _declined_entry(str(exc), 0)
        for entry in report.values():
            entry.update(applied=False, correction=None)
            entry["reason"] = entry.get("reason") or str(exc)
        return aligncore.DistortionResult(report=report)


def _declined_entry(reason: str, degree: int) -> dict[str, Any]:
    return {"correction": None, "applied": False, "reason": reason, "degree": degree,
            "held_back": {"n": 0, "rms_before_mas": None, "rms_after_mas": None},
            "residuals": {k: [] for k in ("x", "y", "dx_before", "dy_before", "dx_after",
                                          "dy_after")}}


def _refine(units: Sequence[Any], images: Sequence[aligncore.AlignImage],
            settings: aligncore.DistortionSettings, options: PolyOptions,
            report: dict[str, Any]) -> aligncore.DistortionResult:
    aligned = [i for i, u in enumerate(units) if _status(u) in _ALIGNED and u.fit is not None]
    if len(aligned) < 2 and settings.reference is None:
        raise Declined("fewer than two aligned images: nothing to compare")
    reference = next((i for i in aligned if _status(units[i]) == "reference"), aligned[0])
    radius = match_radius(units, aligned)
    pairs = match_pairs(units, radius)
    links = [Link(p.a, p.b, p.idx_a, p.idx_b, np.ones(p.idx_a.size, bool),
                  np.zeros(p.idx_a.size, bool)) for p in pairs]
    connected = _connected(len(units), links, reference)
    keys: dict[str, int] = {}
    stars = {u: unit_stars(units[u], images, keys, settings.plane) for u in aligned}
    shapes = {detector_key(image): tuple(image.shape) for image in images}
    detectors = [DetectorInfo(key, shapes[key]) for key in keys]
    for key in keys:
        report[key] = _declined_entry("", 0)
    if settings.reference is not None:
        # the catalog fixes the frame: every unit is free, the reference image too (its
        # fit came through the wrong distortion; held fixed, the polynomial bends to it)
        free_units = list(aligned)
    else:
        free_units = [u for u in aligned if u != reference and u in connected]
    problem = JointProblem(
        stars=stars, detectors=detectors, active=np.ones(len(detectors), bool),
        free={u: k for k, u in enumerate(free_units)},
        geometry=_geometry(units, free_units, options.geometry),
        links=[lk for lk in links if lk.a in stars and lk.b in stars],
        reference=settings.reference, weighted=settings.weighted,
        max_error=options.max_error, significance=options.significance)
    ref_scale = math.sqrt(abs(float(np.linalg.det(units[reference].fit.matrix))))
    fits0 = {u: units[u].fit if u not in problem.free else _restricted(
        units[u].fit, problem.geometry, units[u].xy.mean(axis=0), ref_scale) for u in aligned}
    good = {u: usable(st) for u, st in stars.items()}
    problem.links = _only_usable(problem.links, good)
    if settings.reference is not None:
        problem.links += _only_usable(reference_links(
            problem, start_state(fits0, len(detectors), ()), radius), good)
    problem.set_links(problem.links)
    _hold_back(problem.links, options.holdout, options.seed)

    for d, info in enumerate(detectors):
        count, cells = _coverage(problem, problem.links, d)
        if count < options.min_matches:
            problem.active[d] = False
            report[info.key]["reason"] = (f"too few stars: {count} matched star positions on "
                                          f"this detector, at least {options.min_matches} "
                                          "needed (distortion.params.min_matches)")
        elif cells < options.min_cells:
            problem.active[d] = False
            report[info.key]["reason"] = (
                f"too little overlap: the matched stars cover {cells} of "
                f"{_COVERAGE_CELLS**2} cells of the detector, at least {options.min_cells} "
                "needed (distortion.params.min_cells)")
    if not np.any(problem.active):
        raise Declined("no detector has enough matched stars over enough of its area")
    n_matches = sum(int(np.count_nonzero(lk.keep & ~lk.held)) for lk in problem.links)
    degrees = _degrees(options, n_matches)

    # fit the richest model, match again on its positions (stars the wrong distortion had
    # pushed apart), then clip once; every candidate is then fitted to the same matches
    richest_terms = polynomial_terms(degrees[-1])
    first = problem.iterate(start_state(fits0, len(detectors), richest_terms), nclip=0,
                            sigma=settings.sigma)
    if first.failed:
        raise Declined("the joint system is singular")
    relinked = _rematch(units, problem, first, radius)
    if settings.reference is not None:
        relinked += reference_links(problem, first, radius)
    problem.set_links(_only_usable(relinked, good))
    _hold_back(problem.links, options.holdout, options.seed)
    richest = problem.iterate(start_state(fits0, len(detectors), richest_terms),
                              nclip=settings.nclip, sigma=settings.sigma)
    if richest.failed:
        raise Declined("the joint system is singular")
    if richest.n_params <= len(problem.free) * N_PARAMS[problem.geometry]:
        if richest.measured_directions:
            raise Declined(
                "no correction found: no combination of terms differs from zero by "
                f"{options.significance:g} standard errors ({richest.measured_directions} "
                f"measured to {options.max_error:g} px; the nominal distortion is right, or "
                "the dithers are too small to show its error)")
        raise Declined(
            "too little overlap: the matched stars constrain none of the distortion terms "
            f"to {options.max_error:g} px and significantly (dithers too small or overlaps "
            "too narrow; distortion.params.max_error, significance)")
    before = start_state(fits0, len(detectors), ())
    affine = problem.iterate(before.copy(), nclip=0, sigma=settings.sigma)
    variance = richest.chi2 / max(richest.n_rows - richest.n_params, 1)
    n_obs = max(richest.n_rows, 1)
    candidates: dict[int, JointState] = {0: affine, degrees[-1]: richest}
    for degree in degrees[:-1]:
        candidates[degree] = problem.iterate(
            start_state(fits0, len(detectors), polynomial_terms(degree)), nclip=0,
            sigma=settings.sigma)
    # the penalty counts every combination of terms measured well enough to be fitted
    # (significant or not): thresholding must not make a richer model look cheap
    n_affine = len(problem.free) * N_PARAMS[problem.geometry]
    criterion = {deg: st.chi2 / variance + (n_affine + st.measured_directions) * math.log(
        n_obs) for deg, st in candidates.items() if not st.failed}
    chosen = min(criterion, key=lambda deg: (criterion[deg], deg))
    n_reference = sum(int(np.count_nonzero(lk.keep)) for lk in problem.links if lk.b < 0)
    diagnostics = {"geometry": problem.geometry, "reference_matches": n_reference,
                   "criterion": {
        str(k): float(v) for k, v in sorted(criterion.items())}, "chosen_degree": chosen}
    best = candidates[chosen]
    for key in report:
        report[key]["degree"] = chosen
        report[key]["selection"] = diagnostics

    limit = _held_limit(problem, before, problem.links, settings.sigma * 2.0)
    held_before, n_held = _rms_mas(problem, before, problem.links, "held", limit)
    held_after, _ = _rms_mas(problem, best, problem.links, "held", limit)
    for d, info in enumerate(detectors):
        entry = report[info.key]
        entry["held_back"] = {"n": n_held, "rms_before_mas": held_before,
                              "rms_after_mas": held_after}
        entry["residuals"] = _residual_lists(problem, before, best, d, options.seed)
    if chosen == 0:
        raise Declined("the information criterion prefers no distortion terms (the nominal "
                       "distortion is as good as the data can tell)")
    if not n_held or not held_after < held_before:
        raise Declined(f"the held-back matches do not improve ({n_held} matches: "
                       f"{held_before:.3f} mas before, {held_after:.3f} mas after)")
    # checked: the final fit uses every match, the held-back ones too
    for link in problem.links:
        link.held = np.zeros(link.idx_a.size, bool)
    best = problem.iterate(best, nclip=settings.nclip,
                          sigma=settings.sigma)
    if best.failed:
        raise Declined("the joint system with every match is singular")
    worse = _worse_units(problem, before, best, options.guard_tolerance)
    if worse:
        raise Declined("the refinement makes an image worse: " + ", ".join(
            f"{units[u].key} ({b * 1000:.3f} -> {a * 1000:.3f} mas)" for u, b, a in worse[:3]))

    corrections = {}
    for d, info in enumerate(detectors):
        entry = report[info.key]
        if not problem.active[d]:
            continue
        correction = DistortionCorrection(
            detector=info.key, degree=chosen, center=info.center, scale=info.scale,
            terms=best.terms, coeffs_x=tuple(float(c) for c in best.coeffs[d, 0]),
            coeffs_y=tuple(float(c) for c in best.coeffs[d, 1]))
        corrections[info.key] = correction
        entry.update(correction=correction.to_dict(), applied=True, reason="")
        entry["held_directions"] = best.held_directions
    return aligncore.DistortionResult(
        corrections=corrections, outcomes=_outcomes(units, problem, best),
        positions={units[u].key: problem.nominal(u, best) for u in problem.stars},
        report=report)


def _worse_units(problem: JointProblem, before: JointState, after: JointState,
                 tolerance: float) -> list[tuple[int, float, float]]:
    """Units whose RMS over their kept matches grows by more than the tolerance (relative,
    widened by the statistical scatter 2/sqrt(n) of an RMS over n matches)."""
    rms_before = _unit_rms(problem, before, problem.links)
    rms_after = _unit_rms(problem, after, problem.links)
    worse = []
    for unit, (b, n) in rms_before.items():
        a = rms_after.get(unit, (0.0, 0))[0]
        allowance = tolerance + 2.0 / math.sqrt(max(n, 1))
        if n and a > b * (1.0 + allowance):
            worse.append((unit, b, a))
    return worse


def _residual_lists(problem: JointProblem, before: JointState, after: JointState, d: int,
                    seed: int) -> dict[str, list[float]]:
    """Pixel positions and residuals (pixels, detector axes) of matched stars on ``d``."""
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("x", "y", "dx_before", "dy_before",
                                                         "dx_after", "dy_after")}
    pos_before, pos_after = problem.positions(before), problem.positions(after)
    for link in problem.links:
        stars = problem.stars[link.a]
        on = link.keep & (stars.det[link.idx_a] == d)
        if not np.any(on):
            continue
        idx = link.idx_a[on]
        sub = Link(link.a, link.b, idx, link.idx_b[on], link.keep[on], link.held[on])
        for label, state, pos in (("before", before, pos_before), ("after", after, pos_after)):
            r = problem.separations(state, sub, pos)
            gain = np.einsum("ab,nbc->nac", state.fits[link.a].matrix, stars.jac[idx])
            pix = np.linalg.solve(gain, r[:, :, None])[:, :, 0]
            out[f"dx_{label}"].append(pix[:, 0])
            out[f"dy_{label}"].append(pix[:, 1])
        out["x"].append(stars.pix[idx, 0])
        out["y"].append(stars.pix[idx, 1])
    arrays = {k: np.concatenate(v) if v else np.zeros(0) for k, v in out.items()}
    n = arrays["x"].size
    if n > _REPORT_POINTS:
        pick = np.sort(np.random.default_rng(seed).choice(n, _REPORT_POINTS, replace=False))
        arrays = {k: v[pick] for k, v in arrays.items()}
    return {k: [round(float(x), 5) for x in v] for k, v in arrays.items()}


def _outcomes(units: Sequence[Any], problem: JointProblem,
              state: JointState) -> dict[str, aligncore.UnitOutcome]:
    """New outcome of every unit of the fit: its refitted correction and statistics."""
    positions = problem.positions(state)
    resid: dict[int, list[np.ndarray]] = {}
    masks: dict[int, list[np.ndarray]] = {}
    for link in problem.links:
        d = problem.separations(state, link, positions)
        for unit, sign in ((link.a, 1.0), (link.b, -1.0)):
            if unit >= 0:
                resid.setdefault(unit, []).append(sign * d)
                masks.setdefault(unit, []).append(link.keep & ~link.held)
    out = {}
    for unit in problem.stars:
        old = state.fits[unit]
        r = np.concatenate(resid.get(unit, [np.zeros((0, 2))]))
        mask = np.concatenate(masks.get(unit, [np.zeros(0, bool)]))
        used = r[mask]
        rmse = float(np.sqrt(np.mean(np.sum(used**2, axis=1)))) if used.size else 0.0
        mae = float(np.mean(np.hypot(used[:, 0], used[:, 1]))) if used.size else 0.0
        geometry = problem.geometry if unit in problem.free else old.fitgeometry
        fit = aligncore.FitResult(matrix=old.matrix, shift=old.shift, center=old.center,
                                  fitgeometry=geometry, fitmask=mask, residuals=r, rmse=rmse,
                                  mae=mae, meta={**old.meta, "distortion": "poly"})
        source = units[unit]
        out[source.key] = aligncore.UnitOutcome(source.status, source.reason, fit,
                                                source.n_matched, dict(source.meta))
    return out

