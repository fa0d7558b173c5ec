"""Plain fitting functions: ``fit_affine`` (one pass) and ``iter_fit`` (sigma clipping).

Both are usable without the pipeline or the plugin class::

    from aligncore_affine import iter_fit
    fit = iter_fit(image_xy, ref_xy, "rscale", nclip=3, sigma=3.0)
    fit.rotation, fit.rotation_err, fit.scale, fit.shift
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from aligncore import FitResult, NotEnoughPointsError, SingularMatrixError
from aligncore.geometry import AUTO_GEOMETRIES, MIN_POINTS, N_PARAMS, check_geometry
from aligncore_affine.geometry import LinearSolution, solve

__all__ = ["AUTO_GEOMETRIES", "combine_weights", "fit_affine", "iter_fit", "select_fit"]


def combine_weights(image_weights: np.ndarray, ref_weights: np.ndarray) -> np.ndarray:
    """Combine per-catalog weights of matched pairs: ``1 / (1 / w_img + 1 / w_ref)``.

    A zero weight in either catalog gives a zero combined weight.
    """
    wi = np.asarray(image_weights, dtype=float)
    wr = np.asarray(ref_weights, dtype=float)
    out = np.zeros(np.broadcast_shapes(wi.shape, wr.shape))
    good = (wi > 0) & (wr > 0)
    wi_b, wr_b = np.broadcast_to(wi, out.shape), np.broadcast_to(wr, out.shape)
    out[good] = 1.0 / (1.0 / wi_b[good] + 1.0 / wr_b[good])
    return out


def _floats(values: Any, name: str) -> np.ndarray:
    """``values`` as a float array; masked entries become NaN.

    Raises
    ------
    TypeError
        ``values`` is not numeric.
    """
    try:
        array = np.ma.asarray(getattr(values, "value", values), dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be numeric (an array-like of numbers), got "
                        f"{type(values).__name__}") from None
    return np.ma.filled(array, np.nan)


def _prepare(
    image_xy: Any, ref_xy: Any, weights: Any, geometry: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    check_geometry(geometry)
    xy = _floats(image_xy, "image_xy")
    uv = _floats(ref_xy, "ref_xy")
    if xy.ndim != 2 or xy.shape[-1] != 2 or uv.shape != xy.shape:
        raise ValueError(
            f"image_xy and ref_xy must both have shape (n, 2); got {xy.shape} and {uv.shape}"
        )
    if weights is None:
        w = np.ones(xy.shape[0])
    else:
        w = _floats(weights, "weights")
        if w.shape != (xy.shape[0],):
            raise ValueError(f"weights must have length {xy.shape[0]} (shape ({xy.shape[0]},), "
                             f"one per point), got shape {w.shape}")
        if np.any(w < 0) or not np.all(np.isfinite(w)):
            raise ValueError("weights must be finite and >= 0")
    # Points with a non-finite coordinate cannot take part in the fit.
    finite = np.all(np.isfinite(xy), axis=1) & np.all(np.isfinite(uv), axis=1)
    w = np.where(finite, w, 0.0)
    xy = np.where(finite[:, None], xy, 0.0)
    uv = np.where(finite[:, None], uv, 0.0)
    return xy, uv, w


def _check_count(n_usable: int, geometry: str) -> None:
    need = MIN_POINTS[geometry]
    if n_usable < need:
        raise NotEnoughPointsError(
            f"fitgeometry {geometry!r} needs at least {need} point{'s' if need > 1 else ''} "
            f"with non-zero weight, got {n_usable}"
        )


def _stats(r: np.ndarray, w: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Weighted RMS and mean absolute residual length over ``mask``."""
    wm = w[mask]
    length = np.hypot(r[mask, 0], r[mask, 1])
    wsum = float(np.sum(wm))
    if wsum <= 0:
        return math.nan, math.nan
    return float(np.sqrt(wm @ (length * length) / wsum)), float(wm @ length / wsum)


def _result(
    sol: LinearSolution,
    xy: np.ndarray,
    uv: np.ndarray,
    w: np.ndarray,
    mask: np.ndarray,
    geometry: str,
    meta: dict[str, Any],
) -> FitResult:
    shift = sol.shift
    residuals = uv - (xy @ sol.matrix.T + shift)
    rmse, mae = _stats(residuals, w, mask)
    meta = {
        **meta,
        "sigma_residual": math.sqrt(sol.sigma2) if math.isfinite(sol.sigma2) else math.nan,
        "dof": sol.dof,
        "min_points": MIN_POINTS[geometry],
    }
    return FitResult(
        matrix=sol.matrix,
        shift=shift,
        center=sol.center,
        fitgeometry=geometry,
        fitmask=mask,
        residuals=residuals,
        rmse=rmse,
        mae=mae,
        shift_err=sol.shift_err,
        rotation_err=sol.rotation_err,
        scale_err=sol.scale_err,
        covariance=sol.covariance,
        param_names=sol.param_names,
        meta=meta,
    )


def fit_affine(
    image_xy: Any,
    ref_xy: Any,
    geometry: str = "rshift",
    weights: Any = None,
) -> FitResult:
    """Fit ``ref_xy ~ matrix @ image_xy + shift`` in one weighted least-squares pass.

    Parameters
    ----------
    image_xy, ref_xy : array-like, shape (n, 2)
        Matched image and reference positions (any common unit).
    geometry : {'shift', 'rshift', 'rscale', 'general'}, optional
        ``shift``: translation only; ``rshift``: rotation + translation;
        ``rscale``: rotation, one scale and translation; ``general``: full
        6-parameter affine transform. ``rshift`` and ``rscale`` also fit a
        reflection (flip) when that matches better.
    weights : array-like, shape (n,), optional
        Relative weights (>= 0); points with weight 0 are ignored but still get
        a residual.

    Returns
    -------
    aligncore.FitResult
        With ``fitmask`` True for the points of non-zero weight and parameter
        uncertainties from the covariance scaled by ``chi2 / dof``.

    Raises
    ------
    aligncore.NotEnoughPointsError
        Fewer usable points than the geometry needs (1, 2, 2, 3).
    aligncore.SingularMatrixError
        The points do not constrain the geometry (coincident or colinear).
    """
    xy, uv, w = _prepare(image_xy, ref_xy, weights, geometry)
    mask = w > 0
    _check_count(int(np.count_nonzero(mask)), geometry)
    sol = solve(xy[mask], uv[mask], w[mask], geometry)
    return _result(sol, xy, uv, w, mask, geometry, {"nclip_passes": 0, "n_clipped": 0})


def iter_fit(
    image_xy: Any,
    ref_xy: Any,
    geometry: str = "rshift",
    weights: Any = None,
    *,
    nclip: int = 3,
    sigma: float = 3.0,
) -> FitResult:
    """Fit like :func:`fit_affine`, then sigma-clip and refit up to ``nclip`` times.

    After each fit the points whose normalised residual ``|r| sqrt(w / mean w)``
    is at least ``sigma`` times the RMS normalised residual of the kept points
    are rejected (with equal weights: ``|r|`` against the RMS residual; all
    points with non-zero weight are re-examined, so a point can come back). Clipping stops
    when the kept set no longer changes, after ``nclip`` passes, or when fewer
    points than the geometry needs would remain.

    Parameters
    ----------
    image_xy, ref_xy, geometry, weights
        As for :func:`fit_affine`.
    nclip : int, optional
        Maximum number of clipping passes (0: no clipping).
    sigma : float, optional
        Clipping threshold in units of the RMS residual.

    Returns
    -------
    aligncore.FitResult
        ``fitmask`` marks the points kept; ``meta['nclip_passes']`` and
        ``meta['n_clipped']`` say what clipping did.
    """
    if nclip < 0:
        raise ValueError(f"nclip must be >= 0, got {nclip}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    xy, uv, w = _prepare(image_xy, ref_xy, weights, geometry)
    usable = w > 0
    _check_count(int(np.count_nonzero(usable)), geometry)
    need = MIN_POINTS[geometry]
    mask = usable.copy()
    sol = solve(xy[mask], uv[mask], w[mask], geometry)
    passes = 0
    for _ in range(nclip):
        resid = uv - (xy @ sol.matrix.T + sol.shift)
        # clip on residuals normalised by their weights: with unequal weights the
        # weighted RMS is set by the best-measured points and would reject all others
        # (identical to clipping |r| at sigma x RMS when the weights are equal)
        scaled = np.hypot(resid[:, 0], resid[:, 1]) * np.sqrt(w / np.mean(w[mask]))
        rms = float(np.sqrt(np.mean(scaled[mask] ** 2)))
        if not rms > 0:
            break
        new_mask = usable & (scaled < sigma * rms)
        if np.array_equal(new_mask, mask) or np.count_nonzero(new_mask) < need:
            break
        try:
            new_sol = solve(xy[new_mask], uv[new_mask], w[new_mask], geometry)
        except SingularMatrixError:  # the kept points became degenerate: keep the last fit
            break
        mask, sol = new_mask, new_sol
        passes += 1
    n_clipped = int(np.count_nonzero(usable) - np.count_nonzero(mask))
    meta = {"nclip_passes": passes, "n_clipped": n_clipped, "nclip": nclip, "sigma": sigma}
    return _result(sol, xy, uv, w, mask, geometry, meta)


def _chi2(fit: FitResult, w: np.ndarray) -> float:
    """Weighted sum of squared residual lengths over the fit's kept points."""
    r = fit.residuals[fit.fitmask]
    return float(np.sum(w[fit.fitmask] * (r[:, 0] ** 2 + r[:, 1] ** 2)))


def select_fit(
    image_xy: Any,
    ref_xy: Any,
    weights: Any = None,
    *,
    nclip: int = 3,
    sigma: float = 3.0,
    candidates: tuple[str, ...] = AUTO_GEOMETRIES,
) -> FitResult:
    """Fit with the simplest geometry the matches support (``fitgeometry: auto``).

    The richest candidate is fitted with sigma clipping (:func:`iter_fit`); then,
    on the points it kept, each simpler nested geometry in turn replaces the
    current one unless dropping its extra parameters raises the weighted
    chi-square by more than 2 per parameter in units of the richest fit's
    residual variance (Akaike's criterion, i.e. an F statistic above 2). A
    parameter that the data constrain less well than its true size adds more
    noise than it removes bias: a 20-star field is better fitted without a free
    scale, a field of thousands of stars needs it. The chosen geometry is then
    fitted with its own clipping.

    Parameters
    ----------
    image_xy, ref_xy, weights
        As for :func:`fit_affine`.
    nclip, sigma
        As for :func:`iter_fit`.
    candidates : tuple of str
        Nested geometries, richest first (default :data:`AUTO_GEOMETRIES`).

    Returns
    -------
    aligncore.FitResult
        The fit of the chosen geometry; ``meta['geometry_selection']`` holds the
        chi-square increase of each simpler geometry tried, in units of the
        residual variance, against the allowance (2 per parameter).
    """
    xy, uv, w = _prepare(image_xy, ref_xy, weights, candidates[0])
    # start from the richest geometry the points can test (residual degrees of freedom
    # left); too few points for any: the simplest candidate, which raises if even it cannot
    usable = int(np.count_nonzero(w > 0))
    testable = [g for g in candidates if 2 * usable > N_PARAMS[g]] or [candidates[-1]]
    candidates = tuple(testable)
    richest = iter_fit(image_xy, ref_xy, candidates[0], weights, nclip=nclip, sigma=sigma)
    mask = richest.fitmask
    n_kept = int(np.count_nonzero(mask))
    dof = 2 * n_kept - N_PARAMS[candidates[0]]
    chosen, chi2_chosen = candidates[0], _chi2(richest, w)
    variance = chi2_chosen / dof if dof > 0 else math.nan
    tried: dict[str, dict[str, float]] = {}
    for simpler in candidates[1:]:
        if not variance > 0 or n_kept < MIN_POINTS[simpler]:
            break
        try:
            fit = fit_affine(xy[mask], uv[mask], simpler, w[mask])
        except SingularMatrixError:
            break
        chi2 = _chi2(fit, w[mask])
        increase = (chi2 - chi2_chosen) / variance
        allowance = 2.0 * (N_PARAMS[chosen] - N_PARAMS[simpler])
        tried[simpler] = {"chi2_increase": increase, "allowance": allowance}
        if increase > allowance:
            break
        chosen, chi2_chosen = simpler, chi2
    result = richest if chosen == candidates[0] else iter_fit(
        image_xy, ref_xy, chosen, weights, nclip=nclip, sigma=sigma)
    result.meta["geometry_selection"] = {"candidates": list(candidates), "chosen": chosen,
                                         "tried": tried}
    return result
