"""aligncore: align astronomical images with swappable, plugin-provided stages.

Public API
----------
align, load_config, Config
    Run an alignment from Python, configured like the command line.
open_image, open_images, simulate
    Read an image (every chip of a multi-chip file) lazily; make a seeded
    synthetic scene with ground truth.
get_plugin, list_plugins, build_registry
    Find stage implementations.
Detector, Matcher, Fitter, RefCatalog, Corrector, Params, hookimpl
    What a plugin author subclasses and decorates.
AlignImage, MatchResult, FitResult, ImageResult, AlignResult, Status, TangentPlane
    Data passed between stages; ``COL_*`` are the frozen column names.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aligncore.catalogs import CatalogServiceError
    from aligncore.config import Config, ConfigError, load_config
    from aligncore.distortion import DistortionCorrection
    from aligncore.errors import (
        AlignError,
        FitError,
        InputError,
        MatchError,
        NotEnoughPointsError,
        SingularMatrixError,
    )
    from aligncore.formats import open_image, open_images
    from aligncore.hookspecs import hookimpl, hookspec
    from aligncore.pipeline import align
    from aligncore.registry import (
        DuplicatePluginError,
        PluginError,
        PluginInfo,
        PluginNotFoundError,
        PluginRunError,
        Registry,
        build_registry,
        get_plugin,
        list_plugins,
    )
    from aligncore.sim import Scene, simulate
    from aligncore.stages import (
        Corrector,
        Detector,
        DistortionRefiner,
        Fitter,
        ImageFormat,
        Matcher,
        Params,
        RefCatalog,
        Solver,
        Stage,
    )
    from aligncore.tangent import TangentPlane, pixel_scale, pixel_to_world
    from aligncore.types import (
        COL_DEC,
        COL_DEC_ERR,
        COL_EPOCH,
        COL_FLUX,
        COL_FLUX_ERR,
        COL_ID,
        COL_MAG,
        COL_PEAK,
        COL_PMDEC,
        COL_PMDEC_ERR,
        COL_PMRA,
        COL_PMRA_ERR,
        COL_RA,
        COL_RA_ERR,
        COL_ROUNDNESS1,
        COL_ROUNDNESS2,
        COL_SHARPNESS,
        COL_SNR,
        COL_TP_X,
        COL_TP_Y,
        COL_X,
        COL_X_ERR,
        COL_Y,
        COL_Y_ERR,
        META_CATALOG,
        META_DROPPED_ROWS,
        META_FWHM,
        META_PIXEL_SCALE,
        META_REFCAT_REPORTED,
        META_WARNINGS,
        AlignImage,
        AlignResult,
        DistortionResult,
        DistortionSettings,
        FitResult,
        ImageResult,
        MatchResult,
        SolverResult,
        SolverSettings,
        Status,
        UnitOutcome,
    )

# Every public name is imported on first use (Scientific Python SPEC 1): ``import
# aligncore`` and ``aligncore --help`` load no numpy, astropy or pydantic, and a plugin
# importing ``aligncore`` for its base classes loads only what it touches. The lab
# (the simulator behind `simulate` and `Scene`) loads only when asked for;
# tests/test_architecture.py checks what ``import aligncore`` leaves unimported.
_LAZY = {
    "lazy_exports": "aligncore.lazy",
    "COL_DEC": "aligncore.types",
    "COL_DEC_ERR": "aligncore.types",
    "COL_EPOCH": "aligncore.types",
    "COL_FLUX": "aligncore.types",
    "COL_FLUX_ERR": "aligncore.types",
    "COL_ID": "aligncore.types",
    "COL_MAG": "aligncore.types",
    "COL_PEAK": "aligncore.types",
    "COL_PMDEC": "aligncore.types",
    "COL_PMDEC_ERR": "aligncore.types",
    "COL_PMRA": "aligncore.types",
    "COL_PMRA_ERR": "aligncore.types",
    "COL_RA": "aligncore.types",
    "COL_RA_ERR": "aligncore.types",
    "COL_ROUNDNESS1": "aligncore.types",
    "COL_ROUNDNESS2": "aligncore.types",
    "COL_SHARPNESS": "aligncore.types",
    "COL_SNR": "aligncore.types",
    "COL_TP_X": "aligncore.types",
    "COL_TP_Y": "aligncore.types",
    "COL_X": "aligncore.types",
    "COL_X_ERR": "aligncore.types",
    "COL_Y": "aligncore.types",
    "COL_Y_ERR": "aligncore.types",
    "META_CATALOG": "aligncore.types",
    "META_DROPPED_ROWS": "aligncore.types",
    "META_FWHM": "aligncore.types",
    "META_PIXEL_SCALE": "aligncore.types",
    "META_REFCAT_REPORTED": "aligncore.types",
    "META_WARNINGS": "aligncore.types",
    "AlignError": "aligncore.errors",
    "AlignImage": "aligncore.types",
    "AlignResult": "aligncore.types",
    "CatalogServiceError": "aligncore.catalogs",
    "Config": "aligncore.config",
    "ConfigError": "aligncore.config",
    "Corrector": "aligncore.stages",
    "Detector": "aligncore.stages",
    "DistortionCorrection": "aligncore.distortion",
    "DistortionRefiner": "aligncore.stages",
    "DistortionResult": "aligncore.types",
    "DistortionSettings": "aligncore.types",
    "DuplicatePluginError": "aligncore.registry",
    "FitError": "aligncore.errors",
    "FitResult": "aligncore.types",
    "Fitter": "aligncore.stages",
    "ImageFormat": "aligncore.stages",
    "ImageResult": "aligncore.types",
    "InputError": "aligncore.errors",
    "MatchError": "aligncore.errors",
    "MatchResult": "aligncore.types",
    "SolverResult": "aligncore.types",
    "SolverSettings": "aligncore.types",
    "UnitOutcome": "aligncore.types",
    "Matcher": "aligncore.stages",
    "NotEnoughPointsError": "aligncore.errors",
    "Params": "aligncore.stages",
    "PluginError": "aligncore.registry",
    "PluginInfo": "aligncore.registry",
    "PluginNotFoundError": "aligncore.registry",
    "PluginRunError": "aligncore.registry",
    "RefCatalog": "aligncore.stages",
    "Registry": "aligncore.registry",
    "Scene": "aligncore.sim",
    "SingularMatrixError": "aligncore.errors",
    "Solver": "aligncore.stages",
    "Stage": "aligncore.stages",
    "Status": "aligncore.types",
    "TangentPlane": "aligncore.tangent",
    "align": "aligncore.pipeline",
    "build_registry": "aligncore.registry",
    "get_plugin": "aligncore.registry",
    "hookimpl": "aligncore.hookspecs",
    "hookspec": "aligncore.hookspecs",
    "list_plugins": "aligncore.registry",
    "load_config": "aligncore.config",
    "open_image": "aligncore.formats",
    "open_images": "aligncore.formats",
    "pixel_scale": "aligncore.tangent",
    "pixel_to_world": "aligncore.tangent",
    "simulate": "aligncore.sim",
}


def _version() -> str:
    """The installed distribution's version (from the git tags at build time)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("aligncore")
    except PackageNotFoundError:  # imported from a source tree that is not installed
        return "0.0.0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":  # read from the installed metadata on first use
        value: Any = _version()
    else:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'aligncore' has no attribute {name!r}")
        value = getattr(import_module(module), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, "__version__"})


__all__ = [
    "COL_DEC",
    "COL_DEC_ERR",
    "COL_EPOCH",
    "COL_FLUX",
    "COL_FLUX_ERR",
    "COL_ID",
    "COL_MAG",
    "COL_PEAK",
    "COL_PMDEC",
    "COL_PMDEC_ERR",
    "COL_PMRA",
    "COL_PMRA_ERR",
    "COL_RA",
    "COL_RA_ERR",
    "COL_ROUNDNESS1",
    "COL_ROUNDNESS2",
    "COL_SHARPNESS",
    "COL_SNR",
    "COL_TP_X",
    "COL_TP_Y",
    "COL_X",
    "COL_X_ERR",
    "COL_Y",
    "COL_Y_ERR",
    "META_CATALOG",
    "META_DROPPED_ROWS",
    "META_FWHM",
    "META_PIXEL_SCALE",
    "META_REFCAT_REPORTED",
    "META_WARNINGS",
    "AlignError",
    "AlignImage",
    "AlignResult",
    "CatalogServiceError",
    "Config",
    "ConfigError",
    "Corrector",
    "Detector",
    "DistortionCorrection",
    "DistortionRefiner",
    "DistortionResult",
    "DistortionSettings",
    "DuplicatePluginError",
    "FitError",
    "FitResult",
    "Fitter",
    "ImageFormat",
    "ImageResult",
    "InputError",
    "MatchError",
    "MatchResult",
    "Matcher",
    "NotEnoughPointsError",
    "Params",
    "PluginError",
    "PluginInfo",
    "PluginNotFoundError",
    "PluginRunError",
    "RefCatalog",
    "Registry",
    "Scene",
    "SingularMatrixError",
    "Solver",
    "SolverResult",
    "SolverSettings",
    "Stage",
    "Status",
    "TangentPlane",
    "UnitOutcome",
    "align",
    "build_registry",
    "get_plugin",
    "hookimpl",
    "hookspec",
    "lazy_exports",
    "list_plugins",
    "load_config",
    "open_image",
    "open_images",
    "pixel_scale",
    "pixel_to_world",
    "simulate",
]
