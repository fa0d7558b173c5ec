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
import pickle
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import QTable
from threadpoolctl import threadpool_limits

from aligncore.config import Config
from aligncore.errors import AlignError, InputError
from aligncore.formats.catalog_files import catalog_path, read_catalog, write_catalog
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
    """Everything a worker needs to detect the sources of one image.

    ``image`` is the image as opened in the main process (WCS and meta, no pixels): it
    travels pickled, and its loader reads the pixels on the worker.
    """

    image: AlignImage
    detector: str
    params: dict[str, Any]
    plugin_files: tuple[str, ...] = ()


@dataclass
class DetectionOutcome:
    """Catalog (or error) and time of one image's detection."""

    catalog: QTable | None
    seconds: float
    error: str = ""
    traceback: str = ""

    @classmethod
    def failed(cls, error: AlignError, seconds: float = 0.0) -> DetectionOutcome:
        """The outcome of a detection that raised ``error`` (a plugin's traceback kept)."""
        return cls(None, seconds, str(error), getattr(error, "trace", ""))


def empty_catalog() -> QTable:
    """A catalog with the required columns and no rows."""
    return QTable({COL_ID: np.zeros(0, int), COL_X: np.zeros(0), COL_Y: np.zeros(0),
                   COL_FLUX: np.zeros(0)})


@functools.lru_cache(maxsize=4)
def _worker_registry(plugin_files: tuple[str, ...]) -> Registry:
    """The registry of a worker process; its warnings were already given by the main process
    when it built the same registry, so they are not repeated once per worker."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_registry(plugin_files)


def _detect(image: AlignImage, detector: Detector, registry: Registry) -> QTable:
    # Detectors solve many tiny linear systems: OpenBLAS threads bring nothing there but
    # spin on the other cores, and in a process pool every worker's threads fight over
    # them (detection throughput 1.15x instead of 1.8x on 2 cores). One thread each.
    with threadpool_limits(limits=1, user_api="blas"):
        catalog = QTable(registry.run_stage(detector, image))
    catalog.meta.setdefault("image", image.name)
    return catalog


def run_detect_task(task: DetectTask) -> tuple[QTable, float]:
    """Detect one image file (runs on a worker); returns the catalog and the seconds taken."""
    start = time.perf_counter()
    registry = _worker_registry(task.plugin_files)
    detector = registry.build("detector", task.detector, task.params)
    return _detect(task.image, detector, registry), time.perf_counter() - start


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


def _can_travel(image: AlignImage) -> bool:
    """Whether a worker can detect ``image``: it is a file, and its pixel loader can be
    pickled (the loaders of `open_image` can; a closure cannot)."""
    if image.path is None:
        return False
    try:
        pickle.dumps(image.loader)
    except (pickle.PicklingError, TypeError, AttributeError):
        return False
    return True


def _save_for_resume(image: AlignImage, catalog: QTable, config: Config) -> None:
    """With ``execution.resume_dir``, save a catalog there as soon as it is detected, so
    that a run that stops half-way resumes from the images already done."""
    resume_dir = config.execution.resume_dir
    if resume_dir and image.path is not None:
        fmt = config.output.catalog_format
        write_catalog(catalog, catalog_path(Path(resume_dir), image.name, fmt), fmt)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
_TRIM_THRESHOLD, _MMAP_THRESHOLD = (1 << 31) - 1, 1 << 30  # bytes: keep freed arrays

# Settings for the LocalCluster started here, which lives for this run only and shares this
# machine's cores. Dask starts its workers with MALLOC_TRIM_THRESHOLD_=65536 (distributed.
# nanny.pre-spawn-environ) to keep long-lived workers lean; glibc then maps and unmaps every
# large array and detection runs ~1.7x slower: these workers get the allocator settings of
# `_keep_freed_arrays` instead. The workers' statistical profiler samples the task thread's
# stack every 10 ms and the event loops' watchdog ticks every 20 ms (each takes the GIL from
# the detection), and work stealing re-plans every 100 ms; none of it helps independent
# tasks of equal size. Together ~10 % of throughput on 2 cores.
_LOCAL_CLUSTER_CONFIG = {
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": str(_TRIM_THRESHOLD),
    "distributed.nanny.pre-spawn-environ.MALLOC_MMAP_THRESHOLD_": str(_MMAP_THRESHOLD),
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.scheduler.work-stealing": False,
}


def _keep_freed_arrays() -> None:
    """Let a detection worker reuse the memory of freed image-sized arrays.

    glibc serves every allocation above its mmap threshold (at most 32 MiB, less than
    one 2048^2 float64 array) with fresh pages from the kernel and unmaps them on free, so
    each image pays its page faults again. A worker lives for detection only: raising the
    threshold keeps those pages in its heap for the next image.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    except (OSError, AttributeError):  # not glibc
        return


class _RestartingProcessPool(concurrent.futures.Executor):
    """A process pool that replaces itself when a worker dies.

    A worker that exits abruptly breaks a `~concurrent.futures.ProcessPoolExecutor`
    for good: every pending future fails with ``BrokenProcessPool``. `restart`
    starts a fresh pool so that the remaining tasks can go on.
    """

    def __init__(self, workers: int | None) -> None:
        self._workers = workers
        self._pool = self._start()

    def submit(self, fn: Callable[..., Any], /, *args: Any,
               **kwargs: Any) -> concurrent.futures.Future:
        return self._pool.submit(fn, *args, **kwargs)

    def restart(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = self._start()

    def _start(self) -> concurrent.futures.ProcessPoolExecutor:
        return concurrent.futures.ProcessPoolExecutor(max_workers=self._workers,
                                                      initializer=_keep_freed_arrays)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)


def _executor(config: Config, stack: ExitStack) -> concurrent.futures.Executor | None:
    section = config.execution
    if section.executor == "processes":
        return stack.enter_context(_RestartingProcessPool(section.workers))
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


def _may_submit(suspect: bool, running: dict[Any, tuple[int, DetectTask, bool]],
                window: int) -> bool:
    """Whether the next task may start: the window has room, and a task suspected of
    killing a worker (``suspect``) runs alone."""
    if any(entry[2] for entry in running.values()):
        return False
    return not running if suspect else len(running) < window


def _run_windowed(executor: concurrent.futures.Executor, tasks: dict[int, DetectTask],
                  window: int, skip: bool) -> Iterator[tuple[int, DetectionOutcome]]:
    """Run tasks with at most ``window`` in flight (bounded memory, and a worker that dies
    holds only the few tasks it was running); yield outcomes as they complete.

    When a worker of a process pool dies, the pool fails every task it held and is
    restarted; those tasks run again one at a time, and one that breaks the pool while
    running alone is recorded as failed. (Dask retries the tasks of a dead worker itself
    and reports a task that keeps killing workers as ``KilledWorker``.)
    """
    queue = collections.deque((index, task, False) for index, task in tasks.items())
    running: dict[concurrent.futures.Future, tuple[int, DetectTask, bool]] = {}
    restartable = isinstance(executor, _RestartingProcessPool)
    try:
        while queue or running:
            broken = False
            while queue and _may_submit(queue[0][2], running, window):
                try:
                    future = executor.submit(run_detect_task, queue[0][1])
                except BrokenProcessPool:  # broke after the last wait: handled below
                    if not restartable:
                        raise
                    broken = True
                    break
                running[future] = queue.popleft()
            done = set()
            if running and not broken:
                done, _ = concurrent.futures.wait(running, return_when="FIRST_COMPLETED")
            lost = []
            for future in done:
                entry = running.pop(future)
                if restartable and isinstance(future.exception(), BrokenProcessPool):
                    lost.append(entry)
                    broken = True
                    continue
                yield _outcome(entry[0], future, skip)
            if broken:  # every task the pool held is lost with it; the others came back
                lost += running.values()
                running.clear()
                executor.restart()  # type: ignore[attr-defined]
                if len(lost) == 1:
                    yield lost[0][0], DetectionOutcome(
                        None, 0.0, "detection failed on a worker: the worker process died "
                        "while detecting this image")
                else:  # which one killed it? each runs again, alone
                    queue.extendleft((index, task, True) for index, task, _ in reversed(lost))
    finally:
        for future in running:
            future.cancel()


def _outcome(index: int, future: concurrent.futures.Future,
             skip: bool) -> tuple[int, DetectionOutcome]:
    """The outcome of a finished detection task (``InputError`` raised unless ``skip``)."""
    try:
        catalog, seconds = future.result()
    except InputError as exc:
        if not skip:
            raise
        return index, DetectionOutcome.failed(exc)
    except AlignError as exc:  # the detector plugin failed on this image
        return index, DetectionOutcome.failed(exc)
    except Exception as exc:  # a worker died or the task was lost
        return index, DetectionOutcome(
            None, 0.0, f"detection failed on a worker: {type(exc).__name__}: {exc}")
    return index, DetectionOutcome(catalog, seconds)


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
                catalog = read_catalog(source, wcs=image.wcs)
                catalog.meta.setdefault("image", image.name)
                outcomes[index] = DetectionOutcome(catalog, 0.0)
        local = [i for i in range(len(images)) if outcomes[i] is None
                 and (executor is None or not _can_travel(images[i]))]
        for index in progress(local, "detect", len(local)) if local else ():
            start = time.perf_counter()
            try:
                catalog = _detect(images[index], detector, registry)
            except InputError as exc:
                if not skip:
                    raise
                outcomes[index] = DetectionOutcome.failed(exc, time.perf_counter() - start)
                continue
            except AlignError as exc:  # the detector plugin failed on this image
                outcomes[index] = DetectionOutcome.failed(exc, time.perf_counter() - start)
                continue
            outcomes[index] = DetectionOutcome(catalog, time.perf_counter() - start)
            _save_for_resume(images[index], catalog, config)
        if executor is not None:
            pending = [i for i in range(len(images)) if outcomes[i] is None]
            plugin_files = tuple(str(p) for p in config.plugin_files())
            params = detector.params.model_dump()
            tasks = {i: DetectTask(images[i], detector.name, params, plugin_files)
                     for i in pending}
            window = 2 * (config.execution.workers or os.cpu_count() or 1)
            for index, outcome in progress(_run_windowed(executor, tasks, window, skip),
                                           "detect", len(pending)):
                outcomes[index] = outcome
                if outcome.catalog is not None:
                    _save_for_resume(images[index], outcome.catalog, config)
    return [o for o in outcomes if o is not None]
