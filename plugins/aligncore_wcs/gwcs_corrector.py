"""Correct a JWST-style GWCS by a tangent-plane fit: the ``v2v3corr`` step.

The correction lives in the exposure's V2/V3 tangent plane (see
`aligncore_wcs.v2v3corr`). It is inserted right after the ``v2v3`` frame (or
``v2v3vacorr`` when the velocity-aberration frame follows it) as a new frame
``v2v3corr``; when the WCS already has one, the new correction is composed
with it (``M_new = M M_old``, ``t_new = M t_old + s``), never added twice.
Every other frame and transform is left as it was.

A fit made in another tangent plane (the run's shared sky plane) is converted
exactly: points over the detector are carried from the V2/V3 plane to the sky,
corrected in the fit's plane, carried back, and the affine map between the
V2/V3-plane positions before and after is solved by least squares. Between two
gnomonic planes an affine map stays affine to second order in the plane
separation, so the converted correction reproduces the requested sky
correction to well below a micro-arcsecond over a detector (checked: a warning
is raised above 1 micro-arcsecond).

Reference angles ``(v2_ref, v3_ref, roll_ref)`` are taken, in order, from an
existing ``v2v3corr`` step, from the mapping ``wcs.aligncore_wcsinfo`` (set by
``aligncore.open_image`` from an ASDF file's ``meta.wcsinfo``), from the
``zyxyz`` pointing rotation of the ``v2v3 -> world`` transform (JWST files),
or numerically: the V2/V3 position of the detector centre and the position
angle of +V3 there.
"""

from __future__ import annotations

import copy
import math
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

import aligncore
from aligncore import FitResult, TangentPlane
from aligncore.stages import require_fit_types

if TYPE_CHECKING:
    from gwcs import WCS

    from aligncore_wcs.v2v3corr import PlaneCorrection, RefAngles

# gwcs, astropy.modeling and the v2v3corr transforms are imported when a GWCS is corrected,
# so that registering this corrector (every run loads it) costs nothing for FITS images.

__all__ = [
    "CORRECTION_FRAME",
    "WCSINFO_ATTRIBUTE",
    "FrameLayout",
    "GWCSCorrector",
    "frame_layout",
    "reference_angles",
]

CORRECTION_FRAME = "v2v3corr"
WCSINFO_ATTRIBUTE = "aligncore_wcsinfo"
"""Attribute of a `gwcs.WCS` holding ``meta.wcsinfo`` (v2_ref, v3_ref, roll_ref, ...)."""

_GRID = 9  # points per axis over the detector for the plane conversion
_FALLBACK_HALF = 64.0  # arcsec: half-size of the sampled plane region without a pixel box
_MAX_CONVERSION_MAS = 1e-3


@dataclass(frozen=True)
class FrameLayout:
    """Where the correction goes in a GWCS pipeline.

    Attributes
    ----------
    v2v3 : str
        The frame the correction follows (``v2v3`` or ``v2v3vacorr``).
    corrected : bool
        True when a ``v2v3corr`` frame already follows it.
    world : str
        Name of the output (sky) frame.
    detector : str
        Name of the input (pixel) frame.
    """

    v2v3: str
    corrected: bool
    world: str
    detector: str

    @property
    def target(self) -> str:
        """Frame whose coordinates the sky transform starts from."""
        return CORRECTION_FRAME if self.corrected else self.v2v3


def frame_layout(wcs: WCS) -> FrameLayout:
    """Check the frames of ``wcs`` and locate the correction point.

    Raises
    ------
    aligncore.AlignError
        Frame names are not unique, there is not exactly one ``v2v3``, or a
        ``v2v3vacorr``/``v2v3corr`` frame is out of place.
    """
    frames = list(wcs.available_frames)
    listing = ", ".join(frames)
    duplicated = sorted({f for f in frames if frames.count(f) > 1})
    if duplicated:
        raise aligncore.AlignError(f"GWCS frame names must be unique; repeated: "
                                   f"{', '.join(duplicated)} (frames: {listing})")
    if "v2v3" not in frames:
        raise aligncore.AlignError(f"the gwcs corrector needs a 'v2v3' frame; frames: {listing}")
    index = frames.index("v2v3")
    if index in (0, len(frames) - 1):
        raise aligncore.AlignError(f"'v2v3' cannot be the first or last frame (frames: {listing})")
    anchor = "v2v3"
    if "v2v3vacorr" in frames:
        if frames.index("v2v3vacorr") != index + 1 or index + 1 == len(frames) - 1:
            raise aligncore.AlignError(
                f"'v2v3vacorr' must directly follow 'v2v3' and not be last (frames: {listing})")
        anchor, index = "v2v3vacorr", index + 1
    corrected = CORRECTION_FRAME in frames
    if corrected and (frames.index(CORRECTION_FRAME) != index + 1
                      or index + 1 == len(frames) - 1):
        raise aligncore.AlignError(
            f"'{CORRECTION_FRAME}' must directly follow '{anchor}' and not be last "
            f"(frames: {listing})")
    return FrameLayout(anchor, corrected, frames[-1], frames[0])


def _step_transform(wcs: WCS, frame: str) -> Any:
    for step in wcs.pipeline:
        if step.frame.name == frame:
            return step.transform
    raise KeyError(frame)


def _pixel_box(wcs: WCS) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """``((x0, x1), (y0, y1))`` from the bounding box or the pixel shape, else None."""
    try:
        box = wcs.bounding_box
    except (NotImplementedError, AttributeError):
        box = None
    if box is not None:
        intervals = box.bounding_box(order="F")
        if len(intervals) == 2:
            return tuple((float(lo), float(hi)) for lo, hi in intervals)  # type: ignore[return-value]
    if wcs.pixel_shape is not None:
        nx, ny = wcs.pixel_shape
        return ((-0.5, nx - 0.5), (-0.5, ny - 0.5))
    return None


def _sky_rotation_angles(model: Any) -> RefAngles | None:
    """Angles of a JWST pointing rotation (``zyxyz``) inside ``model``, if there is one."""
    from astropy.modeling.models import RotationSequence3D

    from aligncore_wcs.v2v3corr import RefAngles

    leaves = model.traverse_postorder() if hasattr(model, "traverse_postorder") else [model]
    found = [m for m in leaves if isinstance(m, RotationSequence3D) and m.axes_order == "zyxyz"]
    if len(found) != 1:
        return None
    a = np.asarray(found[0].angles.value, dtype=float)
    return RefAngles(float(a[0] * 3600.0), float(-a[1] * 3600.0), float(a[2] % 360.0),
                     "transform")


def _position_angle(ra0: float, dec0: float, ra1: float, dec1: float) -> float:
    """Position angle (deg East of North) of point 1 seen from point 0."""
    a0, d0, a1, d1 = (math.radians(v) for v in (ra0, dec0, ra1, dec1))
    y = math.sin(a1 - a0) * math.cos(d1)
    x = math.cos(d0) * math.sin(d1) - math.sin(d0) * math.cos(d1) * math.cos(a1 - a0)
    return math.degrees(math.atan2(y, x)) % 360.0


def numeric_roll(to_sky: Any, v2_ref: float, v3_ref: float) -> float:
    """Position angle of +V3 at ``(v2_ref, v3_ref)`` through the ``v2v3 -> world`` model."""
    step = 1.0  # arcsec; constant V2 is a great circle, so the initial bearing is exact
    ra0, dec0 = to_sky(v2_ref, v3_ref)
    ra1, dec1 = to_sky(v2_ref, v3_ref + step)
    return _position_angle(float(ra0), float(dec0), float(ra1), float(dec1))


def reference_angles(wcs: WCS) -> RefAngles:
    """The V2/V3 tangent-plane angles of ``wcs`` (see the module docstring for the order)."""
    from aligncore_wcs.v2v3corr import RefAngles, read_correction

    layout = frame_layout(wcs)
    if layout.corrected:
        try:
            return read_correction(_step_transform(wcs, layout.v2v3)).angles
        except ValueError as exc:
            raise aligncore.AlignError(str(exc)) from None
    info = getattr(wcs, WCSINFO_ATTRIBUTE, None)
    if isinstance(info, Mapping) and all(
        isinstance(info.get(k), int | float) for k in ("v2_ref", "v3_ref", "roll_ref")
    ):
        return RefAngles(float(info["v2_ref"]), float(info["v3_ref"]),
                         float(info["roll_ref"]), "wcsinfo")
    to_sky = wcs.get_transform(layout.v2v3, layout.world)
    parsed = _sky_rotation_angles(to_sky)
    if parsed is not None:
        return parsed
    box = _pixel_box(wcs)
    if box is not None:
        centre = (0.5 * sum(box[0]), 0.5 * sum(box[1]))
        v2, v3 = wcs.get_transform(layout.detector, layout.v2v3)(*centre)
    else:
        v2, v3 = 0.0, 0.0
    v2, v3 = float(v2), float(v3)
    return RefAngles(v2, v3, numeric_roll(to_sky, v2, v3), "numeric")


def _fit_affine(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Least-squares ``dst ~ M src + s``; returns ``M``, ``s`` and the largest residual."""
    centre = src.mean(axis=0)
    design = np.column_stack([src - centre, np.ones(len(src))])
    coeff = np.linalg.solve(design.T @ design, design.T @ dst)  # centred: well conditioned
    matrix = coeff[:2].T
    shift = coeff[2] - matrix @ centre
    residual = dst - (src @ matrix.T + shift)
    return matrix, shift, float(np.max(np.hypot(residual[:, 0], residual[:, 1])))


class GWCSCorrector(aligncore.Corrector):
    """Apply a tangent-plane fit to a JWST-style `gwcs.WCS` as a ``v2v3corr`` step.

    The WCS needs exactly one ``v2v3`` frame (telescope V2/V3, arcsec),
    neither first nor last, optionally followed by ``v2v3vacorr``. The result
    is a new WCS with one ``v2v3corr`` frame right after ``v2v3`` (or
    ``v2v3vacorr``); the input WCS is not modified. The correction's inverse
    is exact, so pixel -> world -> pixel round trips are as good as the
    original WCS's own inverse.
    """

    name = "gwcs"

    class Params(aligncore.Params):
        """The GWCS corrector has no parameters."""

    @classmethod
    def accepts(cls, wcs: Any) -> bool:
        gwcs = sys.modules.get("gwcs")  # no gwcs imported: wcs cannot be a gwcs.WCS
        return gwcs is not None and isinstance(wcs, gwcs.WCS) and "v2v3" in wcs.available_frames

    def correct(self, wcs: WCS, fit: FitResult, tangent_plane: TangentPlane) -> WCS:
        """Return a new WCS whose sky positions are those of ``wcs`` moved by ``fit``.

        ``fit`` maps positions in ``tangent_plane`` (arcsec, xi East, eta North).
        """
        require_fit_types(self.name, fit, tangent_plane)
        layout, angles, old = self._prepare(wcs)
        p, p_new = self._plane_points(wcs, layout, angles, fit, tangent_plane)
        matrix, shift, worst = _fit_affine(p, p_new)
        if worst * 1000.0 > _MAX_CONVERSION_MAS:
            warnings.warn(
                f"the correction is not affine in the V2/V3 plane to {_MAX_CONVERSION_MAS} mas "
                f"(worst {worst * 1000.0:.2g} mas): the fit's tangent plane is far from the image",
                stacklevel=2,
            )
        return self._install(wcs, layout, old.compose(matrix, shift))

    def correct_plane(self, wcs: WCS, matrix: Any, shift: Any) -> WCS:
        """Return a new WCS corrected by ``p' = matrix @ p + shift`` in its own V2/V3
        tangent plane (arcsec), composed with any existing ``v2v3corr``."""
        matrix = np.asarray(matrix, dtype=float).reshape(2, 2)
        shift = np.asarray(shift, dtype=float).reshape(2)
        if not np.all(np.isfinite(matrix)) or not np.all(np.isfinite(shift)):
            raise aligncore.AlignError("the correction matrix and shift must be finite")
        layout, _, old = self._prepare(wcs)
        return self._install(wcs, layout, old.compose(matrix, shift))

    # --- steps ---------------------------------------------------------------------
    def _prepare(self, wcs: Any) -> tuple[FrameLayout, RefAngles, PlaneCorrection]:
        from gwcs import WCS

        from aligncore_wcs.v2v3corr import PlaneCorrection, read_correction

        if not isinstance(wcs, WCS):
            raise aligncore.AlignError(
                f"the gwcs corrector corrects gwcs.WCS objects, got {type(wcs).__name__}")
        layout = frame_layout(wcs)
        angles = reference_angles(wcs)
        if layout.corrected:
            old = read_correction(_step_transform(wcs, layout.v2v3), check=False)
        else:
            old = PlaneCorrection(angles, np.eye(2), np.zeros(2))
        return layout, angles, old

    def _plane_points(
        self, wcs: WCS, layout: FrameLayout, angles: RefAngles, fit: FitResult,
        plane: TangentPlane,
    ) -> tuple[np.ndarray, np.ndarray]:
        """V2/V3-plane positions over the detector before and after the sky correction."""
        from aligncore_wcs.v2v3corr import plane_from_v2v3, plane_to_v2v3

        box = _pixel_box(wcs)
        if box is not None:
            xs = np.linspace(box[0][0], box[0][1], _GRID)
            ys = np.linspace(box[1][0], box[1][1], _GRID)
            x, y = (a.ravel() for a in np.meshgrid(xs, ys))
            v2, v3 = wcs.get_transform(layout.detector, layout.target)(x, y)
        else:
            g = np.linspace(-_FALLBACK_HALF, _FALLBACK_HALF, _GRID)
            grid = np.column_stack([a.ravel() for a in np.meshgrid(g, g)])
            v2, v3 = plane_to_v2v3(angles, grid)
        v2, v3 = np.asarray(v2, float), np.asarray(v3, float)
        keep = np.isfinite(v2) & np.isfinite(v3)
        v2, v3 = v2[keep], v3[keep]
        to_sky = wcs.get_transform(layout.target, layout.world)
        try:
            from_sky = wcs.get_transform(layout.world, layout.target)
        except NotImplementedError:
            raise aligncore.AlignError(
                f"the '{layout.target}' -> '{layout.world}' transform has no inverse") from None
        ra, dec = to_sky(v2, v3)
        xi, eta = plane.world_to_tp(ra, dec)
        moved = fit.apply(np.column_stack([xi, eta]))
        ra_new, dec_new = plane.tp_to_world(moved[:, 0], moved[:, 1])
        v2_new, v3_new = from_sky(ra_new, dec_new)
        p = plane_from_v2v3(angles, v2, v3)
        p_new = plane_from_v2v3(angles, v2_new, v3_new)
        ok = np.all(np.isfinite(p), axis=1) & np.all(np.isfinite(p_new), axis=1)
        if np.count_nonzero(ok) < 3:
            raise aligncore.AlignError("cannot carry the correction into the V2/V3 plane "
                                       "(the detector does not map onto the fit's tangent plane)")
        return p[ok], p_new[ok]

    def _install(self, wcs: WCS, layout: FrameLayout, correction: PlaneCorrection) -> WCS:
        from aligncore_wcs.v2v3corr import CORRECTION_NAME, correction_model

        if abs(np.linalg.det(correction.matrix)) < 1e-12:
            raise aligncore.AlignError("the correction matrix is singular")
        new = copy.deepcopy(wcs)
        if layout.corrected:
            name = _step_transform(wcs, layout.v2v3).name or CORRECTION_NAME
            new.set_transform(layout.v2v3, CORRECTION_FRAME, correction_model(correction, name))
        else:
            anchor = next(step.frame for step in new.pipeline if step.frame.name == layout.v2v3)
            frame = copy.deepcopy(anchor)
            frame.name = CORRECTION_FRAME
            new.insert_frame(layout.v2v3, correction_model(correction), frame)
        return new
