"""YAML configuration -> validated :class:`Config`.

Every problem in a config is reported at once, each with the file and line,
the dotted key, what is allowed, and a "did you mean" for unknown keys and
plugin names. YAML is read with ``safe_load`` only; plugins are named by their
registered short names, never by import path.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from aligncore.config_layers import (
    Locator,
    builtin_label,
    merge_layers,
    resolve_extends,
)
from aligncore.registry import (
    LOCAL_PLUGINS_HINT,
    Registry,
    build_registry,
    local_plugins_refused,
)
from aligncore.stages import STAGE_TABLE, Stage
from aligncore.yaml_guard import YamlRefused, parse_yaml

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "Config",
    "ConfigError",
    "ConfigProblem",
    "Provenance",
    "describe_config",
    "load_config",
    "load_config_and_registry",
    "parse_override",
]

DEFAULT_CONFIG_PATH = Path(__file__).parent / "data" / "default.yaml"
"""The configuration ``aligncore demo`` and ``align(images)`` use (same as configs/default.yaml)."""


def _positive_or_auto(value: float | str) -> float | str:
    """Validator: an angle in arcsec must be > 0 (or the string 'auto')."""
    if isinstance(value, float) and value <= 0:
        raise ValueError("must be > 0 (arcsec) or 'auto'")
    return value


def _plain_file_name(value: str) -> str:
    """Validator: a file name written in the output directory, never a path out of it."""
    if (not value or value in (".", "..") or "/" in value or "\\" in value
            or Path(value).is_absolute() or "\0" in value):
        raise ValueError("must be a plain file name in the output directory, e.g. report.json "
                         "(no directory part, no '..', not absolute)")
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)


class StageChoice(_Section):
    """Which plugin runs a stage, and its parameters."""

    plugin: str = Field(description="Registered plugin name (see `aligncore plugins`).")
    params: dict[str, Any] = Field(default_factory=dict, description="The plugin's parameters.")


class DetectorSection(StageChoice):
    """Source detection (one catalog per image)."""

    plugin: str = Field("daofind", description="Detector plugin (`aligncore plugins`).")
    use_custom_catalogs: bool = Field(
        False, description="Use <name>_cat.ecsv next to an image instead of detecting.")
    catalogs: dict[str, str] = Field(
        default_factory=dict, description="Image file name -> catalog file (relative to the "
        "config file) used instead of detection.")


class MatcherSection(StageChoice):
    """Matching of an image catalog to the reference catalog."""

    plugin: str = Field("hist2d", description="Matcher plugin (`aligncore plugins`).")


class FitterSection(StageChoice):
    """The transform fitted to the matched positions."""

    plugin: str = Field("affine", description="Fitter plugin (`aligncore plugins`).")


class CorrectorSection(StageChoice):
    """The WCS correction."""

    plugin: str = Field("auto", description="A corrector name, or 'auto' to pick by WCS type.")


class DistortionSection(StageChoice):
    """Refinement of each detector's distortion model (after the alignment)."""

    plugin: str = Field("none", description="Distortion refiner: none keeps the nominal "
                        "distortion; poly fits a polynomial correction per detector jointly "
                        "with every image's affine correction (docs/distortion.md).")


class RefcatSection(StageChoice):
    """The absolute reference catalog."""

    plugin: str = Field("gaia", description="Reference-catalog plugin, e.g. gaia or file.")


class AlignSection(_Section):
    """Relative alignment of the images with each other."""

    enforce_user_order: bool = Field(
        False, description="Align in the given order with the first image as reference."
    )
    expand_refcat: bool = Field(
        False, description="Add the unmatched sources of each aligned image to the reference."
    )
    minobj: int = Field(15, ge=1, description="Minimum number of matches for a fit.")
    fallback: list[str] = Field(
        default_factory=list,
        description="Matcher plugins tried, in order, when the configured matcher finds fewer "
        "than minobj matches.",
    )
    groups: dict[str, str] = Field(
        default_factory=dict,
        description="Image file name -> group id; images of one group move as one rigid body.",
    )
    grouping: Literal["exposure", "image"] = Field(
        "exposure",
        description="exposure: the images of one exposure move together (the files' GROUPID, "
        "a JWST meta.group_id or exposure name, an association member's group_id); image: "
        "every image moves alone. align.groups applies in both cases.",
    )
    solver: str = Field(
        "global",
        description="Solver plugin: global refines all corrections simultaneously over every "
        "overlap; sequential is tweakreg's one-by-one alignment (`aligncore plugins`).",
    )
    max_correction: float | Literal["auto"] = Field(
        "auto",
        description="Largest accepted correction at the image corners (arcsec); auto: 1.5 x "
        "the matcher's search reach (its search radius plus any user offset) plus 1\".",
    )
    max_rms_factor: float = Field(
        5.0, gt=0, description="Reject a fit whose residual RMS exceeds this many times the RMS "
        "expected from the centroid errors (and half a pixel).")
    use_weights: bool = Field(
        True, description="Weight fits by 1/sigma^2 of the catalogs' centroid uncertainties "
        "(x_err, y_err); catalogs without them are fitted unweighted. false: tweakreg's "
        "unweighted fits.")
    tangent_point: tuple[float, float] | None = Field(
        None, description="RA, Dec (deg) of the shared tangent plane; default: footprint centre.")
    fit_frame: Literal["sky", "reference_pixels"] = Field(
        "sky", description="Where matches are fitted: sky = the shared tangent plane "
        "(arcsec, North up); reference_pixels = the pixel frame of the first image (its "
        "linear WCS, scaled to arcsec), as tweakwcs fits: with a skewed or anisotropic CD "
        "matrix a rscale/rshift fit differs between the two.")
    overlap: Literal["footprint", "catalog_hull"] = Field(
        "footprint", description="How images are judged to overlap (alignment order and "
        "which pairs the global solver uses): footprint = their WCS footprints; "
        "catalog_hull = the convex hulls of their sources, as tweakwcs.")

    _positive_correction = field_validator("max_correction")(_positive_or_auto)


ABSOLUTE_MATCHER_DEFAULTS: dict[str, Any] = {"searchrad": 6.0, "separation": 1.0,
                                             "tolerance": 0.7}
"""``absolute.matcher.params`` defaults for ``hist2d`` (tweakreg's ``abs_*`` values)."""
ABSOLUTE_FITTER_DEFAULTS: dict[str, Any] = {"fitgeometry": "rshift", "nclip": 3, "sigma": 3.0}
"""``absolute.fitter.params`` defaults for ``affine`` (tweakreg's ``abs_*`` values)."""

ABSOLUTE_ALIASES: dict[str, tuple[str, str]] = {
    **{f"{prefix}{key}": ("matcher", key) for key in ABSOLUTE_MATCHER_DEFAULTS
       for prefix in ("abs_", "")},
    **{f"{prefix}{key}": ("fitter", key) for key in ABSOLUTE_FITTER_DEFAULTS
       for prefix in ("abs_", "")},
}
"""Seed keys of the ``absolute`` section -> (stage, parameter) of ``absolute.matcher`` /
``absolute.fitter``; `load_config` maps them (``abs_searchrad: 6`` is
``absolute.matcher.params.searchrad: 6``)."""


def _layered_defaults(plugin: str, defaults: dict[str, Any]) -> Any:
    """A before-validator: params given for ``plugin`` are layered over ``defaults``."""

    def layer(cls: type, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        params = data.get("params", {})
        if data.get("plugin", plugin) != plugin:
            return {**data, "params": params}  # another plugin: its own defaults
        if isinstance(params, dict):
            data = {**data, "params": {**defaults, **params}}
        return data

    return model_validator(mode="before")(classmethod(layer))


class AbsoluteMatcherSection(MatcherSection):
    """The matcher of the absolute stage (its own choice, independent of ``matcher``).

    For ``hist2d`` the params given are layered over tweakreg's absolute values
    (``searchrad: 6``, ``separation: 1``, ``tolerance: 0.7``); the seed keys
    ``abs_searchrad``, ``abs_separation``, ``abs_tolerance`` set them too.
    """

    params: dict[str, Any] = Field(default_factory=lambda: dict(ABSOLUTE_MATCHER_DEFAULTS),
                                   description="The plugin's parameters.")

    _layer = _layered_defaults("hist2d", ABSOLUTE_MATCHER_DEFAULTS)


class AbsoluteFitterSection(FitterSection):
    """The fitter of the absolute stage (its own choice, independent of ``fitter``).

    For ``affine`` the params given are layered over tweakreg's absolute values
    (``fitgeometry: rshift``, ``nclip: 3``, ``sigma: 3``); the seed keys
    ``abs_fitgeometry``, ``abs_nclip``, ``abs_sigma`` set them too.
    """

    params: dict[str, Any] = Field(default_factory=lambda: dict(ABSOLUTE_FITTER_DEFAULTS),
                                   description="The plugin's parameters.")

    _layer = _layered_defaults("affine", ABSOLUTE_FITTER_DEFAULTS)


class AbsoluteSection(_Section):
    """Alignment of the combined catalog to an absolute reference catalog."""

    enabled: bool = Field(
        False,
        validation_alias=AliasChoices("enabled", "align_to_gaia"),
        description="Align to the reference catalog (seed name: align_to_gaia).",
    )
    refcat: RefcatSection = Field(default_factory=RefcatSection)
    gaia_catalog: str | None = Field(
        None, description="Shortcut for refcat.params.catalog (e.g. GAIADR2, GAIADR3)."
    )
    min_gaia: int = Field(
        5,
        ge=1,
        validation_alias=AliasChoices("min_gaia", "abs_minobj"),
        description="Minimum number of matched reference stars.",
    )
    save_gaia_catalog: bool = Field(
        False,
        validation_alias=AliasChoices("save_gaia_catalog", "save_abs_catalog"),
        description="Write the reference catalog used.",
    )
    matcher: AbsoluteMatcherSection = Field(
        default_factory=lambda: AbsoluteMatcherSection(),
        description="The absolute stage's matcher (see below); the seed keys abs_searchrad, "
        "abs_separation, abs_tolerance (or searchrad, separation, tolerance) here set its "
        "params.")
    fitter: AbsoluteFitterSection = Field(
        default_factory=lambda: AbsoluteFitterSection(),
        description="The absolute stage's fitter (see below); the seed keys abs_fitgeometry, "
        "abs_nclip, abs_sigma (or fitgeometry, nclip, sigma) here set its params.")
    pointing_error: float = Field(
        2.0, ge=0,
        description="Expected absolute pointing error (arcsec): the reference search cone is "
        "the union footprint plus the absolute matcher's search reach plus this.",
    )
    mag_limits: tuple[float | None, float | None] = Field(
        (None, None), description="(brightest, faintest) reference magnitudes used; null: no limit."
    )
    epoch: float | None = Field(
        None, description="Observation epoch (decimal year) of images whose header has none."
    )
    propagate: bool = Field(
        True, description="Move reference positions to each image's epoch with proper motions."
    )
    refcat_pm: Literal["require", "inflate"] = Field(
        "inflate",
        description="Reference stars without proper motion: require = drop them; inflate = keep "
        "them with errors grown by unknown_pm x the epoch difference.",
    )
    unknown_pm: float = Field(
        10.0, ge=0, description="Proper motion (mas/yr per axis) assumed as the uncertainty of "
        "stars without one (refcat_pm: inflate).",
    )
    refcat_cache: Literal["use", "refresh", "off"] | None = Field(
        None, description="Shortcut for refcat.params.cache (use | refresh | off)."
    )
    refcat_cache_dir: str | None = Field(
        None, description="Shortcut for refcat.params.cache_dir."
    )


class OutputSection(_Section):
    """What is written, and where."""

    dir: str = Field("aligned", description="Output directory (relative to the working dir).")
    in_place: bool = Field(False, description="Update the input files themselves.")
    save_catalogs: bool = Field(False, description="Write <name>_cat.<format> per image.")
    catalog_format: Literal["ecsv", "fits", "parquet"] = "ecsv"
    save_combined: bool = Field(
        True, description="Write the merged mosaic catalog as combined_cat.<format>.")
    report: str = Field("report.json", description="Run report file name in the output dir "
                        "(a plain file name: no directory part).")

    _plain_report = field_validator("report")(_plain_file_name)


class ExecutionSection(_Section):
    """How detection is run."""

    executor: Literal["serial", "processes", "dask"] = Field(
        "serial", description="Where detection runs: this process, a process pool, or Dask.")
    workers: int | None = Field(None, ge=1, description="Number of workers (default: cores).")
    address: str | None = Field(None, description="Dask scheduler address (default: a local "
                                "cluster).")
    resume_dir: str | None = Field(
        None, description="Reuse <name>_cat.<format> catalogs found in this directory (set by "
        "`aligncore run --resume` to the output directory).")
    on_error: Literal["raise", "skip"] = Field(
        "raise", description="raise: an unreadable image stops the run before anything is "
        "written; skip: that image is FAILED and the others go on.")


class Config(_Section):
    """A validated aligncore configuration.

    Use :func:`load_config` to read one from YAML; ``Config()`` gives the
    built-in defaults of every stage: the plugins' own defaults (the seed's
    tweakreg values where the seed has the parameter) and aligncore's core
    defaults (weighted fits, the global solver). ``configs/jwst.yaml`` is
    tweakreg exactly; ``configs/default.yaml`` is the recommended set.
    """

    detector: DetectorSection = Field(default_factory=DetectorSection)
    matcher: MatcherSection = Field(default_factory=MatcherSection)
    fitter: FitterSection = Field(default_factory=FitterSection)
    align: AlignSection = Field(default_factory=AlignSection)
    absolute: AbsoluteSection = Field(default_factory=AbsoluteSection)
    distortion: DistortionSection = Field(default_factory=DistortionSection)
    corrector: CorrectorSection = Field(default_factory=CorrectorSection)
    output: OutputSection = Field(default_factory=OutputSection)
    execution: ExecutionSection = Field(default_factory=ExecutionSection)
    plugins: list[str] = Field(
        default_factory=list, description="Local plugin .py files (relative to the config "
        "file). They are Python code and run when the config is loaded; refused with "
        "--no-local-plugins or ALIGNCORE_NO_LOCAL_PLUGINS=1."
    )

    extends: str | None = Field(
        None, description="The base this file is layered on: `jwst` (the "
        "tweakreg step's documented defaults), `jwst-3.0` (jwst 3.0.0's TweakRegStep), "
        "`default` (the recommended defaults; also when `extends` is not given), `none` (only "
        "the plugins' own defaults), or a path to another config file (relative to this one). "
        "`aligncore validate CONFIG --show` prints the result and where each value came from.")
    source: str | None = Field(None, exclude=True, description="File the config was read from.")
    _provenance: Any = PrivateAttr(None)

    def plugin_files(self) -> list[Path]:
        """Local plugin files, resolved relative to the config file."""
        return [self.resolve(p) for p in self.plugins]

    def resolve(self, path: str | Path) -> Path:
        """A path named in the config, relative to the config file."""
        base = Path(self.source).parent if self.source else Path.cwd()
        return Path(path) if Path(path).is_absolute() else base / path

    def stage_choice(self, kind: str, section: str | None = None) -> StageChoice:
        """The section selecting the plugin for a stage kind.

        Parameters
        ----------
        kind : str
            A stage kind (``detector``, ``matcher``, ...).
        section : str, optional
            Dotted path of the section (e.g. ``"absolute.matcher"``); default: the
            kind's own section (``absolute.refcat`` for ``refcatalog``).
        """
        if section is None:
            section = STAGE_TABLE[kind].section
        choice: Any = self
        for part in section.split("."):
            choice = getattr(choice, part)
        return StageChoice(plugin=choice) if isinstance(choice, str) else choice

    def build_stage(self, kind: str, registry: Registry, name: str | None = None, *,
                    section: str | None = None) -> Stage:
        """Instantiate the configured plugin (or plugin ``name``) for a stage kind.

        Parameters
        ----------
        kind : str
            A stage kind.
        registry : Registry
            Where the plugin classes are registered.
        name : str, optional
            Another plugin of that kind (built with its default params), e.g. a
            fallback matcher.
        section : str, optional
            The config section choosing the plugin (see `stage_choice`), e.g.
            ``"absolute.matcher"``.
        """
        choice = self.stage_choice(kind, section)
        name = name or choice.plugin
        params = choice.params if name == choice.plugin else {}
        return registry.build(kind, name, params)


# --- problems and their formatting -------------------------------------------------


@dataclass(frozen=True)
class ConfigProblem:
    """One problem found in a config."""

    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigError(ValueError):
    """A config has problems; ``problems`` lists all of them."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        header = f"{count} problem{'s' if count != 1 else ''} in the configuration:"
        super().__init__("\n".join([header, *(f"  {p}" for p in self.problems)]))


_Locator = Locator


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"matcher.params.tolerance=0.5"`` -> (``["matcher", "params", "tolerance"]``, 0.5)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        example = "expected KEY=VALUE, e.g. matcher.params.tolerance=0.5"
        raise ConfigError([ConfigProblem("--set", None, text, example)])
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as exc:
        problem = ConfigProblem("--set", None, key, f"cannot parse value: {exc}")
        raise ConfigError([problem]) from exc
    return key.strip().split("."), parsed


def _apply_override(data: dict[str, Any], path: list[str], value: Any) -> None:
    node = data
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[path[-1]] = value


def _allowed_fields(model: type[BaseModel]) -> list[str]:
    names = []
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        names.append(name)
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.extend(str(a) for a in alias.choices if a != name)
    return names


def _model_at(model: type[BaseModel], path: Sequence[Any]) -> type[BaseModel] | None:
    """The pydantic model that owns the key at ``path`` (for suggestions)."""
    current: type[BaseModel] = model
    for part in path:
        field = current.model_fields.get(str(part))
        annotation = field.annotation if field else None
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            current = annotation
        else:
            return None
    return current


def _unknown_key_message(key: str, allowed: Iterable[str]) -> str:
    allowed = sorted(allowed)
    message = "unknown key"
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if close:
        message += f"; did you mean {close[0]!r}?"
    return message + f" Allowed: {', '.join(allowed)}."


def _describe_error(error: Any, model: type[BaseModel] | None) -> str:
    if model is not None:
        return _unknown_key_message(str(error["loc"][-1]), _allowed_fields(model))
    return "unknown key"


def _collect_validation(
    exc: ValidationError,
    model: type[BaseModel],
    prefix: Sequence[str],
    locator: _Locator,
    origins: Mapping[tuple[str, ...], str],
) -> list[ConfigProblem]:
    """One problem per offending key; the branches of a union (float | 'auto') are joined."""
    grouped: dict[tuple[str, ...], list[Any]] = {}
    for error in exc.errors(include_url=False):
        loc = tuple(str(p) for p in error["loc"] if not _is_union_tag(p))
        grouped.setdefault(loc, []).append(error)
    problems = []
    for loc, errors in grouped.items():
        full = (*prefix, *loc)
        if errors[0]["type"] == "extra_forbidden":
            message = _describe_error(errors[0], _model_at(model, loc[:-1]))
        else:
            parts = []
            for error in errors:
                text = str(error["msg"]).removeprefix("Value error, ")
                if parts and parts[0].startswith("Input should be "):
                    text = text.removeprefix("Input should be ")
                if text not in parts:
                    parts.append(text)
            message = " or ".join(parts)
            if errors[0]["type"] != "missing" and not isinstance(errors[0].get("input"), dict):
                message += f" (got {errors[0].get('input')!r})"
        problems.append(ConfigProblem(*_where(full, locator, origins), ".".join(full), message))
    return problems


def _where(path: Sequence[str], locator: _Locator,
           origins: Mapping[tuple[str, ...], str]) -> tuple[str, int | None]:
    """File and line a key came from (``--set``: no line)."""
    key = tuple(path)
    if key in origins:
        return origins[key], None
    return locator.file_of(key), locator.line(key)


def _is_union_tag(part: Any) -> bool:
    """Pydantic names union branches in error locations ('constrained-float', "literal['auto']")."""
    text = str(part)
    return text in ("float", "int", "str", "bool", "none") or any(c in text for c in "-[(")


def _check_stage(
    kind: str,
    section_path: tuple[str, ...],
    raw: Mapping[str, Any],
    registry: Registry,
    locator: _Locator,
    origins: Mapping[tuple[str, ...], str],
    *,
    plugin_key: bool = True,
) -> list[ConfigProblem]:
    """Plugin name exists and its params validate against the plugin's Params model.

    ``plugin_key=False``: the section itself is the plugin name (``align.solver``).
    """
    name = raw.get("plugin")
    params = raw.get("params") or {}
    if not isinstance(name, str):
        return []
    if kind == "corrector" and name == "auto":
        return []
    plugin_path = (*section_path, "plugin") if plugin_key else section_path
    if name not in registry.names(kind):
        return [ConfigProblem(*_where(plugin_path, locator, origins), ".".join(plugin_path),
                              registry.not_found_message(kind, name))]
    if not isinstance(params, Mapping):
        return []
    params_model = registry.get(kind, name).Params
    try:
        params_model(**params)
    except ValidationError as exc:
        return _collect_validation(exc, params_model, (*section_path, "params"), locator, origins)
    return []


def _merge_aliases(data: dict[str, Any], origins: Mapping[tuple[str, ...], str],
                   locator: _Locator) -> list[ConfigProblem]:
    """Resolve a setting given under two of its names (e.g. enabled and align_to_gaia).

    A ``--set`` override wins over the file; two names in the file are a problem.
    """
    problems = []
    for section, field in Config.model_fields.items():
        model = field.annotation
        values = data.get(section)
        if not (isinstance(model, type) and issubclass(model, BaseModel)
                and isinstance(values, dict)):
            continue
        for name, sub_field in model.model_fields.items():
            alias = sub_field.validation_alias
            if not isinstance(alias, AliasChoices):
                continue
            given = [str(a) for a in alias.choices if str(a) in values]
            if len(given) < 2:
                continue
            overridden = [g for g in given if (section, g) in origins]
            if overridden:
                for other in given:
                    if other != overridden[-1]:
                        values.pop(other)
                continue
            key = (section, given[1])
            problems.append(ConfigProblem(
                locator.file_of(key), locator.line(key), ".".join(key),
                f"{' and '.join(repr(g) for g in given)} are two names of the same setting "
                f"({name}); give only one"))
            for other in given[1:]:
                values.pop(other)
    return problems


def _absolute_aliases(data: dict[str, Any], origins: Mapping[tuple[str, ...], str],
                      locator: _Locator) -> list[ConfigProblem]:
    """Move the seed keys of ``absolute`` (`ABSOLUTE_ALIASES`) into the params of
    ``absolute.matcher`` / ``absolute.fitter``.

    A setting given twice (two seed names, or a seed name and the params key) is a
    problem, unless one of them is a ``--set`` override, which wins.
    """
    section = data.get("absolute")
    if not isinstance(section, dict):
        return []
    problems = []
    given: dict[tuple[str, str], str] = {}
    for alias, (stage, key) in ABSOLUTE_ALIASES.items():
        if alias not in section:
            continue
        value = section.pop(alias)
        choice = section.setdefault(stage, {})
        params = choice.setdefault("params", {}) if isinstance(choice, dict) else None
        if not isinstance(params, dict):
            continue  # the section itself is wrong: validation reports it
        target = ("absolute", stage, "params", key)
        earlier = given.get((stage, key))
        name = earlier or ".".join(target[1:])
        if (earlier is not None or key in params) and ("absolute", alias) not in origins:
            if target in origins or ("absolute", earlier) in origins:
                continue  # the other name came from --set: it wins
            problems.append(ConfigProblem(
                locator.file_of(("absolute", alias)), locator.line(("absolute", alias)),
                f"absolute.{alias}",
                f"'{name}' and '{alias}' are two names of the same setting "
                f"(absolute.{stage}.params.{key}); give only one"))
            continue
        params[key] = value
        given[(stage, key)] = alias
        locator.rename(("absolute", alias), target)
    return problems


def _local_plugin_problems(config: Config | None, locator: _Locator,
                           origins: Mapping[tuple[str, ...], str]) -> list[ConfigProblem]:
    """Local plugin files that are missing, or refused (they are code that runs)."""
    if config is None:
        return []
    problems = []
    refused = local_plugins_refused()
    for index, (name, path) in enumerate(zip(config.plugins, config.plugin_files(), strict=True)):
        key = ("plugins", str(index))
        file, line = _where(key, locator, origins)
        if ("plugins",) in origins:
            file, line = "--set", None
        if refused:
            shown = name if Path(name) == path else f"{name} ({path})"
            message = f"plugin file {shown} not loaded: {LOCAL_PLUGINS_HINT}"
        elif not path.is_file():
            message = f"plugin file not found: {path} (a local .py file, relative to the config)"
        else:
            continue
        problems.append(ConfigProblem(file, line, ".".join(key), message))
    return problems


def _read_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError([ConfigProblem(str(path), None, "", "file not found")]) from None
    except OSError as exc:
        raise ConfigError([ConfigProblem(str(path), None, "", f"cannot read: {exc}")]) from None
    try:
        return parse_yaml(raw)
    except YamlRefused as exc:
        raise ConfigError([ConfigProblem(str(path), p.line, p.key, p.message)
                           for p in exc.problems]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        message = f"invalid YAML: {problem}"
        raise ConfigError([ConfigProblem(str(path), line, "", message)]) from None


def _layer_problems(path: Path, data: Any, locator: _Locator) -> dict[str, Any]:
    """One file's sections, or ConfigError if it is not a mapping of named sections."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        message = "the config must be a mapping of sections"
        raise ConfigError([ConfigProblem(str(path), 1, "", message)])
    odd_keys = [key for key in data if not isinstance(key, str)]
    if odd_keys:
        raise ConfigError([ConfigProblem(str(path), locator.line((str(k),)), str(k),
                                         "section names must be text; allowed: "
                                         f"{', '.join(_allowed_fields(Config))}")
                           for k in odd_keys])
    return data


def _canonical_names(data: dict[str, Any], locator: _Locator) -> None:
    """Rename a setting given by another of its names (``align_to_gaia``) to its own
    (``enabled``), so that a file and its base agree on the key."""
    for section, field in Config.model_fields.items():
        model, values = field.annotation, data.get(section)
        if not (isinstance(model, type) and issubclass(model, BaseModel)
                and isinstance(values, dict)):
            continue
        for name, sub_field in model.model_fields.items():
            alias = sub_field.validation_alias
            if not isinstance(alias, AliasChoices) or name in values:
                continue
            for other in (str(a) for a in alias.choices):
                if other in values:
                    values[name] = values.pop(other)
                    locator.rename((section, other), (section, name))
                    break


def _paths_from(data: dict[str, Any], base_dir: Path) -> None:
    """Make the file paths of a base config (local plugins, custom catalogs) absolute,
    relative to that base file, so that they keep meaning the same files."""
    def fix(value: Any) -> Any:
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            return str(base_dir / value)
        return value

    if isinstance(data.get("plugins"), list):
        data["plugins"] = [fix(v) for v in data["plugins"]]
    detector = data.get("detector")
    if isinstance(detector, dict) and isinstance(detector.get("catalogs"), dict):
        detector["catalogs"] = {k: fix(v) for k, v in detector["catalogs"].items()}


_STAGE_SECTIONS = {tuple(section.split(".")) for kind in STAGE_TABLE.values()
                   for section in kind.sections}


def _read_layers(path: Path, seen: tuple[Path, ...], problems: list[ConfigProblem],
                 origins: Mapping[tuple[str, ...], str],
                 ) -> tuple[dict[str, Any], _Locator, list[str]]:
    """A config file merged over its base chain (see `aligncore.config_layers`).

    Returns the merged sections, their locator, and the chain of files read (base
    first). Problems of the files are appended to ``problems`` (a setting given
    under two names is none when ``origins``, the ``--set`` keys, overrides it); a
    file that cannot be read, a bad ``extends`` or a cycle raises ConfigError at once.
    """
    raw, node = _read_yaml(path)
    locator = _Locator(str(path), node)
    data = _layer_problems(path, raw, locator)
    if "source" in data:  # set by aligncore (the file read), not a section of the file
        data.pop("source")
        problems.append(ConfigProblem(str(path), locator.line(("source",)), "source",
                                      "unknown section 'source'"))
    default = None if path.resolve() == DEFAULT_CONFIG_PATH.resolve() else "default"
    own_choice = "extends" in data
    extends = data.pop("extends", default)
    try:
        base = resolve_extends(extends, path)
    except ValueError as exc:
        raise ConfigError([ConfigProblem(str(path), locator.line(("extends",)), "extends",
                                         str(exc))]) from None
    problems += _merge_aliases(data, origins, locator)
    problems += _absolute_aliases(data, origins, locator)
    _canonical_names(data, locator)
    if seen:
        _paths_from(data, path.parent)
    chain = [str(path)]
    if not seen and own_choice:
        data["extends"] = extends  # recorded (the file's own choice)
    if base is None:
        return data, locator, chain
    visited = (*seen, path.resolve())
    if base.resolve() in visited:
        cycle = " -> ".join(builtin_label(str(p)) for p in (*visited, base.resolve()))
        raise ConfigError([ConfigProblem(str(path), locator.line(("extends",)), "extends",
                                         f"the configs extend each other in a cycle: {cycle}")])
    base_data, base_locator, base_chain = _read_layers(base, visited, problems, origins)
    merged = merge_layers(base_data, data, base_locator, _STAGE_SECTIONS)
    return merged, locator.layered_on(base_locator), [*base_chain, *chain]


@dataclass(frozen=True)
class Provenance:
    """Where a loaded config's values came from (see `describe_config`)."""

    chain: list[str]
    """The files read, base first."""
    locator: _Locator
    origins: Mapping[tuple[str, ...], str]
    """``--set`` keys."""

    def origin(self, path: Sequence[str]) -> str:
        """``file:line``, ``--set`` or ``default`` for a dotted key of the resolved config."""
        key = tuple(path)
        for depth in range(len(key), 0, -1):
            if key[:depth] in self.origins:
                return "--set"
        return self.locator.origin(key) or "default"


def describe_config(config: Config, registry: Registry | None = None) -> list[str]:
    """The resolved config as YAML-like lines, each value with where it came from.

    Parameters
    ----------
    config : Config
        A config from `load_config` (a ``Config()`` built in code has every value
        ``default``).
    registry : Registry, optional
        With it, a stage's params include its plugin's defaults for the params the
        files do not give.

    Returns
    -------
    list of str
        ``key: value  # origin`` lines, indented by nesting; origin is
        ``file:line``, ``--set`` or ``default``.
    """
    provenance = config._provenance or Provenance([], _Locator("", None), {})
    data = config.model_dump(mode="json", exclude={"source"})
    if registry is not None:
        for kind, stage in STAGE_TABLE.items():
            for section in stage.sections:
                choice = config.stage_choice(kind, section)
                try:
                    params_model = registry.get(kind, choice.plugin).Params
                except LookupError:
                    continue
                node = data
                for part in section.split(".")[:-1]:
                    node = node[part]
                leaf = section.split(".")[-1]
                if isinstance(node.get(leaf), dict):
                    defaults = params_model().model_dump(mode="json")
                    node[leaf]["params"] = {**defaults, **node[leaf]["params"]}
    lines = [f"# files read (base first): {', '.join(map(builtin_label, provenance.chain))}"
             if provenance.chain else "# no file read"]

    def walk(node: Mapping[str, Any], path: tuple[str, ...]) -> None:
        pad = "  " * len(path)
        for key, value in node.items():
            here = (*path, str(key))
            if isinstance(value, dict) and value:
                lines.append(f"{pad}{key}:")
                walk(value, here)
            else:
                text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
                text = text.removesuffix("\n...").strip()
                lines.append(f"{pad}{key}: {text}  # {provenance.origin(here)}")

    walk(data, ())
    return lines


def load_config(
    path: str | Path | None = None,
    overrides: Iterable[str] = (),
    *,
    registry: Registry | None = None,
) -> Config:
    """Read, merge and validate a YAML config.

    The same as `load_config_and_registry` without the registry; see there.
    """
    return load_config_and_registry(path, overrides, registry=registry)[0]


def load_config_and_registry(
    path: str | Path | None = None,
    overrides: Iterable[str] = (),
    *,
    registry: Registry | None = None,
) -> tuple[Config, Registry]:
    """Read, merge and validate a YAML config; also return the registry it was checked with.

    A caller that needs the plugins as well takes this registry rather than
    building a second one (which would run the config's local plugin files again).

    Parameters
    ----------
    path : path, optional
        YAML file; None uses the built-in default config (``configs/default.yaml``).
    overrides : iterable of str
        ``"dotted.key=value"`` strings applied on top (values parsed as YAML),
        e.g. ``"matcher.params.tolerance=0.5"``.
    registry : Registry, optional
        Plugin registry used to check plugin names and parameters; built
        (with the config's local plugin files) if not given.

    Returns
    -------
    config : Config
    registry : Registry
        ``registry`` if given, else the one built from the installed plugins and the
        config's local plugin files.

    Raises
    ------
    ConfigError
        With every problem found (file:line, key, message).
    """
    path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    parsed = [parse_override(text) for text in overrides]
    origins: dict[tuple[str, ...], str] = {tuple(keys): "--set" for keys, _ in parsed}
    problems: list[ConfigProblem] = []
    data, locator, chain = _read_layers(path, (), problems, origins)
    for keys, value in parsed:
        _apply_override(data, keys, value)

    if ("extends",) in origins:  # the base is chosen before any override applies
        data.pop("extends", None)
        problems.append(ConfigProblem("--set", None, "extends", "the base of a config cannot "
                                      "be set with --set; write `extends:` in the config file"))
    if "source" in data:  # set by aligncore (the file read), not a section
        data.pop("source")
        problems.append(ConfigProblem("--set", None, "source", "unknown section 'source'"))
    problems += _merge_aliases(data, origins, locator)
    problems += _absolute_aliases(data, origins, locator)
    try:
        config = Config(**data, source=str(path))
        config._provenance = Provenance(chain, locator, origins)
    except ValidationError as exc:
        problems.extend(_collect_validation(exc, Config, (), locator, origins))
        config = None

    plugin_problems = _local_plugin_problems(config, locator, origins)
    problems.extend(plugin_problems)
    if registry is None:
        plugin_files = []
        if config is not None and not plugin_problems:
            plugin_files = config.plugin_files()
        registry = build_registry(plugin_files)

    absolute = data.get("absolute") if isinstance(data.get("absolute"), dict) else {}
    absolute_on = absolute.get("enabled", absolute.get("align_to_gaia", False))
    sections = [(kind, tuple(section.split("."))) for kind in STAGE_TABLE
                for section in STAGE_TABLE[kind].sections
                if absolute_on or not section.startswith("absolute.")]
    for kind, section_path in sections:
        raw: Any = data
        for part in section_path:
            raw = raw.get(part, {}) if isinstance(raw, dict) else {}
        if isinstance(raw, str):  # a section that is just the plugin name (align.solver)
            problems.extend(_check_stage(kind, section_path, {"plugin": raw}, registry,
                                         locator, origins, plugin_key=False))
            continue
        if not isinstance(raw, dict):
            continue
        if config is not None:  # the validated section: defaults and layered params included
            choice = config.stage_choice(kind, ".".join(section_path))
            raw = {**raw, "plugin": raw.get("plugin", choice.plugin),
                   "params": choice.params if isinstance(raw.get("params", {}), dict)
                   else raw["params"]}
        problems.extend(_check_stage(kind, section_path, raw, registry, locator, origins))

    align = data.get("align") if isinstance(data.get("align"), dict) else {}
    fallback = align.get("fallback")
    for index, name in enumerate(fallback if isinstance(fallback, list) else []):
        if isinstance(name, str) and name not in registry.names("matcher"):
            key = ("align", "fallback", str(index))
            problems.append(ConfigProblem(*_where(key, locator, origins), ".".join(key),
                                          registry.not_found_message("matcher", name)))

    if problems or config is None:
        raise ConfigError(sorted(problems, key=lambda p: (p.file != str(path), p.line or 0)))
    _refcat_shortcuts(config, registry)
    return config, registry


def _refcat_shortcuts(config: Config, registry: Registry) -> None:
    """Apply ``absolute.gaia_catalog`` / ``refcat_cache`` / ``refcat_cache_dir`` to the
    reference catalog's params (where its plugin has that parameter and it is not given)."""
    section = config.absolute
    shortcuts = {"catalog": section.gaia_catalog, "cache": section.refcat_cache,
                 "cache_dir": section.refcat_cache_dir}
    if all(value is None for value in shortcuts.values()):
        return  # nothing to apply: the plugin's module is not imported for nothing
    try:
        fields = registry.get("refcatalog", section.refcat.plugin).Params.model_fields
    except LookupError:  # absolute alignment off and its plugin not installed: nothing to do
        return
    for key, value in shortcuts.items():
        if value is not None and key in fields:
            section.refcat.params.setdefault(key, value)


def _default_text(field: Any) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "see below"
    return f"`{value!r}`" if value not in ({}, []) else f"`{value}`"


def render_config_reference() -> str:
    """Markdown tables of every config section (docs/config-reference.md)."""
    lines = ["# Config reference", "",
             "Generated by `aligncore config-reference` from `aligncore/config.py`; do not edit.",
             "Stage parameters (`params:`) belong to the plugins: `aligncore params NAME`.", ""]
    sections = [(name, field.annotation) for name, field in Config.model_fields.items()
                if name != "source"]
    at = sections.index(("absolute", AbsoluteSection)) + 1
    sections[at:at] = [("absolute.refcat", RefcatSection),
                       ("absolute.matcher", AbsoluteMatcherSection),
                       ("absolute.fitter", AbsoluteFitterSection)]
    for name, model in sections:
        lines.append(f"## `{name}`")
        lines.append("")
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            field = Config.model_fields[name]
            lines += [field.description or "", ""]
            continue
        doc = (model.__doc__ or "").strip().splitlines()
        if doc:
            lines += [doc[0], ""]
        lines += ["| key | default | meaning |", "|---|---|---|"]
        for key, field in model.model_fields.items():
            alias = field.validation_alias
            names = [key]
            if isinstance(alias, AliasChoices):
                names += [str(a) for a in alias.choices if a != key]
            label = " / ".join(f"`{n}`" for n in names)
            description = (field.description or "").replace("|", "\\|")
            lines.append(f"| {label} | {_default_text(field)} | {description} |")
        lines.append("")
    return "\n".join(lines)
