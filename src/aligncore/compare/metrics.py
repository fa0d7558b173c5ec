"""Scores of one comparison run: errors against the truth, statistics of the fits.

Every number is computed from an :class:`~aligncore.AlignResult` and, where
there is one, the scene's truth:

- relative / absolute RMS and max error on a pixel grid (`Scene.errors_summary`),
  before (nominal WCS) and after alignment;
- the centroid-noise bound of the fits and the ratio of the error to it;
- matched / used counts, overlap residuals, and the status of the run;
- the error *vectors* on the grid (:func:`residual_vectors`), drawn as residual
  maps, from the solved and true grid positions each run stores.

Without truth, a run is scored by its overlap residuals, by a reference
catalog if one is given, and by its agreement with the baseline variant
(:func:`agreement`), computed from the sky positions of a pixel grid that each
run stores.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from astropy.table import QTable
from scipy.spatial import cKDTree

from aligncore.tangent import TangentPlane, pixel_scale, pixel_to_world
from aligncore.types import COL_DEC, COL_RA, COL_X, COL_Y, AlignResult, Status

__all__ = [
    "STATUSES",
    "agreement",
    "grid_positions",
    "refcat_metrics",
    "residual_vectors",
    "result_metrics",
    "truth_metrics",
]

STATUSES = ("success", "worse", "failed")
"""Run statuses: every image aligned and none made worse than its nominal WCS; an
aligned image's error grew; an image failed (or the run raised)."""

_TIMING_KEYS = ("detect", "relative", "absolute", "correct", "total")


def _rms(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return float(np.sqrt(np.mean(values**2))) if values.size else math.nan


def grid_positions(wcs_list: Sequence[Any], shapes: Sequence[Sequence[int]], n: int
                   ) -> list[list[list[float]]]:
    """Sky positions ``[ra, dec]`` (deg) of an ``n x n`` pixel grid over each image."""
    out = []
    for wcs, (ny, nx) in zip(wcs_list, shapes, strict=True):
        yy, xx = np.meshgrid(np.linspace(0, ny - 1, n), np.linspace(0, nx - 1, n), indexing="ij")
        ra, dec = pixel_to_world(wcs, xx.ravel(), yy.ravel())
        out.append([np.asarray(ra, float).tolist(), np.asarray(dec, float).tolist()])
    return out


def agreement(grid_a: Sequence[Sequence[Sequence[float]]],
              grid_b: Sequence[Sequence[Sequence[float]]]) -> float:
    """Relative RMS distance (mas) between two solutions of the same images.

    The grid positions of ``b`` are moved by the least-squares affine transform
    onto those of ``a`` (in a tangent plane at their centre) before the RMS is
    taken: what relative alignment cannot observe is not counted.
    """
    if len(grid_a) != len(grid_b) or not grid_a:
        return math.nan
    ra_a = np.concatenate([np.asarray(g[0], float) for g in grid_a])
    dec_a = np.concatenate([np.asarray(g[1], float) for g in grid_a])
    ra_b = np.concatenate([np.asarray(g[0], float) for g in grid_b])
    dec_b = np.concatenate([np.asarray(g[1], float) for g in grid_b])
    ok = np.isfinite(ra_a) & np.isfinite(dec_a) & np.isfinite(ra_b) & np.isfinite(dec_b)
    if np.count_nonzero(ok) < 3:
        return math.nan
    plane = TangentPlane(float(np.median(ra_a[ok])), float(np.median(dec_a[ok])))
    a = np.column_stack(plane.world_to_tp(ra_a[ok], dec_a[ok]))
    b = np.column_stack(plane.world_to_tp(ra_b[ok], dec_b[ok]))
    design = np.column_stack([b - b.mean(axis=0), np.ones(len(b))])
    coeff = np.linalg.lstsq(design, a, rcond=None)[0]
    return _rms(1000.0 * np.hypot(*(design @ coeff - a).T))


def residual_vectors(grid: Sequence[Sequence[Sequence[float]]],
                     truth: Sequence[Sequence[Sequence[float]]],
                     center: Sequence[float], *, relative: bool = True) -> list[np.ndarray]:
    """Error vectors (mas) of a solution on each image's pixel grid.

    Parameters
    ----------
    grid, truth : sequence of ``[ra, dec]`` lists (deg)
        Per image, the sky positions of the same pixel grid through the solved
        and through the true WCS (:func:`grid_positions`).
    center : (ra, dec)
        Tangent point (deg) of the plane the vectors are measured in: the
        scene centre, as for `Scene.errors`.
    relative : bool
        Move the solved positions of all images by the one least-squares affine
        transform onto the truth first (what relative alignment cannot
        observe); False keeps the absolute offsets.

    Returns
    -------
    list of ndarray
        Per image, an ``(m, 2)`` array of the offsets (East, North) in mas of
        where the solution puts each grid pixel from where it truly is. Their
        lengths are the distances `Scene.errors` summarises.
    """
    if len(grid) != len(truth):
        raise ValueError(f"grid and truth must hold the same images, got {len(grid)} "
                         f"and {len(truth)}")
    plane = TangentPlane(float(center[0]), float(center[1]))
    solved = [np.column_stack(plane.world_to_tp(*np.asarray(g, float))) for g in grid]
    true = [np.column_stack(plane.world_to_tp(*np.asarray(g, float))) for g in truth]
    if not solved:
        return []
    s, t = np.vstack(solved), np.vstack(true)
    moved = s.copy()
    ok = np.all(np.isfinite(s), axis=1) & np.all(np.isfinite(t), axis=1)
    if relative and np.count_nonzero(ok) >= 3:
        centre = s[ok].mean(axis=0)
        design = np.column_stack([s - centre, np.ones(len(s))])
        coeff = np.linalg.lstsq(design[ok], t[ok], rcond=None)[0]
        moved = design @ coeff
    elif relative:
        moved[:] = np.nan
    vectors = 1000.0 * (moved - t)
    return np.split(vectors, np.cumsum([len(v) for v in solved])[:-1])


def truth_metrics(scene: Any, result: AlignResult | None, grid: int
                  ) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Errors after (the result's WCS) and before (nominal WCS) alignment.

    Returns the run-level numbers (``rel_`` and ``abs_`` ``rms_mas, max_mas,
    rms_pix, max_pix``, ``nominal_rel_rms_mas``, ``nominal_abs_rms_mas``) and, per
    image, ``rel_rms_mas``, ``abs_rms_mas`` and ``nominal_rel_rms_mas``.
    """
    nominal = [image.wcs for image in scene.images]
    after = nominal if result is None else [r.wcs for r in result.images]
    scales = np.array([1000.0 * pixel_scale(wcs, (shape[1] - 1) / 2.0, (shape[0] - 1) / 2.0)
                       for wcs, shape in zip(scene.true_wcs,
                                             [image.shape for image in scene.images],
                                             strict=True)])
    rel = scene.errors(after, relative=True, grid=grid)
    absolute = scene.errors(after, relative=False, grid=grid)
    out: dict[str, float] = {}
    for prefix, relative, table in (("rel", True, rel), ("abs", False, absolute)):
        summary = scene.errors_summary(after, relative=relative, grid=grid)
        for key, value in summary.items():
            out[f"{prefix}_{key}"] = value
        out[f"{prefix}_max_pix"] = float(np.max(np.asarray(table["max_mas"], float) / scales))
        out[f"nominal_{prefix}_rms_mas"] = scene.errors_summary(
            nominal, relative=relative, grid=grid)["rms_mas"]
    before = scene.errors(nominal, relative=True, grid=grid)
    per_image = [
        {"rel_rms_mas": float(r), "abs_rms_mas": float(a), "nominal_rel_rms_mas": float(b)}
        for r, a, b in zip(rel["rms_mas"], absolute["rms_mas"], before["rms_mas"], strict=True)
    ]
    return out, per_image


def _overlap_rms(result: AlignResult) -> float:
    overlaps = (result.meta.get("relative") or {}).get("overlaps") or []
    n = np.array([o["n"] for o in overlaps], dtype=float)
    rms = np.array([o["rms_mas"] for o in overlaps], dtype=float)
    ok = (n > 0) & np.isfinite(rms)
    if not np.any(ok):
        return math.nan
    return float(np.sqrt(np.sum(n[ok] * rms[ok] ** 2) / np.sum(n[ok])))


def result_metrics(result: AlignResult) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Counts, fit statistics, noise bound and timings of a result (no truth needed)."""
    images = []
    for r in result.images:
        aligned = r.status == Status.SUCCESS and r.fit is not None
        images.append({
            "name": r.name,
            "status": r.status.value,
            "reason": r.reason,
            "matcher": r.meta.get("matcher"),
            "n_sources": int(r.n_sources),
            "n_matched": int(r.n_matched) if aligned else 0,
            "n_used": int(r.fit.n_used) if aligned else 0,
            "fit_rmse_mas": 1000.0 * r.fit.rmse if aligned else math.nan,
            "noise_bound_mas": float(r.meta.get("noise_bound_mas", math.nan))
            if aligned else math.nan,
            "timings": dict(r.timings),
        })
    aligned = [i for i in images if i["status"] == Status.SUCCESS.value]
    bounds = np.array([i["noise_bound_mas"] for i in aligned], dtype=float)
    failed = [i for i in images if i["status"] == Status.FAILED.value]
    out: dict[str, Any] = {
        "n_images": len(images),
        "n_aligned": len(aligned),
        "n_failed": len(failed),
        "reason": f"{failed[0]['name']}: {failed[0]['reason']}" if failed else "",
        "n_sources": sum(i["n_sources"] for i in images),
        "n_matched": sum(i["n_matched"] for i in aligned),
        "n_used": sum(i["n_used"] for i in aligned),
        "fit_rmse_mas": float(np.median([i["fit_rmse_mas"] for i in aligned]))
        if aligned else math.nan,
        "noise_bound_mas": _rms(bounds),
        "overlap_rms_mas": _overlap_rms(result),
    }
    for key in _TIMING_KEYS:
        out[f"t_{key}"] = float(result.timings.get(key, math.nan))
    return out, images


def empty_metrics(n_images: int, reason: str) -> dict[str, Any]:
    """The numbers of a run that raised before producing a result."""
    out: dict[str, Any] = {
        "n_images": n_images, "n_aligned": 0, "n_failed": n_images, "reason": reason,
        "n_sources": 0, "n_matched": 0, "n_used": 0, "n_fallback": 0, "fit_rmse_mas": math.nan,
        "noise_bound_mas": math.nan, "overlap_rms_mas": math.nan,
    }
    for key in _TIMING_KEYS:
        out[f"t_{key}"] = math.nan
    return out


def run_status(n_failed: int, per_image: Sequence[Mapping[str, Any]], raised: bool) -> str:
    """``failed`` (an image failed, or the run raised), ``worse`` (an aligned image's
    relative error exceeds its nominal one) or ``success``."""
    if raised or n_failed:
        return "failed"
    for image in per_image:
        if image["status"] != Status.SUCCESS.value:
            continue
        after, before = image.get("rel_rms_mas", math.nan), image.get("nominal_rel_rms_mas")
        if before is not None and math.isfinite(after) and after > before:
            return "worse"
    return "success"


def refcat_metrics(result: AlignResult, refcat: QTable, radius: float) -> dict[str, float]:
    """RMS distance (mas) of the aligned sources to their nearest reference star.

    Each detected source of an aligned image is placed on the sky with the
    corrected WCS and paired with the nearest reference star within ``radius``
    arcsec (proper motions are ignored).
    """
    ra_ref = np.asarray(refcat[COL_RA], float)
    dec_ref = np.asarray(refcat[COL_DEC], float)
    if ra_ref.size == 0:
        return {"refcat_rms_mas": math.nan, "refcat_n": 0}
    plane = TangentPlane(float(np.median(ra_ref)), float(np.median(dec_ref)))
    tree = cKDTree(np.column_stack(plane.world_to_tp(ra_ref, dec_ref)))
    seps = []
    for r in result.images:
        if not r.ok or r.catalog is None or len(r.catalog) == 0:
            continue
        ra, dec = pixel_to_world(r.wcs, np.asarray(r.catalog[COL_X], float),
                                 np.asarray(r.catalog[COL_Y], float))
        dist, _ = tree.query(np.column_stack(plane.world_to_tp(ra, dec)),
                             distance_upper_bound=radius)
        seps.append(dist[np.isfinite(dist)])
    sep = np.concatenate(seps) if seps else np.zeros(0)
    return {"refcat_rms_mas": _rms(1000.0 * sep), "refcat_n": int(sep.size)}
