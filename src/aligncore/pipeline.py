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
from dataclasses import replace
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
    refiner = config.build_stage("distortion", registry)
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
    reference_catalog = distortion_reference = None
    if config.absolute.enabled:
        from aligncore.absolute import AbsoluteSettings, absolute_align, compose_absolute

        def build(kind: str, section: str) -> Stage:
            return config.build_stage(kind, registry, section=section)

        t0 = time.perf_counter()
        settings = AbsoluteSettings.from_section(config.absolute)
        if refiner.name != "none":  # the refiner fits the reference stars too
            settings = replace(settings, save_gaia_catalog=True)
        absolute_fit, absolute_info = absolute_align(units, images, plane, settings, build,
                                                     registry)
        reference_catalog = absolute_info.pop("reference_catalog", None)
        if absolute_fit is not None:
            distortion_reference = reference_catalog
        if not config.absolute.save_gaia_catalog:
            reference_catalog = None
        if absolute_fit is not None:
            apply_outcomes(units, compose_absolute(units, absolute_fit))
        else:
            warnings.warn(f"absolute alignment not applied: {absolute_info.get('reason')}",
                          stacklevel=2)
        timings["absolute"] = time.perf_counter() - t0

    corrections: dict[str, Any] = {}
    distortion_report: dict[str, Any] = {}
    if refiner.name != "none":
        t0 = time.perf_counter()
        corrections, distortion_report = _refine_distortion(
            refiner, units, images, plane, config, registry, fitter, distortion_reference)
        timings["distortion"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    results = _correct_all(images, units, catalogs, detect_seconds, plane, config, registry,
                           corrections)
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
              "tangent_plane": plane.summary(),
              **({"distortion": distortion_report} if distortion_report else {})},
    )
    registry.hook.aligncore_run_finished(result=result, config=config)
    return result


def _refine_distortion(refiner: Stage, units: list[Unit], images: Sequence[AlignImage],
                       plane: TangentPlane, config: Config, registry: Registry, fitter: Stage,
                       reference_catalog: QTable | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the distortion refiner; apply its outcomes and corrected positions to the units.

    Returns the corrections to write (by detector key) and the report entries. A refiner
    that fails leaves the alignment as it was (with a warning and the reason reported).
    """
    from aligncore.distortion_stage import distortion_settings, with_positions

    settings = distortion_settings(fitter, config.align.use_weights, plane, reference_catalog)
    try:
        refined = registry.run_stage(refiner, units, images, settings)
    except AlignError as exc:
        warnings.warn(f"distortion refinement failed: {exc}", stacklevel=3)
        return {}, {"all": {"correction": None, "applied": False, "degree": 0,
                            "reason": f"failed: {exc}"}}
    report = dict(refined.report)
    problem = _unwritable(refined.corrections, images)
    if problem:
        warnings.warn(f"distortion refinement not applied: {problem}", stacklevel=3)
        for entry in report.values():
            if isinstance(entry, dict) and entry.get("applied"):
                entry.update(applied=False, reason=problem)
        return {}, report
    if refined.corrections:
        apply_outcomes(units, refined.outcomes)
        for unit in units:
            if unit.key in refined.positions:
                unit.catalog = with_positions(unit.catalog, refined.positions[unit.key])
    else:
        reasons = "; ".join(f"{key}: {entry.get('reason')}"
                            for key, entry in refined.report.items())
        warnings.warn(f"distortion refinement not applied: {reasons}", stacklevel=3)
    return dict(refined.corrections), report


def _unwritable(corrections: Any, images: Sequence[AlignImage]) -> str:
    """Why the corrections cannot be written into the images' WCS ('' when they can):
    tried on one image of each detector before anything is applied."""
    from aligncore.distortion import detector_key
    from aligncore.distortion_stage import apply_correction

    for key, correction in corrections.items():
        image = next((im for im in images if detector_key(im) == key), None)
        if image is None:
            continue
        try:
            apply_correction(image.wcs, correction, image.shape)
        except AlignError as exc:
            return f"{key}: the correction cannot be written into {image.name}'s WCS: {exc}"
    return ""


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


def _with_distortion(image: AlignImage, corrections: dict[str, Any]) -> Any:
    """The image's nominal WCS with its detector's distortion correction, if any."""
    if not corrections:
        return image.wcs
    from aligncore.distortion import detector_key
    from aligncore.distortion_stage import apply_correction

    correction = corrections.get(detector_key(image))
    return image.wcs if correction is None else apply_correction(image.wcs, correction,
                                                                 image.shape)


def _correct_all(images: Sequence[AlignImage], units: Sequence[Unit],
                 catalogs: Sequence[QTable], detect_seconds: Sequence[float],
                 plane: TangentPlane, config: Config, registry: Registry,
                 corrections: dict[str, Any] | None = None) -> list[ImageResult]:
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
                nominal = _with_distortion(image, corrections or {})
                corrector = _pick_corrector(image, config, registry)
                wcs = registry.run_stage(corrector, nominal, fit, plane)
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

