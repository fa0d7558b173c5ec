"""Stage base classes: what a detector, matcher, fitter, reference catalog or
WCS corrector must provide.

A stage is a plain class. It is usable without the pipeline or pluggy::

    fitter = AffineFitter(fitgeometry="rshift")
    fit = fitter.fit(image_xy, ref_xy)

Each class declares

- ``name``: the short name configs use to pick it (``detector: {plugin: daofind}``);
- ``Params``: a :class:`Params` model with typed, documented, validated parameters;
- the stage method (``detect``, ``match``, ``fit``, ``query`` or ``correct``).

Parameters are validated eagerly when the stage is constructed; a bad value
raises :class:`pydantic.ValidationError` naming the parameter.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from aligncore.errors import InputError
from aligncore.types import (
    AlignImage,
    DistortionResult,
    DistortionSettings,
    FitResult,
    MatchResult,
    SolverResult,
    SolverSettings,
)

if TYPE_CHECKING:  # astropy.coordinates and astropy.table load on first use (fast import)
    from pathlib import Path

    from astropy.coordinates import Angle, SkyCoord
    from astropy.table import QTable
    from astropy.time import Time

    from aligncore.types import ImageResult

__all__ = [
    "STAGE_KINDS",
    "STAGE_TABLE",
    "Corrector",
    "Detector",
    "DistortionRefiner",
    "Fitter",
    "ImageFormat",
    "Matcher",
    "Params",
    "RefCatalog",
    "Solver",
    "Stage",
    "StageKind",
    "render_stage_table",
    "require_fit_types",
    "require_query_types",
    "require_tables",
    "require_type",
]


class Params(BaseModel):
    """Base class of every stage's parameter model.

    Subclass it inside a stage as ``class Params(Params): ...`` with one typed
    field per parameter; use ``pydantic.Field(default, description=..., ge=...)``
    so that ``aligncore params NAME`` can document it. Unknown parameters are
    rejected.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class Stage(ABC):  # noqa: B024 (abstract through its subclasses)
    """Common behaviour of all stages.

    Parameters
    ----------
    params : Params or dict, optional
        A ready parameter model or a mapping of parameter values.
    **kwargs
        Parameter values (merged over ``params``).
    """

    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""
    Params: ClassVar[type[Params]] = Params

    def __init__(self, params: Params | dict[str, Any] | None = None, **kwargs: Any) -> None:
        if isinstance(params, Params):
            values = params.model_dump()
        else:
            values = dict(params or {})
        values.update(kwargs)
        self.params = self.Params(**values)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.model_dump().items())
        return f"{type(self).__name__}({args})"

    def provenance(self) -> dict[str, Any]:
        """Stage, plugin name, plugin version and parameters, for table ``meta``."""
        module = type(self).__module__.split(".")[0]
        version = getattr(__import__(module), "__version__", None)
        return {
            "stage": self.kind,
            "plugin": self.name,
            "plugin_version": version,
            "params": self.params.model_dump(mode="json"),
        }


class Detector(Stage):
    """Finds point-like sources in an image.

    ``detect`` returns a `~astropy.table.QTable` with at least the columns
    ``id``, ``x``, ``y`` (0-based pixels) and ``flux``; optional columns include
    ``x_err``, ``y_err``, ``flux_err``, ``peak``, ``sharpness``, ``roundness1``,
    ``roundness2`` and ``snr`` (see `aligncore.types`). When nothing is found it
    returns an empty table with those columns (never None) and puts a message
    under ``meta["warnings"]``.
    """

    kind: ClassVar[str] = "detector"

    @abstractmethod
    def detect(self, image: AlignImage) -> QTable:
        """Detect sources in ``image`` (call ``image.load_pixels()`` for the data)."""


class Matcher(Stage):
    """Pairs sources of an image catalog with sources of a reference catalog.

    Both catalogs carry ``tp_x``, ``tp_y`` (arcsec in the shared tangent plane)
    and ``meta["tp_pixel_scale"]``. The result must be one-to-one.

    Besides `match`, core reads only `search_reach` and `match_slack` (to size
    the reference it shows the matcher and the largest correction it accepts),
    `match_at` (the retry ladder) and the result's typed fields; it never reads
    ``params`` by name.
    """

    kind: ClassVar[str] = "matcher"

    @abstractmethod
    def match(self, image_cat: QTable, ref_cat: QTable) -> MatchResult:
        """Match ``image_cat`` to ``ref_cat``."""

    def match_at(self, image_cat: QTable, ref_cat: QTable, offset: tuple[float, float],
                 tolerance: float | None = None) -> MatchResult | None:
        """Match at a given offset, without searching for one (the retry ladder).

        Parameters
        ----------
        image_cat, ref_cat : QTable
            As for `match`.
        offset : (float, float)
            The offset to apply (arcsec, reference - image): one of a previous
            result's ``alternatives``, or zero for catalogs already corrected.
        tolerance : float, optional
            The pair tolerance (arcsec) to use instead of the matcher's own (a
            tighter one around a near solution).

        Returns
        -------
        MatchResult or None
            None (the default) when the matcher cannot match at a given offset;
            the ladder then skips the rungs that need it.
        """
        return None

    def search_reach(self) -> float | None:
        """How far the matcher looks for the offset between the catalogs (arcsec).

        Returns
        -------
        float or None
            The largest image-to-reference offset a match can find; None (the
            default) when unbounded (e.g. triangle matching finds any offset).
            With ``align.max_correction: auto`` the guard accepts corrections up to
            ``1.5 x reach + 1"``, and the reference shown to the matcher extends
            ``2 x reach + match_slack()`` beyond the image footprint; unbounded:
            corrections are not limited and one footprint size is shown.
        """
        return None

    def tolerance(self) -> float | None:
        """The largest distance (arcsec) between two matched sources after the offset.

        Returns
        -------
        float or None
            None (the default) when not fixed in advance (chosen per match).
        """
        return None

    def match_slack(self) -> float:
        """How far (arcsec) beyond `search_reach` a reference source can still take part.

        Returns
        -------
        float
            The default is `tolerance` (0 when None); a matcher that also prunes
            sources closer than some separation adds it.
        """
        tolerance = self.tolerance()
        return 0.0 if tolerance is None else float(tolerance)


class Fitter(Stage):
    """Fits the transform that maps image positions onto reference positions.

    Besides `fit`, core reads only `geometry` and `clipping` (the global solver
    fits every image at once with the same geometry and clipping); it never
    reads ``params`` by name.
    """

    kind: ClassVar[str] = "fitter"

    @abstractmethod
    def fit(
        self, image_xy: np.ndarray, ref_xy: np.ndarray, weights: np.ndarray | None = None
    ) -> FitResult:
        """Fit ``ref_xy ~ matrix @ image_xy + shift``; arrays of shape ``(n, 2)``."""

    def geometry(self) -> str:
        """The fit geometry this fitter solves for.

        Returns
        -------
        str
            One of `aligncore.geometry.GEOMETRIES` (``shift``, ``rshift``, ``rscale``,
            ``general``) or ``auto`` (the simplest the matches support, chosen per
            fit, and by the global solver for the whole run). The default is
            ``rshift``, tweakreg's.
        """
        return "rshift"

    def clipping(self) -> tuple[int, float]:
        """Sigma clipping: ``(passes, threshold in RMS residuals)``; default ``(3, 3.0)``."""
        return 3, 3.0


class Solver(Stage):
    """Solves the relative alignment of all units once the sequential pass is done.

    The pipeline first aligns the units one by one (tweakreg's sequential pass,
    with the configured matchers and fitter); a solver then refines those
    corrections, e.g. all at once over every overlap (``global``). It is chosen
    by name with ``align.solver``.

    A solver reads the units and returns its results: it does not change the
    units it is given (work on copies); the pipeline applies the returned
    `~aligncore.UnitOutcome` values.
    """

    kind: ClassVar[str] = "solver"
    grows_reference: ClassVar[bool] = False
    """True when the solver needs the sequential pass to add each aligned unit's
    unmatched sources to the reference (as ``align.expand_refcat: true``)."""

    @abstractmethod
    def refine(self, units: Sequence[Any], settings: SolverSettings) -> SolverResult:
        """Refine the corrections of the sequential pass.

        Parameters
        ----------
        units : sequence of aligncore.units.Unit
            Every unit, read-only. Inputs: ``key``, ``members``, ``catalog``
            (``tp_x, tp_y`` in the shared tangent plane; ``xy``), ``footprint``,
            ``pixel_scale``. The sequential pass's results: ``status``, ``fit``,
            ``n_matched``, ``meta`` (at least one unit aligned besides the reference).
        settings : SolverSettings
            The fitter's geometry and clipping, and whether to weight by the
            catalogs' centroid errors (``align.use_weights``).

        Returns
        -------
        SolverResult
            The new `~aligncore.UnitOutcome` of each unit it changed (by key), and
            JSON-ready diagnostics for the report (``meta.relative[NAME]``).
        """


class DistortionRefiner(Stage):
    """Refines the distortion model of each detector, common to all its exposures.

    Runs after the relative (and absolute) alignment: a refiner may fit, per
    detector, a correction of the nominal distortion (an
    `aligncore.DistortionCorrection`) jointly with every unit's affine correction.
    It is chosen by name with ``distortion: {plugin: NAME}``; ``none`` (the default)
    changes nothing.

    A refiner reads the units and images and returns its results: it changes
    neither; the pipeline applies the returned outcomes, replaces the refined
    units' tangent-plane positions, and writes each correction into the WCS of
    every image of its detector.
    """

    kind: ClassVar[str] = "distortion"

    @abstractmethod
    def refine(self, units: Sequence[Any], images: Sequence[AlignImage],
               settings: DistortionSettings) -> DistortionResult:
        """Refine the detectors' distortion jointly with the units' corrections.

        Parameters
        ----------
        units : sequence of aligncore.units.Unit
            Every unit, read-only, after the relative and absolute alignment
            (``catalog`` rows carry ``x, y`` detector pixels, ``image``: the index
            into ``images``, and ``tp_x, tp_y``).
        images : sequence of AlignImage
            The images (nominal WCS, shape, meta), read-only.
        settings : DistortionSettings
            The fitter's geometry and clipping, weighting, the tangent plane and the
            absolute reference catalog's positions (when absolute alignment was applied).

        Returns
        -------
        DistortionResult
            The corrections to apply (by detector), the new outcomes and corrected
            tangent-plane positions of the units it changed, and the report entries.
        """


class RefCatalog(Stage):
    """Provides an absolute reference catalog for a sky region."""

    kind: ClassVar[str] = "refcatalog"

    def check(self, min_rows: int) -> list[str]:
        """Problems that will make `query` fail, found before any work is done.

        Called by `aligncore.preflight.check_inputs` for a local catalog the user
        gave; each problem is one line starting with the path it is about. The
        default finds none (a remote service is checked when it is queried).

        Parameters
        ----------
        min_rows : int
            Usable rows the alignment needs (``absolute.min_gaia``).
        """
        return []

    @abstractmethod
    def query(self, center: SkyCoord, radius: Angle, epoch: Time | None = None) -> QTable:
        """Sources within ``radius`` of ``center``: columns ``id, ra, dec`` (deg),
        ``mag`` and optionally ``ra_err, dec_err`` (mas), ``pmra, pmdec``
        (mas/yr), ``epoch`` (decimal year). With ``epoch``, positions are
        propagated to it where proper motions allow."""


class Corrector(Stage):
    """Applies a tangent-plane fit to a WCS."""

    kind: ClassVar[str] = "corrector"

    @classmethod
    def accepts(cls, wcs: Any) -> bool:
        """True if this corrector can correct ``wcs`` (used by ``corrector: auto``)."""
        return False

    @abstractmethod
    def correct(self, wcs: Any, fit: FitResult, tangent_plane: Any) -> Any:
        """Return a NEW WCS corrected by ``fit`` (expressed in ``tangent_plane``).

        The input ``wcs`` must not be modified.
        """


class ImageFormat(ABC):
    """An image file format: which files it claims, how it opens and writes them.

    Like a format of astropy's unified I/O registry: a name, an identifier that
    claims a file, a reader and a writer. Formats are registered with the
    ``aligncore_add_formats`` hook; `aligncore.open_image` and the output writer ask
    the registered formats, in ascending `order` (then by name), and the first whose
    `identify` is true opens the file. A format is a plain class usable without the
    pipeline: ``FitsFormat().open("a.fits")``.

    Core reads only `name`, `order`, `identify`, `open`, `write` and `output_name`.
    """

    name: ClassVar[str] = ""
    """Format name; `open` sets ``image.meta["format"]`` to it so that `write` is
    asked for the image's outputs."""
    order: ClassVar[int] = 100
    """Position when asked to claim a file (ascending). aligncore's own: ``roman`` 5
    (before plain ASDF), ``asdf`` 10, ``jwst`` 20 (before plain FITS), ``fits`` 1000
    (the fallback that claims every file); a mission format keeps the default 100."""

    @classmethod
    @abstractmethod
    def identify(cls, path: Path) -> bool:
        """True when this format opens ``path``.

        Must be cheap (a suffix, a header keyword) and import no heavy library; must
        not raise (an unreadable file is False, or True for a fallback whose reader
        reports it).
        """

    @abstractmethod
    def open(self, path: Path, *, group_id: str | None = None) -> AlignImage:
        """Open ``path`` lazily: header, WCS and shape now, pixels through a picklable
        ``loader`` (`AlignImage.load_pixels`); set ``meta["format"]`` to `name`.

        Raises
        ------
        aligncore.InputError
            The file is unreadable in this format, has no 2D image or no celestial WCS.
        """

    @abstractmethod
    def write(self, image: AlignImage, result: ImageResult, target: Path, *, wcsname: str,
              version: str) -> Path:
        """Write a copy of ``image`` with ``result.wcs`` (when aligned) to ``target``,
        atomically (`aligncore.formats.atomic_path`), and return ``target``."""

    def open_images(self, path: Path, *, group_id: str | None = None) -> list[AlignImage]:
        """Every image of ``path``: one per chip of a multi-chip file (the chips sharing
        one group id, so that the exposure moves as one rigid unit), else ``[open(path)]``
        (the default)."""
        return [self.open(path, group_id=group_id)]

    def write_images(self, images: Sequence[AlignImage], results: Sequence[ImageResult],
                     target: Path, *, wcsname: str, version: str) -> Path:
        """Write one output file for the images `open_images` gave for one input file, each
        with its result, atomically, and return ``target``. The default writes a single
        image with `write`."""
        if len(images) != 1 or len(results) != 1:
            raise InputError(f"{type(self).__name__} writes one image per file, got "
                             f"{len(images)}")
        return self.write(images[0], results[0], target, wcsname=wcsname, version=version)

    def output_name(self, path: Path) -> str:
        """The file name of the output written for input ``path`` (default: its name)."""
        return path.name


def require_type(value: Any, expected: type | tuple[type, ...], name: str) -> None:
    """Raise a `TypeError` naming the argument when ``value`` is not an ``expected``.

    Stage methods call it on their arguments, so that a wrong type gives the same
    kind of error, with the same wording, in every plugin.

    Parameters
    ----------
    value : object
        The argument.
    expected : type or tuple of type
        Accepted types.
    name : str
        How the message names the argument (e.g. ``"hist2d.match: image_cat"``).
    """
    if not isinstance(value, expected):
        types = expected if isinstance(expected, tuple) else (expected,)
        accepted = " or ".join(t.__name__ for t in types)
        article = "an" if accepted[0] in "AEIOU" else "a"
        raise TypeError(f"{name} must be {article} {accepted}, got {type(value).__name__}")


def require_tables(stage: str, image_cat: Any, ref_cat: Any) -> None:
    """`Matcher.match` arguments: two astropy tables (else `TypeError`)."""
    from astropy.table import Table

    require_type(image_cat, Table, f"{stage}.match: image_cat")
    require_type(ref_cat, Table, f"{stage}.match: ref_cat")


def require_query_types(stage: str, center: Any, radius: Any, epoch: Any) -> None:
    """`RefCatalog.query` arguments: a SkyCoord, an angle (`Angle` or angular Quantity)
    and a `Time` or None (else `TypeError`)."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord
    from astropy.time import Time

    require_type(center, SkyCoord, f"{stage}.query: center")
    require_type(radius, u.Quantity, f"{stage}.query: radius")
    if radius.unit.physical_type != "angle":
        raise TypeError(f"{stage}.query: radius must be an angle, got unit {radius.unit}")
    if epoch is not None:
        require_type(epoch, Time, f"{stage}.query: epoch")


def require_fit_types(stage: str, fit: Any, tangent_plane: Any) -> None:
    """`Corrector.correct` arguments after the WCS: a `FitResult` and a `TangentPlane`
    (else `TypeError`; a WCS the corrector cannot handle is an `AlignError`)."""
    from aligncore.tangent import TangentPlane

    require_type(fit, FitResult, f"{stage}.correct: fit")
    require_type(tangent_plane, TangentPlane, f"{stage}.correct: tangent_plane")


def _is_table(value: Any) -> bool:
    from astropy.table import Table

    return isinstance(value, Table)


@dataclass(frozen=True)
class StageKind:
    """One kind of stage: everything the registry, the config and the docs need to know.

    Attributes
    ----------
    name : str
        The kind (``matcher``); `Stage.kind` of its classes.
    base : type
        The base class its plugins subclass.
    method : str
        The stage method `aligncore_run_stage` calls.
    hook : str
        The registration hook returning its classes.
    sections : tuple of str
        Dotted config sections choosing a plugin of this kind (``{plugin, params}``,
        or just the plugin name, like ``align.solver``); the first is the kind's
        own. Sections under ``absolute.`` are used (and checked) only with
        ``absolute.enabled``.
    returns : str
        What the stage method returns, in words (for error messages).
    accepts : callable
        ``accepts(value) -> bool``: whether a returned value has the right type.
    """

    name: str
    base: type[Stage]
    method: str
    hook: str
    sections: tuple[str, ...]
    returns: str
    accepts: Callable[[Any], bool]

    @property
    def section(self) -> str:
        """The kind's own config section."""
        return self.sections[0]


STAGE_TABLE: dict[str, StageKind] = {
    kind.name: kind for kind in (
        StageKind("detector", Detector, "detect", "aligncore_add_detectors", ("detector",),
                  "an astropy Table", _is_table),
        StageKind("matcher", Matcher, "match", "aligncore_add_matchers",
                  ("matcher", "absolute.matcher"), "MatchResult",
                  lambda value: isinstance(value, MatchResult)),
        StageKind("fitter", Fitter, "fit", "aligncore_add_fitters",
                  ("fitter", "absolute.fitter"), "FitResult",
                  lambda value: isinstance(value, FitResult)),
        StageKind("refcatalog", RefCatalog, "query", "aligncore_add_refcatalogs",
                  ("absolute.refcat",), "an astropy Table", _is_table),
        StageKind("corrector", Corrector, "correct", "aligncore_add_correctors", ("corrector",),
                  "a WCS object", lambda value: hasattr(value, "pixel_to_world")),
        StageKind("solver", Solver, "refine", "aligncore_add_solvers", ("align.solver",),
                  "SolverResult", lambda value: isinstance(value, SolverResult)),
        StageKind("distortion", DistortionRefiner, "refine", "aligncore_add_distortion_refiners",
                  ("distortion",), "DistortionResult",
                  lambda value: isinstance(value, DistortionResult)),
    )
}
"""The one table of stage kinds: kind -> base class, method, registration hook, config
sections. The registry, the config and the hook reference are derived from it."""

STAGE_KINDS: dict[str, type[Stage]] = {name: kind.base for name, kind in STAGE_TABLE.items()}
"""Stage kind -> base class (derived from `STAGE_TABLE`)."""


def render_stage_table() -> str:
    """`STAGE_TABLE` as a Markdown table (part of docs/hooks.md)."""
    lines = ["| kind | base class | method | registration hook | config sections |",
             "|---|---|---|---|---|"]
    for kind in STAGE_TABLE.values():
        sections = ", ".join(f"`{s}`" for s in kind.sections)
        lines.append(f"| `{kind.name}` | `aligncore.{kind.base.__name__}` | `{kind.method}` | "
                     f"`{kind.hook}` | {sections} |")
    return "\n".join(lines)
