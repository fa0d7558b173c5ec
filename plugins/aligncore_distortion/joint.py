"""The joint least-squares fit: every unit's affine correction and every detector's
polynomial distortion, from all image-image overlaps (and the reference catalog).

A star ``s`` of unit ``k`` on detector ``d`` at pixel ``p_s`` lands in the shared
tangent plane at

    P_s = F_k( T_s + J_s · D_d(p_s) ),     D_d(p) = (B(p) · c_d^x, B(p) · c_d^y)

where ``T_s`` is its nominal tangent-plane position, ``J_s`` the Jacobian of the
nominal WCS there (arcsec per pixel), ``B`` the polynomial terms of orders 2 and up and
``F_k`` the unit's affine correction. Matched stars of two units must land together
(and on their reference star). The problem is linear in the distortion coefficients
and nearly linear in the small affine updates (`aligncore.geometry.design_block`); it
is solved by Gauss-Newton steps. The distortion block is solved through its Schur
complement (the affine parameters eliminated): directions of coefficient space the
overlaps do not constrain (degenerate with the affine freedom, or outside the stars'
coverage) are held at zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

import aligncore
from aligncore.geometry import N_PARAMS, design_block, small_update
from aligncore_distortion.stars import DetectorInfo, UnitStars

__all__ = ["JointProblem", "JointState", "Link"]


@dataclass
class Link:
    """Matched stars between unit ``a`` and unit ``b`` (``b < 0``: the reference catalog,
    ``idx_b`` then indexes its rows)."""

    a: int
    b: int
    idx_a: np.ndarray
    idx_b: np.ndarray
    keep: np.ndarray  # not clipped
    held: np.ndarray  # held back from the fit


@dataclass
class JointState:
    """Affine fits (by unit index) and distortion coefficients ``(n_det, 2, n_terms)``."""

    fits: dict[int, aligncore.FitResult]
    coeffs: np.ndarray
    terms: tuple[tuple[int, int], ...]
    chi2: float = math.inf
    n_rows: int = 0
    n_params: int = 0
    iterations: int = 0
    failed: bool = False
    held_directions: int = 0
    measured_directions: int = 0

    def copy(self) -> JointState:
        return JointState(dict(self.fits), self.coeffs.copy(), self.terms)


@dataclass
class JointProblem:
    """The data of a joint fit (fixed while it is solved).

    Attributes
    ----------
    stars : dict of int to UnitStars
        Per aligned unit (by index).
    detectors : list of DetectorInfo
    active : ndarray of bool
        Detectors whose distortion is fitted (the others keep their nominal model).
    free : dict of int to int
        Unit index -> position among the free units (the fixed reference is absent).
    geometry : str
    links : list of Link
    reference : ndarray or None
        ``(n, 3)`` reference catalog ``tp_x, tp_y, err`` (arcsec).
    weighted : bool
    max_error, significance : float
        A direction of coefficient space (an eigenvector of the distortion block's Schur
        complement) is fitted when its standard error (pixels, at the detector corners)
        is at most ``max_error`` and its value at least ``significance`` standard errors;
        the others are held at zero (nearly degenerate directions would otherwise take up
        tiny model errors, amplified).
    """

    stars: dict[int, UnitStars]
    detectors: list[DetectorInfo]
    active: np.ndarray
    free: dict[int, int]
    geometry: str
    links: list[Link]
    reference: np.ndarray | None = None
    weighted: bool = True
    max_error: float = 0.1
    significance: float = 3.0
    _basis: dict[tuple[int, int], np.ndarray] = field(default_factory=dict, repr=False)
    _groups: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict,
                                                               repr=False)
    _median_var: float | None = field(default=None, repr=False)

    def set_links(self, links: list[Link]) -> None:
        """Use ``links`` and group their matches into stars (`group_stars`)."""
        self.links = links
        self._groups = group_stars(self, links)

    # --- positions -------------------------------------------------------------------
    def basis(self, unit: int, terms: tuple[tuple[int, int], ...]) -> np.ndarray:
        """Polynomial terms of every star of ``unit`` (for its detector), cached."""
        key = (unit, len(terms))
        if key not in self._basis:
            stars = self.stars[unit]
            out = np.zeros((len(stars.pix), len(terms)))
            for d, info in enumerate(self.detectors):
                rows = stars.det == d
                if np.any(rows):
                    out[rows] = info.basis(stars.pix[rows], terms)
            self._basis[key] = out
        return self._basis[key]

    def offsets(self, unit: int, state: JointState) -> np.ndarray:
        """Distortion offsets (pixels) of every star of ``unit``: ``(n, 2)``."""
        stars = self.stars[unit]
        if not state.terms:
            return np.zeros((len(stars.pix), 2))
        basis = self.basis(unit, state.terms)
        coeffs = state.coeffs[stars.det] * self.active[stars.det, None, None]
        return np.einsum("nt,nat->na", basis, coeffs)

    def nominal(self, unit: int, state: JointState) -> np.ndarray:
        """Tangent-plane positions with the distortion correction, before the unit's fit."""
        stars = self.stars[unit]
        return stars.tp + np.einsum("nab,nb->na", stars.jac, self.offsets(unit, state))

    def positions(self, state: JointState) -> dict[int, np.ndarray]:
        """Corrected positions ``F_k(T + J D)`` of every unit's stars."""
        return {u: state.fits[u].apply(self.nominal(u, state)) for u in self.stars}

    def separations(self, state: JointState, link: Link,
                    positions: dict[int, np.ndarray]) -> np.ndarray:
        """``(m, 2)`` vectors ``P_b - P_a`` (arcsec) of a link's matches."""
        pa = positions[link.a][link.idx_a]
        pb = self.reference[link.idx_b, :2] if link.b < 0 else positions[link.b][link.idx_b]
        return pb - pa

    def pair_weights(self, link: Link) -> np.ndarray:
        """Inverse variances ``1 / (var_a + var_b)`` of a link's separations (ones when
        unweighted or unknown): what the clipping normalises by."""
        wa = self._node_weights(link.a, link.idx_a)
        wb = self._node_weights(link.b, link.idx_b)
        return wa * wb / (wa + wb)

    def weights(self, link: Link) -> np.ndarray:
        """Least-squares weights of a link's separations: ``w_a w_b / W``, ``w`` the
        inverse variance of each position and ``W`` the sum over every observation of
        the star (`group_stars`). A star seen in ``k`` exposures gives ``k (k - 1) / 2``
        separations; these weights make their chi-square that of the star-based model
        (the star's position free, SCAMP's), ``sum_i w_i |x_i - x_mean|^2``, instead of
        counting the star ``k / 2`` times over. Two observations: ``1 / (var_a + var_b)``."""
        wa = self._node_weights(link.a, link.idx_a)
        wb = self._node_weights(link.b, link.idx_b)
        total = self._group_values(link, 0)
        if total is None:
            return wa * wb / (wa + wb)
        return wa * wb / np.maximum(total, wa + wb)

    def row_shares(self, link: Link) -> np.ndarray:
        """Degrees of freedom carried by each separation, ``2 / k`` for a star seen ``k``
        times (the ``k (k - 1) / 2`` separations of a star carry ``k - 1``); ones when
        the matches are not grouped."""
        size = self._group_values(link, 1)
        if size is None:
            return np.ones(link.idx_a.size)
        return 2.0 / np.maximum(size, 2.0)

    def _group_values(self, link: Link, which: int) -> np.ndarray | None:
        if link.a not in self._groups:
            return None
        return self._groups[link.a][which][link.idx_a]

    def _node_weights(self, unit: int, idx: np.ndarray) -> np.ndarray:
        """Inverse variance (per axis) of star positions ``idx`` of ``unit`` (``unit < 0``:
        reference catalog rows; unknown errors: the median; unweighted: ones)."""
        if not self.weighted:
            return np.ones(idx.size)
        var = self._variances(unit)[idx]
        return 1.0 / var

    def _variances(self, unit: int) -> np.ndarray:
        if unit < 0:
            err = self.reference[:, 2] if self.reference is not None else np.zeros(0)
            var = np.where(np.isfinite(err), err, 0.0) ** 2
        else:
            var = self.stars[unit].err ** 2
        floor = self._floor()
        return np.where(var > 0, np.maximum(var, floor * 1e-2), floor)

    def _floor(self) -> float:
        """The median variance of the units' star positions (1 when none is known)."""
        if self._median_var is None:
            var = np.concatenate([st.err**2 for st in self.stars.values()] or [np.zeros(0)])
            var = var[var > 0]
            self._median_var = float(np.median(var)) if var.size else 1.0
        return self._median_var

    # --- the linear system -----------------------------------------------------------
    def _columns(self, terms: tuple[tuple[int, int], ...]) -> tuple[int, int]:
        """Number of affine columns and of distortion columns."""
        return len(self.free) * N_PARAMS[self.geometry], len(self.detectors) * 2 * len(terms)

    def _side(self, unit: int, idx: np.ndarray, sign: float, row0: int, state: JointState,
              positions: dict[int, np.ndarray], centers: dict[int, np.ndarray]
              ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Design-matrix entries of one side of a link."""
        out = []
        n_par = N_PARAMS[self.geometry]
        m = idx.size
        if unit in self.free:
            block = sign * design_block(positions[unit][idx], centers[unit], self.geometry)
            r, c = np.nonzero(np.ones_like(block, dtype=bool))
            out.append((row0 + r, self.free[unit] * n_par + c, block[r, c]))
        n_terms = len(state.terms)
        if n_terms:
            stars = self.stars[unit]
            det = stars.det[idx]
            use = self.active[det]
            if np.any(use):
                gain = np.einsum("ab,nbc->nac", state.fits[unit].matrix, stars.jac[idx])
                basis = self.basis(unit, state.terms)[idx]
                base = self._columns(state.terms)[0] + det * 2 * n_terms
                for axis in (0, 1):
                    vals = sign * gain[:, :, axis, None] * basis[:, None, :]  # (m, 2, T)
                    rows = row0 + 2 * np.arange(m)[:, None, None] + np.arange(2)[None, :, None]
                    cols = (base + axis * n_terms)[:, None, None] + np.arange(n_terms)[
                        None, None, :]
                    mask = np.broadcast_to(use[:, None, None], vals.shape)
                    out.append((np.broadcast_to(rows, vals.shape)[mask],
                                np.broadcast_to(cols, vals.shape)[mask], vals[mask]))
        return out

    def system(self, state: JointState, fit_only: bool = True
               ) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray, dict[int, np.ndarray]]:
        """Design matrix, right-hand side, weights, and the units' update centres."""
        positions = self.positions(state)
        centers = {u: positions[u].mean(axis=0) for u in self.free}
        entries: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        rhs, wts = [], []
        row0 = 0
        for link in self.links:
            use = link.keep & ~link.held if fit_only else link.keep
            if not np.any(use):
                continue
            sub = Link(link.a, link.b, link.idx_a[use], link.idx_b[use], link.keep[use],
                       link.held[use])
            entries += self._side(link.a, sub.idx_a, 1.0, row0, state, positions, centers)
            if link.b >= 0:
                entries += self._side(link.b, sub.idx_b, -1.0, row0, state, positions,
                                      centers)
            rhs.append(self.separations(state, sub, positions).reshape(-1))
            wts.append(np.repeat(self.weights(sub), 2))
            row0 += 2 * sub.idx_a.size
        n_cols = sum(self._columns(state.terms))
        if not entries:
            return sp.csr_matrix((row0, n_cols)), np.zeros(row0), np.ones(row0), centers
        rows, cols, vals = (np.concatenate(parts) for parts in zip(*entries, strict=True))
        design = sp.csr_matrix((vals, (rows, cols)), shape=(row0, n_cols))
        return design, np.concatenate(rhs), np.concatenate(wts), centers

    def solve_step(self, state: JointState, variance: float
                   ) -> tuple[np.ndarray, np.ndarray, dict[int, np.ndarray], int, int, int]:
        """One Gauss-Newton step: affine updates, distortion updates (directions not fitted
        back to zero), the update centres, the number of rows and of fitted directions."""
        design, rhs, w, centers = self.system(state)
        n_aff, n_dist = self._columns(state.terms)
        if design.shape[0] == 0:
            return np.zeros(n_aff), np.zeros(n_dist), centers, 0, 0, 0
        weighted = sp.diags(w) @ design
        normal = np.asarray((design.T @ weighted).todense())
        grad = np.asarray(weighted.T @ rhs).ravel()
        a_block, cross, c_block = (normal[:n_aff, :n_aff], normal[:n_aff, n_aff:],
                                   normal[n_aff:, n_aff:])
        a_inv = np.linalg.pinv(a_block, hermitian=True) if n_aff else np.zeros((0, 0))
        schur = c_block - cross.T @ a_inv @ cross
        reduced = grad[n_aff:] - cross.T @ a_inv @ grad[:n_aff]
        current = state.coeffs.reshape(-1)
        delta_c = -current.copy()  # directions not fitted go (back) to zero
        kept = measured = 0
        diag = np.diag(schur).copy()
        on = diag > 0
        if np.any(on):
            scale = np.sqrt(diag[on])
            scaled = schur[np.ix_(on, on)] / np.outer(scale, scale)
            values, vectors = np.linalg.eigh(scaled)
            # along each eigenvector (scaled coefficients): the solution's component and
            # its standard error, in pixels (the 1/scale converts back to coefficients)
            good = values > max(values.max(), 0.0) * 1e-12
            safe = np.where(good, values, 1.0)
            component = vectors.T @ (current[on] * scale) + (vectors.T @ (
                reduced[on] / scale)) / safe
            norm = np.linalg.norm(vectors / scale[:, None], axis=0)
            errors = np.where(good, np.sqrt(variance / safe), np.inf)
            precise = good & (errors * norm <= self.max_error)
            fitted = precise & (np.abs(component) >= self.significance * errors)
            kept, measured = int(np.count_nonzero(fitted)), int(np.count_nonzero(precise))
            new = (vectors[:, fitted] @ component[fitted]) / scale
            delta_c[on] = new - current[on]
        delta_a = a_inv @ (grad[:n_aff] - cross @ delta_c) if n_aff else np.zeros(0)
        return delta_a, delta_c, centers, design.shape[0], kept, measured

    def chi2(self, state: JointState, fit_only: bool = True) -> tuple[float, int]:
        """Weighted sum of squared separations of the kept matches, and their row count."""
        positions = self.positions(state)
        total, rows = 0.0, 0.0
        for link in self.links:
            use = link.keep & ~link.held if fit_only else link.keep
            if not np.any(use):
                continue
            d = self.separations(state, link, positions)[use]
            total += float(np.sum(self.weights(link)[use] * np.sum(d**2, axis=1)))
            rows += 2.0 * float(np.sum(self.row_shares(link)[use]))
        return total, round(rows)

    def clip(self, state: JointState, sigma: float) -> int:
        """Unkeep fit matches separated by more than sigma x RMS; return how many."""
        positions = self.positions(state)
        seps = []
        for link in self.links:
            d = self.separations(state, link, positions)
            sep = np.hypot(d[:, 0], d[:, 1])
            seps.append(sep * np.sqrt(self.pair_weights(link)) if self.weighted else sep)
        pooled = np.concatenate([s[lk.keep & ~lk.held] for s, lk in zip(seps, self.links,
                                                                         strict=True)])
        if pooled.size < 3:
            return 0
        limit = sigma * math.sqrt(float(np.mean(pooled**2)))
        clipped = 0
        for sep, link in zip(seps, self.links, strict=True):
            bad = link.keep & ~link.held & (sep >= limit)
            clipped += int(np.count_nonzero(bad))
            link.keep = link.keep & ~bad
        return clipped

    def iterate(self, state: JointState, *, nclip: int, sigma: float, max_iter: int = 12,
                tol: float = 1e-6) -> JointState:
        """Gauss-Newton steps (with up to ``nclip`` clipping passes) until the updates vanish."""
        n_par = N_PARAMS[self.geometry]
        passes = 0
        chi2, rows = self.chi2(state)
        for iteration in range(1, max_iter + 1):
            variance = chi2 / max(rows - sum(self._columns(state.terms)), 1)
            delta_a, delta_c, centers, state.n_rows, kept, state.measured_directions = (
                self.solve_step(state, variance))
            if not (np.all(np.isfinite(delta_a)) and np.all(np.isfinite(delta_c))):
                state.failed = True
                return state
            largest = 0.0
            for u, k in self.free.items():
                matrix, shift = small_update(delta_a[k * n_par:(k + 1) * n_par], centers[u],
                                             self.geometry)
                update = aligncore.FitResult(matrix=matrix, shift=shift)
                moved = update.apply(centers[u][None, :])[0] - centers[u]
                largest = max(largest, float(np.hypot(*moved)))
                state.fits[u] = update.compose(state.fits[u])
            if delta_c.size:
                state.coeffs = state.coeffs + delta_c.reshape(state.coeffs.shape)
                largest = max(largest, float(np.max(np.abs(delta_c))) * 0.1)
            state.iterations = iteration
            state.held_directions = int(np.count_nonzero(self.active)) * 2 * len(
                state.terms) - kept
            state.n_params = len(self.free) * n_par + kept
            clipped = self.clip(state, sigma) if passes < nclip else 0
            passes += clipped > 0
            chi2, rows = self.chi2(state)
            if clipped == 0 and largest < tol:
                break
        state.chi2, state.n_rows = chi2, rows
        return state


def group_stars(problem: JointProblem, links: Sequence[Link]
                ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per unit, for each of its star positions: the summed inverse variance ``W`` of every
    observation of that star and their number ``k`` (0 for positions in no match).

    A star is a connected set of matches (image-image and image-reference): the
    positions linked, directly or through other exposures, are one star.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    units = sorted(problem.stars)
    offsets, start = {}, 0
    for unit in units:
        offsets[unit] = start
        start += len(problem.stars[unit].pix)
    n_ref = len(problem.reference) if problem.reference is not None else 0
    offsets[-1] = start
    n_nodes = start + n_ref
    heads, tails = [], []
    for link in links:
        if link.a not in offsets or (link.b >= 0 and link.b not in offsets):
            continue
        heads.append(offsets[link.a] + link.idx_a)
        tails.append(offsets[-1 if link.b < 0 else link.b] + link.idx_b)
    if not heads or n_nodes == 0:
        return {}
    a, b = np.concatenate(heads), np.concatenate(tails)
    graph = coo_matrix((np.ones(a.size), (a, b)), shape=(n_nodes, n_nodes))
    _, labels = connected_components(graph, directed=False)
    linked = np.zeros(n_nodes, bool)
    linked[a] = linked[b] = True
    weights = np.zeros(n_nodes)
    for unit in units:
        weights[offsets[unit]:offsets[unit] + len(problem.stars[unit].pix)] = (
            problem._node_weights(unit, np.arange(len(problem.stars[unit].pix))))
    if n_ref:
        weights[offsets[-1]:] = problem._node_weights(-1, np.arange(n_ref))
    total = np.bincount(labels[linked], weights=weights[linked], minlength=labels.max() + 1)
    size = np.bincount(labels[linked], minlength=labels.max() + 1).astype(float)
    out = {}
    for unit in units:
        nodes = labels[offsets[unit]:offsets[unit] + len(problem.stars[unit].pix)]
        on = linked[offsets[unit]:offsets[unit] + len(problem.stars[unit].pix)]
        out[unit] = (np.where(on, total[nodes], 0.0), np.where(on, size[nodes], 0.0))
    return out


def start_state(fits: dict[int, aligncore.FitResult], n_detectors: int,
                terms: Sequence[tuple[int, int]]) -> JointState:
    """The state before the fit: the units' fits and no distortion correction."""
    return JointState(dict(fits), np.zeros((n_detectors, 2, len(terms))), tuple(terms))


def residuals(problem: JointProblem, state: JointState, link: Link) -> np.ndarray:
    """``P_b - P_a`` of every match of a link (arcsec)."""
    return problem.separations(state, link, problem.positions(state))


def reference_links(problem: JointProblem, state: JointState, radius: float) -> list[Link]:
    """Mutual nearest neighbours between each unit's corrected stars and the reference."""
    from scipy.spatial import cKDTree

    if problem.reference is None or not len(problem.reference):
        return []
    tree = cKDTree(problem.reference[:, :2])
    links = []
    for unit, positions in problem.positions(state).items():
        if not len(positions):
            continue
        dist, near = tree.query(positions, distance_upper_bound=radius)
        found = np.flatnonzero(np.isfinite(dist))
        if not found.size:
            continue
        back_tree = cKDTree(positions)
        _, back = back_tree.query(problem.reference[near[found], :2])
        mutual = found[back == found]
        if mutual.size:
            links.append(Link(unit, -1, mutual, near[mutual], np.ones(mutual.size, bool),
                              np.zeros(mutual.size, bool)))
    return links

