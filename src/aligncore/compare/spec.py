"""Comparison specs: YAML -> validated variants and datasets, expanded into runs.

A spec names *variants* (a base config plus overrides, local plugin files
allowed) and *datasets* (simulated scenarios with seeds and parameter sweeps,
or directories of images). Every problem of a spec is reported at once with
the file and line, like the main config; a variant whose config or overrides
do not validate is reported with the spec line of the offending override.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from aligncore.config import (
    Config,
    ConfigError,
    ConfigProblem,
    _collect_validation,
    _Locator,
    _read_yaml,
    _Section,
    _unknown_key_message,
    load_config,
)

__all__ = [
    "Case",
    "CompareSpecError",
    "Comparison",
    "Variant",
    "load_spec",
]

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$"
_NOT_SIMULATION_KEYS = ("seed", "outdir")


class CompareSpecError(ConfigError):
    """A comparison spec has problems; ``problems`` lists all of them."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        super().__init__(problems)
        count = len(self.problems)
        header = f"{count} problem{'s' if count != 1 else ''} in the comparison spec:"
        self.args = ("\n".join([header, *(f"  {p}" for p in self.problems)]),)


# --- the YAML schema -------------------------------------------------------------------
Overrides = dict[str, Any] | list[str]


class BaseSection(_Section):
    """What every variant starts from."""

    config: str = Field(
        "default", description="Config file (relative to the spec) or 'default'.")
    set: Overrides = Field(
        default_factory=dict,
        description="Overrides applied to every variant: {dotted.key: value} or ['key=value'].")
    plugins: list[str] = Field(
        default_factory=list, description="Local plugin .py files (relative to the spec).")


class VariantSection(_Section):
    """One algorithm configuration to compare."""

    name: str = Field(pattern=_NAME, description="Short name (letters, digits, _ . + -).")
    description: str = ""
    config: str | None = Field(
        None, description="Config file (relative to the spec) or 'default'; default: base.config.")
    set: Overrides = Field(
        default_factory=dict, description="Overrides applied after base.set.")
    plugins: list[str] = Field(
        default_factory=list, description="More local plugin .py files (relative to the spec).")


class DatasetSection(_Section):
    """A simulated scenario (``simulate``) or a directory of images (``path``)."""

    name: str = Field(pattern=_NAME, description="Short name (letters, digits, _ . + -).")
    description: str = ""
    simulate: dict[str, Any] | None = Field(
        None, description="Keyword arguments of aligncore.simulate (except seed and outdir).")
    sweep: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="simulate parameter -> list of values; every combination is a case.")
    seeds: list[Annotated[int, Field(ge=0)]] | Annotated[int, Field(ge=1)] | None = Field(
        None, description="Seeds (a list, or a count N for 0..N-1); default: the spec's seeds.")
    path: str | None = Field(None, description="Directory of images (relative to the spec).")
    pattern: str = Field("*.fits", description="Image file names in path.")
    truth: bool | Literal["auto"] = Field(
        "auto", description="Read truth.json of a simulated scene in path (auto: if present).")
    refcat: str | None = Field(
        None, description="Reference catalog (ra, dec) scoring the corrected positions.")
    match_radius: float = Field(
        0.5, gt=0, description="Radius (arcsec) matching sources to the reference catalog.")

    @model_validator(mode="after")
    def _one_kind(self) -> DatasetSection:
        if (self.simulate is None) == (self.path is None):
            raise ValueError("give either simulate (a simulated scenario) or path (a directory "
                             "of images)")
        if self.path is not None and self.sweep:
            raise ValueError("sweep applies to simulated datasets only")
        return self


class MetricsSection(_Section):
    """How runs are scored."""

    grid: int = Field(16, ge=2, description="Errors are evaluated on grid x grid pixels.")
    memory: bool = Field(
        True, description="Measure peak memory (tracemalloc) in a second, untimed run.")


class SpecModel(_Section):
    """The top level of a comparison spec."""

    name: str | None = Field(None, description="Title of the comparison (default: file name).")
    description: str = ""
    base: BaseSection = Field(default_factory=BaseSection)
    variants: list[VariantSection] = Field(min_length=1)
    datasets: list[DatasetSection] = Field(min_length=1)
    seeds: list[Annotated[int, Field(ge=0)]] | Annotated[int, Field(ge=1)] = Field(
        default_factory=lambda: [0], description="Default seeds of simulated datasets.")
    baseline: str | None = Field(
        None, description="Variant the others' WCS are compared with (default: the first).")
    metrics: MetricsSection = Field(default_factory=MetricsSection)


# --- resolved objects ----------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    """A resolved variant: what a worker needs to rebuild its config.

    Attributes
    ----------
    name : str
    config_path : str or None
        Base config file; None for the built-in default.
    overrides : tuple of str
        ``key=value`` overrides given to `aligncore.load_config`.
    config : dict
        The validated config (``model_dump``), for the record.
    plugin_hashes : dict
        Local plugin file -> SHA-256 of its content.
    """

    name: str
    config_path: str | None
    overrides: tuple[str, ...]
    config: dict[str, Any] = field(compare=False)
    plugin_hashes: dict[str, str] = field(default_factory=dict, compare=False)
    description: str = ""

    def load(self) -> Config:
        """Validate the config again (in a worker process)."""
        return load_config(self.config_path, self.overrides)


@dataclass(frozen=True)
class Case:
    """One scene of one dataset: a sweep combination and a seed (simulated), or a directory.

    Attributes
    ----------
    dataset : str
    kind : {"simulate", "images"}
    params : dict
        simulate keyword arguments (without seed), or ``path, pattern, truth, refcat,
        match_radius`` for a directory.
    sweep : dict
        The swept parameters and their values in this case.
    seed : int or None
    """

    dataset: str
    kind: str
    params: dict[str, Any]
    sweep: dict[str, Any]
    seed: int | None

    @property
    def label(self) -> str:
        """``pointing_error=2,n_stars=100`` (``-`` without a sweep)."""
        if not self.sweep:
            return "-"
        return ",".join(f"{k}={_short(v)}" for k, v in self.sweep.items())

    @property
    def key(self) -> str:
        """Path-safe identifier of the scene within the comparison."""
        case = re.sub(r"[^A-Za-z0-9_.=,+-]", "_", self.label) if self.sweep else "base"
        seed = "" if self.seed is None else f"/s{self.seed}"
        return f"{self.dataset}/{case}{seed}"


@dataclass(frozen=True)
class Comparison:
    """A validated comparison spec.

    Attributes
    ----------
    name : str
    source : Path
        The spec file.
    text : str
        Its exact content (written next to the results).
    variants : list of Variant
    cases : list of Case
        Every scene, in spec order.
    baseline : str
        Variant the others are compared with when there is no truth.
    grid : int
    memory : bool
    spec : dict
        The parsed spec (``model_dump``).
    """

    name: str
    source: Path
    text: str
    variants: list[Variant]
    cases: list[Case]
    baseline: str
    grid: int
    memory: bool
    spec: dict[str, Any]
    sweeps: dict[str, list[str]] = field(default_factory=dict)

    @property
    def n_runs(self) -> int:
        return len(self.variants) * len(self.cases)

    def variant(self, name: str) -> Variant:
        return next(v for v in self.variants if v.name == name)


def _short(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list | tuple):
        if len(value) == 2 and value[0] == value[1]:
            return _short(value[0])
        return "-".join(_short(v) for v in value)
    return str(value)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- building ------------------------------------------------------------------------
class _Builder:
    """Collects problems while resolving a parsed spec."""

    def __init__(self, path: Path, locator: _Locator) -> None:
        self.path = path
        self.locator = locator
        self.problems: list[ConfigProblem] = []

    def add(self, key: Sequence[Any], message: str) -> None:
        keys = [str(k) for k in key]
        self.problems.append(
            ConfigProblem(str(self.path), self.locator.line(keys), ".".join(keys), message))

    def resolve(self, name: str) -> Path:
        path = Path(name).expanduser()
        return path if path.is_absolute() else (self.path.parent / path).resolve()


def _override_strings(overrides: Overrides) -> list[str]:
    if isinstance(overrides, list):
        return list(overrides)
    return [f"{key}={json.dumps(value)}" for key, value in overrides.items()]


def _override_keys(overrides: Overrides) -> list[str]:
    if isinstance(overrides, list):
        return [text.partition("=")[0].strip() for text in overrides]
    return list(overrides)


def _config_plugins(config_path: Path | None) -> list[str]:
    """The ``plugins:`` of a config file, made absolute (invalid content: none)."""
    if config_path is None:
        return []
    try:
        data = yaml.safe_load(config_path.read_text())
    except (OSError, yaml.YAMLError):
        return []
    plugins = data.get("plugins") if isinstance(data, dict) else None
    if not isinstance(plugins, list):
        return []
    return [str(p if Path(p).is_absolute() else (config_path.parent / p).resolve())
            for p in plugins if isinstance(p, str)]


def _build_variant(b: _Builder, model: SpecModel, index: int) -> Variant | None:
    section = model.variants[index]
    where = ("variants", index)
    config_name = section.config if section.config is not None else model.base.config
    config_key = (*where, "config") if section.config is not None else ("base", "config")
    config_path = None if config_name == "default" else b.resolve(config_name)
    if config_path is not None and not config_path.is_file():
        b.add(config_key, f"config file not found: {config_path}")
        return None
    plugins: list[str] = []
    ok = True
    for key, names in (("base", model.base.plugins), (where, section.plugins)):
        prefix = (key,) if isinstance(key, str) else key
        for k, name in enumerate(names):
            path = b.resolve(name)
            if not path.is_file():
                b.add((*prefix, "plugins", k), f"plugin file not found: {path}")
                ok = False
            plugins.append(str(path))
    if not ok:
        return None
    plugins = _config_plugins(config_path) + plugins
    overrides = [f"plugins={json.dumps(plugins)}"] if plugins else []
    overrides += _override_strings(model.base.set) + _override_strings(section.set)
    path_text = None if config_path is None else str(config_path)
    try:
        config = load_config(path_text, overrides)
    except ConfigError as exc:
        for problem in exc.problems:
            b.problems.append(_relocate(b, problem, model, index))
        return None
    hashes = {p: file_sha256(Path(p)) for p in plugins}
    from aligncore.registry import build_registry

    failures = build_registry(config.plugin_files()).failures
    for label, message in failures.items():
        if label in plugins:
            b.add((*where, "plugins"), f"plugin file {label} failed to import: {message}")
            return None
    return Variant(
        name=section.name,
        config_path=path_text,
        overrides=tuple(overrides),
        config=config.model_dump(mode="json"),
        plugin_hashes=hashes,
        description=section.description,
    )


def _relocate(b: _Builder, problem: ConfigProblem, model: SpecModel, index: int) -> ConfigProblem:
    """A config problem caused by an override points at that override in the spec."""
    name = model.variants[index].name
    if problem.file != "--set":
        return ConfigProblem(problem.file, problem.line, problem.key,
                             f"{problem.message} (variant {name!r})")
    for section_key, overrides in (
        (("variants", index, "set"), model.variants[index].set),
        (("base", "set"), model.base.set),
    ):
        keys = _override_keys(overrides)
        for k, key in enumerate(keys):
            if problem.key == key or problem.key.startswith(key + "."):
                item = key if isinstance(overrides, dict) else k
                path = [str(p) for p in (*section_key, item)]
                return ConfigProblem(str(b.path), b.locator.line(path),
                                     f"{'.'.join(str(p) for p in section_key)}.{problem.key}",
                                     f"{problem.message} (variant {name!r})")
    return ConfigProblem(str(b.path), b.locator.line(["variants", str(index)]),
                         f"variants.{index}.{problem.key}", f"{problem.message} (variant {name!r})")


def _simulate_defaults() -> dict[str, Any]:
    from aligncore.sim import simulate

    return {name: p.default for name, p in inspect.signature(simulate).parameters.items()
            if name not in _NOT_SIMULATION_KEYS}


def _normalise_sim_value(name: str, value: Any) -> Any:
    if name == "pointing_error" and isinstance(value, int | float) and not isinstance(value, bool):
        return (float(value), float(value))
    if name in ("pointing_error", "shape") and isinstance(value, list):
        return tuple(value)
    return value


def _check_sim_keys(b: _Builder, where: tuple[Any, ...], keys: Sequence[str],
                    allowed: Sequence[str]) -> bool:
    ok = True
    for key in keys:
        if key not in allowed:
            message = _unknown_key_message(key, allowed)
            if key in _NOT_SIMULATION_KEYS:
                message = ("seeds are given with 'seeds'" if key == "seed"
                           else "scenes are simulated in memory")
            b.add((*where, key), message)
            ok = False
    return ok


def _simulated_cases(b: _Builder, model: SpecModel, index: int) -> list[Case]:
    from aligncore.sim.scene import check_parameters

    section = model.datasets[index]
    where = ("datasets", index)
    defaults = _simulate_defaults()
    fixed = dict(section.simulate or {})
    ok = _check_sim_keys(b, (*where, "simulate"), list(fixed), list(defaults))
    ok &= _check_sim_keys(b, (*where, "sweep"), list(section.sweep), list(defaults))
    for key, values in section.sweep.items():
        if not values:
            b.add((*where, "sweep", key), "give at least one value")
            ok = False
    if not ok:
        return []
    seeds = section.seeds if section.seeds is not None else model.seeds
    seeds = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    names = list(section.sweep)
    cases = []
    for combo in itertools.product(*(section.sweep[n] for n in names)):
        params = {**defaults, **fixed, **dict(zip(names, combo, strict=True))}
        params = {k: _normalise_sim_value(k, v) for k, v in params.items()}
        try:
            checked = check_parameters({**params, "seed": seeds[0]})
        except ValueError as exc:
            bad = str(exc).split(" ", 1)[0].split("[", 1)[0]
            key = (*where, "sweep", bad) if bad in section.sweep else (*where, "simulate", bad)
            b.add(key, str(exc))
            return []
        given = {k: checked[k] for k in (*fixed, *names)}
        sweep = {n: _plain(checked[n]) for n in names}
        for seed in seeds:
            cases.append(Case(section.name, "simulate", _plain(given), sweep, seed))
    return cases


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively (JSON-like)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _image_case(b: _Builder, model: SpecModel, index: int) -> list[Case]:
    section = model.datasets[index]
    where = ("datasets", index)
    assert section.path is not None
    directory = b.resolve(section.path)
    if not directory.is_dir():
        b.add((*where, "path"), f"directory not found: {directory}")
        return []
    if not sorted(directory.glob(section.pattern)):
        b.add((*where, "pattern"), f"no file matches {section.pattern!r} in {directory}")
        return []
    has_truth = (directory / "truth.json").is_file()
    if section.truth is True and not has_truth:
        b.add((*where, "truth"), f"no truth.json in {directory}")
        return []
    refcat = None
    if section.refcat is not None:
        refcat = b.resolve(section.refcat)
        if not refcat.is_file():
            b.add((*where, "refcat"), f"reference catalog not found: {refcat}")
            return []
    params = {
        "path": str(directory),
        "pattern": section.pattern,
        "truth": bool(has_truth and section.truth is not False),
        "refcat": None if refcat is None else str(refcat),
        "match_radius": section.match_radius,
    }
    return [Case(section.name, "images", params, {}, None)]


def _check_unique(b: _Builder, kind: str, names: Sequence[str]) -> None:
    seen: set[str] = set()
    for index, name in enumerate(names):
        if name in seen:
            b.add((kind, index, "name"), f"duplicate name {name!r}")
        seen.add(name)


def load_spec(path: str | Path) -> Comparison:
    """Read and validate a comparison spec.

    Parameters
    ----------
    path : path
        The YAML spec. Config files, plugin files and image directories named
        in it are relative to it.

    Returns
    -------
    Comparison

    Raises
    ------
    CompareSpecError
        With every problem found (file:line, key, message), including those of
        each variant's config and overrides.
    """
    path = Path(path)
    try:
        data, node = _read_yaml(path)
    except ConfigError as exc:
        raise CompareSpecError(exc.problems) from None
    locator = _Locator(str(path), node)
    builder = _Builder(path, locator)
    if not isinstance(data, dict):
        builder.add((), "the spec must be a mapping with variants and datasets")
        raise CompareSpecError(builder.problems)
    try:
        model = SpecModel(**data)
    except ValidationError as exc:
        raise CompareSpecError(_collect_validation(exc, SpecModel, (), locator, {})) from None

    _check_unique(builder, "variants", [v.name for v in model.variants])
    _check_unique(builder, "datasets", [d.name for d in model.datasets])
    names = [v.name for v in model.variants]
    if model.baseline is not None and model.baseline not in names:
        builder.add(("baseline",), f"no variant named {model.baseline!r}; variants: "
                    + ", ".join(names))
    variants = [_build_variant(builder, model, i) for i in range(len(model.variants))]
    cases: list[Case] = []
    for index, dataset in enumerate(model.datasets):
        if dataset.simulate is not None:
            cases.extend(_simulated_cases(builder, model, index))
        else:
            cases.extend(_image_case(builder, model, index))
    if builder.problems:
        problems = sorted(builder.problems, key=lambda p: (p.file != str(path), p.line or 0))
        raise CompareSpecError(problems)
    return Comparison(
        name=model.name or path.stem,
        source=path.resolve(),
        text=path.read_text(),
        variants=[v for v in variants if v is not None],
        cases=cases,
        baseline=model.baseline or names[0],
        grid=model.metrics.grid,
        memory=model.metrics.memory,
        spec=model.model_dump(mode="json"),
        sweeps={d.name: list(d.sweep) for d in model.datasets},
    )

