"""aligncore: align astronomical images with swappable, plugin-provided stages.

Public API
----------
align, load_config, Config
    Run an alignment from Python, configured like the command line.
open_image, simulate
    Read an image lazily; make a seeded synthetic scene with ground truth.
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

from aligncore.hookspecs import hookimpl, hookspec
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
from aligncore.stages import (
    Corrector,
    Detector,
    Fitter,
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
    COL_PMRA,
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
    FitResult,
    ImageResult,
    MatchResult,
    Status,
)

if TYPE_CHECKING:
    from aligncore.catalogs import CatalogServiceError
    from aligncore.config import Config, ConfigError, load_config
    from aligncore.errors import (
        AlignError,
        FitError,
        InputError,
        MatchError,
        NotEnoughPointsError,
        SingularMatrixError,
    )
    from aligncore.io import open_image
    from aligncore.pipeline import align


# The function shadows its module's name, so it is bound eagerly (a lazy
# attribute would lose to the submodule once ``aligncore.simulate`` is imported).
from aligncore.simulate import Scene, simulate


def _version() -> str:
    """The installed distribution's version (from the git tags at build time)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("aligncore")
    except PackageNotFoundError:  # imported from a source tree that is not installed
        return "0.0.0+unknown"


__version__ = _version()

# Heavier modules are imported on first use so that a plugin importing
# ``aligncore`` for its base classes stays cheap.
_LAZY = {
    "Config": "aligncore.config",
    "ConfigError": "aligncore.config",
    "load_config": "aligncore.config",
    "AlignError": "aligncore.errors",
    "FitError": "aligncore.errors",
    "InputError": "aligncore.errors",
    "CatalogServiceError": "aligncore.catalogs",
    "MatchError": "aligncore.errors",
    "NotEnoughPointsError": "aligncore.errors",
    "SingularMatrixError": "aligncore.errors",
    "open_image": "aligncore.io",
    "align": "aligncore.pipeline",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'aligncore' has no attribute {name!r}")
    return getattr(import_module(module), name)


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
    "COL_PMRA",
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
    "DuplicatePluginError",
    "FitError",
    "FitResult",
    "Fitter",
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
    "Stage",
    "Status",
    "TangentPlane",
    "align",
    "build_registry",
    "get_plugin",
    "hookimpl",
    "hookspec",
    "list_plugins",
    "load_config",
    "open_image",
    "pixel_scale",
    "pixel_to_world",
    "simulate",
]
