"""Running detection on an executor: serially, on a process pool, or on a Dask cluster.

Detection is a pure function (image file + detector config -> catalog) run as
one task per image: pixels are read on the worker and only the catalog comes
back. Images held only in memory are detected in this process.
"""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import QTable

from aligncore.config import Config
from aligncore.errors import AlignError, InputError
from aligncore.io import catalog_path, read_catalog
from aligncore.registry import Registry, build_registry
from aligncore.stages import Detector
from aligncore.types import COL_FLUX, COL_ID, COL_X, COL_Y, AlignImage

__all__ = [
    "DetectTask",
    "DetectionOutcome",
    "detect_images",
    "empty_catalog",
    "existing_catalog",
    "run_detect_task",
]

Progress = Callable[[Iterable[Any], str, int], Iterable[Any]]


@dataclass(frozen=True)
class DetectTask:
    """Everything a worker needs to detect the sources of one image file."""

    path: str
    group_id: str | None
    detector: str
    params: dict[str, Any]
    plugin_files: tuple[str, ...] = ()


@dataclass
class DetectionOutcome:
    """Catalog (or error) and time of one image's detection."""

    catalog: QTable | None
    seconds: float
    error: str = ""


def empty_catalog() -> QTable:
    """A catalog with the required columns and no rows."""
    return QTable({COL_ID: np.zeros(0, int), COL_X: np.zeros(0), COL_Y: np.zeros(0),
                   COL_FLUX: np.zeros(0)})


@functools.lru_cache(maxsize=4)
def _worker_registry(plugin_files: tuple[str, ...]) -> Registry:
    return build_registry(plugin_files)


def _detect(image: AlignImage, detector: Detector, registry: Registry) -> QTable:
    catalog = registry.run_stage(detector, image)
    if catalog is None:
        raise AlignError(f"{image.name}: detector {detector.name!r} returned None")
    catalog = QTable(catalog)
    catalog.meta.setdefault("image", image.name)
    return catalog


def run_detect_task(task: DetectTask) -> tuple[QTable, float]:
    """Detect one image file (runs on a worker); returns the catalog and the seconds taken."""
    from aligncore.io import open_image

    start = time.perf_counter()
    registry = _worker_registry(task.plugin_files)
    detector = registry.get("detector", task.detector)(task.params)
    image = open_image(task.path, group_id=task.group_id)
    return _detect(image, detector, registry), time.perf_counter() - start


def existing_catalog(image: AlignImage, config: Config) -> Path | None:
    """A catalog to use instead of detecting ``image``, if the config provides one.

    In order: ``detector.catalogs[name]``; with ``detector.use_custom_catalogs``,
    ``<stem>_cat.ecsv`` beside the image; with ``execution.resume_dir``, the
    catalog a previous run saved there.
    """
    section = config.detector
    if image.name in section.catalogs:
        return config.resolve(section.catalogs[image.name])
    if image.path is None:
        return None
    candidates = []
    if section.use_custom_catalogs:
        candidates.append(catalog_path(Path(image.path).parent, image.name, "ecsv"))
    if config.execution.resume_dir:
        candidates.append(catalog_path(Path(config.execution.resume_dir), image.name,
                                       config.output.catalog_format))
    return next((c for c in candidates if c.exists()), None)


# Dask starts its workers with MALLOC_TRIM_THRESHOLD_=65536 (distributed.nanny.pre-spawn-
# environ) to keep long-lived workers lean; glibc then maps and unmaps every large array and
# detection runs ~1.7x slower. A local cluster started here leaves the variable unset (a
# value already in the environment is still passed on).
_LOCAL_CLUSTER_CONFIG = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}


def _executor(config: Config, stack: ExitStack) -> concurrent.futures.Executor | None:
    section = config.execution
    if section.executor == "processes":
        return stack.enter_context(
            concurrent.futures.ProcessPoolExecutor(max_workers=section.workers))
    if section.executor == "dask":
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError as exc:
            raise AlignError("execution.executor 'dask' needs dask.distributed: "
                             "pip install 'aligncore[dask]'") from exc
        if section.address:
            client = stack.enter_context(Client(section.address))
        else:
            import dask

            with dask.config.set(_LOCAL_CLUSTER_CONFIG):
                cluster = stack.enter_context(LocalCluster(
                    n_workers=section.workers or 2, threads_per_worker=1, processes=True,
                    dashboard_address=":0"))
            client = stack.enter_context(Client(cluster))
        return client.get_executor(pure=False)
    return None


def _run_windowed(executor: concurrent.futures.Executor, tasks: dict[int, DetectTask],
                  window: int, skip: bool) -> Iterator[tuple[int, DetectionOutcome]]:
    """Run tasks with at most ``window`` in flight (bounded memory, and a worker that dies
    holds only the few tasks it was running); yield outcomes as they complete."""
    queue = collections.deque(tasks.items())
    running: dict[concurrent.futures.Future, int] = {}
    try:
        while queue or running:
            while queue and len(running) < window:
                index, task = queue.popleft()
                running[executor.submit(run_detect_task, task)] = index
            done, _ = concurrent.futures.wait(running, return_when="FIRST_COMPLETED")
            for future in done:
                index = running.pop(future)
                try:
                    catalog, seconds = future.result()
                except InputError as exc:
                    if not skip:
                        raise
                    yield index, DetectionOutcome(None, 0.0, str(exc))
                    continue
                except Exception as exc:  # a worker died or the task was lost
                    yield index, DetectionOutcome(
                        None, 0.0, f"detection failed on a worker: {type(exc).__name__}: {exc}")
                    continue
                yield index, DetectionOutcome(catalog, seconds)
    finally:
        for future in running:
            future.cancel()


def detect_images(
    images: Sequence[AlignImage],
    detector: Detector,
    config: Config,
    registry: Registry,
    progress: Progress,
) -> list[DetectionOutcome]:
    """Detect every image, on the configured executor.

    Input errors (an unreadable file) raise `InputError` unless
    ``execution.on_error: skip``, in which case that image's outcome carries
    the error. A task lost with its worker is always recorded, never raised.
    """
    outcomes: list[DetectionOutcome | None] = [None] * len(images)
    skip = config.execution.on_error == "skip"
    with ExitStack() as stack:
        executor = _executor(config, stack)
        for index, image in enumerate(images):
            source = existing_catalog(image, config)
            if source is not None:
                catalog = read_catalog(source)
                catalog.meta.setdefault("image", image.name)
                outcomes[index] = DetectionOutcome(catalog, 0.0)
        local = [i for i in range(len(images)) if outcomes[i] is None
                 and (executor is None or images[i].path is None)]
        for index in progress(local, "detect", len(local)) if local else ():
            start = time.perf_counter()
            try:
                catalog = _detect(images[index], detector, registry)
            except InputError as exc:
                if not skip:
                    raise
                outcomes[index] = DetectionOutcome(None, time.perf_counter() - start, str(exc))
                continue
            outcomes[index] = DetectionOutcome(catalog, time.perf_counter() - start)
        if executor is not None:
            pending = [i for i in range(len(images)) if outcomes[i] is None]
            tasks = {i: DetectTask(str(Path(images[i].path)), images[i].group_id, detector.name,
                                   detector.params.model_dump(),
                                   tuple(str(p) for p in config.plugin_files()))
                     for i in pending}
            window = config.execution.workers or os.cpu_count() or 1
            for index, outcome in progress(_run_windowed(executor, tasks, window, skip),
                                           "detect", len(pending)):
                outcomes[index] = outcome
    return [o for o in outcomes if o is not None]
