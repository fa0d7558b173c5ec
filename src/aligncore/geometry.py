"""Fit geometries: the shapes of correction a fit solves for, in one table.

A correction maps image positions onto reference positions,
``ref = matrix @ image + shift``. Its geometry fixes which parameters are free:

=========  ==========  ==========  ==========================================
geometry   parameters  min points  parameters (in this order)
=========  ==========  ==========  ==========================================
shift      2           1           ``shift_x, shift_y``
rshift     3           2           ``rotation, shift_x, shift_y``
rscale     4           2           ``rotation, scale, shift_x, shift_y``
general    6           3           ``m00, m01, m10, m11, shift_x, shift_y``
=========  ==========  ==========  ==========================================

``auto`` is not a geometry but a choice among :data:`AUTO_GEOMETRIES` (the
simplest the data support). Fitters (the ``affine`` plugin) and solvers (the
global solver) read these tables and the linearised parameter blocks from
here, so that a geometry means the same thing everywhere.

Examples
--------
>>> from aligncore import geometry
>>> geometry.N_PARAMS["rscale"], geometry.MIN_POINTS["general"]
(4, 3)
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np

__all__ = [
    "AUTO",
    "AUTO_GEOMETRIES",
    "GEOMETRIES",
    "MIN_POINTS",
    "N_PARAMS",
    "PARAM_NAMES",
    "check_geometry",
    "design_block",
    "small_update",
]

PARAM_NAMES: Final[dict[str, tuple[str, ...]]] = {
    "shift": ("shift_x", "shift_y"),
    "rshift": ("rotation", "shift_x", "shift_y"),
    "rscale": ("rotation", "scale", "shift_x", "shift_y"),
    "general": ("m00", "m01", "m10", "m11", "shift_x", "shift_y"),
}
"""Geometry -> names of its free parameters (the order of a fit's covariance)."""

GEOMETRIES: Final[tuple[str, ...]] = tuple(PARAM_NAMES)
"""The fit geometries, simplest first."""

N_PARAMS: Final[dict[str, int]] = {name: len(names) for name, names in PARAM_NAMES.items()}
"""Geometry -> number of free parameters."""

MIN_POINTS: Final[dict[str, int]] = {"shift": 1, "rshift": 2, "rscale": 2, "general": 3}
"""Geometry -> minimum number of matched points that determine it."""

AUTO: Final[str] = "auto"
"""The ``fitgeometry`` value asking for the simplest geometry the matches support."""

AUTO_GEOMETRIES: Final[tuple[str, ...]] = ("rscale", "rshift", "shift")
"""The nested geometries ``auto`` chooses from, richest first."""


def check_geometry(name: str, *, allow_auto: bool = False) -> str:
    """Return ``name`` if it is a fit geometry, else raise a `ValueError` listing them.

    Parameters
    ----------
    name : str
        The geometry asked for.
    allow_auto : bool
        Accept ``auto`` too.
    """
    allowed = (*GEOMETRIES, AUTO) if allow_auto else GEOMETRIES
    if name not in allowed:
        raise ValueError(f"unknown fitgeometry {name!r}; expected one of {', '.join(allowed)}")
    return name


def design_block(xy: np.ndarray, center: np.ndarray, geometry: str) -> np.ndarray:
    """The linearised displacement of points ``xy`` per parameter of a small correction.

    For a correction close to the identity, ``displacement = block @ params``
    with the parameters of :func:`small_update` (a small rotation angle in
    radians for ``rshift``; ``[[a, -b], [b, a]]`` for ``rscale``; the matrix
    minus the identity for ``general``) about ``center``.

    Parameters
    ----------
    xy : ndarray, shape (n, 2)
        Points.
    center : ndarray, shape (2,)
        Centre of the rotation / scale.
    geometry : str
        One of :data:`GEOMETRIES`.

    Returns
    -------
    ndarray, shape (2n, n_params)
        Rows ``x0, y0, x1, y1, ...``.
    """
    n = len(xy)
    u = xy[:, 0] - center[0]
    v = xy[:, 1] - center[1]
    one, zero = np.ones(n), np.zeros(n)
    if geometry == "shift":
        cols_x, cols_y = [one, zero], [zero, one]
    elif geometry == "rshift":  # small rotation theta
        cols_x, cols_y = [-v, one, zero], [u, zero, one]
    elif geometry == "rscale":  # [[a, -b], [b, a]]
        cols_x, cols_y = [u, -v, one, zero], [v, u, zero, one]
    else:  # general
        cols_x = [u, v, zero, zero, one, zero]
        cols_y = [zero, zero, u, v, zero, one]
    block = np.empty((2 * n, len(cols_x)))
    block[0::2] = np.column_stack(cols_x)
    block[1::2] = np.column_stack(cols_y)
    return block


def small_update(params: np.ndarray, center: np.ndarray,
                 geometry: str) -> tuple[np.ndarray, np.ndarray]:
    """The correction ``p -> p + dM (p - c) + t`` given by :func:`design_block` parameters.

    Parameters
    ----------
    params : ndarray, shape (n_params,)
        Parameters in the order of :func:`design_block`'s columns.
    center : ndarray, shape (2,)
        The ``center`` the block was built with.
    geometry : str
        One of :data:`GEOMETRIES`.

    Returns
    -------
    matrix, shift : ndarray
        ``(2, 2)`` and ``(2,)``: the update as ``matrix @ p + shift`` (the
        rotation of ``rshift`` applied exactly, not linearised).
    """
    if geometry == "shift":
        delta, shift = np.zeros((2, 2)), params
    elif geometry == "rshift":
        theta = params[0]
        delta = np.array([[math.cos(theta) - 1.0, -math.sin(theta)],
                          [math.sin(theta), math.cos(theta) - 1.0]])
        shift = params[1:]
    elif geometry == "rscale":
        a, b = params[:2]
        delta = np.array([[a, -b], [b, a]])
        shift = params[2:]
    else:
        delta = params[:4].reshape(2, 2)
        shift = params[4:]
    return np.eye(2) + delta, np.asarray(shift) - delta @ center
