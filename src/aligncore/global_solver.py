"""Simultaneous relative alignment: all unit corrections from all overlaps at once.

After a sequential pass has given every unit an approximate correction, the
sources of every pair of overlapping units are matched (mutual nearest
neighbours on the corrected positions) and one sparse weighted least-squares
problem is solved for small updates of all unit corrections, with the
reference unit held fixed. Match -> solve -> clip is iterated until the
updates vanish. Unlike the greedy sequential chain, errors do not accumulate
along the chain: every overlap constrains the solution.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import spsolve
from scipy.spatial import cKDTree

from aligncore.geometry import AUTO_GEOMETRIES, N_PARAMS, design_block, small_update
from aligncore.overlap import candidate_pairs
from aligncore.types import FitResult, SolverResult, Status
from aligncore.units import Unit, outcomes_of, working_copies

__all__ = [
    "AUTO_GEOMETRIES",
    "PairMatches",
    "held_back_pairs",
    "match_pairs",
    "match_radius",
    "overlap_statistics",
    "restricted",
    "solve_global",
]

_DENSE_COVARIANCE_LIMIT = 3000
_RIDGE = 1e-12
"""Ridge added to the normal matrix's diagonal, relative to its mean."""


@dataclass
class PairMatches:
    """Matched sources between two units (indices into each unit's catalog)."""

    a: int
    b: int
    idx_a: np.ndarray
    idx_b: np.ndarray
    keep: np.ndarray
    weights: np.ndarray | None = None  # per match, filled on first use (catalog errors)


def _aligned(units: Sequence[Unit]) -> list[int]:
    return [i for i, u in enumerate(units) if u.status in (Status.SUCCESS, Status.REFERENCE)]


def match_radius(units: Sequence[Unit], indices: Sequence[int] | None = None) -> float:
    """Radius for re-matching corrected catalogs: a few times the fit residuals."""
    if indices is None:
        indices = _aligned(units)
    rmses = [units[i].fit.rmse for i in indices if units[i].fit is not None
             and units[i].fit.n_used > 0]
    scale = float(np.median([units[i].pixel_scale for i in indices]))
    typical = float(np.median(rmses)) if rmses else scale
    return max(5.0 * typical, 0.5 * scale)


def match_pairs(units: Sequence[Unit], radius: float | None = None) -> list[PairMatches]:
    """Mutual nearest neighbours within ``radius`` between every overlapping pair of units."""
    aligned = _aligned(units)
    if radius is None:
        radius = match_radius(units, aligned)
    positions = {i: units[i].corrected_xy() for i in aligned}
    trees = {i: cKDTree(positions[i]) for i in aligned if len(positions[i])}
    pairs = []
    footprints = [units[i].footprint for i in aligned]
    for ka, kb in candidate_pairs(footprints):
        a, b = aligned[ka], aligned[kb]
        if a not in trees or b not in trees:
            continue
        dist_ab, near_b = trees[b].query(positions[a], distance_upper_bound=radius)
        _, near_a = trees[a].query(positions[b], distance_upper_bound=radius)
        found = np.flatnonzero(np.isfinite(dist_ab))
        mutual = found[near_a[near_b[found]] == found]
        if mutual.size:
            pairs.append(PairMatches(a, b, mutual, near_b[mutual],
                                     np.ones(mutual.size, dtype=bool)))
    return pairs


def _positions(units: Sequence[Unit], pairs: Sequence[PairMatches]) -> dict[int, np.ndarray]:
    """Corrected positions of every unit in ``pairs`` (computed once per pass, not per pair)."""
    used = {p.a for p in pairs} | {p.b for p in pairs}
    return {i: units[i].corrected_xy() for i in used}


def _update(params: np.ndarray, center: np.ndarray, geometry: str) -> FitResult:
    """The small correction ``p -> p + dM (p - c) + t`` as a FitResult."""
    matrix, shift = small_update(params, center, geometry)
    return FitResult(matrix=matrix, shift=shift)


def _sigma2(unit: Unit, idx: np.ndarray) -> np.ndarray:
    if "tp_err" not in unit.catalog.colnames:
        return np.zeros(idx.size)
    err = np.asarray(unit.catalog["tp_err"], float)[idx]
    return np.where(np.isfinite(err), err**2, 0.0)


def _weights(units: Sequence[Unit], pair: PairMatches) -> np.ndarray:
    """Inverse pair variances (floored at 1 % of the median); computed once per pair."""
    if pair.weights is not None:
        return pair.weights
    variance = _sigma2(units[pair.a], pair.idx_a) + _sigma2(units[pair.b], pair.idx_b)
    if not np.any(variance > 0):
        pair.weights = np.ones(pair.idx_a.size)
    else:
        floor = np.median(variance[variance > 0]) * 1e-2
        pair.weights = 1.0 / np.maximum(variance, floor)
    return pair.weights


def _solve_once(units: Sequence[Unit], pairs: Sequence[PairMatches], free: dict[int, int],
                geometry: str, centers: dict[int, np.ndarray], weighted: bool
                ) -> tuple[np.ndarray, sp.csc_matrix, np.ndarray, float, int]:
    n_par = N_PARAMS[geometry]
    rows, cols, vals, rhs, wts = [], [], [], [], []
    row0 = 0
    positions = _positions(units, pairs)
    for pair in pairs:
        keep = pair.keep
        if not np.any(keep):
            continue
        ia, ib = pair.idx_a[keep], pair.idx_b[keep]
        pa = positions[pair.a][ia]
        pb = positions[pair.b][ib]
        w = np.repeat(_weights(units, pair)[keep], 2) if weighted else np.ones(2 * ia.size)
        n_rows = 2 * ia.size
        for unit, points, sign in ((pair.a, pa, 1.0), (pair.b, pb, -1.0)):
            if unit not in free:
                continue
            block = sign * design_block(points, centers[unit], geometry)
            r, c = np.nonzero(np.ones_like(block, dtype=bool))
            rows.append(row0 + r)
            cols.append(free[unit] * n_par + c)
            vals.append(block[r, c])
        rhs.append((pb - pa).reshape(-1))
        wts.append(w)
        row0 += n_rows
    n_unknowns = len(free) * n_par
    if row0 == 0 or n_unknowns == 0:
        return np.zeros(n_unknowns), sp.csc_matrix((n_unknowns, n_unknowns)), np.zeros(0), 0.0, 0
    design = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                           shape=(row0, n_unknowns))
    b = np.concatenate(rhs)
    w = np.concatenate(wts)
    weighted = sp.diags(w) @ design
    normal = (design.T @ weighted).tocsc()
    # a unit whose matches were all clipped has an empty block: a vanishing ridge term
    # keeps it where it is instead of making the whole system singular
    diagonal = normal.diagonal()
    ridge = _RIDGE * (float(np.mean(diagonal)) if diagonal.size and np.any(diagonal > 0)
                      else 1.0)
    normal = (normal + sp.identity(n_unknowns, format="csc") * ridge).tocsc()
    solution = spsolve(normal, weighted.T @ b) if n_unknowns > 1 else (
        np.array([float((weighted.T @ b)[0] / normal[0, 0])]))
    solution = np.atleast_1d(solution)
    residual = b - design @ solution
    chi2 = float(np.sum(w * residual**2))
    return solution, normal, residual, chi2, row0


def _clip(units: Sequence[Unit], pairs: Sequence[PairMatches], sigma: float,
          weighted: bool) -> int:
    """Reject matches whose corrected separation exceeds sigma x RMS; return the number clipped.

    With ``weighted``, separations are normalised by their expected size
    (``sep * sqrt(w / mean w)``) first, as the fits weigh them: a bright star
    that is off by a few of its own sigmas is clipped although its separation
    is small next to the faint stars', and a faint star is not clipped for
    scattering as much as its errors say.
    """
    scaled = []
    positions = _positions(units, pairs)
    for pair in pairs:
        d = positions[pair.a][pair.idx_a] - positions[pair.b][pair.idx_b]
        sep = np.hypot(d[:, 0], d[:, 1])
        scaled.append(sep * np.sqrt(_weights(units, pair)) if weighted else sep)
    kept = np.concatenate([s[p.keep] for s, p in zip(scaled, pairs, strict=True)]
                          ) if pairs else np.zeros(0)
    if kept.size < 3:
        return 0
    limit = sigma * math.sqrt(float(np.mean(kept**2)))
    clipped = 0
    for sep, pair in zip(scaled, pairs, strict=True):
        new_keep = pair.keep & (sep < limit)
        clipped += int(np.count_nonzero(pair.keep & ~new_keep))
        pair.keep = new_keep
    return clipped


def _connected_to_reference(n: int, pairs: Sequence[PairMatches], reference: int) -> set[int]:
    if not pairs:
        return {reference}
    a = np.array([p.a for p in pairs])
    b = np.array([p.b for p in pairs])
    graph = sp.coo_matrix((np.ones(a.size), (a, b)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return {i for i in range(n) if labels[i] == labels[reference]}


@dataclass
class _Solution:
    """State of an iterated global solve."""

    geometry: str
    normal: sp.csc_matrix | None
    chi2: float
    n_rows: int
    iterations: int
    failed: bool = False


def solve_global(units: Sequence[Unit], geometry: str, *, nclip: int = 3, sigma: float = 3.0,
                 weighted: bool = False, max_iter: int = 10,
                 tol: float = 1e-7) -> SolverResult:
    """Refine the corrections of all aligned units simultaneously (the units are not changed).

    Parameters
    ----------
    units : list of Unit
        Units after a sequential pass; exactly one has status REFERENCE (held fixed).
    geometry : str
        ``shift``, ``rshift``, ``rscale`` or ``general``; or ``auto``: solved in
        ``rscale`` with clipping; then every third overlap is held back (see
        `held_back_pairs`), each geometry of :data:`AUTO_GEOMETRIES` is solved
        without them, and a richer geometry is taken over a simpler one only if
        it predicts most of the held-back overlaps better (sign test, two sigma);
        the one chosen is solved again on all overlaps (matched anew on its
        solution, with clipping). With too few overlaps to hold
        back, each simpler geometry is kept unless its chi-square is higher by
        more than 2 per parameter dropped (Akaike's criterion). One geometry for
        all units: a free scale per unit is worth it only if it predicts the
        overlaps it was not fitted to better.
    nclip, sigma : int, float
        Sigma clipping of matched pairs per solve.
    weighted : bool
        Weight each pair by the inverse of its centroid variance (``tp_err``).
    max_iter : int
        Maximum number of match -> solve rounds.
    tol : float
        Stop when the largest update (arcsec, at the unit centres) is below this.

    Returns
    -------
    SolverResult
        ``outcomes``: every unit's refined fit, matched count and report entries
        (by key). ``diagnostics``: iterations, number of pairs and matches, chi2
        per degree of freedom, and with ``auto`` the geometry chosen and the tests made.
    """
    work = working_copies(units)
    info = _solve(work, geometry, nclip=nclip, sigma=sigma, weighted=weighted,
                  max_iter=max_iter, tol=tol)
    return SolverResult(outcomes_of(work), info)


def _solve(units: list[Unit], geometry: str, *, nclip: int, sigma: float, weighted: bool,
           max_iter: int, tol: float) -> dict[str, object]:
    """`solve_global` on the solver's working copies of the units (updated in place)."""
    reference = next((i for i, u in enumerate(units) if u.status == Status.REFERENCE), None)
    if reference is None:
        return {"solver": "global", "skipped": "no reference unit"}
    info: dict[str, object] = {"solver": "global"}
    # match once on the sequential solution; clipping only ever removes pairs, so the
    # solve -> clip loop converges (re-matching inside it would undo the clipping)
    radius = match_radius(units)
    pairs = match_pairs(units, radius)
    connected = _connected_to_reference(len(units), pairs, reference)
    free_units = [i for i in _aligned(units) if i != reference and i in connected]
    free = {unit: k for k, unit in enumerate(free_units)}
    candidates = AUTO_GEOMETRIES if geometry == "auto" else (geometry,)
    start = {u: units[u].fit for u in free_units}

    def restart(trial_geometry: str) -> None:
        """Each unit from its sequential fit; with ``auto``, reduced to the geometry tried
        (the sequential fits chose their own geometries), so that the solution is entirely
        in that geometry."""
        _set_fits(units, start if geometry != "auto" else {
            u: restricted(fit, trial_geometry, units[u].xy.mean(axis=0))
            for u, fit in start.items()})

    restart(candidates[0])
    best = _iterate(units, pairs, free, candidates[0], weighted, nclip, sigma, max_iter, tol)
    if best.failed:
        _set_fits(units, start)
        info["failed"] = "singular global system; the sequential solution is kept"
        return info
    tests: dict[str, dict[str, float]] = {}
    if geometry == "auto":
        held = held_back_pairs(pairs, free)
        if held:
            chosen, tests = _choose_by_held_back(units, pairs, held, free, restart, weighted,
                                                 max_iter, tol)
            # solve the chosen geometry on every overlap (clipped anew), then match again
            # on that solution and solve once more, as for a pinned geometry
            restart(chosen)
            for pair in pairs:
                pair.keep = np.ones(pair.idx_a.size, dtype=bool)
            best = _iterate(units, pairs, free, chosen, weighted, nclip, sigma, max_iter, tol)
            if not best.failed:
                solved = {u: units[u].fit for u in free}
                rematched = match_pairs(units, radius)
                again = _iterate(units, rematched, free, chosen, weighted, nclip, sigma,
                                 max_iter, tol)
                if again.failed:  # e.g. a unit lost its matches: keep the first ones
                    _set_fits(units, solved)
                else:
                    best, pairs = again, rematched
            if best.failed:
                _set_fits(units, start)
                info["failed"] = "singular global system; the sequential solution is kept"
                return info
        else:
            best, tests = _choose_by_chi2(units, pairs, free, restart, best, weighted,
                                          sigma, max_iter, tol)
    n_par = N_PARAMS[best.geometry]
    dof = max(best.n_rows - len(free) * n_par, 1)
    info.update({"iterations": best.iterations, "pairs": len(pairs),
                 "matches": int(sum(int(p.keep.sum()) for p in pairs)),
                 "chi2_dof": best.chi2 / dof, "unconnected": sorted(
                     units[i].key for i in _aligned(units) if i not in connected)})
    if geometry == "auto":
        info["geometry"] = best.geometry
        info["geometry_tests"] = tests
    _set_statistics(units, pairs, free, best.normal, best.chi2 / dof, best.geometry)
    return info


_HOLD_EVERY = 3
"""``auto`` holds back every third overlap (when both its units keep two others)."""
_STRONG_OVERLAP = 8
"""Matches an overlap needs to count in `held_back_pairs` (a corner overlap often has few)."""
_TRIAL_ITERATIONS = 4
_TRIAL_TOL = 1e-5  # arcsec: the trials only need to rank the geometries
_MIN_HELD = 12
"""Fewest held-back overlaps for the held-back check; fewer: Akaike's criterion."""


def held_back_pairs(pairs: Sequence[PairMatches], free: dict[int, int]) -> list[int]:
    """Indices of the overlaps the ``auto`` geometry check holds back.

    Every `_HOLD_EVERY`-th overlap with at least `_STRONG_OVERLAP` matches, as long
    as both of its units keep at least two other such overlaps (so every unit
    stays tied to the others on two sides); none
    when fewer than `_MIN_HELD` qualify (a small set of images).
    """
    strong = [int(np.count_nonzero(pair.keep)) >= _STRONG_OVERLAP for pair in pairs]
    degree: dict[int, int] = {}
    for pair, is_strong in zip(pairs, strong, strict=True):
        if is_strong:
            for unit in (pair.a, pair.b):
                degree[unit] = degree.get(unit, 0) + 1
    held = []
    for k, pair in enumerate(pairs):
        if k % _HOLD_EVERY or not strong[k]:
            continue
        if all(degree[u] > 2 for u in (pair.a, pair.b)) and (pair.a in free or pair.b in free):
            held.append(k)
            degree[pair.a] -= 1
            degree[pair.b] -= 1
    return held if len(held) >= _MIN_HELD else []


def _choose_by_held_back(units: list[Unit], pairs: list[PairMatches], held: list[int],
                         free: dict[int, int], restart: Any, weighted: bool, max_iter: int,
                         tol: float) -> tuple[str, dict[str, dict[str, float]]]:
    """``auto``: solve each geometry without the held-back overlaps and compare how well
    they predict them.

    A free scale (or rotation) that the overlaps cannot constrain predicts the
    overlaps it did not see worse than a simpler geometry: what matters in a
    mosaic is exactly the error between overlapping images. Starting from the
    simplest geometry, each richer one in turn replaces the one chosen so far
    only if it predicts most held-back overlaps better (a sign test at two
    sigma: robust to the odd overlap that one geometry gets badly wrong; a
    scale can win over ``shift`` although a rotation alone did not). The units
    are left with the chosen geometry's solution.
    """
    held_set = set(held)
    train = [pair for k, pair in enumerate(pairs) if k not in held_set]
    held_pairs = [pairs[k] for k in held]
    tests: dict[str, dict[str, float]] = {}
    solutions: dict[str, dict[int, FitResult]] = {}
    scores: dict[str, np.ndarray] = {}
    for trial_geometry in AUTO_GEOMETRIES:
        restart(trial_geometry)
        trial = _iterate(units, train, free, trial_geometry, weighted, 0, 3.0,
                         min(max_iter, _TRIAL_ITERATIONS), max(tol, _TRIAL_TOL))
        scores[trial_geometry] = (np.full(len(held), np.inf) if trial.failed
                                  else _held_scores(units, held_pairs, weighted))
        solutions[trial_geometry] = {u: units[u].fit for u in free}
        tests[trial_geometry] = {
            "held_back_rms_mas": float(np.sqrt(np.median(scores[trial_geometry]))) * 1000.0,
            "held_back_overlaps": len(held)}
    chosen = AUTO_GEOMETRIES[-1]
    for richer in reversed(AUTO_GEOMETRIES[:-1]):
        better = int(np.count_nonzero(scores[richer] < scores[chosen]))
        needed = 0.5 * len(held) + math.sqrt(len(held))  # two sigma above half
        tests[richer]["better_than_simpler"] = better  # than the one chosen so far
        tests[richer]["needed"] = needed
        if better > needed:
            chosen = richer  # else the next richer one is compared with the same one
    _set_fits(units, solutions[chosen])
    return chosen, tests


def _held_scores(units: Sequence[Unit], held: Sequence[PairMatches],
                 weighted: bool) -> np.ndarray:
    """Per held-back overlap, the (weighted) mean squared separation of its kept matches
    (arcsec^2)."""
    positions = _positions(units, held)
    out = np.empty(len(held))
    for k, pair in enumerate(held):
        d = positions[pair.a][pair.idx_a[pair.keep]] - positions[pair.b][pair.idx_b[pair.keep]]
        w = _weights(units, pair)[pair.keep] if weighted else np.ones(d.shape[0])
        out[k] = float(np.sum(w * np.sum(d**2, axis=1)) / np.sum(w))
    return out


def _choose_by_chi2(units: list[Unit], pairs: list[PairMatches], free: dict[int, int],
                    restart: Any, best: _Solution, weighted: bool, sigma: float,
                    max_iter: int, tol: float) -> tuple[_Solution, dict[str, dict[str, float]]]:
    """``auto`` without overlaps to hold back: each simpler geometry in turn on the same
    matches, kept unless its chi-square is higher by more than 2 per parameter dropped
    (Akaike's criterion, in units of the richest geometry's residual variance)."""
    variance = best.chi2 / max(best.n_rows - len(free) * N_PARAMS[best.geometry], 1)
    tests = {}
    for simpler in AUTO_GEOMETRIES[AUTO_GEOMETRIES.index(best.geometry) + 1:]:
        kept = {u: units[u].fit for u in free}
        restart(simpler)
        trial = _iterate(units, pairs, free, simpler, weighted, 0, sigma, max_iter, tol)
        increase = (trial.chi2 - best.chi2) / variance if variance > 0 else math.inf
        allowance = 2.0 * len(free) * (N_PARAMS[best.geometry] - N_PARAMS[simpler])
        tests[simpler] = {"chi2_increase": increase, "allowance": allowance}
        if trial.failed or not increase <= allowance:
            _set_fits(units, kept)
            break
        best = trial
    return best, tests


def _set_fits(units: list[Unit], fits: dict[int, FitResult]) -> None:
    for u, fit in fits.items():
        units[u].fit = fit


def restricted(fit: FitResult, geometry: str, center: np.ndarray) -> FitResult:
    """The transform of ``geometry`` nearest to ``fit`` (least squares on the matrix),
    with the same effect at ``center``: rscale keeps the similarity part, rshift also
    drops the scale, shift keeps no rotation (a reflection, which no update can undo,
    is kept)."""
    m = fit.matrix
    reflected = np.linalg.det(m) < 0
    if not reflected:  # [[a, -b], [b, a]]
        a, b = 0.5 * (m[0, 0] + m[1, 1]), 0.5 * (m[1, 0] - m[0, 1])
        similar = np.array([[a, -b], [b, a]])
    else:  # [[a, b], [b, -a]]
        a, b = 0.5 * (m[0, 0] - m[1, 1]), 0.5 * (m[0, 1] + m[1, 0])
        similar = np.array([[a, b], [b, -a]])
    if geometry == "rscale":
        matrix = similar
    elif geometry == "rshift" or reflected:
        matrix = similar / math.sqrt(abs(np.linalg.det(similar)))
    else:
        matrix = np.eye(2)
    shift = fit.apply(center[None, :])[0] - matrix @ center
    return FitResult(matrix=matrix, shift=shift, fitgeometry=geometry, meta=dict(fit.meta))


def _iterate(units: list[Unit], pairs: list[PairMatches], free: dict[int, int], geometry: str,
             weighted: bool, nclip: int, sigma: float, max_iter: int, tol: float) -> _Solution:
    """Solve -> update -> clip until the updates vanish (units' fits updated in place)."""
    n_par = N_PARAMS[geometry]
    centers = {i: units[i].corrected_xy().mean(axis=0) for i in free}
    state = _Solution(geometry, None, 0.0, 0, 0)
    clip_passes = 0
    for iteration in range(1, max_iter + 1):
        solution, state.normal, _, state.chi2, state.n_rows = _solve_once(
            units, pairs, free, geometry, centers, weighted)
        if not np.all(np.isfinite(solution)):
            state.failed = True
            return state
        largest = 0.0
        for u, k in free.items():
            update = _update(solution[k * n_par:(k + 1) * n_par], centers[u], geometry)
            moved = update.apply(centers[u][None, :])[0] - centers[u]
            largest = max(largest, float(np.hypot(*moved)))
            units[u].fit = update.compose(units[u].fit)
        state.iterations = iteration
        clipped = _clip(units, pairs, sigma, weighted) if clip_passes < nclip else 0
        clip_passes += clipped > 0
        if clipped == 0 and largest < tol:
            break
    return state


def _set_statistics(units: list[Unit], pairs: Sequence[PairMatches], free: dict[int, int],
                    normal: sp.csc_matrix | None, chi2_dof: float, geometry: str) -> None:
    """Per-unit residual statistics and parameter uncertainties from the global solution."""
    n_par = N_PARAMS[geometry]
    covariance = None
    if normal is not None and 0 < normal.shape[0] <= _DENSE_COVARIANCE_LIMIT:
        try:
            covariance = np.linalg.inv(normal.toarray()) * chi2_dof
        except np.linalg.LinAlgError:
            covariance = None
    residuals: dict[int, list[np.ndarray]] = {}
    masks: dict[int, list[np.ndarray]] = {}
    sources: dict[int, list[np.ndarray]] = {}
    positions = _positions(units, pairs)
    for pair in pairs:
        d = positions[pair.a][pair.idx_a] - positions[pair.b][pair.idx_b]
        for unit, sign, idx in ((pair.a, -1.0, pair.idx_a), (pair.b, 1.0, pair.idx_b)):
            residuals.setdefault(unit, []).append(sign * d)
            masks.setdefault(unit, []).append(pair.keep)
            sources.setdefault(unit, []).append(idx)
    fixed = [u for u in sources if u not in free and units[u].status == Status.REFERENCE]
    for unit in [*free, *fixed]:
        r = np.concatenate(residuals.get(unit, [np.zeros((0, 2))]))
        mask = np.concatenate(masks.get(unit, [np.zeros(0, bool)]))
        errors = _errors(covariance, free[unit], n_par, geometry) if unit in free else None
        _set_unit_fit(units[unit], geometry if unit in free else units[unit].fit.fitgeometry,
                      r, mask, errors)
        # matched = the pairs found (a source matched in three overlaps is in three pairs),
        # as fit.n_matched; used = the pairs kept after clipping (fit.n_used)
        units[unit].n_matched = int(mask.size)
        units[unit].meta["n_sources_matched"] = _distinct(sources.get(unit, []))


def _errors(covariance: np.ndarray | None, k: int, n_par: int, geometry: str
            ) -> dict[str, Any] | None:
    """A free unit's parameter uncertainties from the global covariance (None if unknown)."""
    if covariance is None:
        return None
    block = covariance[k * n_par:(k + 1) * n_par, k * n_par:(k + 1) * n_par]
    diag = np.sqrt(np.clip(np.diag(block), 0, None))
    errors: dict[str, Any] = {"shift_err": diag[-2:], "covariance": block}
    if geometry == "rshift":
        errors["rotation_err"] = math.degrees(diag[0])
    elif geometry == "rscale":
        errors["rotation_err"] = math.degrees(diag[1])
        errors["scale_err"] = diag[0]
    return errors


def _set_unit_fit(unit: Unit, geometry: str, residuals: np.ndarray, mask: np.ndarray,
                  errors: dict[str, Any] | None) -> None:
    """Give the unit's solution its residual statistics (over every pair it is in) and,
    for a free unit, its uncertainties; the fixed reference keeps its identity."""
    fit = unit.fit
    used = residuals[mask]
    rmse = float(np.sqrt(np.mean(np.sum(used**2, axis=1)))) if used.size else 0.0
    mae = float(np.mean(np.hypot(used[:, 0], used[:, 1]))) if used.size else 0.0
    errors = errors or {}
    unit.fit = FitResult(
        matrix=fit.matrix, shift=fit.shift, center=fit.center, fitgeometry=geometry,
        fitmask=mask, residuals=residuals, rmse=rmse, mae=mae,
        shift_err=errors.get("shift_err", np.full(2, np.nan)),
        rotation_err=errors.get("rotation_err", math.nan),
        scale_err=errors.get("scale_err", math.nan), covariance=errors.get("covariance"),
        meta={**fit.meta, "solver": "global"},
    )


def _distinct(indices: list[np.ndarray]) -> int:
    """Number of distinct catalog rows among several index arrays."""
    return int(np.unique(np.concatenate(indices)).size) if indices else 0


def overlap_statistics(units: Sequence[Unit]) -> list[dict[str, object]]:
    """Residual RMS (mas) of the matched sources of every overlapping pair, after alignment."""
    stats = []
    pairs = match_pairs(units)
    positions = _positions(units, pairs)
    for pair in pairs:
        d = positions[pair.a][pair.idx_a] - positions[pair.b][pair.idx_b]
        sep = np.hypot(d[:, 0], d[:, 1])
        stats.append({"a": units[pair.a].key, "b": units[pair.b].key, "n": int(sep.size),
                      "rms_mas": float(np.sqrt(np.mean(sep**2)) * 1000.0)})
    return stats
