"""Single-pass weighted least-squares solutions of ``ref = M @ image + shift``.

Each solver works on image coordinates centred on their weighted mean ``c``
and returns the linear part ``M``, the translation ``t`` at the centre
(``ref = M @ (image - c) + t``), and the covariance of the fitted parameters
scaled by the residual variance (``chi2 / dof``).

Parameterisations (the order of ``param_names`` and of the covariance):

- ``shift``: ``shift_x, shift_y`` (``M`` is the identity);
- ``rshift``: ``rotation`` (deg), ``shift_x``, ``shift_y`` (``M`` a rotation,
  or a rotation combined with a flip when that fits better);
- ``rscale``: ``rotation`` (deg), ``scale``, ``shift_x``, ``shift_y``;
- ``general``: ``m00, m01, m10, m11, shift_x, shift_y``.

``shift_x, shift_y`` are the translation at the centre ``c``; with centred
coordinates it is (nearly) uncorrelated with the linear parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from aligncore import SingularMatrixError
from aligncore.geometry import GEOMETRIES, MIN_POINTS, PARAM_NAMES, check_geometry

__all__ = ["GEOMETRIES", "MIN_POINTS", "LinearSolution", "solve"]

_RCOND = 1e-10  # relative singular value below which a design matrix is singular
_DEG = 180.0 / math.pi
_FLIP_MARGIN = 1e-9  # relative improvement a reflection needs to be preferred


@dataclass(frozen=True)
class LinearSolution:
    """Result of one weighted least-squares pass.

    Attributes
    ----------
    matrix : ndarray, shape (2, 2)
        Linear part ``M``.
    translation : ndarray, shape (2,)
        Translation at ``center``.
    center : ndarray, shape (2,)
        Weighted mean of the image points.
    covariance : ndarray, shape (p, p)
        Parameter covariance scaled by ``chi2 / dof`` (NaN when ``dof == 0``).
    param_names : tuple of str
        Parameter order of ``covariance``.
    rotation_err, scale_err : float
        1-sigma uncertainty of the mean rotation (deg) and of the mean scale
        (NaN when the geometry does not fit them or ``dof == 0``).
    sigma2 : float
        Residual variance per coordinate, ``sum(w |r|^2) / dof``.
    dof : int
        Degrees of freedom, ``2 n - p``.
    """

    matrix: np.ndarray
    translation: np.ndarray
    center: np.ndarray
    covariance: np.ndarray
    param_names: tuple[str, ...]
    rotation_err: float
    scale_err: float
    sigma2: float
    dof: int

    @property
    def shift(self) -> np.ndarray:
        """Translation for an origin at 0: ``t - M @ c``."""
        return self.translation - self.matrix @ self.center

    @property
    def shift_err(self) -> np.ndarray:
        """1-sigma uncertainty of the translation at the centre."""
        n = len(self.param_names)
        return np.sqrt(np.diag(self.covariance)[n - 2 :])


def solve(xy: np.ndarray, uv: np.ndarray, w: np.ndarray, geometry: str,
          scale: float | None = None) -> LinearSolution:
    """Weighted least-squares fit of ``uv ~ M @ xy + shift`` for one geometry.

    Parameters
    ----------
    xy, uv : ndarray, shape (n, 2)
        Image and reference points (only the points to use).
    w : ndarray, shape (n,)
        Positive weights.
    geometry : {'shift', 'rshift', 'rscale', 'general'}
        Fit geometry.
    scale : float, optional
        With ``rscale`` (or ``rshift``): a fixed scale; rotation and shift are fitted
        (``M = scale x rotation``, tweakwcs' ``fit_rscale(scale=...)``).

    Returns
    -------
    LinearSolution

    Raises
    ------
    aligncore.SingularMatrixError
        When the points do not constrain the geometry (e.g. all coincident or
        colinear for ``general``).
    """
    wsum = float(np.sum(w))
    center = (w @ xy) / wsum
    xc = xy - center
    if geometry == "shift":
        return _solve_shift(xc, uv, w, wsum, center)
    if geometry == "rshift" or (geometry == "rscale" and scale is not None):
        return _solve_rshift(xc, uv, w, wsum, center, 1.0 if scale is None else float(scale))
    if geometry == "rscale":
        return _solve_rscale(xc, uv, w, center)
    if geometry == "general":
        return _solve_general(xc, uv, w, center)
    check_geometry(geometry)
    raise AssertionError(geometry)  # pragma: no cover (every geometry is solved above)


# --- helpers -------------------------------------------------------------------------------
def _residual_variance(r: np.ndarray, w: np.ndarray, dof: int) -> float:
    if dof <= 0:
        return math.nan
    return float(np.sum(w * np.sum(r * r, axis=1)) / dof)


def _weighted_lstsq(
    design: np.ndarray, target: np.ndarray, w2: np.ndarray, geometry: str
) -> tuple[np.ndarray, np.ndarray]:
    """Solve ``design @ p ~ target`` with row weights ``w2``; also ``(A^T W A)^-1``."""
    sw = np.sqrt(w2)
    a = design * sw[:, None]
    b = target * sw
    # Column scaling makes the singularity test independent of coordinate units.
    norms = np.linalg.norm(a, axis=0)
    if np.any(norms == 0):
        raise SingularMatrixError(_singular_message(geometry))
    a_scaled = a / norms
    u, s, vt = np.linalg.svd(a_scaled, full_matrices=False)
    if s[-1] <= _RCOND * s[0]:
        raise SingularMatrixError(_singular_message(geometry))
    p_scaled = vt.T @ ((u.T @ b) / s)
    params = p_scaled / norms
    inv_scaled = (vt.T / s**2) @ vt
    inv_normal = inv_scaled / np.outer(norms, norms)
    return params, inv_normal


def _singular_message(geometry: str) -> str:
    what = "colinear or coincident" if geometry == "general" else "coincident"
    return (
        f"cannot fit fitgeometry {geometry!r}: the points are {what}, "
        "so the least-squares normal equations are singular"
    )


def _stack(w: np.ndarray) -> np.ndarray:
    """Weights of the stacked ``[u; v]`` residual vector."""
    return np.concatenate([w, w])


# --- geometries ----------------------------------------------------------------------------
def _solve_shift(
    xc: np.ndarray, uv: np.ndarray, w: np.ndarray, wsum: float, center: np.ndarray
) -> LinearSolution:
    t = (w @ (uv - xc)) / wsum
    r = uv - xc - t
    dof = 2 * xc.shape[0] - 2
    s2 = _residual_variance(r, w, dof)
    cov = np.eye(2) * (s2 / wsum)
    return LinearSolution(
        matrix=np.eye(2),
        translation=t,
        center=center,
        covariance=cov,
        param_names=PARAM_NAMES["shift"],
        rotation_err=math.nan,
        scale_err=math.nan,
        sigma2=s2,
        dof=dof,
    )


def _rotation(theta: float, flip: bool) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    if flip:
        return np.array([[c, s], [s, -c]])
    return np.array([[c, -s], [s, c]])


def _solve_rshift(
    xc: np.ndarray, uv: np.ndarray, w: np.ndarray, wsum: float, center: np.ndarray,
    scale: float = 1.0,
) -> LinearSolution:
    ubar = (w @ uv) / wsum
    uc = uv - ubar
    x, y = xc[:, 0], xc[:, 1]
    u, v = uc[:, 0], uc[:, 1]
    if float(w @ (x * x + y * y)) <= 0.0 or float(w @ (u * u + v * v)) <= 0.0:
        raise SingularMatrixError(_singular_message("rshift"))
    # Maximise sum w (uv . M xy) over rotations, with and without a flip (the best
    # rotation does not depend on a fixed scale).
    proper = (float(w @ (x * u + y * v)), float(w @ (x * v - y * u)))
    flipped = (float(w @ (x * u - y * v)), float(w @ (y * u + x * v)))
    # A flip must fit clearly better: colinear points fit both equally well.
    flip = math.hypot(*flipped) > math.hypot(*proper) * (1.0 + _FLIP_MARGIN)
    cos_term, sin_term = flipped if flip else proper
    theta = math.atan2(sin_term, cos_term)
    m = scale * _rotation(theta, flip)
    # Exact for a rotation: the translation at the centre is the mean of uv.
    t = ubar
    r = uv - (xc @ m.T + t)
    n = xc.shape[0]
    dof = 2 * n - 3
    s2 = _residual_variance(r, w, dof)
    # Gauss-Newton covariance: Jacobian of the model wrt (theta, tx, ty).
    c, s = math.cos(theta), math.sin(theta)
    dm = scale * (np.array([[-s, c], [c, s]]) if flip else np.array([[-s, -c], [c, -s]]))
    dmodel = xc @ dm.T
    jac = np.zeros((2 * n, 3))
    jac[:n, 0] = dmodel[:, 0]
    jac[n:, 0] = dmodel[:, 1]
    jac[:n, 1] = 1.0
    jac[n:, 2] = 1.0
    ww = _stack(w)
    normal = jac.T @ (jac * ww[:, None])
    cov = np.linalg.inv(normal) * s2
    units = np.array([_DEG, 1.0, 1.0])
    cov = cov * np.outer(units, units)
    return LinearSolution(
        matrix=m,
        translation=t,
        center=center,
        covariance=cov,
        param_names=PARAM_NAMES["rshift"],
        rotation_err=math.sqrt(cov[0, 0]) if dof > 0 else math.nan,
        scale_err=math.nan,
        sigma2=s2,
        dof=dof,
    )


def _solve_rscale(
    xc: np.ndarray, uv: np.ndarray, w: np.ndarray, center: np.ndarray
) -> LinearSolution:
    n = xc.shape[0]
    x, y = xc[:, 0], xc[:, 1]
    zeros, ones = np.zeros(n), np.ones(n)
    target = np.concatenate([uv[:, 0], uv[:, 1]])
    ww = _stack(w)
    ubar = (w @ uv) / np.sum(w)
    total = float(w @ np.sum((uv - ubar) ** 2, axis=1))  # chi2 of a model with no linear part
    best = None
    for flip in (False, True):
        # proper:   u = a x - b y + tx,  v = b x + a y + ty
        # flipped:  u = a x + b y + tx,  v = b x - a y + ty
        sign = -1.0 if flip else 1.0
        design = np.column_stack(
            [
                np.concatenate([x, sign * y]),
                np.concatenate([-sign * y, x]),
                np.concatenate([ones, zeros]),
                np.concatenate([zeros, ones]),
            ]
        )
        params, inv_normal = _weighted_lstsq(design, target, ww, "rscale")
        resid = target - design @ params
        chi2 = float(ww @ (resid * resid))
        if best is None or chi2 < best[0] - _FLIP_MARGIN * total:
            best = (chi2, flip, params, inv_normal, resid)
    assert best is not None
    _, flip, params, inv_normal, resid = best
    a, b, tx, ty = params
    m = np.array([[a, b], [b, -a]]) if flip else np.array([[a, -b], [b, a]])
    r = np.column_stack([resid[:n], resid[n:]])
    dof = 2 * n - 4
    s2 = _residual_variance(r, w, dof)
    cov_ab = inv_normal * s2
    scale = math.hypot(a, b)
    # (a, b, tx, ty) -> (rotation [deg], scale, tx, ty)
    jac = np.eye(4)
    jac[0, :2] = np.array([-b, a]) / scale**2 * _DEG
    jac[1, :2] = np.array([a, b]) / scale
    cov = jac @ cov_ab @ jac.T
    ok = dof > 0
    return LinearSolution(
        matrix=m,
        translation=np.array([tx, ty]),
        center=center,
        covariance=cov,
        param_names=PARAM_NAMES["rscale"],
        rotation_err=math.sqrt(cov[0, 0]) if ok else math.nan,
        scale_err=math.sqrt(cov[1, 1]) if ok else math.nan,
        sigma2=s2,
        dof=dof,
    )


def _solve_general(
    xc: np.ndarray, uv: np.ndarray, w: np.ndarray, center: np.ndarray
) -> LinearSolution:
    n = xc.shape[0]
    design = np.column_stack([xc, np.ones(n)])
    results = [_weighted_lstsq(design, uv[:, k], w, "general") for k in range(2)]
    (pu, inv_u), (pv, inv_v) = results
    # inv_u == inv_v: same design and weights for both coordinates.
    m = np.array([[pu[0], pu[1]], [pv[0], pv[1]]])
    t = np.array([pu[2], pv[2]])
    r = uv - (xc @ m.T + t)
    dof = 2 * n - 6
    s2 = _residual_variance(r, w, dof)
    cov = np.zeros((6, 6))
    order_u, order_v = [0, 1, 4], [2, 3, 5]  # m00 m01 tx / m10 m11 ty
    cov[np.ix_(order_u, order_u)] = inv_u * s2
    cov[np.ix_(order_v, order_v)] = inv_v * s2
    rot_err, scale_err = _general_rotation_scale_err(m, cov[:4, :4])
    return LinearSolution(
        matrix=m,
        translation=t,
        center=center,
        covariance=cov,
        param_names=PARAM_NAMES["general"],
        rotation_err=rot_err if dof > 0 else math.nan,
        scale_err=scale_err if dof > 0 else math.nan,
        sigma2=s2,
        dof=dof,
    )


def _general_rotation_scale_err(m: np.ndarray, cov_m: np.ndarray) -> tuple[float, float]:
    """Propagate the covariance of (m00, m01, m10, m11) to mean rotation and scale."""
    m00, m01, m10, m11 = m.ravel()
    rx2 = m00 * m00 + m10 * m10
    ry2 = m01 * m01 + m11 * m11
    # rotx = atan2(m10, m00); roty = atan2(-m01, m11); rotation = (rotx + roty) / 2
    d_rotx = np.array([-m10 / rx2, 0.0, m00 / rx2, 0.0])
    d_roty = np.array([0.0, -m11 / ry2, 0.0, m01 / ry2])
    d_rot = 0.5 * (d_rotx + d_roty) * _DEG
    det = m00 * m11 - m01 * m10
    scale = math.sqrt(abs(det))
    d_det = np.array([m11, -m10, -m01, m00])
    d_scale = math.copysign(1.0, det) * d_det / (2.0 * scale)
    return (
        math.sqrt(max(float(d_rot @ cov_m @ d_rot), 0.0)),
        math.sqrt(max(float(d_scale @ cov_m @ d_scale), 0.0)),
    )
