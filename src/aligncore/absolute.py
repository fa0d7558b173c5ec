"""Absolute alignment: the combined catalog of the aligned images against a reference catalog.

The relatively aligned sources of every image form one catalog, fitted once to
the reference catalog as one rigid group; the fit is composed with each
image's relative correction so that the relative alignment is kept.

Steps (REFERENCE.md section 7, with the fixes users asked for):

1. search cone: centre of the union footprint of the *relatively aligned*
   images, radius to its farthest corner plus a margin of ``searchrad`` and
   the expected ``pointing_error``;
2. one reference query at the catalog epoch; magnitude limits;
3. proper motions: positions moved to each image's observation epoch; stars
   without proper motion dropped (``refcat_pm: require``) or kept with
   inflated errors (``inflate``), never silently taken as motionless;
4. one match of the combined catalog; every detection of a matched star (its
   sources in the other images) joins its pair; one weighted fit (weights from
   the source and reference position errors at the epoch, a star counted once
   however many images detect it), each source compared with the reference
   position at its own image's epoch;
5. ``min_gaia`` checked on the matches and on the stars kept by the fit,
   with a message giving the numbers found, usable, matched and required.

Any failure leaves every unit's relative solution untouched and is reported
in the returned ``info`` (``status: "failed"`` and ``reason``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np
from astropy import units as u
from astropy.coordinates import Angle, SkyCoord
from astropy.table import QTable

from aligncore.catalogs import (
    as_jyear,
    drop_unusable_rows,
    has_proper_motion,
    propagate,
)
from aligncore.config import AbsoluteSection
from aligncore.errors import AlignError
from aligncore.registry import Registry
from aligncore.stages import Fitter, Matcher, RefCatalog, Stage
from aligncore.tangent import TangentPlane
from aligncore.types import (
    COL_DEC,
    COL_DEC_ERR,
    COL_MAG,
    COL_RA,
    COL_RA_ERR,
    COL_TP_X,
    COL_TP_Y,
    META_CATALOG,
    META_PIXEL_SCALE,
    META_REFCAT_REPORTED,
    META_WARNINGS,
    AlignImage,
    FitResult,
    Status,
)
from aligncore.units import Unit, UnitOutcome

__all__ = [
    "AUTO_SEARCHRAD",
    "AbsoluteSettings",
    "StageBuilder",
    "absolute_align",
    "combined_catalog",
    "compose_absolute",
    "every_detection",
    "search_cone",
]

AUTO_SEARCHRAD = 10.0
"""Margin (arcsec) used for a matcher without a search reach (the widest radius hist2d's
auto search tries)."""
MAX_CONE_RADIUS_DEG = 5.0
"""Largest reference-catalog search cone (deg): a wider one means a wrong WCS or pixel
scale, and would ask the catalog service for millions of stars."""

_EPOCH_DECIMALS = 4  # images closer than ~1 hour in epoch share one propagated reference
_DEFAULT_POS_ERR_PIX = 0.05  # first-guess source position error (pixels) when none is given
_MIN_POS_ERR_PIX = 0.005  # floor of the estimated source position error (pixels)
_SAME_STAR_PIX = 0.5  # detections of one star in aligned images agree far better than this


StageBuilder = Callable[[str, str], Stage]
"""``build(kind, section) -> Stage``: the stage configured in a config section (e.g.
``("matcher", "absolute.matcher")``); called when the step needs it, so that a stage that
cannot be built fails the absolute step only."""


@dataclass(frozen=True)
class AbsoluteSettings:
    """What the absolute alignment reads from the config (``absolute.*``), and nothing else.

    Attributes
    ----------
    refcat_plugin : str
        The reference catalog's plugin name (for messages).
    min_gaia : int
        Fewest reference stars found, usable, matched and kept by the fit.
    save_gaia_catalog : bool
        Return the reference catalog used (``info["reference_catalog"]``).
    pointing_error : float
        Expected pointing error (arcsec), added to the search cone.
    mag_limits : tuple of float or None
        Bright and faint magnitude limits of the reference stars.
    epoch : float or None
        Observation epoch (Julian year) of images without one.
    propagate : bool
        Move the reference positions to the images' epochs.
    refcat_pm : {"require", "inflate"}
        Stars without proper motion: dropped, or kept with inflated errors.
    unknown_pm : float
        The proper-motion error (mas/yr) assumed with ``inflate``.
    """

    refcat_plugin: str
    min_gaia: int
    save_gaia_catalog: bool
    pointing_error: float
    mag_limits: tuple[float | None, float | None]
    epoch: float | None
    propagate: bool
    refcat_pm: Literal["require", "inflate"]
    unknown_pm: float

    @classmethod
    def from_section(cls, section: AbsoluteSection) -> AbsoluteSettings:
        """The settings of a validated ``absolute`` config section."""
        return cls(refcat_plugin=section.refcat.plugin, min_gaia=section.min_gaia,
                   save_gaia_catalog=section.save_gaia_catalog,
                   pointing_error=section.pointing_error, mag_limits=section.mag_limits,
                   epoch=section.epoch, propagate=section.propagate,
                   refcat_pm=section.refcat_pm, unknown_pm=section.unknown_pm)


def combined_catalog(units: Sequence[Unit]) -> QTable:
    """Corrected tangent-plane positions of the sources of all aligned units.

    Columns ``tp_x, tp_y`` (arcsec, after the relative correction), ``image``
    (index of the source's image) and ``pos_err`` (1-sigma per-axis position
    error in arcsec from the detector's ``x_err, y_err``; NaN when unknown).
    """
    xs, ys, images, errs = [], [], [], []
    for unit in units:
        if unit.status not in (Status.SUCCESS, Status.REFERENCE):
            continue
        xy = unit.corrected_xy()
        xs.append(xy[:, 0])
        ys.append(xy[:, 1])
        n = len(unit.catalog)
        if "image" in unit.catalog.colnames:
            images.append(np.asarray(unit.catalog["image"], dtype=int))
        else:
            images.append(np.full(n, unit.members[0], dtype=int))
        if "x_err" in unit.catalog.colnames and "y_err" in unit.catalog.colnames:
            ex = np.asarray(unit.catalog["x_err"], dtype=float)
            ey = np.asarray(unit.catalog["y_err"], dtype=float)
            scale = unit.fit.scale if unit.fit is not None else 1.0
            errs.append(np.sqrt((ex**2 + ey**2) / 2.0) * unit.pixel_scale * scale)
        else:
            errs.append(np.full(n, np.nan))

    def join(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)

    return QTable({COL_TP_X: join(xs, float), COL_TP_Y: join(ys, float),
                   "image": join(images, int), "pos_err": join(errs, float)})


def search_cone(units: Sequence[Unit], plane: TangentPlane, searchrad: float | str | None,
                pointing_error: float) -> tuple[SkyCoord, Angle, dict[str, float]]:
    """Cone covering the union footprint of the aligned units plus the search margin.

    The centre is the middle of the footprints' bounding box in the tangent
    plane (rounded to 1e-4 deg), the radius reaches the farthest corner plus
    ``searchrad`` (the absolute matcher's `~aligncore.Matcher.search_reach`;
    :data:`AUTO_SEARCHRAD` for ``auto`` or None) and ``pointing_error``, rounded
    up to a whole arcsec.

    Returns
    -------
    center, radius, description
        ``description`` has ``ra, dec`` (deg), ``radius_arcsec``,
        ``footprint_radius_arcsec`` and ``margin_arcsec``.
    """
    corners = []
    for unit in units:
        fit = unit.fit if unit.fit is not None else FitResult.identity()
        corners.append(fit.apply(unit.footprint))
    points = np.concatenate(corners)
    middle = (points.min(axis=0) + points.max(axis=0)) / 2.0
    # A rounded centre and a whole-arcsec radius give the same cone (and cache entry)
    # when a re-run's relative solution differs by a few mas.
    ra, dec = (round(float(v), 4) for v in plane.tp_to_world(middle[0], middle[1]))
    cx, cy = plane.world_to_tp(ra, dec)
    footprint_radius = float(np.max(np.hypot(points[:, 0] - cx, points[:, 1] - cy)))
    reach = float(searchrad) if isinstance(searchrad, int | float) else AUTO_SEARCHRAD
    margin = reach + float(pointing_error)
    center = SkyCoord(ra, dec, unit="deg", frame="icrs")
    radius = Angle(math.ceil(footprint_radius + margin) * u.arcsec)
    description = {"ra": float(ra), "dec": float(dec), "radius_arcsec": float(radius.arcsec),
                   "footprint_radius_arcsec": footprint_radius, "margin_arcsec": margin}
    return center, radius, description


def _build_matcher_fitter(build: StageBuilder) -> tuple[Matcher, Fitter]:
    """The absolute stage's own matcher and fitter (``absolute.matcher``, ``absolute.fitter``)."""
    matcher = build("matcher", "absolute.matcher")
    fitter = build("fitter", "absolute.fitter")
    return cast(Matcher, matcher), cast(Fitter, fitter)


def _image_epochs(units: Sequence[Unit], images: Sequence[AlignImage],
                  default: float | None) -> dict[int, float | None]:
    epochs: dict[int, float | None] = {}
    for unit in units:
        for index in unit.members:
            value = as_jyear(images[index].epoch) if images[index].epoch is not None else None
            epochs[index] = value if value is not None else default
    return epochs


def _epoch_key(value: float | None) -> float | None:
    return None if value is None else round(float(value), _EPOCH_DECIMALS)


class _Failed(Exception):
    """Internal: stop the absolute step with a reason for the report."""


def absolute_align(units: list[Unit], images: Sequence[AlignImage], plane: TangentPlane,
                   settings: AbsoluteSettings, build: StageBuilder,
                   registry: Registry) -> tuple[FitResult | None, dict[str, Any]]:
    """Fit the combined catalog of the relatively aligned units to the reference catalog.

    The units are not changed: the caller composes the returned fit with each
    aligned unit's relative fit (`compose_absolute`).

    Parameters
    ----------
    units : list of Unit
        The relatively aligned units.
    images : sequence of AlignImage
        The run's images (for observation epochs).
    plane : TangentPlane
        The shared tangent plane.
    settings : AbsoluteSettings
        The ``absolute.*`` values used.
    build : StageBuilder
        Builds the configured ``absolute.matcher``, ``absolute.fitter`` and
        ``absolute.refcat`` stages when they are needed.
    registry : Registry
        Runs the stages.

    Returns
    -------
    fit, info
        ``fit`` is the absolute correction (None when not applied). ``info`` is
        JSON-ready except ``info["reference_catalog"]``, present with
        ``save_gaia_catalog``: a QTable of the reference stars (at the matching
        epoch, with ``matched``/``used`` flags after a fit; as received when
        the step failed after the query). Keys: ``status``
        (``"applied"`` or ``"failed"``), ``reason``, ``refcat`` (plugin,
        catalog, service, cache), ``refcat_name`` (for the WCS name),
        ``cone``, ``epochs``, the counts ``n_found, n_usable, n_matched,
        n_used`` (reference stars), ``n_pairs`` (source-reference pairs fitted),
        ``warnings`` and ``fit``.
    """
    info: dict[str, Any] = {"enabled": True, "status": "failed", "warnings": []}
    try:
        fit: FitResult | None = _absolute(units, images, plane, settings, build, registry, info)
        info["status"] = "applied"
    except _Failed as exc:
        fit = None
        info["reason"] = str(exc)
    if not settings.save_gaia_catalog:
        info.pop("reference_catalog", None)
    return fit, info


def compose_absolute(units: Sequence[Unit], fit: FitResult) -> dict[str, UnitOutcome]:
    """The outcome of an applied absolute fit for every aligned unit: ``fit`` composed with
    the unit's relative fit (status, reason, counts and report entries kept)."""
    return {unit.key: UnitOutcome(unit.status, unit.reason,
                                  fit.compose(unit.fit) if unit.fit is not None else fit,
                                  unit.n_matched, dict(unit.meta))
            for unit in units if unit.status in (Status.SUCCESS, Status.REFERENCE)}


def _absolute(units: list[Unit], images: Sequence[AlignImage], plane: TangentPlane,
              section: AbsoluteSettings, build: StageBuilder, registry: Registry,
              info: dict[str, Any]) -> FitResult:
    ok_units = [unit for unit in units if unit.status in (Status.SUCCESS, Status.REFERENCE)]
    if not ok_units:
        raise _Failed("no relatively aligned image")
    combined = combined_catalog(ok_units)
    scale = ok_units[0].pixel_scale
    combined.meta[META_PIXEL_SCALE] = scale
    if len(combined) == 0:
        raise _Failed("the aligned images have no sources")

    try:
        matcher, fitter = _build_matcher_fitter(build)
    except Exception as exc:
        raise _Failed(f"cannot set up the absolute matcher/fitter: {exc}") from exc
    center, radius, cone = search_cone(ok_units, plane, matcher.search_reach(),
                                       section.pointing_error)
    info["cone"] = cone
    if radius.deg > MAX_CONE_RADIUS_DEG:
        raise _Failed(f"the reference search cone would have a radius of {radius.deg:.1f} deg "
                      f"(more than {MAX_CONE_RADIUS_DEG:g} deg); check the images' pixel scale "
                      "and the absolute matcher's search radius / absolute.pointing_error")
    epochs = _image_epochs(ok_units, images, section.epoch)
    info["epochs"] = {images[i].name: epochs[i] for i in sorted(epochs)}

    # --- query -------------------------------------------------------------------------------
    try:
        refcat = cast(RefCatalog, build("refcatalog", "absolute.refcat"))
    except Exception as exc:
        raise _Failed(f"cannot set up reference catalog {section.refcat_plugin!r}: {exc}") from exc
    try:
        raw = registry.run_stage(refcat, center, radius, None)
        ref = drop_unusable_rows(QTable(raw), (COL_RA, COL_DEC))
    except Exception as exc:  # network and third-party failures must not lose the relative fit
        text = str(exc) if isinstance(exc, AlignError) else f"{type(exc).__name__}: {exc}"
        raise _Failed(f"reference catalog query failed: {text}") from exc
    info["refcat"] = {
        "plugin": refcat.name,
        **{k: ref.meta.get(k) for k in META_REFCAT_REPORTED if k in ref.meta},
    }
    info["refcat_name"] = _label(str(ref.meta.get(META_CATALOG) or ""), refcat.name)
    info["n_found"] = len(ref)
    info["reference_catalog"] = ref
    where = (f"in the {cone['radius_arcsec']:.1f}\" cone around RA {cone['ra']:.6f}, "
             f"Dec {cone['dec']:.6f} ({info['refcat_name']})")
    if COL_RA not in ref.colnames or COL_DEC not in ref.colnames:
        raise _Failed(f"the reference catalog has no {COL_RA}/{COL_DEC} columns "
                      f"(columns: {', '.join(ref.colnames)})")
    if len(ref) < section.min_gaia:
        raise _Failed(f"{len(ref)} reference stars found {where}; min_gaia={section.min_gaia} "
                      "required")

    # --- cuts and epochs ---------------------------------------------------------------------
    usable = _magnitude_cut(ref, section.mag_limits)
    tables, source_keys = _propagated(usable, combined, epochs, section, info)
    n_usable = len(next(iter(tables.values())))
    info["n_usable"] = n_usable
    if n_usable < section.min_gaia:
        raise _Failed(f"{n_usable} usable reference stars ({len(ref)} found {where}, "
                      f"{info.get('n_dropped_no_pm', 0)} dropped without proper motion, "
                      f"{len(ref) - len(usable)} outside the magnitude limits); "
                      f"min_gaia={section.min_gaia} required")

    # --- match -------------------------------------------------------------------------------
    match_key = _match_epoch(source_keys, tables)
    ref_tp = _project(tables[match_key], plane, scale)
    try:
        match = registry.run_stage(matcher, combined, ref_tp)
    except AlignError as exc:
        raise _Failed(f"matching to the reference catalog failed: {exc}") from exc
    info["n_matched"] = match.n_matched
    info["match"] = dict(match.meta)
    counts = (f"{len(ref)} found {where}, {n_usable} usable, "
              f"{len(combined)} sources in the combined catalog")
    if match.n_matched < section.min_gaia:
        raise _Failed(f"{match.n_matched} sources matched to the reference catalog "
                      f"({counts}); min_gaia={section.min_gaia} required")

    # --- fit ---------------------------------------------------------------------------------
    source_idx, ref_idx = every_detection(combined, match.image_idx, match.ref_idx,
                                          _SAME_STAR_PIX * scale)
    info["n_pairs"] = int(source_idx.size)
    image_xy = np.column_stack([np.asarray(combined[COL_TP_X], float)[source_idx],
                                np.asarray(combined[COL_TP_Y], float)[source_idx]])
    ref_xy, ref_err = _reference_at_source_epochs(tables, source_keys[source_idx], ref_idx,
                                                  plane)
    pos_err = np.asarray(combined["pos_err"], float)[source_idx]
    try:
        weights = _weights(fitter, registry, image_xy, ref_xy, pos_err, ref_err, scale, ref_idx)
        fit = registry.run_stage(fitter, image_xy, ref_xy, weights)
    except AlignError as exc:
        raise _Failed(f"absolute fit failed: {exc} ({counts}, {match.n_matched} matched)"
                      ) from exc
    kept = fit.fitmask if fit.fitmask.size == ref_idx.size else np.ones(ref_idx.size, bool)
    n_used = int(np.unique(ref_idx[kept]).size)
    info["n_used"] = n_used
    if not (np.all(np.isfinite(fit.matrix)) and np.all(np.isfinite(fit.shift))):
        raise _Failed("absolute fit failed: non-finite solution")
    if n_used < section.min_gaia:
        raise _Failed(f"only {n_used} of {match.n_matched} matched reference stars left "
                      f"after clipping ({counts}); min_gaia={section.min_gaia} required")
    info["fit"] = fit.summary()
    info["reference_catalog"] = _used_catalog(tables[match_key], ref_idx, kept)
    return fit


def every_detection(combined: QTable, image_idx: np.ndarray, ref_idx: np.ndarray,
                    radius: float) -> tuple[np.ndarray, np.ndarray]:
    """The matched pairs plus the other detections of each matched reference star.

    The matcher pairs each reference star with one source of the combined catalog;
    the same star detected in other images (a source of another image within
    ``radius`` arcsec of the matched source, the nearest one per image) is paired
    with the same reference star, so that the fit averages over every detection
    of it instead of using one.

    Returns
    -------
    source_idx, ref_idx : ndarray of int
        Rows of the combined catalog and of the reference catalog, the matcher's
        pairs first.
    """
    if image_idx.size == 0:
        return image_idx, ref_idx
    from scipy.spatial import cKDTree

    xy = np.column_stack([np.asarray(combined[COL_TP_X], float),
                          np.asarray(combined[COL_TP_Y], float)])
    images = np.asarray(combined["image"], dtype=int)
    others = np.setdiff1d(np.arange(len(combined)), image_idx)
    others = others[np.all(np.isfinite(xy[others]), axis=1)]
    dist, nearest = cKDTree(xy[image_idx]).query(xy[others], distance_upper_bound=radius)
    near = np.isfinite(dist)
    others, nearest, dist = others[near], nearest[near], dist[near]
    other_image = images[others] != images[image_idx[nearest]]
    others, nearest, dist = others[other_image], nearest[other_image], dist[other_image]
    order = np.argsort(dist, kind="stable")  # the nearest detection per (star, image)
    _, first = np.unique(np.column_stack([nearest[order], images[others[order]]]), axis=0,
                         return_index=True)
    chosen = np.sort(order[first])
    return (np.concatenate([image_idx, others[chosen]]),
            np.concatenate([ref_idx, ref_idx[nearest[chosen]]]))


def _label(text: str, default: str) -> str:
    """A WCS-name-safe catalog label: ``"Gaia DR3 (local)"`` -> ``"GAIA-DR3-LOCAL"``."""
    label = re.sub(r"[^A-Z0-9]+", "-", text.upper()).strip("-")[:40].strip("-")
    return label or default.upper()


def _magnitude_cut(ref: QTable, limits: tuple[float | None, float | None]) -> QTable:
    bright, faint = limits
    if (bright is None and faint is None) or COL_MAG not in ref.colnames:
        return ref
    mag = np.asarray(ref[COL_MAG], dtype=float)
    keep = np.ones(len(ref), dtype=bool)
    if bright is not None:
        keep &= mag >= bright
    if faint is not None:
        keep &= mag <= faint
    return ref[keep]


def _propagated(ref: QTable, combined: QTable, epochs: dict[int, float | None],
                section: AbsoluteSettings, info: dict[str, Any]
                ) -> tuple[dict[Any, QTable], np.ndarray]:
    """Reference tables per distinct source epoch (same rows, same order) and each
    source's epoch key."""
    images = np.asarray(combined["image"], dtype=int)
    keys = np.array([_epoch_key(epochs.get(int(i))) for i in images], dtype=object)
    warnings = info["warnings"]
    pm = has_proper_motion(ref)
    info["n_no_pm"] = int(np.count_nonzero(~pm))
    if not section.propagate:
        warnings.append("proper motions ignored (absolute.propagate: false): reference "
                        "positions used at the catalog epoch")
        return {None: ref}, np.full(len(combined), None, dtype=object)
    missing = sorted({name for name, value in info["epochs"].items() if value is None})
    if missing:
        warnings.append(f"no observation epoch for {', '.join(missing)} (DATE-OBS/MJD-OBS or "
                        "absolute.epoch): their sources are compared with catalog-epoch "
                        "positions")
    base = ref
    if section.refcat_pm == "require":
        base = ref[pm]
        info["n_dropped_no_pm"] = int(np.count_nonzero(~pm))
    else:
        info["n_inflated_no_pm"] = int(np.count_nonzero(~pm))
    tables: dict[Any, QTable] = {}
    for key in sorted({k for k in keys if k is not None}):
        tables[key] = propagate(base, key, pm_mode="inflate" if section.refcat_pm == "inflate"
                                else "keep", unknown_pm=section.unknown_pm)
    if np.any(keys == None) or not tables:  # noqa: E711 (object array comparison)
        tables[None] = base
    for table in tables.values():
        for text in table.meta.get(META_WARNINGS, []):
            if text not in warnings:
                warnings.append(text)
    return tables, keys


def _match_epoch(source_keys: np.ndarray, tables: dict[Any, QTable]) -> Any:
    """The epoch key of the reference used for matching: the median source epoch."""
    known = [k for k in source_keys if k is not None]
    if not known:
        return None if None in tables else next(iter(tables))
    median = float(np.median(np.asarray(known, dtype=float)))
    candidates = [k for k in tables if k is not None]
    return min(candidates, key=lambda k: abs(k - median))


def _project(table: QTable, plane: TangentPlane, scale: float) -> QTable:
    xi, eta = plane.world_to_tp(np.asarray(table[COL_RA], float), np.asarray(table[COL_DEC],
                                                                               float))
    projected = QTable({COL_TP_X: xi, COL_TP_Y: eta})
    if COL_MAG in table.colnames:
        projected[COL_MAG] = np.asarray(table[COL_MAG], dtype=float)
    projected.meta[META_PIXEL_SCALE] = scale
    return projected


def _position_error(table: QTable) -> np.ndarray:
    """Per-axis 1-sigma reference position error in arcsec (NaN when unknown)."""
    parts = [np.asarray(table[name], dtype=float) for name in (COL_RA_ERR, COL_DEC_ERR)
             if name in table.colnames]
    if not parts:
        return np.full(len(table), np.nan)
    return np.sqrt(np.mean(np.square(parts), axis=0)) / 1000.0


def _reference_at_source_epochs(tables: dict[Any, QTable], keys: np.ndarray,
                                ref_idx: np.ndarray, plane: TangentPlane
                                ) -> tuple[np.ndarray, np.ndarray]:
    """Tangent-plane position and error of reference ``ref_idx[k]`` at the epoch of source k."""
    xy = np.full((ref_idx.size, 2), np.nan)
    err = np.full(ref_idx.size, np.nan)
    for key, table in tables.items():
        chosen = np.array([k == key for k in keys], dtype=bool)
        if not np.any(chosen):
            continue
        rows = ref_idx[chosen]
        xi, eta = plane.world_to_tp(np.asarray(table[COL_RA], float)[rows],
                                    np.asarray(table[COL_DEC], float)[rows])
        xy[chosen] = np.column_stack([xi, eta])
        err[chosen] = _position_error(table)[rows]
    return xy, err


def _weights(fitter: Fitter, registry: Registry, image_xy: np.ndarray, ref_xy: np.ndarray,
             pos_err: np.ndarray, ref_err: np.ndarray, scale: float,
             ref_idx: np.ndarray) -> np.ndarray:
    """Inverse-variance weights from the source and reference position errors.

    A reference star paired with ``k`` sources (its detections in ``k`` images;
    ``ref_idx``: the reference row of each pair) brings its own error into all
    ``k`` pairs: they are correlated, and their mean carries ``ref_var +
    src_var / k``. Each pair's weight is ``1 / (src_var + k ref_var)``, so that
    the star counts once, with the weight of that mean (generalised least
    squares for the correlated pairs).

    Sources without a position error get one estimated from the residuals of a
    first fit (minus the reference errors' share).
    """
    ref_var = np.nan_to_num(ref_err, nan=0.0) ** 2
    _, inverse, counts = np.unique(ref_idx, return_inverse=True, return_counts=True)
    multiplicity = counts[inverse].astype(float)
    src = np.array(pos_err, dtype=float)
    missing = ~np.isfinite(src)
    if np.any(missing):
        guess = _DEFAULT_POS_ERR_PIX * scale
        trial = registry.run_stage(fitter, image_xy, ref_xy, 1.0 / (guess**2 + ref_var))
        kept = trial.fitmask if trial.fitmask.size == src.size else np.ones(src.size, bool)
        residual_var = float(np.mean(np.square(trial.residuals[kept])))  # per axis
        floor = (_MIN_POS_ERR_PIX * scale) ** 2
        estimate = max(residual_var - float(np.mean(ref_var[kept])), floor)
        src[missing] = np.sqrt(estimate)
    weights = 1.0 / (src**2 + multiplicity * ref_var)
    return weights / np.mean(weights)


def _used_catalog(table: QTable, ref_idx: np.ndarray, kept: np.ndarray) -> QTable:
    """The reference stars (at the matching epoch) with ``matched`` and ``used`` flags
    (``kept``: the pairs the fit kept)."""
    out = QTable(table, copy=True)
    matched = np.zeros(len(out), dtype=bool)
    used = np.zeros(len(out), dtype=bool)
    matched[ref_idx] = True
    used[ref_idx[kept]] = True
    out["matched"] = matched
    out["used"] = used
    return out
