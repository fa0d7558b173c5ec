"""Orchestration: detect -> relative alignment -> absolute alignment -> correct.

This module only sequences the stages; every algorithm lives in a plugin.
Corrections are computed first and applied to WCS objects last, and only to
images whose fit passed every check: a failed image keeps its WCS object
untouched (the very same object), never a half-applied correction.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from astropy.table import QTable

from aligncore.catalogs import drop_unusable_rows
from aligncore.combined import merge_catalogs
from aligncore.config import Config, load_config_and_registry
from aligncore.errors import AlignError, InputError
from aligncore.execution import detect_images, empty_catalog
from aligncore.formats import open_images
from aligncore.inputs import Inputs, expand_items
from aligncore.preflight import check_inputs, raise_problems
from aligncore.registry import Registry, build_registry
from aligncore.relative import RelativeSettings, relative_align
from aligncore.stages import Corrector, Stage
from aligncore.tangent import TangentPlane, reference_pixel_frame
from aligncore.types import (
    COL_X,
    COL_Y,
    META_DROPPED_ROWS,
    META_WARNINGS,
    AlignImage,
    AlignResult,
    FitResult,
    ImageResult,
    Status,
)
from aligncore.units import (
    Unit,
    UnitOutcome,
    apply_outcomes,
    build_units,
    union_tangent_plane,
)

__all__ = ["align"]

Progress = Callable[[Iterable[Any], str, int], Iterable[Any]]


def _no_progress(items: Iterable[Any], desc: str, total: int) -> Iterable[Any]:
    return items


def _resolve_config(config: Config | str | Path | None,
                    registry: Registry | None) -> tuple[Config, Registry]:
    """The validated config and the registry to run it with (one registry, built once)."""
    if isinstance(config, Config):
        return config, registry or build_registry(config.plugin_files())
    return load_config_and_registry(config, registry=registry)


def _resolve_images(images: Sequence[AlignImage | str | Path], config: Config,
                    registry: Registry, inputs: Inputs | None = None) -> list[AlignImage]:
    """Open the path items and set the groups: an association member's group over the
    file's, none of them with ``align.grouping: image``, ``align.groups`` over all."""
    opened = []
    for item in images:
        for image in [item] if isinstance(item, AlignImage) else open_images(
                item, registry=registry):
            if inputs is not None:
                inputs.annotate(image)
            if config.align.grouping == "image":
                image.group_id = None
            # a chip's group: its own name, else its file's (all chips of the file)
            group = config.align.groups.get(image.name) or (
                config.align.groups.get(image.path.name) if image.path is not None else None)
            if group is not None:
                image.group_id = group
            opened.append(image)
    names = [image.name for image in opened]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputError(f"{duplicates[0]}: the same image name is given twice")
    return opened


def usable_catalog(catalog: QTable | None) -> QTable:
    """A detected or user catalog without its masked or non-finite positions (counted in
    ``meta['dropped_rows']``); an empty catalog for None."""
    if catalog is None:
        return empty_catalog()
    return drop_unusable_rows(catalog, (COL_X, COL_Y))


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
        The images; paths are opened with `aligncore.open_images` (every chip of a
        multi-chip file). A path may also name a JWST association (``*.json``: its
        science members), an ``@list`` file or a directory (its ``*_cal.fits`` files),
        see `aligncore.inputs`.
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
        unreadable image, ...). Every problem of the path inputs and of the
        reference catalog file is listed, one per line (`aligncore.preflight`).
        Nothing has been written or changed.
    """
    config, registry = _resolve_config(config, registry)
    progress = progress or _no_progress
    timings: dict[str, float] = {}
    start = time.perf_counter()
    items, inputs = expand_items(images)
    raise_problems(check_inputs(inputs.paths, config, registry=registry))
    images = _resolve_images(items, config, registry, inputs)
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
    solver = config.build_stage("solver", registry)
    timings["setup"] = time.perf_counter() - start

    t0 = time.perf_counter()
    outcomes = detect_images(images, detector, config, registry, progress)
    catalogs = [usable_catalog(o.catalog) if o.catalog is not None
                else _failed_catalog(o.error) for o in outcomes]
    detect_seconds = [o.seconds for o in outcomes]
    timings["detect"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    if config.align.tangent_point is not None:
        plane = TangentPlane(*config.align.tangent_point)
    else:
        plane = union_tangent_plane(images)
    if config.align.fit_frame == "reference_pixels" and images:
        plane = reference_pixel_frame(images[0].wcs, images[0].shape, plane)
    units = build_units(images, catalogs, plane, config.align.overlap)
    detection = {}
    for unit in units:
        errors = [f"{images[i].name}: {outcomes[i].error}" if len(unit.members) > 1
                  else outcomes[i].error for i in unit.members if outcomes[i].error]
        if errors:
            unit.catalog = unit.catalog[:0]  # an input: the unit has no usable sources
            traces = [outcomes[i].traceback for i in unit.members if outcomes[i].traceback]
            detection[unit.key] = UnitOutcome(Status.FAILED, "; ".join(errors), meta=(
                {"traceback": "\n".join(traces)} if traces else {}))
    apply_outcomes(units, detection)
    relative_info: dict[str, Any] = {}
    if len(units) >= 2:
        relative_outcomes, relative_info = relative_align(
            units, RelativeSettings.from_section(config.align), matchers, fitter, registry,
            solver)
    else:
        relative_outcomes = {unit.key: UnitOutcome(
            Status.REFERENCE, "", FitResult.identity(fitgeometry="shift"), unit.n_matched,
            unit.meta) if len(unit.catalog) else UnitOutcome(
            Status.FAILED, "no sources detected", None, unit.n_matched, unit.meta)
            for unit in units}
    apply_outcomes(units, relative_outcomes)
    timings["relative"] = time.perf_counter() - t0

    absolute_fit, absolute_info = None, {"enabled": False}
    reference_catalog = None
    if config.absolute.enabled:
        from aligncore.absolute import AbsoluteSettings, absolute_align, compose_absolute

        def build(kind: str, section: str) -> Stage:
            return config.build_stage(kind, registry, section=section)

        t0 = time.perf_counter()
        absolute_fit, absolute_info = absolute_align(
            units, images, plane, AbsoluteSettings.from_section(config.absolute), build, registry)
        reference_catalog = absolute_info.pop("reference_catalog", None)
        if absolute_fit is not None:
            apply_outcomes(units, compose_absolute(units, absolute_fit))
        else:
            warnings.warn(f"absolute alignment not applied: {absolute_info.get('reason')}",
                          stacklevel=2)
        timings["absolute"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    results = _correct_all(images, units, catalogs, detect_seconds, plane, config, registry)
    timings["correct"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - start

    combined = _combined_catalog(units, plane)
    result = AlignResult(
        images=tuple(results),
        absolute=absolute_fit,
        tangent_plane=plane,
        timings=timings,
        combined_catalog=combined,
        reference_catalog=reference_catalog,
        meta={"relative": relative_info, "absolute": absolute_info,
              "tangent_plane": plane.summary()},
    )
    registry.hook.aligncore_run_finished(result=result, config=config)
    return result


def _combined_catalog(units: Sequence[Unit], plane: TangentPlane) -> QTable | None:
    """The mosaic catalog of the aligned units; None (with a warning) when it cannot be made."""
    if not any(u.status in (Status.SUCCESS, Status.REFERENCE) for u in units):
        return None
    try:
        return merge_catalogs(units, plane)
    except AlignError as exc:
        warnings.warn(f"no combined catalog: {exc}", stacklevel=3)
        return None


def _failed_catalog(error: str) -> QTable:
    """The empty catalog of an image whose detection failed (``meta["detection_error"]``:
    not saved, so that ``--resume`` detects that image again)."""
    catalog = empty_catalog()
    catalog.meta["detection_error"] = error
    return catalog


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
        trace = ""
        if fit is not None:
            t0 = time.perf_counter()
            try:
                corrector = _pick_corrector(image, config, registry)
                wcs = registry.run_stage(corrector, image.wcs, fit, plane)
            except AlignError as exc:
                status, reason = Status.FAILED, f"WCS correction failed: {exc}"
                fit, wcs = None, image.wcs
                trace = getattr(exc, "trace", "")
            timings["correct"] = time.perf_counter() - t0
        meta = {k: v for k, v in unit.meta.items() if not k.startswith("matched_")}
        if trace:
            meta["traceback"] = trace
        if catalogs[index].meta.get(META_DROPPED_ROWS):
            meta[META_DROPPED_ROWS] = int(catalogs[index].meta[META_DROPPED_ROWS])
        if catalogs[index].meta.get(META_WARNINGS):
            meta["detector_warnings"] = list(catalogs[index].meta[META_WARNINGS])
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

