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
import functools
import importlib
import importlib.metadata
import importlib.util
import os
import re
import sys
import traceback
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from aligncore import hookspecs
from aligncore.errors import AlignError, InputError
from aligncore.hookspecs import PROJECT_NAME, hookimpl
from aligncore.stages import STAGE_KINDS, STAGE_TABLE, ImageFormat, Params, Stage
from aligncore.types import COL_FLUX, COL_ID, COL_X, COL_Y, MatchResult

__all__ = [
    "DISABLE_AUTOLOAD_ENV",
    "ENTRY_POINT_GROUP",
    "NO_LOCAL_PLUGINS_ENV",
    "DuplicatePluginError",
    "LocalPluginRefusedError",
    "PluginError",
    "PluginInfo",
    "PluginNotFoundError",
    "PluginRunError",
    "Registry",
    "build_registry",
    "default_registry",
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



class PluginError(Exception):
    """A plugin is malformed or conflicts with another one."""


class DuplicatePluginError(PluginError):
    """Two plugins registered the same stage name."""


class LocalPluginRefusedError(PluginError):
    """A local plugin file was named while local plugins are refused."""


class PluginNotFoundError(PluginError, LookupError):
    """No plugin of that name is registered for the stage."""


class PluginRunError(AlignError):
    """A stage plugin raised an unexpected exception or returned the wrong type.

    The pipeline turns it into a ``FAILED`` status for the image being
    processed, like any `AlignError`; ``trace`` keeps the plugin's traceback
    for the report.

    Parameters
    ----------
    message : str
        ``plugin 'NAME' (KIND) raised KeyError: 'x'`` or
        ``plugin 'NAME' (KIND) returned dict, expected MatchResult``.
    trace : str
        The formatted traceback of the plugin's exception ('' for a wrong type).
    """

    def __init__(self, message: str, trace: str = "") -> None:
        super().__init__(message)
        self.trace = trace

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.trace))


def _plugin_label(stage: Stage) -> str:
    return f"plugin {getattr(stage, 'name', type(stage).__name__)!r} ({stage.kind})"


def _failure(what: str, exc: Exception) -> PluginRunError:
    """``what raised KeyError: 'x'``, with the exception's traceback kept."""
    return PluginRunError(f"{what} {type(exc).__name__}: {exc}",
                          "".join(traceback.format_exception(exc)))


def _check_result(stage: Stage, value: Any, args: tuple[Any, ...]) -> Any:
    """``value`` if it is what ``stage``'s method must return for ``args``; `PluginRunError`
    otherwise (wrong type, a detector table without the required columns, matches that
    point outside the catalogs)."""
    kind = STAGE_TABLE[stage.kind]
    expected = kind.returns
    if not kind.accepts(value):
        raise PluginRunError(
            f"{_plugin_label(stage)} returned {type(value).__name__}, expected {expected}")
    if stage.kind == "detector":
        missing = [name for name in (COL_ID, COL_X, COL_Y, COL_FLUX) if name not in value.colnames]
        if missing:
            raise PluginRunError(f"{_plugin_label(stage)} returned a table without the "
                                 f"column(s) {', '.join(missing)}")
    if stage.kind == "matcher" and len(args) >= 2:
        _check_indices(stage, value, len(args[0]), len(args[1]))
    return value


def _check_indices(stage: Stage, result: MatchResult, n_image: int, n_ref: int) -> None:
    """`PluginRunError` when a match points outside the catalogs the matcher was given."""
    for what, idx, size in (("image", result.image_idx, n_image),
                            ("reference", result.ref_idx, n_ref)):
        if idx.size and (idx.min() < 0 or idx.max() >= size):
            raise PluginRunError(f"{_plugin_label(stage)} returned {what} indices outside "
                                 f"0..{size - 1}")


@dataclass(frozen=True)
class PluginInfo:
    """One registered stage implementation."""

    kind: str
    name: str
    ref: type[Stage] | str
    """The class, or where it is (``"package.module:Class"``): then `cls` imports it."""
    plugin: str
    distribution: str
    version: str

    @property
    def cls(self) -> type[Stage]:
        """The stage class (a lazy registration is imported and checked here, once)."""
        if isinstance(self.ref, str):
            return _resolve(self.kind, self.name, self.ref, self.distribution)
        return self.ref

    @property
    def where(self) -> str:
        """``module.Class`` of the implementation, without importing it."""
        if isinstance(self.ref, str):
            return self.ref.replace(":", ".")
        return f"{self.ref.__module__}.{self.ref.__qualname__}"

    @property
    def summary(self) -> str:
        """The first paragraph of the class docstring, as plain text (no RST markup)."""
        return _summary(self.cls)


def _summary(cls: type) -> str:
    """The first paragraph of ``cls``'s docstring, as plain text."""
    paragraph = (cls.__doc__ or "").strip().split("\n\n")[0]
    return plain_text(" ".join(line.strip() for line in paragraph.splitlines()))


_ROLE = re.compile(r":[a-z:]+:`~?([^`<]*?)(?:\s*<[^>]*>)?`")
_LITERAL = re.compile(r"``([^`]*)``|`~?([^`]*)`")
_EMPHASIS = re.compile(r"\*\*([^*]+)\*\*|\*([^*]+)\*")


def plain_text(text: str) -> str:
    """``text`` without reStructuredText/numpydoc markup: roles, literals, emphasis."""
    text = _ROLE.sub(r"\1", text)
    text = _LITERAL.sub(lambda m: m.group(1) if m.group(1) is not None else m.group(2), text)
    return _EMPHASIS.sub(lambda m: m.group(1) or m.group(2), text)


class _CoreRunner:
    """aligncore's own implementation of ``aligncore_run_stage``."""

    @hookimpl(trylast=True)
    def aligncore_run_stage(self, kind: str, stage: Stage, args: tuple[Any, ...]) -> Any:
        """Call the stage method; an unexpected exception becomes a `PluginRunError` naming
        the stage's plugin (so that a wrapper's own failure can be told apart)."""
        try:
            return getattr(stage, STAGE_TABLE[kind].method)(*args)
        except AlignError:
            raise
        except Exception as exc:
            raise _failure(f"{_plugin_label(stage)} raised", exc) from exc


@dataclass
class Registry:
    """A loaded plugin manager and the stage classes its plugins registered."""

    manager: pluggy.PluginManager
    infos: dict[str, dict[str, PluginInfo]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    formats: dict[str, FormatInfo] = field(default_factory=dict)
    """Registered image formats by name, in the order they are asked to claim a file."""

    def image_format(self, path: str | Path) -> ImageFormat:
        """A new instance of the first format (in `formats` order) that claims ``path``.

        Raises
        ------
        InputError
            No registered format claims ``path``; the message names the installed ones.
        """
        path = Path(path)
        for info in self.formats.values():
            if info.cls.identify(path):
                return info.cls()
        raise InputError(f"{path}: no image format claims this file; installed formats: "
                         f"{', '.join(self.formats) or 'none'}")

    def format_named(self, name: str) -> ImageFormat | None:
        """A new instance of the format called ``name``, or None."""
        info = self.formats.get(name)
        return info.cls() if info is not None else None

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

    def build(self, kind: str, name: str, params: Mapping[str, Any] | None = None) -> Stage:
        """The stage factory: an instance of plugin ``name`` of ``kind`` with ``params``.

        `aligncore.config.Config.build_stage` (the pipeline, the absolute stage,
        ``aligncore validate``) and the detection workers build every stage here.
        """
        return self.get(kind, name)(dict(params or {}))

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
        """Run a stage call through the ``aligncore_run_stage`` hook.

        This is the one place where plugin code runs during an alignment, so
        it is where a plugin's failure is contained: an `AlignError` (e.g.
        ``MatchError``, ``FitError``) passes through unchanged, any other
        exception and a result of the wrong type become a `PluginRunError`
        naming the plugin. The caller marks the image ``FAILED``.

        Raises
        ------
        AlignError
            Raised by the plugin itself, or a `PluginRunError`.
        """
        try:
            value = self.hook.aligncore_run_stage(kind=stage.kind, stage=stage, args=args)
        except AlignError:
            raise
        except Exception as exc:  # not from the stage (the core wraps those): from a wrapper
            raise _failure(f"a wrapper of aligncore_run_stage around {_plugin_label(stage)} "
                           "raised", exc) from exc
        return _check_result(stage, value, args)


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
    """Import a local plugin file as a fresh module; `PluginError` (one line) if it cannot be."""
    if not path.is_file():
        raise PluginError(f"plugin file {path}: no such file")
    module_name = f"aligncore_local_{path.stem}_{abs(hash(str(path.resolve()))):x}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"plugin file {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        del sys.modules[module_name]
        raise PluginError(f"plugin file {path}: syntax error on line {exc.lineno}: "
                          f"{exc.msg}") from exc
    except Exception as exc:
        del sys.modules[module_name]
        raise PluginError(f"plugin file {path}: cannot be imported: "
                          f"{type(exc).__name__}: {exc}") from exc
    return module


def _hook_classes(module: ModuleType) -> list[type]:
    """Classes defined in ``module`` that carry hook implementations as methods
    (e.g. a ``StageTimer`` with an ``aligncore_run_stage`` wrapper)."""
    marker = PROJECT_NAME + "_impl"
    found = []
    for value in vars(module).values():
        if (isinstance(value, type) and value.__module__ == module.__name__
                and any(hasattr(attr, marker) for attr in vars(value).values())):
            found.append(value)
    return found


def _register(manager: pluggy.PluginManager, plugin: Any, name: str, label: str) -> str:
    """Register one plugin object; `PluginError` naming ``label`` if pluggy refuses it."""
    try:
        registered = manager.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:  # pluggy's message spans three lines
        text = str(exc).split("\n")
        raise PluginError(f"{label}: {'; '.join(line.strip() for line in text[1:]) or text[0]}"
                          ) from exc
    return registered or name


def _register_file(manager: pluggy.PluginManager, path: Path) -> list[str]:
    """Register a local plugin file: its module-level hook functions and one instance of
    each class defined in it with hook methods. Returns the registered plugin names."""
    label = f"plugin file {path}"
    module = _load_local_file(path)
    names = [_register(manager, module, f"file:{path.resolve()}", label)]
    for cls in _hook_classes(module):
        try:
            instance = cls()
        except Exception as exc:
            raise PluginError(f"{label}: cannot create {cls.__name__}() to register its hooks: "
                              f"{type(exc).__name__}: {exc}") from exc
        names.append(_register(manager, instance, f"file:{path.resolve()}:{cls.__name__}",
                               label))
    if not any(manager.get_hookcallers(manager.get_plugin(n)) for n in names):
        warnings.warn(f"{label} registers nothing: it has no @aligncore.hookimpl function "
                      "or class", stacklevel=3)
    return names


def _check_hook_names(manager: pluggy.PluginManager, labels: dict[str, str]) -> None:
    """`PluginError` for a hook implementation whose name is no hook (a typo), naming the
    plugin and the closest hook."""
    known = [name for name in dir(hookspecs) if name.startswith("aligncore_")]
    problems = []
    for hook_name in sorted(vars(manager.hook)):
        caller = getattr(manager.hook, hook_name)
        if hook_name.startswith("_") or caller.has_spec():
            continue
        for impl in caller.get_hookimpls():
            where = labels.get(impl.plugin_name, f"plugin {impl.plugin_name!r}")
            close = difflib.get_close_matches(hook_name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(f"{where}: {hook_name!r} is not an aligncore hook{hint}")
    if problems:
        raise PluginError("; ".join(problems))


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
        Their module-level ``@hookimpl`` functions are registered, and one
        instance of each class defined in the file with ``@hookimpl`` methods.
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
        A plugin registers something that is not a stage class of the right
        kind, implements a hook that does not exist (e.g. a misspelled name),
        or a local plugin file is missing or cannot be imported. The message
        is one line naming the plugin or file.
    LocalPluginRefusedError
        ``local_plugins`` is not empty while local plugins are refused.
    """
    local_plugins = list(local_plugins)
    if local_plugins and local_plugins_refused():
        names = ", ".join(str(p) for p in local_plugins)
        raise LocalPluginRefusedError(f"plugin file {names}: {LOCAL_PLUGINS_HINT}")
    manager = pluggy.PluginManager(PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    manager.register(_CoreRunner(), name="aligncore.core")
    sources: dict[str, tuple[str, str]] = {}
    labels: dict[str, str] = {}
    failures: dict[str, str] = {}

    if autoload is None:
        autoload = not _autoload_disabled()
    if autoload:
        _load_entry_points(manager, sources, labels, failures)

    for obj in plugins:
        module = getattr(obj, "__module__", None) or getattr(obj, "__name__", "")
        name = _register(manager, obj, manager.get_canonical_name(obj), f"plugin {module!r}")
        sources[name] = (f"local:{module}", "-")
        labels[name] = f"plugin {module!r}"

    for path in _unique_paths(local_plugins):
        for name in _register_file(manager, path):
            sources[name] = (f"file:{path.name}", "-")
            labels[name] = f"plugin file {path}"

    _check_hook_names(manager, labels)
    manager.check_pending()
    if os.environ.get(TRACE_ENV):
        manager.trace.root.setwriter(lambda text: print(text, end="", file=sys.stderr))
        manager.enable_tracing()

    registry = Registry(manager=manager, failures=failures)
    for kind in STAGE_TABLE.values():
        registry.infos[kind.name] = _collect(manager, kind.name, kind.hook, sources)
    registry.formats = _collect_formats(manager, sources)
    return registry


@functools.cache
def default_registry() -> Registry:
    """The registry of the installed plugins (entry points only), built once per process.

    `aligncore.open_image` uses it when no registry is given; the pipeline and the
    command line pass their own (which include a config's local plugin files).
    """
    return build_registry()


@dataclass(frozen=True)
class FormatInfo:
    """One registered image format."""

    name: str
    cls: type[ImageFormat]
    plugin: str
    distribution: str
    version: str

    @property
    def summary(self) -> str:
        """The first paragraph of the class docstring, as plain text."""
        return _summary(self.cls)


def _collect_formats(manager: pluggy.PluginManager,
                     sources: dict[str, tuple[str, str]]) -> dict[str, FormatInfo]:
    """The ``aligncore_add_formats`` classes by name, sorted by ``(order, name)``."""
    hook_name = "aligncore_add_formats"
    found: dict[str, FormatInfo] = {}
    for impl in manager.hook.aligncore_add_formats.get_hookimpls():
        dist, version = sources.get(impl.plugin_name, (impl.plugin_name, "-"))
        for cls in _stage_classes(impl, hook_name, dist):
            if not (isinstance(cls, type) and issubclass(cls, ImageFormat)):
                raise PluginError(
                    f"plugin {impl.plugin_name!r} ({dist}) returned {cls!r} from {hook_name}; "
                    "expected a subclass of aligncore.ImageFormat")
            if not cls.name:
                raise PluginError(f"{cls.__qualname__} from {dist} has no 'name'")
            other = found.get(cls.name)
            if other is not None and other.cls is not cls:
                raise DuplicatePluginError(
                    f"format name {cls.name!r} is registered twice: by {other.distribution} "
                    f"({other.cls.__module__}.{other.cls.__qualname__}) and by {dist} "
                    f"({cls.__module__}.{cls.__qualname__})")
            found[cls.name] = FormatInfo(cls.name, cls, impl.plugin_name, dist, version)
    return dict(sorted(found.items(), key=lambda item: (item[1].cls.order, item[0])))


def _unique_paths(paths: Iterable[str | Path]) -> list[Path]:
    """The paths in order, each file once (a plugin file named twice is loaded once)."""
    seen: dict[Path, Path] = {}
    for path in map(Path, paths):
        seen.setdefault(path.resolve(), path)
    return list(seen.values())


def _load_entry_points(manager: pluggy.PluginManager, sources: dict[str, tuple[str, str]],
                       labels: dict[str, str], failures: dict[str, str]) -> None:
    """Register the ``aligncore`` entry points; one that fails to import is a warning."""
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        # the distribution's metadata parsed once (``.name`` and ``.version`` parse it each)
        metadata = ep.dist.metadata if ep.dist is not None else None
        dist = metadata["Name"] if metadata is not None else "unknown"
        version = metadata["Version"] if metadata is not None else "unknown"
        label = f"{ep.name} ({dist})"
        if manager.has_plugin(ep.name):
            warnings.warn(f"aligncore plugin {label} skipped: name already registered",
                          stacklevel=3)
            continue
        try:
            module = ep.load()
        except Exception as exc:  # a broken plugin must not stop the others
            failures[label] = f"{type(exc).__name__}: {exc}"
            warnings.warn(
                f"aligncore plugin {label} failed to import and is skipped: "
                f"{type(exc).__name__}: {exc}",
                stacklevel=3,
            )
            continue
        _register(manager, module, ep.name, f"plugin {label}")
        sources[ep.name] = (dist, version)
        labels[ep.name] = f"plugin {label}"


def _stage_classes(impl: Any, hook_name: str, dist: str) -> list[Any]:
    """What one registration hook implementation returns, as a list (`PluginError` if it
    raises or returns something else)."""
    try:
        classes = impl.function()
    except Exception as exc:
        raise PluginError(f"{dist}: {hook_name}() raised {type(exc).__name__}: {exc}") from exc
    if classes is None:
        return []
    if isinstance(classes, type):
        raise PluginError(f"{dist}: {hook_name}() returned the class {classes.__name__}; "
                          f"expected a list of classes: [{classes.__name__}]")
    if not isinstance(classes, list | tuple):
        raise PluginError(f"{dist}: {hook_name}() returned {type(classes).__name__}; "
                          "expected a list of classes")
    return list(classes)


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
        for cls in _stage_classes(impl, hook_name, dist):
            if isinstance(cls, str):  # "name = package.module:Class": imported when used
                name, ref = _parse_lazy(cls, impl.plugin_name, dist, hook_name)
                info = PluginInfo(kind, name, ref, impl.plugin_name, dist, version)
                _add_info(found, info, kind)
                continue
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
            _add_info(found, PluginInfo(kind, cls.name, cls, impl.plugin_name, dist, version),
                      kind)
    return found


def _add_info(found: dict[str, PluginInfo], info: PluginInfo, kind: str) -> None:
    """Add ``info`` unless the same implementation is there; another one of the same
    name is a `DuplicatePluginError`."""
    other = found.get(info.name)
    if other is not None:
        if other.ref is info.ref or other.where == info.where:
            return
        raise DuplicatePluginError(
            f"{kind} plugin name {info.name!r} is registered twice: by "
            f"{other.distribution} ({other.where}) and by {info.distribution} ({info.where})"
        )
    found[info.name] = info


_LAZY_REF = re.compile(r"^\s*([A-Za-z_][\w-]*)\s*=\s*([A-Za-z_][\w.]*):([A-Za-z_]\w*)\s*$")


def _parse_lazy(text: str, plugin: str, dist: str, hook_name: str) -> tuple[str, str]:
    """``"name = package.module:Class"`` as ``(name, "package.module:Class")``."""
    match = _LAZY_REF.match(text)
    if match is None:
        raise PluginError(f"plugin {plugin!r} ({dist}) returned {text!r} from {hook_name}; "
                          "expected a class or 'name = package.module:Class'")
    return match.group(1), f"{match.group(2)}:{match.group(3)}"


@functools.cache
def _resolve(kind: str, name: str, ref: str, dist: str) -> type[Stage]:
    """Import and check a lazily registered stage class (`PluginError` on any problem)."""
    module_name, _, attr = ref.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except Exception as exc:
        raise PluginError(f"{kind} plugin {name!r} ({dist}): cannot import {ref}: "
                          f"{type(exc).__name__}: {exc}") from exc
    base = STAGE_KINDS[kind]
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise PluginError(f"{kind} plugin {name!r} ({dist}): {ref} is not a subclass of "
                          f"aligncore.{base.__name__}")
    if cls.name != name:
        raise PluginError(f"{kind} plugin {name!r} ({dist}): {ref} is named {cls.name!r}")
    if not (isinstance(cls.Params, type) and issubclass(cls.Params, Params)):
        raise PluginError(f"{ref} from {dist}: Params must subclass aligncore.Params")
    return cls


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
