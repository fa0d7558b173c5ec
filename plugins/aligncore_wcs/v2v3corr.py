"""The V2/V3 tangent-plane correction model of a JWST-style GWCS (the ``v2v3corr`` step).

The tangent plane of an exposure is the gnomonic projection of the telescope's
V2/V3 sphere at the aperture reference point ``(v2_ref, v3_ref)`` (arcsec),
rotated by ``roll_ref`` (deg, the position angle of +V3 at the reference
point): first a rotation ``zyx`` by ``(v2_ref, -v3_ref, roll_ref)`` brings the
reference point onto the x axis, then ``(y/x, z/x)`` are the plane coordinates.
When the telescope-to-sky transform is the usual rotation, the plane's axes
are East and North at the reference point.

The correction model maps V2/V3 to corrected V2/V3::

    arcsec -> deg | spherical -> cartesian | rotation | projection
        | affine (matrix, translation) | deprojection | rotation^-1
        | cartesian -> spherical | deg -> arcsec

Its affine part holds the translation in tangent units (radians), like the
correction frames JWST's pipeline writes, and its sub-models carry the same
names (``tp_affine``, ``det_to_optic_axis``, ...), so files corrected by either
tool can be corrected again by the other. The public functions below speak
arcsec.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.modeling import CompoundModel, Model
from astropy.modeling.models import (
    AffineTransformation2D,
    Const1D,
    Identity,
    Mapping,
    RotationSequence3D,
    Scale,
)
from gwcs.geometry import CartesianToSpherical, SphericalToCartesian

__all__ = [
    "ARCSEC_PER_RAD",
    "CORRECTION_NAME",
    "PlaneCorrection",
    "RefAngles",
    "correction_model",
    "plane_from_v2v3",
    "plane_to_v2v3",
    "read_correction",
]

ARCSEC_PER_RAD = 180.0 / math.pi * 3600.0

CORRECTION_NAME = "JWST tangent-plane linear correction. v1"
"""Model name identifying a V2/V3 tangent-plane correction in JWST files.

Given to new correction models so that JWST's own tools accept them (a
composed correction keeps the name it had, e.g. Roman's); any model with the
sub-models ``tp_affine`` and ``det_to_optic_axis`` is read.
"""

_AFFINE = "tp_affine"
_ROTATION = "det_to_optic_axis"


@dataclass(frozen=True)
class RefAngles:
    """Reference angles of the V2/V3 tangent plane.

    Attributes
    ----------
    v2_ref, v3_ref : float
        Aperture reference point, arcsec.
    roll_ref : float
        Position angle of +V3 at the reference point, degrees East of North.
    source : str
        Where the angles came from (``v2v3corr``, ``wcsinfo``, ``transform``
        or ``numeric``).
    """

    v2_ref: float
    v3_ref: float
    roll_ref: float
    source: str = ""

    def rotation(self) -> RotationSequence3D:
        """The ``zyx`` rotation taking the reference point onto the x axis."""
        return RotationSequence3D(
            [self.v2_ref / 3600.0, -self.v3_ref / 3600.0, self.roll_ref], "zyx", name=_ROTATION
        )

    def same_plane(self, other: RefAngles, tol_arcsec: float = 1e-7) -> bool:
        """True when both define the same plane (to ``tol_arcsec``)."""
        droll = (self.roll_ref - other.roll_ref + 180.0) % 360.0 - 180.0
        return (
            abs(self.v2_ref - other.v2_ref) <= tol_arcsec
            and abs(self.v3_ref - other.v3_ref) <= tol_arcsec
            and abs(droll) * 3600.0 <= tol_arcsec
        )


@dataclass(frozen=True)
class PlaneCorrection:
    """An affine correction ``p' = matrix @ p + shift`` of the V2/V3 plane (arcsec)."""

    angles: RefAngles
    matrix: np.ndarray
    shift: np.ndarray

    def compose(self, matrix: np.ndarray, shift: np.ndarray) -> PlaneCorrection:
        """Apply ``(matrix, shift)`` after this correction: ``M M_old``, ``M t_old + s``."""
        matrix = np.asarray(matrix, dtype=float)
        shift = np.asarray(shift, dtype=float)
        return PlaneCorrection(self.angles, matrix @ self.matrix, matrix @ self.shift + shift)


def _to_degrees() -> Model:
    return Scale(1.0 / 3600.0, name="arcsec_to_deg_1D") & Scale(1.0 / 3600.0,
                                                                name="arcsec_to_deg_1D")


def _to_arcsec() -> Model:
    return Scale(3600.0, name="deg_to_arcsec_1D") & Scale(3600.0, name="deg_to_arcsec_1D")


def _project() -> Model:
    """Cartesian ``(x, y, z)`` -> gnomonic ``(y/x, z/x)``."""
    model = Mapping((1, 2), n_inputs=3) / Mapping((0, 0), n_inputs=3)
    model.name = "cartesian_to_tangent"
    return model


def _deproject() -> Model:
    """Gnomonic ``(u, v)`` -> cartesian ``(1, u, v)``."""
    model = Mapping((0, 0, 1)) | (Const1D(1.0, name="one") & Identity(2))
    model.name = "tangent_to_cartesian"
    return model


def _forward_half(angles: RefAngles) -> Model:
    return (_to_degrees() | SphericalToCartesian(name="s2c", wrap_lon_at=180)
            | angles.rotation() | _project())


def _inverse_half(angles: RefAngles) -> Model:
    rotation = angles.rotation().inverse
    rotation.name = "optic_axis_to_det"
    return (_deproject() | rotation | CartesianToSpherical(name="c2s", wrap_lon_at=180)
            | _to_arcsec())


def plane_from_v2v3(angles: RefAngles, v2: Any, v3: Any) -> np.ndarray:
    """V2/V3 (arcsec) -> tangent-plane coordinates (arcsec), shape ``(n, 2)``."""
    u, v = _forward_half(angles)(np.asarray(v2, float).ravel(), np.asarray(v3, float).ravel())
    return np.column_stack([u, v]) * ARCSEC_PER_RAD


def plane_to_v2v3(angles: RefAngles, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tangent-plane coordinates ``(n, 2)`` (arcsec) -> V2/V3 (arcsec)."""
    p = np.asarray(p, dtype=float).reshape(-1, 2) / ARCSEC_PER_RAD
    v2, v3 = _inverse_half(angles)(p[:, 0], p[:, 1])
    return np.asarray(v2, float), np.asarray(v3, float)


def correction_model(correction: PlaneCorrection, name: str = CORRECTION_NAME) -> CompoundModel:
    """The ``v2v3 -> v2v3corr`` model of ``correction``, with its exact inverse."""
    angles = correction.angles
    matrix = np.asarray(correction.matrix, dtype=float)
    translation = np.asarray(correction.shift, dtype=float) / ARCSEC_PER_RAD
    inverse_matrix = np.linalg.inv(matrix)
    affine = AffineTransformation2D(matrix=matrix, translation=translation, name=_AFFINE)
    affine_inv = AffineTransformation2D(
        matrix=inverse_matrix, translation=-inverse_matrix @ translation, name="tp_affine_inv"
    )
    forward = _forward_half(angles) | affine | _inverse_half(angles)
    forward.name = name
    backward = _forward_half(angles) | affine_inv | _inverse_half(angles)
    backward.name = f"Inverse {name}"
    forward.inverse = backward
    return forward


def _submodel(model: Model, name: str) -> Model | None:
    if not isinstance(model, CompoundModel):
        return model if model.name == name else None
    for leaf in model.traverse_postorder():
        if leaf.name == name:
            return leaf
    return None


def read_correction(model: Model, *, check: bool = True) -> PlaneCorrection:
    """The plane correction held by a ``v2v3corr`` model (ours or JWST's).

    Parameters
    ----------
    model : Model
        The transform from ``v2v3`` (or ``v2v3vacorr``) to ``v2v3corr``.
    check : bool
        Verify that ``model`` maps points exactly as the model rebuilt from
        the parameters read does (to 1e-9 arcsec).

    Raises
    ------
    ValueError
        The model has no ``tp_affine`` / ``det_to_optic_axis`` sub-model, or
        does not behave as a tangent-plane correction.
    """
    affine = _submodel(model, _AFFINE)
    rotation = _submodel(model, _ROTATION)
    if not isinstance(affine, AffineTransformation2D) or not isinstance(
        rotation, RotationSequence3D
    ):
        raise ValueError(
            f"the v2v3corr transform {model.name!r} is not a V2/V3 tangent-plane correction "
            f"(no '{_AFFINE}' affine and '{_ROTATION}' rotation sub-models)"
        )
    a = np.asarray(rotation.angles.value, dtype=float)
    if rotation.axes_order != "zyx" or a.size != 3:
        raise ValueError(f"the v2v3corr rotation has axes {rotation.axes_order!r}; expected 'zyx'")
    angles = RefAngles(float(a[0] * 3600.0), float(-a[1] * 3600.0), float(a[2]), "v2v3corr")
    correction = PlaneCorrection(
        angles,
        np.array(affine.matrix.value, dtype=float),
        np.array(affine.translation.value, dtype=float) * ARCSEC_PER_RAD,
    )
    if check:
        g = np.linspace(-60.0, 60.0, 3)
        v2, v3 = (c.ravel() for c in np.meshgrid(angles.v2_ref + g, angles.v3_ref + g))
        got = np.column_stack(model(v2, v3))
        want = np.column_stack(correction_model(correction)(v2, v3))
        if not np.all(np.abs(got - want) < 1e-9):
            raise ValueError("the v2v3corr transform does not behave as a tangent-plane "
                             "correction with its own parameters")
    return correction
