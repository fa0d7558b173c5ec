"""The plugin registry: a pluggy manager plus the stage classes it registered.

The manager is built by :func:`build_registry`, never at import time:
hook specs -> aligncore's own implementations -> entry points of the
``aligncore`` group -> local plugin files -> ``check_pending()`` -> stage
classes collected from the ``aligncore_add_*`` hooks.

Environment variables
---------------------
ALIGNCORE_DISABLE_PLUGIN_AUTOLOAD=1
    Do not load entry points (hermetic tests); only explicitly given plugins.
ALIGNCORE_TRACE=1
    Print every hook call.
ALIGNCORE_NO_LOCAL_PLUGINS=1
    Refuse local plugin files (``plugins:`` in a config, ``--plugin-file``): they
    are Python code and run when loaded. Same as ``aligncore --no-local-plugins``.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.metadata
import importlib.util
import os
import sys
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from aligncore import hookspecs
from aligncore.hookspecs import PROJECT_NAME, hookimpl
from aligncore.stages import STAGE_KINDS, Params, Stage

__all__ = [
    "DISABLE_AUTOLOAD_ENV",
    "ENTRY_POINT_GROUP",
    "NO_LOCAL_PLUGINS_ENV",
    "DuplicatePluginError",
    "LocalPluginRefusedError",
    "PluginError",
    "PluginInfo",
    "PluginNotFoundError",
    "Registry",
    "build_registry",
    "get_plugin",
    "list_plugins",
    "local_plugins_refused",
    "refuse_local_plugins",
]

ENTRY_POINT_GROUP = "aligncore"
DISABLE_AUTOLOAD_ENV = "ALIGNCORE_DISABLE_PLUGIN_AUTOLOAD"
TRACE_ENV = "ALIGNCORE_TRACE"
NO_LOCAL_PLUGINS_ENV = "ALIGNCORE_NO_LOCAL_PLUGINS"
LOCAL_PLUGINS_HINT = (f"local plugin files are refused (--no-local-plugins or "
                      f"{NO_LOCAL_PLUGINS_ENV}=1); to allow it, run without --no-local-plugins "
                      f"and with {NO_LOCAL_PLUGINS_ENV} unset")
_REFUSE_LOCAL: ContextVar[bool] = ContextVar("aligncore_refuse_local_plugins", default=False)

_REGISTRATION_HOOKS = {
    "detector": "aligncore_add_detectors",
    "matcher": "aligncore_add_matchers",
    "fitter": "aligncore_add_fitters",
    "refcatalog": "aligncore_add_refcatalogs",
    "corrector": "aligncore_add_correctors",
}

_STAGE_METHODS = {
    "detector": "detect",
    "matcher": "match",
    "fitter": "fit",
    "refcatalog": "query",
    "corrector": "correct",
}


class PluginError(Exception):
    """A plugin is malformed or conflicts with another one."""


class DuplicatePluginError(PluginError):
    """Two plugins registered the same stage name."""


class LocalPluginRefusedError(PluginError):
    """A local plugin file was named while local plugins are refused."""


class PluginNotFoundError(PluginError, LookupError):
    """No plugin of that name is registered for the stage."""


@dataclass(frozen=True)
class PluginInfo:
    """One registered stage implementation."""

    kind: str
    name: str
    cls: type[Stage]
    plugin: str
    distribution: str
    version: str

    @property
    def summary(self) -> str:
        doc = (self.cls.__doc__ or "").strip().splitlines()
        return doc[0] if doc else ""


class _CoreRunner:
    """aligncore's own implementation of ``aligncore_run_stage``."""

    @hookimpl(trylast=True)
    def aligncore_run_stage(self, kind: str, stage: Stage, args: tuple[Any, ...]) -> Any:
        return getattr(stage, _STAGE_METHODS[kind])(*args)


@dataclass
class Registry:
    """A loaded plugin manager and the stage classes its plugins registered."""

    manager: pluggy.PluginManager
    infos: dict[str, dict[str, PluginInfo]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def hook(self) -> Any:
        """The pluggy hook relay (``registry.hook.aligncore_run_stage(...)``)."""
        return self.manager.hook

    def names(self, kind: str) -> list[str]:
        """Registered names for a stage kind, sorted."""
        _check_kind(kind)
        return sorted(self.infos.get(kind, {}))

    def plugins(self, kind: str | None = None) -> list[PluginInfo]:
        """All registered implementations (of one kind if given)."""
        kinds = [kind] if kind else list(STAGE_KINDS)
        for k in kinds:
            _check_kind(k)
        return [self.infos[k][n] for k in kinds for n in sorted(self.infos.get(k, {}))]

    def info(self, kind: str, name: str) -> PluginInfo:
        """The registration of ``name`` for ``kind``; raises `PluginNotFoundError`."""
        _check_kind(kind)
        found = self.infos.get(kind, {}).get(name)
        if found is None:
            raise PluginNotFoundError(self.not_found_message(kind, name))
        return found

    def get(self, kind: str, name: str) -> type[Stage]:
        """The class registered as ``name`` for ``kind``."""
        return self.info(kind, name).cls

    def find(self, name: str) -> list[PluginInfo]:
        """Every registration called ``name``, whatever its kind."""
        return [infos[name] for infos in self.infos.values() if name in infos]

    def not_found_message(self, kind: str, name: str) -> str:
        """A message naming the installed choices and the closest one."""
        names = self.names(kind)
        message = f"{kind} plugin {name!r} is not available (plugin may not be installed)"
        close = difflib.get_close_matches(name, names, n=1)
        if close:
            message += f"; did you mean {close[0]!r}?"
        message += f" Installed: {', '.join(names) or 'none'}."
        if self.failures:
            message += " Plugins that failed to load: " + "; ".join(
                f"{k}: {v}" for k, v in self.failures.items()
            )
        return message

    def run_stage(self, stage: Stage, *args: Any) -> Any:
        """Run a stage call through the ``aligncore_run_stage`` hook."""
        return self.hook.aligncore_run_stage(kind=stage.kind, stage=stage, args=args)


def _check_kind(kind: str) -> None:
    if kind not in STAGE_KINDS:
        raise ValueError(f"unknown stage kind {kind!r}; expected one of {', '.join(STAGE_KINDS)}")


def _autoload_disabled() -> bool:
    return _env_flag(DISABLE_AUTOLOAD_ENV)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def local_plugins_refused() -> bool:
    """Whether local plugin files are refused (``ALIGNCORE_NO_LOCAL_PLUGINS`` or
    inside :func:`refuse_local_plugins`)."""
    return _REFUSE_LOCAL.get() or _env_flag(NO_LOCAL_PLUGINS_ENV)


@contextlib.contextmanager
def refuse_local_plugins(refuse: bool = True) -> Iterator[None]:
    """Within the block, refuse local plugin files (``refuse=False``: no change)."""
    token = _REFUSE_LOCAL.set(refuse or _REFUSE_LOCAL.get())
    try:
        yield
    finally:
        _REFUSE_LOCAL.reset(token)


def _load_local_file(path: Path) -> ModuleType:
    module_name = f"aligncore_local_{path.stem}_{abs(hash(str(path.resolve()))):x}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def build_registry(
    local_plugins: Iterable[str | Path] = (),
    *,
    plugins: Sequence[Any] = (),
    autoload: bool | None = None,
) -> Registry:
    """Build a plugin manager and collect the stage classes.

    Parameters
    ----------
    local_plugins : iterable of path
        ``.py`` files to load as plugins (e.g. a researcher's own matcher).
    plugins : sequence
        Extra plugin objects (modules or instances with hook implementations).
    autoload : bool, optional
        Load the ``aligncore`` entry points; default: yes, unless
        ``ALIGNCORE_DISABLE_PLUGIN_AUTOLOAD`` is set.

    Returns
    -------
    Registry

    Raises
    ------
    DuplicatePluginError
        Two plugins register the same stage name.
    PluginError
        A plugin registers something that is not a stage class of the right kind.
    LocalPluginRefusedError
        ``local_plugins`` is not empty while local plugins are refused.
    pluggy.PluginValidationError
        A plugin implements a hook that does not exist (e.g. a misspelled name).
    """
    local_plugins = list(local_plugins)
    if local_plugins and local_plugins_refused():
        names = ", ".join(str(p) for p in local_plugins)
        raise LocalPluginRefusedError(f"plugin file {names}: {LOCAL_PLUGINS_HINT}")
    manager = pluggy.PluginManager(PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    manager.register(_CoreRunner(), name="aligncore.core")
    sources: dict[str, tuple[str, str]] = {}
    failures: dict[str, str] = {}

    if autoload is None:
        autoload = not _autoload_disabled()
    if autoload:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist is not None else "unknown"
            version = ep.dist.version if ep.dist is not None else "unknown"
            label = f"{ep.name} ({dist})"
            if manager.has_plugin(ep.name):
                warnings.warn(f"aligncore plugin {label} skipped: name already registered",
                              stacklevel=2)
                continue
            try:
                module = ep.load()
            except Exception as exc:  # a broken plugin must not stop the others
                failures[label] = f"{type(exc).__name__}: {exc}"
                warnings.warn(
                    f"aligncore plugin {label} failed to import and is skipped: "
                    f"{type(exc).__name__}: {exc}",
                    stacklevel=2,
                )
                continue
            manager.register(module, name=ep.name)
            sources[ep.name] = (dist, version)

    for obj in plugins:
        name = manager.register(obj)
        if name is not None:
            module = getattr(obj, "__module__", None) or getattr(obj, "__name__", "")
            sources[name] = (f"local:{module}", "-")

    for path in local_plugins:
        path = Path(path)
        label = str(path)
        try:
            module = _load_local_file(path)
        except Exception as exc:
            failures[label] = f"{type(exc).__name__}: {exc}"
            warnings.warn(
                f"aligncore plugin file {label} failed to import and is skipped: "
                f"{type(exc).__name__}: {exc}",
                stacklevel=2,
            )
            continue
        name = manager.register(module, name=f"file:{path.resolve()}")
        if name is not None:
            sources[name] = (f"file:{path.name}", "-")

    manager.check_pending()
    if os.environ.get(TRACE_ENV):
        manager.trace.root.setwriter(lambda text: print(text, end="", file=sys.stderr))
        manager.enable_tracing()

    registry = Registry(manager=manager, failures=failures)
    for kind, hook_name in _REGISTRATION_HOOKS.items():
        registry.infos[kind] = _collect(manager, kind, hook_name, sources)
    return registry


def _collect(
    manager: pluggy.PluginManager,
    kind: str,
    hook_name: str,
    sources: dict[str, tuple[str, str]],
) -> dict[str, PluginInfo]:
    base = STAGE_KINDS[kind]
    found: dict[str, PluginInfo] = {}
    for impl in getattr(manager.hook, hook_name).get_hookimpls():
        dist, version = sources.get(impl.plugin_name, (impl.plugin_name, "-"))
        classes = impl.function() or []
        for cls in classes:
            if not (isinstance(cls, type) and issubclass(cls, base)):
                raise PluginError(
                    f"plugin {impl.plugin_name!r} ({dist}) returned {cls!r} from {hook_name}; "
                    f"expected a subclass of aligncore.{base.__name__}"
                )
            if not cls.name:
                raise PluginError(f"{cls.__qualname__} from {dist} has no 'name'")
            if not (isinstance(cls.Params, type) and issubclass(cls.Params, Params)):
                raise PluginError(
                    f"{cls.__qualname__} from {dist}: Params must subclass aligncore.Params"
                )
            if cls.name in found:
                other = found[cls.name]
                if other.cls is cls:
                    continue
                raise DuplicatePluginError(
                    f"{kind} plugin name {cls.name!r} is registered twice: by "
                    f"{other.distribution} ({other.cls.__module__}.{other.cls.__qualname__}) and "
                    f"by {dist} ({cls.__module__}.{cls.__qualname__})"
                )
            found[cls.name] = PluginInfo(
                kind=kind,
                name=cls.name,
                cls=cls,
                plugin=impl.plugin_name,
                distribution=dist,
                version=version,
            )
    return found


def get_plugin(stage: str, name: str, registry: Registry | None = None) -> type[Stage]:
    """The class registered under ``name`` for ``stage`` (``detector``, ``matcher``, ...).

    Examples
    --------
    >>> Fitter = get_plugin("fitter", "affine")            # doctest: +SKIP
    >>> Fitter(fitgeometry="rshift").fit(xy, uv)           # doctest: +SKIP
    """
    return (registry or build_registry()).get(stage, name)


def list_plugins(registry: Registry | None = None) -> list[PluginInfo]:
    """Every installed stage implementation with its distribution and version."""
    return (registry or build_registry()).plugins()
