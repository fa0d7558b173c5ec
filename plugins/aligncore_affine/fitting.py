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

__all__ = ["AUTO_GEOMETRIES", "CLIP_STATISTICS", "combine_weights", "fit_affine", "iter_fit",
           "residual_statistic", "select_fit"]

CLIP_STATISTICS = ("rmse", "mae", "std", "mad")
"""Statistics of the residual lengths a clipping threshold can be measured in (tweakwcs')."""

_MAD_TO_RMSE = 1.0 / math.sqrt(math.log(2.0))
"""Median residual length -> RMS length for isotropic Gaussian residuals (Rayleigh median
sigma sqrt(2 ln 2) against RMS sigma sqrt(2))."""


def residual_statistic(residuals: Any, name: str, weights: Any = None) -> float:
    """A statistic of 2-D residuals, as tweakwcs reports them.

    Parameters
    ----------
    residuals : array-like, shape (n, 2)
        Residual vectors.
    name : {'rmse', 'mae', 'std', 'mad'}
        ``rmse``: root of the (weighted) mean squared length; ``mae``: (weighted)
        mean length; ``std``: length of the per-axis standard deviations about the
        (weighted) mean residual (reliability-weight correction ``1 - sum w^2`` for
        normalised weights); ``mad``: (weighted) median length over
        ``sqrt(ln 2)``, which equals the RMS length for Gaussian residuals.
    weights : array-like, shape (n,), optional
        Non-negative weights (None: equal).

    Returns
    -------
    float
        NaN when there are no residuals or the weights sum to 0.
    """
    if name not in CLIP_STATISTICS:
        raise ValueError(f"unknown residual statistic {name!r}; valid: "
                         f"{', '.join(CLIP_STATISTICS)}")
    r = np.asarray(residuals, dtype=float).reshape(-1, 2)
    length = np.hypot(r[:, 0], r[:, 1])
    if weights is None:
        if len(r) == 0:
            return math.nan
        if name == "rmse":
            return float(np.sqrt(np.mean(length ** 2)))
        if name == "mae":
            return float(np.mean(length))
        if name == "std":
            return float(np.linalg.norm(r.std(axis=0)))
        return _MAD_TO_RMSE * float(np.median(length))
    w = np.asarray(weights, dtype=float)
    total = float(np.sum(w))
    if len(r) == 0 or not total > 0:
        return math.nan
    w = w / total
    if name == "rmse":
        return float(np.sqrt(w @ length ** 2))
    if name == "mae":
        return float(w @ length)
    if name == "std":
        if len(r) == 1:
            return 0.0
        centred = r - w @ r
        return float(np.sqrt(np.sum(w @ centred ** 2) / (1.0 - np.sum(w ** 2))))
    order = np.argsort(length)  # weighted median: the inverted-CDF definition
    cumulative = np.cumsum(w[order])
    return _MAD_TO_RMSE * float(length[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])])


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
    kept = w[mask]
    stat_weights = None if np.all(kept == kept[:1]) else kept  # equal weights: unweighted
    meta = {
        **meta,
        "std": residual_statistic(residuals[mask], "std", stat_weights),
        "mad": residual_statistic(residuals[mask], "mad", stat_weights),
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
    *,
    scale: float | None = None,
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
    scale : float, optional
        With ``rscale`` or ``rshift``: hold the scale at this value and fit rotation
        and shift (tweakwcs' ``fit_rscale(scale=...)``); the result's geometry is
        ``rshift`` (three parameters) and ``meta['fixed_scale']`` the scale.

    Returns
    -------
    aligncore.FitResult
        With ``fitmask`` True for the points of non-zero weight and parameter
        uncertainties from the covariance scaled by ``chi2 / dof``; ``meta`` also
        holds the ``std`` and ``mad`` of the residuals (see `residual_statistic`).

    Raises
    ------
    aligncore.NotEnoughPointsError
        Fewer usable points than the geometry needs (1, 2, 2, 3).
    aligncore.SingularMatrixError
        The points do not constrain the geometry (coincident or colinear).
    """
    xy, uv, w = _prepare(image_xy, ref_xy, weights, geometry)
    geometry, extra = _fixed_scale(geometry, scale)
    mask = w > 0
    _check_count(int(np.count_nonzero(mask)), geometry)
    sol = solve(xy[mask], uv[mask], w[mask], geometry, scale)
    return _result(sol, xy, uv, w, mask, geometry, {"nclip_passes": 0, "n_clipped": 0, **extra})


def _fixed_scale(geometry: str, scale: float | None) -> tuple[str, dict[str, Any]]:
    """The geometry actually fitted with a fixed ``scale`` (rotation + shift), and its meta."""
    if scale is None:
        return geometry, {}
    if geometry not in ("rshift", "rscale"):
        raise ValueError(f"a fixed scale applies to fitgeometry 'rscale' or 'rshift', not "
                         f"{geometry!r}")
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"a fixed scale must be a positive number, got {scale!r}")
    return "rshift", {"fixed_scale": float(scale)}


def iter_fit(
    image_xy: Any,
    ref_xy: Any,
    geometry: str = "rshift",
    weights: Any = None,
    *,
    nclip: int = 3,
    sigma: float = 3.0,
    clip_statistic: str = "rmse",
    clip_accum: bool = False,
    scale: float | None = None,
) -> FitResult:
    """Fit like :func:`fit_affine`, then sigma-clip and refit up to ``nclip`` times.

    After each fit the points whose normalised residual ``|r| sqrt(w / mean w)``
    is at least ``sigma`` times the ``clip_statistic`` of the kept points'
    normalised residuals are rejected (with equal weights: ``|r|`` against, by
    default, the RMS residual, as tweakwcs' ``iter_linear_fit``). Without
    ``clip_accum`` all points with non-zero weight are re-examined, so a point can
    come back; with it, a rejected point stays out. Clipping stops when the kept
    set no longer changes, after ``nclip`` passes, or when fewer points than the
    geometry needs would remain.

    Parameters
    ----------
    image_xy, ref_xy, geometry, weights, scale
        As for :func:`fit_affine`.
    nclip : int, optional
        Maximum number of clipping passes (0: no clipping).
    sigma : float, optional
        Clipping threshold in units of ``clip_statistic``.
    clip_statistic : {'rmse', 'mae', 'std', 'mad'}, optional
        The residual statistic the threshold is measured in (`residual_statistic`);
        ``mad`` is robust to a large fraction of mismatches.
    clip_accum : bool, optional
        Accumulate the rejections (tweakwcs' ``clip_accum``): a clipped point never
        returns.

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
    if clip_statistic not in CLIP_STATISTICS:
        raise ValueError(f"clip_statistic must be one of {', '.join(CLIP_STATISTICS)}, got "
                         f"{clip_statistic!r}")
    xy, uv, w = _prepare(image_xy, ref_xy, weights, geometry)
    geometry, extra = _fixed_scale(geometry, scale)
    usable = w > 0
    _check_count(int(np.count_nonzero(usable)), geometry)
    need = MIN_POINTS[geometry]
    mask = usable.copy()
    sol = solve(xy[mask], uv[mask], w[mask], geometry, scale)
    passes = 0
    for _ in range(nclip):
        resid = uv - (xy @ sol.matrix.T + sol.shift)
        # clip on residuals normalised by their weights: with unequal weights the
        # weighted RMS is set by the best-measured points and would reject all others
        # (identical to clipping |r| at sigma x RMS when the weights are equal)
        scaled = resid * np.sqrt(w / np.mean(w[mask]))[:, None]
        length = np.hypot(scaled[:, 0], scaled[:, 1])
        cutoff = sigma * residual_statistic(scaled[mask], clip_statistic)
        if not cutoff > 0:
            break
        new_mask = (mask if clip_accum else usable) & (length < cutoff)
        if np.array_equal(new_mask, mask) or np.count_nonzero(new_mask) < need:
            break
        try:
            new_sol = solve(xy[new_mask], uv[new_mask], w[new_mask], geometry, scale)
        except SingularMatrixError:  # the kept points became degenerate: keep the last fit
            break
        mask, sol = new_mask, new_sol
        passes += 1
    n_clipped = int(np.count_nonzero(usable) - np.count_nonzero(mask))
    meta = {"nclip_passes": passes, "n_clipped": n_clipped, "nclip": nclip, "sigma": sigma,
            "clip_statistic": clip_statistic, "clip_accum": clip_accum, **extra}
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
    clip_statistic: str = "rmse",
    clip_accum: bool = False,
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
    nclip, sigma, clip_statistic, clip_accum
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
    clipping = {"nclip": nclip, "sigma": sigma, "clip_statistic": clip_statistic,
                "clip_accum": clip_accum}
    richest = iter_fit(image_xy, ref_xy, candidates[0], weights, **clipping)
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
        image_xy, ref_xy, chosen, weights, **clipping)
    result.meta["geometry_selection"] = {"candidates": list(candidates), "chosen": chosen,
                                         "tried": tried}
    return result
