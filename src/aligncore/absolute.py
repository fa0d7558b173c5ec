"""Absolute alignment: the combined catalog of the aligned images against a reference catalog.

The relatively aligned sources of every image form one catalog, fitted once to
the reference catalog as one rigid group; the fit is composed with each
image's relative correction so that the relative alignment is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from astropy import units as u
from astropy.coordinates import Angle
from astropy.table import QTable

from aligncore.config import Config
from aligncore.errors import AlignError
from aligncore.registry import Registry
from aligncore.tangent import TangentPlane
from aligncore.types import (
    COL_DEC,
    COL_RA,
    COL_TP_X,
    COL_TP_Y,
    META_PIXEL_SCALE,
    AlignImage,
    FitResult,
    Status,
)

if TYPE_CHECKING:
    from aligncore.units import Unit

__all__ = ["absolute_align", "combined_catalog"]


def combined_catalog(units: Sequence[Unit]) -> QTable:
    """Tangent-plane positions (corrected) of the sources of all aligned units."""
    xs, ys = [], []
    for unit in units:
        if unit.status in (Status.SUCCESS, Status.REFERENCE):
            xy = unit.corrected_xy()
            xs.append(xy[:, 0])
            ys.append(xy[:, 1])
    table = QTable({COL_TP_X: np.concatenate(xs) if xs else np.zeros(0),
                    COL_TP_Y: np.concatenate(ys) if ys else np.zeros(0)})
    return table


def absolute_align(units: list[Unit], images: Sequence[AlignImage], plane: TangentPlane,
                   config: Config, registry: Registry) -> tuple[FitResult | None, dict[str, Any]]:
    """Fit the combined catalog to the reference catalog; compose into every unit's fit."""
    section = config.absolute
    info: dict[str, Any] = {"enabled": True}
    ok_units = [u for u in units if u.status in (Status.SUCCESS, Status.REFERENCE)]
    if not ok_units:
        info["reason"] = "no relatively aligned image"
        return None, info
    combined = combined_catalog(ok_units)
    combined.meta[META_PIXEL_SCALE] = ok_units[0].pixel_scale
    corners = np.concatenate([u.footprint for u in ok_units])
    radius_arcsec = float(np.max(np.hypot(corners[:, 0], corners[:, 1])))
    margin = (section.searchrad if isinstance(section.searchrad, float) else 10.0) + 1.0
    center = plane.center
    epochs = [images[i].epoch for u in ok_units for i in u.members if images[i].epoch is not None]
    epoch = epochs[0] if epochs else None
    refcat_stage = config.build_stage("refcatalog", registry)
    try:
        ref = registry.run_stage(refcat_stage, center,
                                 Angle((radius_arcsec + margin) * u.arcsec), epoch)
    except AlignError as exc:
        info["reason"] = f"reference catalog query failed: {exc}"
        return None, info
    ref = QTable(ref)
    info["n_reference"] = len(ref)
    if len(ref) < section.min_gaia:
        info["reason"] = (f"reference catalog has {len(ref)} sources in the footprint; "
                          f"min_gaia={section.min_gaia}")
        return None, info
    xi, eta = plane.world_to_tp(np.asarray(ref[COL_RA], float), np.asarray(ref[COL_DEC], float))
    ref_tp = QTable({COL_TP_X: xi, COL_TP_Y: eta})
    ref_tp.meta[META_PIXEL_SCALE] = combined.meta[META_PIXEL_SCALE]
    matcher_cls = registry.get("matcher", config.matcher.plugin)
    matcher_params = dict(config.matcher.params)
    for key in ("searchrad", "separation", "tolerance"):
        if key in matcher_cls.Params.model_fields:
            matcher_params[key] = getattr(section, key)
    matcher = matcher_cls(matcher_params)
    fitter_cls = registry.get("fitter", config.fitter.plugin)
    fitter_params = dict(config.fitter.params)
    for key in ("fitgeometry", "nclip", "sigma"):
        if key in fitter_cls.Params.model_fields:
            fitter_params[key] = getattr(section, key)
    fitter = fitter_cls(fitter_params)
    match = registry.run_stage(matcher, combined, ref_tp)
    info["n_matched"] = match.n_matched
    if match.n_matched < section.min_gaia:
        info["reason"] = (f"{match.n_matched} sources matched to the reference catalog "
                          f"({len(ref)} found, {len(combined)} in the combined catalog); "
                          f"min_gaia={section.min_gaia}")
        return None, info
    image_xy = np.column_stack([np.asarray(combined[COL_TP_X], float)[match.image_idx],
                                np.asarray(combined[COL_TP_Y], float)[match.image_idx]])
    ref_xy = np.column_stack([xi[match.ref_idx], eta[match.ref_idx]])
    try:
        fit = registry.run_stage(fitter, image_xy, ref_xy)
    except AlignError as exc:
        info["reason"] = f"absolute fit failed: {exc}"
        return None, info
    for unit in ok_units:
        unit.fit = fit.compose(unit.fit) if unit.fit is not None else fit
    info["fit"] = fit.summary()
    return fit, info
