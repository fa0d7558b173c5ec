"""Alignment units: images (or rigid groups of images) with catalogs in the shared tangent plane."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from astropy.table import QTable, vstack
from scipy.spatial import ConvexHull, QhullError

from aligncore.tangent import TangentPlane, footprint_world, pixel_scale, pixel_to_world
from aligncore.types import (
    COL_DEC,
    COL_FLUX,
    COL_RA,
    COL_TP_X,
    COL_TP_Y,
    COL_X,
    COL_X_ERR,
    COL_Y,
    COL_Y_ERR,
    META_FWHM,
    META_PIXEL_SCALE,
    AlignImage,
    FitResult,
    Status,
    UnitOutcome,
)

__all__ = [
    "TP_ERR",
    "Unit",
    "UnitOutcome",
    "apply_outcomes",
    "build_units",
    "outcomes_of",
    "union_tangent_plane",
    "working_copies",
]

TP_ERR = "tp_err"
"""Centroid uncertainty (arcsec, per axis) in the tangent plane, from ``x_err``/``y_err``."""


@dataclass
class Unit:
    """A rigid alignment unit: one image, or all images of a group.

    Inputs (set by `build_units`, read by every step): ``key``, ``members``,
    ``catalog`` (tangent-plane positions ``tp_x, tp_y``; `xy`), ``footprint``,
    ``pixel_scale``.

    Outputs: ``status``, ``reason``, ``fit``, ``n_matched``, ``meta``. A step
    does not assign them: it returns a `UnitOutcome` per unit, and the pipeline
    applies the outcomes with `apply_outcomes`, the one place that writes them.
    A step that needs its own intermediate state (the sequential pass, a
    solver) works on `working_copies` of the units.
    """

    key: str
    members: list[int]
    catalog: QTable
    footprint: np.ndarray
    pixel_scale: float
    fit: FitResult | None = None
    status: Status | None = None
    reason: str = ""
    n_matched: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    _xy: tuple[QTable, np.ndarray] | None = field(default=None, init=False, repr=False,
                                                   compare=False)

    @property
    def xy(self) -> np.ndarray:
        """Tangent-plane positions ``(n, 2)`` of the catalog (read-only; cached per catalog)."""
        if self._xy is None or self._xy[0] is not self.catalog:
            xy = np.column_stack([np.asarray(self.catalog[COL_TP_X], float),
                                  np.asarray(self.catalog[COL_TP_Y], float)])
            xy.flags.writeable = False
            self._xy = (self.catalog, xy)
        return self._xy[1]

    def corrected_xy(self) -> np.ndarray:
        return self.fit.apply(self.xy) if self.fit is not None else self.xy


def outcomes_of(units: Sequence[Unit]) -> dict[str, UnitOutcome]:
    """The output fields of each unit (by key), as outcomes."""
    return {unit.key: UnitOutcome(unit.status, unit.reason, unit.fit, unit.n_matched,
                                  dict(unit.meta)) for unit in units}


def apply_outcomes(units: Sequence[Unit], outcomes: Mapping[str, UnitOutcome]) -> None:
    """Set the output fields of the units named in ``outcomes`` (by key); others are kept."""
    for unit in units:
        outcome = outcomes.get(unit.key)
        if outcome is not None:
            unit.status, unit.reason = outcome.status, outcome.reason
            unit.fit, unit.n_matched = outcome.fit, outcome.n_matched
            unit.meta = dict(outcome.meta)


def working_copies(units: Sequence[Unit]) -> list[Unit]:
    """Copies of the units that a step may update while it works (inputs shared, not copied;
    ``meta`` copied): the caller's units stay as they are."""
    return [replace(unit, meta=dict(unit.meta)) for unit in units]


def union_tangent_plane(images: Sequence[AlignImage]) -> TangentPlane:
    """Tangent plane at the centre of the union of the image footprints."""
    vectors = []
    for image in images:
        ra, dec = footprint_world(image.wcs, image.shape)
        ra, dec = np.radians(ra), np.radians(dec)
        vectors.append(np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra),
                                        np.sin(dec)]))
    mean = np.concatenate(vectors).mean(axis=0)
    ra0 = math.degrees(math.atan2(mean[1], mean[0])) % 360.0
    dec0 = math.degrees(math.atan2(mean[2], math.hypot(mean[0], mean[1])))
    return TangentPlane(ra0, dec0)


def _floats(column: Any) -> np.ndarray:
    """A column as floats; masked entries become NaN (never their fill value)."""
    values = np.ma.asarray(getattr(column, "value", column), dtype=float)
    return np.ma.filled(values, np.nan)


def _project_catalog(catalog: QTable, image: AlignImage, plane: TangentPlane,
                     index: int, scale: float) -> QTable:
    """Catalog rows with sky and tangent-plane positions (and ``tp_err`` from x_err/y_err)."""
    table = QTable()
    x = _floats(catalog[COL_X]) if len(catalog) else np.zeros(0)
    y = _floats(catalog[COL_Y]) if len(catalog) else np.zeros(0)
    ra, dec = pixel_to_world(image.wcs, x, y)
    xi, eta = plane.world_to_tp(ra, dec)
    table[COL_X] = x
    table[COL_Y] = y
    table[COL_RA] = ra
    table[COL_DEC] = dec
    table[COL_TP_X] = xi
    table[COL_TP_Y] = eta
    table["image"] = np.full(len(x), index, dtype=int)
    table["row"] = np.arange(len(x))
    for name in (COL_FLUX, COL_X_ERR, COL_Y_ERR):
        if name in catalog.colnames:
            table[name] = _floats(catalog[name])
    if COL_X_ERR in catalog.colnames and COL_Y_ERR in catalog.colnames:
        x_err = _floats(catalog[COL_X_ERR])
        y_err = _floats(catalog[COL_Y_ERR])
        table[TP_ERR] = np.sqrt(0.5 * (x_err**2 + y_err**2)) * scale
    return table


def build_units(images: Sequence[AlignImage], catalogs: Sequence[QTable],
                plane: TangentPlane, overlap: str = "footprint") -> list[Unit]:
    """Group images into rigid units with their catalogs in the tangent plane.

    Parameters
    ----------
    images, catalogs : sequence
        The images and their source catalogs (pixels).
    plane : TangentPlane
        The shared plane.
    overlap : {'footprint', 'catalog_hull'}
        A unit's ``footprint`` (which decides its overlaps): the union of its images'
        WCS footprints, or (``align.overlap: catalog_hull``, tweakwcs' way) the convex
        hull of its sources; a unit with fewer than 3 sources not on one line keeps
        its WCS footprint.
    """
    keys: dict[str, list[int]] = {}
    for index, image in enumerate(images):
        key = f"group:{image.group_id}" if image.group_id else f"image:{index}"
        keys.setdefault(key, []).append(index)
    units = []
    for key, members in keys.items():
        image = images[members[0]]
        scale = pixel_scale(image.wcs, image.shape[1] / 2.0, image.shape[0] / 2.0, plane)
        tables = [_project_catalog(catalogs[i], images[i], plane, i, scale) for i in members]
        catalog = tables[0] if len(tables) == 1 else _vstack(tables)
        finite = np.isfinite(np.asarray(catalog[COL_TP_X])) & np.isfinite(
            np.asarray(catalog[COL_TP_Y]))
        catalog = catalog[finite]
        corners = []
        for i in members:
            ra, dec = footprint_world(images[i].wcs, images[i].shape)
            corners.append(np.column_stack(plane.world_to_tp(ra, dec)))
        footprint = corners[0] if len(corners) == 1 else _hull(np.concatenate(corners))
        if overlap == "catalog_hull":
            footprint = _catalog_hull(catalog, footprint)
        catalog.meta[META_PIXEL_SCALE] = scale
        fwhm = _catalog_fwhm(catalogs[members[0]])
        if fwhm is not None:
            catalog.meta[META_FWHM] = fwhm
        units.append(Unit(key=key, members=members, catalog=catalog, footprint=footprint,
                          pixel_scale=scale))
    return units


def _catalog_fwhm(catalog: QTable) -> float | None:
    """The PSF FWHM (pixels) the detector worked with (``meta[META_FWHM]``), if it says."""
    value = catalog.meta.get(META_FWHM)
    if isinstance(value, int | float) and value > 0:
        return float(value)
    return None


def _vstack(tables: Sequence[QTable]) -> QTable:
    return QTable(vstack(tables, metadata_conflicts="silent"))


def _hull(points: np.ndarray) -> np.ndarray:
    return points[ConvexHull(points).vertices]


def _catalog_hull(catalog: QTable, fallback: np.ndarray) -> np.ndarray:
    """The convex hull of a catalog's tangent-plane positions (``fallback`` when fewer than
    three sources span an area)."""
    xy = np.column_stack([np.asarray(catalog[COL_TP_X], float),
                          np.asarray(catalog[COL_TP_Y], float)])
    if len(np.unique(xy, axis=0)) < 3:
        return fallback
    try:
        return _hull(xy)
    except QhullError:  # all on one line
        return fallback
