"""Hook specifications: the contract between aligncore and its plugins.

A plugin is a module (or any object) with functions decorated by
``aligncore.hookimpl``, registered through the ``aligncore`` entry-point group
of its distribution, or named in a config's ``plugins:`` list as a local
``.py`` file. An implementation may accept any subset of a hook's arguments.
The docstrings below are the plugin-author reference.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from aligncore.stages import (
        Corrector,
        Detector,
        DistortionRefiner,
        Fitter,
        ImageFormat,
        Matcher,
        RefCatalog,
        Solver,
        Stage,
    )
    from aligncore.types import AlignResult

PROJECT_NAME = "aligncore"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def aligncore_add_detectors() -> list[type[Detector]]:
    """Register detector classes.

    Returns
    -------
    list of type
        Subclasses of `aligncore.Detector`, each with a unique ``name`` (the name
        a config uses under ``detector: {plugin: NAME}``) and a ``Params`` model.

    Notes
    -----
    Called once when the plugin registry is built. A name registered twice
    (by any two plugins) is an error that names both distributions; so is
    anything but a list of stage classes with a ``name`` (the same holds for
    every ``aligncore_add_*`` stage hook).

    An entry may also be a string ``"NAME = package.module:Class"``: the module is
    imported only when a stage of that name is built, or its class, parameters or
    summary are asked for (``aligncore plugins``, ``aligncore params``), so that
    building a registry does not import every plugin's dependencies. The class is
    then checked (subclass of the stage kind, ``name`` equal to ``NAME``).
    """


@hookspec
def aligncore_add_matchers() -> list[type[Matcher]]:
    """Register matcher classes.

    Returns
    -------
    list of type
        Subclasses of `aligncore.Matcher` with unique ``name`` values, selected
        by ``matcher: {plugin: NAME}``.
    """


@hookspec
def aligncore_add_fitters() -> list[type[Fitter]]:
    """Register fitter classes.

    Returns
    -------
    list of type
        Subclasses of `aligncore.Fitter` with unique ``name`` values, selected
        by ``fitter: {plugin: NAME}``.
    """


@hookspec
def aligncore_add_refcatalogs() -> list[type[RefCatalog]]:
    """Register reference-catalog classes.

    Returns
    -------
    list of type
        Subclasses of `aligncore.RefCatalog` with unique ``name`` values,
        selected by ``absolute: {refcat: {plugin: NAME}}``.
    """


@hookspec
def aligncore_add_correctors() -> list[type[Corrector]]:
    """Register WCS corrector classes.

    Returns
    -------
    list of type
        Subclasses of `aligncore.Corrector` with unique ``name`` values,
        selected by ``corrector: {plugin: NAME}``. With ``plugin: auto`` the
        first registered class whose ``accepts(wcs)`` is true is used.
    """


@hookspec
def aligncore_add_solvers() -> list[type[Solver]]:
    """Register solver classes (the relative alignment after the sequential pass).

    Returns
    -------
    list of type
        Subclasses of `aligncore.Solver` with unique ``name`` values, selected
        by ``align: {solver: NAME}`` (aligncore's own: ``sequential``, ``global``).
    """


@hookspec
def aligncore_add_distortion_refiners() -> list[type[DistortionRefiner]]:
    """Register distortion refiners (a per-detector distortion correction after alignment).

    Returns
    -------
    list of type
        Subclasses of `aligncore.DistortionRefiner` with unique ``name`` values,
        selected by ``distortion: {plugin: NAME}`` (aligncore's own: ``none``, the
        default, and ``poly``).
    """


@hookspec
def aligncore_add_formats() -> list[type[ImageFormat]]:
    """Register image formats (readers and writers of image files).

    Returns
    -------
    list of type
        Subclasses of `aligncore.ImageFormat`, each with a unique ``name``.

    Notes
    -----
    `aligncore.open_image`, ``aligncore run`` and the output writer ask every
    registered format, in ascending ``order`` (then by name), whether it claims
    a file (``identify(path)``, cheap); the first that does opens it
    (``open_images(path)``: one image, or one per chip of a multi-chip file), and
    the same format writes its output (``write_images``: one file per input).
    aligncore's own formats (entry point ``formats``): ``asdf`` (order 10),
    ``jwst`` (20, JWST data models before plain FITS) and ``fits`` (1000, the
    fallback). A path no format claims is an `aligncore.InputError` naming the
    installed formats. A name registered
    twice is an error naming both distributions. Helpers for format authors
    (atomic writes, pixel and WCS checks, observation epochs, the alignment
    record) are in `aligncore.formats`.
    """


@hookspec(firstresult=True)
def aligncore_run_stage(kind: str, stage: Stage, args: tuple[Any, ...]) -> Any:
    """Run one call of a stage and return its result.

    This hook is ``firstresult``: the first non-None result wins. aligncore's
    own implementation is registered ``trylast`` and simply calls the stage
    method (``detect``, ``match``, ``fit``, ``query`` or ``correct``) with
    ``args``. To time, trace or cache a stage, implement it as a wrapper::

        @aligncore.hookimpl(wrapper=True)
        def aligncore_run_stage(kind, stage, args):
            start = time.perf_counter()
            result = yield
            print(kind, stage.name, time.perf_counter() - start)
            return result

    Parameters
    ----------
    kind : str
        Stage kind: ``detector``, ``matcher``, ``fitter``, ``refcatalog``,
        ``corrector``, ``solver`` or ``distortion`` (the kinds of
        ``aligncore.stages.STAGE_TABLE``).
    stage : aligncore.Stage
        The configured stage instance.
    args : tuple
        Positional arguments of the stage method.

    Returns
    -------
    object
        What the stage method returns (a catalog, a `MatchResult`, a
        `FitResult`, a reference catalog or a corrected WCS).

    Notes
    -----
    Failures are contained where this hook is called: an `aligncore.AlignError`
    (``MatchError``, ``FitError``, ...) makes the image being processed
    ``FAILED`` with its message; any other exception, or a result of the
    wrong type, makes it ``FAILED`` with a reason naming the plugin
    (``plugin 'NAME' (matcher) raised KeyError: 'x'``) and its traceback in
    the report. The other images go on. A wrapper sees such an exception as
    `aligncore.PluginRunError` at its ``yield``; an exception raised by the
    wrapper itself is reported as the wrapper's.
    """


@hookspec
def aligncore_run_finished(result: AlignResult, config: Any) -> None:
    """Observe a finished run (reports, metrics, notifications).

    Parameters
    ----------
    result : aligncore.AlignResult
        Per-image statuses, fits and timings.
    config : aligncore.Config
        The validated configuration of the run.

    Returns
    -------
    None
        Return values are ignored. Exceptions propagate to the caller.
    """


def render_reference() -> str:
    """The hook reference in Markdown, rendered from the specs above (docs/hooks.md)."""
    import inspect

    from aligncore.stages import render_stage_table

    lines = ["# Hook reference", "",
             "Generated by `aligncore hooks` from `aligncore/hookspecs.py`; do not edit.", "",
             "## Stage kinds", "",
             "One table (`aligncore.stages.STAGE_TABLE`) drives the registry, the config "
             "sections and `aligncore_run_stage`:", "", render_stage_table(), ""]
    for name, function in inspect.getmembers(sys.modules[__name__], inspect.isfunction):
        if not name.startswith("aligncore_"):
            continue
        options = getattr(function, PROJECT_NAME + "_spec", {})
        signature = str(inspect.signature(function)).replace("\'", "")
        lines += [f"## `{name}`", "", "```python", f"def {name}{signature}", "```", ""]
        if options.get("firstresult"):
            lines += ["*firstresult*: the first non-None result is used.", ""]
        lines += [inspect.cleandoc(function.__doc__ or ""), ""]
    return "\n".join(lines)
