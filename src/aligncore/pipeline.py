"""Orchestration: detect -> relative alignment -> absolute alignment -> correct.

This module only sequences the stages; every algorithm lives in a plugin.
Corrections are computed first and applied to WCS objects last, and only to
images whose fit passed every check: a failed image keeps its WCS object
untouched (the very same object), never a half-applied correction.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import QTable

from aligncore.config import Config, load_config
from aligncore.errors import AlignError, InputError
from aligncore.io import open_image
from aligncore.overlap import alignment_order, overlap_matrix
from aligncore.registry import Registry, build_registry
from aligncore.stages import Corrector, Detector, Fitter, Matcher
from aligncore.tangent import TangentPlane, footprint_world, pixel_scale, pixel_to_world
from aligncore.types import (
    COL_DEC,
    COL_RA,
    COL_TP_X,
    COL_TP_Y,
    COL_X,
    COL_Y,
    META_PIXEL_SCALE,
    AlignImage,
    AlignResult,
    FitResult,
    ImageResult,
    MatchResult,
    Status,
)

__all__ = ["Unit", "align", "detect_all"]

log = logging.getLogger("aligncore")

Progress = Callable[[Iterable[Any], str, int], Iterable[Any]]


def _no_progress(items: Iterable[Any], desc: str, total: int) -> Iterable[Any]:
    return items


@dataclass
class Unit:
    """A rigid alignment unit: one image, or all images of a group."""

    key: str
    members: list[int]
    catalog: QTable
    footprint: np.ndarray
    pixel_scale: float
    fit: FitResult | None = None
    status: Status | None = None
    reason: str = ""
    n_matched: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def xy(self) -> np.ndarray:
        return np.column_stack([np.asarray(self.catalog[COL_TP_X], float),
                                np.asarray(self.catalog[COL_TP_Y], float)])

    def corrected_xy(self) -> np.ndarray:
        return self.fit.apply(self.xy) if self.fit is not None else self.xy


def _resolve_config(config: Config | str | Path | None) -> Config:
    if isinstance(config, Config):
        return config
    return load_config(config)


def _resolve_images(images: Sequence[AlignImage | str | Path], config: Config) -> list[AlignImage]:
    opened = []
    for item in images:
        image = item if isinstance(item, AlignImage) else open_image(item)
        group = config.align.groups.get(image.name)
        if group is not None:
            image.group_id = group
        opened.append(image)
    names = [image.name for image in opened]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputError(f"{duplicates[0]}: the same image name is given twice")
    return opened


def detect_all(
    images: Sequence[AlignImage],
    detector: Detector,
    registry: Registry,
    progress: Progress = _no_progress,
) -> tuple[list[QTable], list[float]]:
    """Run the detector on every image (serially); return catalogs and seconds per image."""
    catalogs, seconds = [], []
    for image in progress(images, "detect", len(images)):
        start = time.perf_counter()
        catalog = registry.run_stage(detector, image)
        if catalog is None:
            raise AlignError(f"{image.name}: detector {detector.name!r} returned None")
        catalog = QTable(catalog)
        catalog.meta.setdefault("image", image.name)
        catalogs.append(catalog)
        seconds.append(time.perf_counter() - start)
    return catalogs, seconds


def union_tangent_plane(images: Sequence[AlignImage]) -> TangentPlane:
    """Tangent plane at the centre of the union of the image footprints."""
    vectors = []
    for image in images:
        ra, dec = footprint_world(image.wcs, image.shape)
        ra, dec = np.radians(ra), np.radians(dec)
        vectors.append(np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra),
                                        np.sin(dec)]))
    mean = np.concatenate(vectors).mean(axis=0)
    ra0 = math.degrees(math.atan2(mean[1], mean[0])) % 360.0
    dec0 = math.degrees(math.atan2(mean[2], math.hypot(mean[0], mean[1])))
    return TangentPlane(ra0, dec0)


def _project_catalog(catalog: QTable, image: AlignImage, plane: TangentPlane,
                     index: int) -> QTable:
    table = QTable()
    x = np.asarray(catalog[COL_X], dtype=float) if len(catalog) else np.zeros(0)
    y = np.asarray(catalog[COL_Y], dtype=float) if len(catalog) else np.zeros(0)
    ra, dec = pixel_to_world(image.wcs, x, y)
    xi, eta = plane.world_to_tp(ra, dec)
    table[COL_X] = x
    table[COL_Y] = y
    table[COL_RA] = ra
    table[COL_DEC] = dec
    table[COL_TP_X] = xi
    table[COL_TP_Y] = eta
    table["image"] = np.full(len(x), index, dtype=int)
    table["row"] = np.arange(len(x))
    for name in ("flux", "x_err", "y_err"):
        if name in catalog.colnames:
            table[name] = np.asarray(catalog[name], dtype=float)
    return table


def build_units(images: Sequence[AlignImage], catalogs: Sequence[QTable],
                plane: TangentPlane) -> list[Unit]:
    """Group images into rigid units with their catalogs in the tangent plane."""
    keys: dict[str, list[int]] = {}
    for index, image in enumerate(images):
        key = f"group:{image.group_id}" if image.group_id else f"image:{index}"
        keys.setdefault(key, []).append(index)
    units = []
    for key, members in keys.items():
        tables = [_project_catalog(catalogs[i], images[i], plane, i) for i in members]
        catalog = tables[0] if len(tables) == 1 else _vstack(tables)
        finite = np.isfinite(np.asarray(catalog[COL_TP_X])) & np.isfinite(
            np.asarray(catalog[COL_TP_Y]))
        catalog = catalog[finite]
        corners = []
        for i in members:
            ra, dec = footprint_world(images[i].wcs, images[i].shape)
            corners.append(np.column_stack(plane.world_to_tp(ra, dec)))
        footprint = corners[0] if len(corners) == 1 else _hull(np.concatenate(corners))
        image = images[members[0]]
        scale = pixel_scale(image.wcs, image.shape[1] / 2.0, image.shape[0] / 2.0, plane)
        catalog.meta[META_PIXEL_SCALE] = scale
        units.append(Unit(key=key, members=members, catalog=catalog, footprint=footprint,
                          pixel_scale=scale))
    return units


def _vstack(tables: Sequence[QTable]) -> QTable:
    from astropy.table import vstack

    return QTable(vstack(tables, metadata_conflicts="silent"))


def _hull(points: np.ndarray) -> np.ndarray:
    from scipy.spatial import ConvexHull

    return points[ConvexHull(points).vertices]


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


def _pick_corrector(image: AlignImage, config: Config, registry: Registry) -> Corrector:
    if config.corrector.plugin != "auto":
        return config.build_stage("corrector", registry)
    for info in registry.plugins("corrector"):
        if info.cls.accepts(image.wcs):
            return info.cls(config.corrector.params)
    raise AlignError(f"{image.name}: no installed corrector accepts a {type(image.wcs).__name__}")


def align(
    images: Sequence[AlignImage | str | Path],
    config: Config | str | Path | None = None,
    *,
    registry: Registry | None = None,
    progress: Progress | None = None,
) -> AlignResult:
    """Align images relative to each other (and optionally to a reference catalog).

    Parameters
    ----------
    images : sequence of AlignImage or path
        The images; paths are opened with `aligncore.open_image`.
    config : Config, path or None
        A validated config, a YAML file, or None for the default config.
    registry : Registry, optional
        Plugin registry; built from the entry points and the config's local
        plugin files if not given.
    progress : callable, optional
        ``progress(iterable, description, total)`` wrapper (e.g. a tqdm bar).

    Returns
    -------
    AlignResult
        Per-image status, fit and corrected WCS (input WCS objects are not modified).

    Raises
    ------
    InputError
        Unusable input (fewer than two images without absolute alignment, an
        unreadable image, ...). Nothing has been written or changed.
    """
    config = _resolve_config(config)
    registry = registry or build_registry(config.plugin_files())
    progress = progress or _no_progress
    timings: dict[str, float] = {}
    start = time.perf_counter()
    images = _resolve_images(images, config)
    if not images:
        raise InputError("no input images")
    if len(images) < 2 and not config.absolute.enabled:
        raise InputError(
            f"{images[0].name}: a single image cannot be aligned relative to others; "
            "give two or more images, or enable absolute alignment (absolute.enabled: true)"
        )
    detector = config.build_stage("detector", registry)
    matchers = [config.build_stage("matcher", registry)]
    matchers += [config.build_stage("matcher", registry, name) for name in config.align.fallback]
    fitter = config.build_stage("fitter", registry)
    timings["setup"] = time.perf_counter() - start

    t0 = time.perf_counter()
    catalogs, detect_seconds = detect_all(images, detector, registry, progress)
    timings["detect"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    plane = union_tangent_plane(images)
    units = build_units(images, catalogs, plane)
    if len(units) >= 2:
        relative_align(units, config, matchers, fitter, registry)
    else:
        for unit in units:
            unit.status = Status.REFERENCE if len(unit.catalog) else Status.FAILED
            unit.fit = FitResult.identity(fitgeometry="shift") if len(unit.catalog) else None
            unit.reason = "" if len(unit.catalog) else "no sources detected"
    timings["relative"] = time.perf_counter() - t0

    absolute_fit, absolute_info = None, {"enabled": False}
    if config.absolute.enabled:
        from aligncore.absolute import absolute_align

        t0 = time.perf_counter()
        absolute_fit, absolute_info = absolute_align(units, images, plane, config, registry)
        if absolute_fit is None:
            warnings.warn(f"absolute alignment not applied: {absolute_info.get('reason')}",
                          stacklevel=2)
        timings["absolute"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    results = _correct_all(images, units, catalogs, detect_seconds, plane, config, registry)
    timings["correct"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - start

    result = AlignResult(
        images=tuple(results),
        absolute=absolute_fit,
        tangent_plane=plane,
        timings=timings,
        meta={"absolute": absolute_info, "tangent_plane": plane.summary()},
    )
    registry.hook.aligncore_run_finished(result=result, config=config)
    return result


def _correct_all(images: Sequence[AlignImage], units: Sequence[Unit],
                 catalogs: Sequence[QTable], detect_seconds: Sequence[float],
                 plane: TangentPlane, config: Config, registry: Registry) -> list[ImageResult]:
    by_image: dict[int, Unit] = {i: unit for unit in units for i in unit.members}
    results = []
    for index, image in enumerate(images):
        unit = by_image[index]
        status = unit.status or Status.FAILED
        reason = unit.reason
        wcs = image.wcs
        fit = unit.fit if status in (Status.SUCCESS, Status.REFERENCE) else None
        timings = {"detect": detect_seconds[index]}
        if fit is not None:
            t0 = time.perf_counter()
            try:
                corrector = _pick_corrector(image, config, registry)
                wcs = registry.run_stage(corrector, image.wcs, fit, plane)
            except AlignError as exc:
                status, reason = Status.FAILED, f"WCS correction failed: {exc}"
                fit, wcs = None, image.wcs
            timings["correct"] = time.perf_counter() - t0
        meta = {k: v for k, v in unit.meta.items() if not k.startswith("matched_")}
        if catalogs[index].meta.get("warnings"):
            meta["detector_warnings"] = list(catalogs[index].meta["warnings"])
        results.append(ImageResult(
            name=image.name,
            status=status,
            reason=reason,
            fit=fit,
            wcs=wcs,
            n_sources=len(catalogs[index]),
            n_matched=unit.n_matched,
            group_id=image.group_id,
            path=image.path,
            timings=timings,
            catalog=catalogs[index],
            meta=meta,
        ))
    return results

