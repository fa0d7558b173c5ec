"""Execution of comparison runs: one scene, several variants, one JSON record per run.

A *task* is one scene (a simulated case and seed, or a directory of images)
with the variants still to run on it; the scene is built once and shared. Each
run's record is written to ``runs/<dataset>/<case>/s<seed>/<variant>.json`` as
soon as it is finished, with a fingerprint of everything that determines it,
so that an interrupted comparison resumes where it stopped. A record keeps the
sky positions of a pixel grid over each image through the solved WCS (and,
with a truth, through the true WCS), from which the agreement between variants
and the residual maps are computed later.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import traceback
import tracemalloc
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from astropy.table import QTable

from aligncore import __version__
from aligncore.compare.metrics import (
    empty_metrics,
    grid_positions,
    refcat_metrics,
    result_metrics,
    run_status,
    truth_metrics,
)
from aligncore.compare.spec import Case, Variant

__all__ = ["RUN_FORMAT", "Task", "execute", "fingerprint", "read_record", "run_path"]

RUN_FORMAT = "aligncore-compare-run/2"
_MAX_WARNINGS = 10


@dataclass(frozen=True)
class Task:
    """One scene and the variants to run on it (picklable, for worker processes)."""

    case: Case
    variants: tuple[Variant, ...]
    fingerprints: tuple[str, ...]
    outdir: str
    grid: int
    memory: bool


def run_path(outdir: str | Path, case: Case, variant: str) -> Path:
    """Where the record of one run is stored."""
    return Path(outdir) / "runs" / case.key / f"{variant}.json"


def fingerprint(variant: Variant, case: Case, grid: int) -> str:
    """A hash of everything that determines a run's numbers."""
    doc = {
        "format": RUN_FORMAT,
        "aligncore": __version__,
        "config": variant.config,
        "plugins": variant.plugin_hashes,
        "case": {"dataset": case.dataset, "kind": case.kind, "params": case.params,
                 "seed": case.seed},
        "grid": grid,
    }
    text = json.dumps(doc, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def read_record(path: Path) -> dict[str, Any] | None:
    """A stored run record, or None if missing or unreadable."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("format") == RUN_FORMAT else None


def _write_record(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(_json_ready(record), indent=1))
    tmp.replace(path)


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item") and not isinstance(value, str):
        return _json_ready(value.item())
    return value


@dataclass
class _Scene:
    images: list[Any]
    truth: Any
    refcat: QTable | None
    seconds: float


def _build_scene(case: Case) -> _Scene:
    t0 = time.perf_counter()
    refcat = None
    if case.kind == "simulate":
        from aligncore.sim import simulate

        scene = simulate(**case.params, seed=case.seed)
        images, truth = scene.images, scene
    else:
        from aligncore.formats import open_image
        from aligncore.sim import Scene

        directory = Path(case.params["path"])
        if case.params["truth"]:
            truth = Scene.load(directory)
            images = truth.images
        else:
            truth = None
            images = [open_image(p) for p in sorted(directory.glob(case.params["pattern"]))]
        if case.params["refcat"]:
            refcat = QTable.read(case.params["refcat"])
    return _Scene(images, truth, refcat, time.perf_counter() - t0)


_CACHE: dict[str, tuple[Any, Any]] = {}


def _variant_setup(variant: Variant) -> tuple[Any, Any]:
    """The variant's config and registry, built once per process (per config and plugin
    file content)."""
    key = json.dumps([variant.config, variant.plugin_hashes], sort_keys=True, default=str)
    if key not in _CACHE:
        from aligncore.registry import build_registry

        config = variant.load()
        _CACHE[key] = (config, build_registry(config.plugin_files()))
    return _CACHE[key]


def _peak_memory(run: Callable[[], Any]) -> float:
    """Peak memory (MB) allocated while ``run()`` executes (tracemalloc)."""
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        run()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        if started:
            tracemalloc.stop()
    return (peak - base) / 1e6


@dataclass
class _Outcome:
    result: Any
    exception: str
    trace: str
    wall: float
    peak_mb: float
    warnings: list[str]


def _align_measured(variant: Variant, scene: _Scene, memory: bool) -> _Outcome:
    """Run one variant on a scene: timed, then (optionally) again under tracemalloc."""
    from aligncore.pipeline import align

    config, registry = _variant_setup(variant)
    # fresh image objects: a run must not see what another variant set on them (groups)
    inputs = [replace(image, meta=dict(image.meta)) for image in scene.images]
    result, exception, trace = None, "", ""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        try:
            result = align(inputs, config, registry=registry)
        except Exception as exc:  # a crashing variant is a result, not the end of the comparison
            exception = "".join(traceback.format_exception_only(exc)).strip()
            trace = traceback.format_exc()
        wall = time.perf_counter() - t0
        peak = math.nan
        if memory and result is not None:
            peak = _peak_memory(lambda: align(inputs, config, registry=registry))
    messages = list(dict.fromkeys(str(w.message) for w in caught))[:_MAX_WARNINGS]
    return _Outcome(result, exception, trace, wall, peak, messages)


def _run_variant(variant: Variant, case: Case, scene: _Scene, grid: int, memory: bool
                 ) -> dict[str, Any]:
    """The record of one run: identification, metrics, per-image numbers, grid positions
    (solved, and true under ``truth`` with the tangent point of the scene)."""
    outcome = _align_measured(variant, scene, memory)
    result = outcome.result
    if result is None:
        metrics, images = empty_metrics(len(scene.images), outcome.exception), []
    else:
        metrics, images = result_metrics(result)
    matcher = (variant.config.get("matcher") or {}).get("plugin")
    metrics["n_fallback"] = sum(1 for image in images if image["status"] == "SUCCESS"
                                and image.get("matcher") not in (None, matcher))
    metrics["t_wall"] = outcome.wall
    metrics["peak_mem_mb"] = outcome.peak_mb
    if scene.truth is not None:
        truth, per_image = truth_metrics(scene.truth, result, grid)
        metrics.update(truth)
        for image, numbers in zip(images, per_image, strict=False):
            image.update(numbers)
    if scene.refcat is not None and result is not None:
        metrics.update(refcat_metrics(result, scene.refcat, case.params["match_radius"]))
    metrics["status"] = run_status(metrics["n_failed"], images, bool(outcome.exception))
    wcs_list = ([image.wcs for image in scene.images] if result is None
                else [r.wcs for r in result.images])
    shapes = [image.shape for image in scene.images]
    record: dict[str, Any] = {
        "format": RUN_FORMAT,
        "dataset": case.dataset,
        "case": case.label,
        "sweep": case.sweep,
        "seed": case.seed,
        "variant": variant.name,
        "metrics": metrics,
        "images": images,
        "timings": dict(result.timings) if result is not None else {},
        "scene_seconds": scene.seconds,
        "warnings": outcome.warnings,
        "shapes": [list(shape) for shape in shapes],
        "grid": grid_positions(wcs_list, shapes, grid),
    }
    if scene.truth is not None:
        plane = scene.truth.plane
        record["truth"] = {"center": [plane.ra0, plane.dec0],
                           "grid": grid_positions(scene.truth.true_wcs, shapes, grid)}
    if outcome.exception:
        record["exception"] = outcome.exception
        record["traceback"] = outcome.trace
    return record


def execute(task: Task) -> list[dict[str, Any]]:
    """Build the task's scene, run each variant on it and store each record.

    A scene that cannot be built gives a failed record for every variant.
    """
    records = []
    try:
        scene = _build_scene(task.case)
    except Exception as exc:
        message = "".join(traceback.format_exception_only(exc)).strip()
        scene = None
    for variant, print_ in zip(task.variants, task.fingerprints, strict=True):
        if scene is None:
            record = {"format": RUN_FORMAT, "dataset": task.case.dataset,
                      "case": task.case.label, "sweep": task.case.sweep, "seed": task.case.seed,
                      "variant": variant.name, "metrics": {**empty_metrics(0, message),
                                                           "status": "failed"},
                      "images": [], "exception": f"scene: {message}"}
        else:
            record = _run_variant(variant, task.case, scene, task.grid, task.memory)
        record["fingerprint"] = print_
        _write_record(run_path(task.outdir, task.case, variant.name), record)
        records.append(_json_ready(record))
    return records
