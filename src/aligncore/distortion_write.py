"""Write a detector's distortion correction back in each format's own terms.

A `~aligncore.distortion.DistortionCorrection` says that the true sky position of
pixel ``(x, y)`` is what the nominal WCS gives for ``(x + dx, y + dy)``. This module
builds the WCS that gives it for ``(x, y)`` directly:

FITS (`apply_to_fits_header`, `apply_to_astropy_wcs`, `fit_sip`)
    A TAN-SIP header. The composed mapping ``(x, y) -> old SIP at (x + dx, y + dy)``
    is written as new ``A``/``B`` coefficients, with its constant and linear parts
    folded exactly into ``CRPIX`` (moved to the pixel that now lands on ``CRVAL``) and
    the ``CD`` (or ``PC``) matrix, so that the SIP polynomials keep only the terms of
    order >= 2 that every SIP reader expects. ``CRVAL`` is kept. Without a previous SIP
    the composition is a polynomial of the correction's degree and is reproduced
    exactly (to rounding); with one it is a least-squares fit on a dense grid over the
    image of order ``max(old order, degree)``, raised until the largest error is below
    ``tolerance``. The inverse ``AP``/``BP`` is fitted on the same grid, its order the
    smallest reaching ``inverse_tolerance``. Lookup-table distortions
    (``D2IM``/``CPDIS`` keywords and their extensions) are left untouched and stay
    evaluated at the uncorrected pixel; given the tables (an `astropy.wcs.WCS` holding
    them, or ``fobj``), the new SIP also absorbs how they change between ``(x, y)`` and
    ``(x + dx, y + dy)`` as far as a polynomial can, else that change (their gradient
    times ``dx``) is left out.

GWCS (`apply_to_gwcs`, `gwcs_solution`)
    A new frame ``v2v3dist`` right after the ``detector`` frame:
    ``detector -> v2v3dist -> v2v3 -> [v2v3corr] -> world``. Its transform is
    ``(x, y) -> (x + dx, y + dy)`` as `~astropy.modeling.models.Polynomial2D` models in
    the correction's normalised coordinates, so the forward mapping is the definition
    itself, exact; its inverse is a fitted polynomial. The frame sits before ``v2v3``
    rather than after it because (1) the correction is a polynomial in pixels and
    would only be approximated by a polynomial in V2/V3 (the nominal distortion
    between them is not polynomial-invertible), and (2) jwst's tweakreg and
    aligncore's ``gwcs`` corrector require ``v2v3corr`` directly after ``v2v3``: a
    frame between them would make both refuse to re-align the file. The affine
    correction is thus still applied after the distortion correction, as meant.
    Applying a second correction composes it with the first in the same frame.

`apply_correction` picks the writer by the type of the WCS.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from aligncore.distortion import DistortionCorrection
from aligncore.errors import AlignError

if TYPE_CHECKING:
    from astropy.io.fits import Header
    from gwcs import WCS as GWCS

__all__ = [
    "DISTORTION_FRAME",
    "MAX_SIP_ORDER",
    "GwcsSolution",
    "SipSolution",
    "apply_correction",
    "apply_to_astropy_wcs",
    "apply_to_fits_header",
    "apply_to_gwcs",
    "correction_model",
    "fit_sip",
    "gwcs_solution",
]

DISTORTION_FRAME = "v2v3dist"
"""Name of the GWCS frame holding the distortion correction (pixels, after ``detector``)."""
MAX_SIP_ORDER = 9
"""Highest SIP (and inverse) order tried."""

_GRID = 61  # fit points per axis over the image
_CHECK = 121  # check points per axis (the fit grid and the midpoints between)
_LIMIT_PX = 0.01  # a forward or inverse error above this is refused
_PLATEAU = 0.8  # with lookup tables, the SIP order stops rising below a 20 % gain
_INVERSE_MARGIN = 0.05  # the GWCS inverse is fitted over the image plus 5 % per side
_SIP_KEY = re.compile(r"(A|B|AP|BP)_(ORDER|DMAX|\d+_\d+)")
_LOOKUP_PREFIXES = ("D2IM", "CPDIS", "CPERR", "DP1", "DP2", "CQDIS", "DQ1", "DQ2", "DVERR")


# --- polynomials ---------------------------------------------------------------------
def _terms(low: int, high: int) -> list[tuple[int, int]]:
    """Exponents ``(i, j)`` with ``low <= i + j <= high``."""
    return [(n - j, j) for n in range(low, high + 1) for j in range(n + 1)]


def _design(u: np.ndarray, v: np.ndarray, terms: Sequence[tuple[int, int]]) -> np.ndarray:
    return np.column_stack([u**i * v**j for i, j in terms])


def _fit(u: np.ndarray, v: np.ndarray, targets: np.ndarray,
         terms: Sequence[tuple[int, int]]) -> np.ndarray:
    """Least-squares coefficients, shape ``(len(terms), targets.shape[1])``."""
    solution, *_ = np.linalg.lstsq(_design(u, v, terms), targets, rcond=None)
    return solution


def _grid(nx: float, ny: float, n: int, margin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """0-based pixel grid from edge to edge of an ``nx x ny`` image (plus ``margin``)."""
    gx = np.linspace(-0.5 - margin * nx, nx - 0.5 + margin * nx, n)
    gy = np.linspace(-0.5 - margin * ny, ny - 0.5 + margin * ny, n)
    x, y = np.meshgrid(gx, gy)
    return x.ravel(), y.ravel()


def _check_inputs(correction: Any, shape: Any) -> tuple[int, int]:
    if not isinstance(correction, DistortionCorrection):
        raise AlignError(f"expected a DistortionCorrection, got {type(correction).__name__}")
    try:
        ny, nx = (int(n) for n in shape)
    except (TypeError, ValueError):
        raise AlignError(f"shape must be (ny, nx), got {shape!r}") from None
    if ny < 2 or nx < 2:
        raise AlignError(f"shape must be at least 2 x 2 pixels, got {shape!r}")
    if not len(correction.terms) == len(correction.coeffs_x) == len(correction.coeffs_y):
        raise AlignError(f"{correction.detector}: {len(correction.terms)} terms but "
                         f"{len(correction.coeffs_x)} x and {len(correction.coeffs_y)} y "
                         "coefficients")
    values = (*correction.center, correction.scale, *correction.coeffs_x, *correction.coeffs_y)
    if not all(math.isfinite(v) for v in values) or correction.scale <= 0:
        raise AlignError(f"{correction.detector}: the correction has non-finite "
                         "coefficients or a scale <= 0")
    return ny, nx


# --- FITS SIP ------------------------------------------------------------------------
@dataclass(frozen=True)
class SipSolution:
    """A TAN-SIP header carrying a distortion correction, and how well it does.

    Attributes
    ----------
    header : astropy.io.fits.Header
        The new header.
    order, inverse_order : int
        ``A_ORDER``/``B_ORDER`` and ``AP_ORDER``/``BP_ORDER``.
    max_error_px : float
        Largest difference over the image between the new SIP mapping and the old
        one at ``(x + dx, y + dy)``, in (old) pixels.
    inverse_max_error_px : float
        Largest error of ``AP``/``BP`` over the image, pixels.
    exact : bool
        True when the composition is a polynomial of the SIP order (no previous SIP):
        the error is rounding only.
    """

    header: Any
    order: int
    inverse_order: int
    max_error_px: float
    inverse_max_error_px: float
    exact: bool


def _without_lookup_tables(header: Header) -> Header:
    """A copy without lookup-table distortion keywords (astropy would need the file)."""
    stripped = header.copy()
    for key in {k for k in stripped if k.startswith(_LOOKUP_PREFIXES)}:
        stripped.remove(key, ignore_missing=True, remove_all=True)
    return stripped


def _old_sip(wcs: Any) -> tuple[np.ndarray, np.ndarray, int]:
    sip = wcs.sip
    if sip is None:
        return np.zeros((1, 1)), np.zeros((1, 1)), 0
    a, b = np.asarray(sip.a, dtype=float), np.asarray(sip.b, dtype=float)
    return a, b, max(int(sip.a_order), int(sip.b_order))


def _reference_pixel(target: Any, start: np.ndarray) -> np.ndarray:
    """The 0-based pixel where ``target`` (intermediate pixel coordinates) is zero."""

    def value(p: np.ndarray) -> np.ndarray:
        tx, ty = target(np.array([p[0]]), np.array([p[1]]))
        return np.array([tx[0], ty[0]])

    p = np.array(start, dtype=float)
    for _ in range(20):
        jac = np.column_stack([(value(p + e) - value(p - e)) / 2.0 for e in np.eye(2)])
        step = np.linalg.solve(jac, -value(p))
        p = p + step
        if np.max(np.abs(step)) < 1e-12:
            break
    return p


def fit_sip(header: Header, correction: DistortionCorrection,
            shape: Sequence[int] | None = None, *, fobj: Any = None, tolerance: float = 1e-3,
            inverse_tolerance: float = 1e-3) -> SipSolution:
    """The TAN-SIP header giving at ``(x, y)`` what ``header`` gives at ``(x + dx, y + dy)``.

    Parameters
    ----------
    header : astropy.io.fits.Header
        A 2D celestial TAN or TAN-SIP header (not modified).
    correction : DistortionCorrection
        The detector's correction.
    shape : (ny, nx), optional
        Image shape: the grid the fits and the checks span (default: the header's
        ``NAXIS2``, ``NAXIS1``).
    fobj : astropy.io.fits.HDUList, optional
        The file holding the header's lookup tables (``D2IMARR``, ``WCSDVARR``): with
        it, the new SIP also absorbs how the tables change between ``(x, y)`` and
        ``(x + dx, y + dy)``; without, they are left out of the fit (first order).
    tolerance, inverse_tolerance : float
        Largest error (pixels) wanted of the forward SIP and of its inverse; the order
        is raised (up to `MAX_SIP_ORDER`) until it is reached.

    Returns
    -------
    SipSolution

    Raises
    ------
    aligncore.AlignError
        Not a TAN projection, bad inputs, or no order reaches 0.01 px.
    """
    from astropy.wcs import WCS

    full = None
    if fobj is not None:
        try:
            full = WCS(header, fobj, relax=True)
        except Exception as exc:  # astropy raises many types for a bad header
            raise AlignError(f"cannot read the header's WCS: {exc}") from None
    return _fit_sip(header, correction, shape, full, tolerance, inverse_tolerance)


def _has_tables(wcs: Any) -> bool:
    return wcs is not None and any(getattr(wcs, name, None) is not None
                                   for name in ("cpdis1", "cpdis2", "det2im1", "det2im2"))


def _fit_sip(header: Header, correction: DistortionCorrection, shape: Sequence[int] | None,
             full: Any, tolerance: float, inverse_tolerance: float) -> SipSolution:
    """`fit_sip`, with ``full`` the old WCS with its lookup tables (or None)."""
    from astropy.wcs import WCS

    if shape is None:
        if not all(isinstance(header.get(f"NAXIS{k}"), int) for k in (1, 2)):
            raise AlignError("the image shape is needed: pass shape=(ny, nx) (the header has "
                             "no NAXIS1/NAXIS2)")
        shape = (header["NAXIS2"], header["NAXIS1"])
    ny, nx = _check_inputs(correction, shape)
    try:
        old = WCS(_without_lookup_tables(header), relax=True)
    except Exception as exc:  # astropy raises many types for a bad header
        raise AlignError(f"cannot read the header's WCS: {exc}") from None
    ctypes = [str(header.get(f"CTYPE{k}", "")) for k in (1, 2)]
    if not (old.naxis == 2 and old.has_celestial and all(c[4:8] == "-TAN" for c in ctypes)):
        raise AlignError(f"SIP needs a 2D TAN header, got CTYPE {ctypes}")
    a, b, old_order = _old_sip(old)
    crpix = np.asarray(old.wcs.crpix, dtype=float) - 1.0  # 0-based
    tables = full if _has_tables(full) else None
    exact = tables is None and not (np.any(a) or np.any(b))
    mapping = _OldMapping(correction, crpix, a, b, tables)
    norm = 0.5 * max(nx, ny)
    grid, check = _grid(nx, ny, _GRID), _grid(nx, ny, _CHECK)
    at_grid, at_check = mapping.sample(*grid), mapping.sample(*check)
    start = max(old_order, correction.degree)
    # with lookup tables the SIP part depends on the linear part: estimate it first
    linear = np.eye(2) if tables is None else _sip_for_order(
        mapping, np.eye(2), crpix, norm, start, at_grid, at_check)[1]
    best: tuple[float, int, np.ndarray, np.ndarray, np.ndarray] | None = None
    for order in range(start, MAX_SIP_ORDER + 1):
        ref, fitted, sip, error = _sip_for_order(mapping, linear, crpix, norm, order, at_grid,
                                                 at_check)
        plateau = tables is not None and best is not None and error > _PLATEAU * best[0]
        if best is None or error < best[0]:
            best = (error, order, ref, fitted, sip)
        # a lookup table's fine structure is beyond any polynomial: stop when no gain
        if error <= tolerance or exact or plateau:
            break
    assert best is not None
    error, order, ref, linear, sip = best
    if error > _LIMIT_PX:
        raise AlignError(f"{correction.detector}: no SIP order up to {MAX_SIP_ORDER} "
                         f"reproduces the correction to {_LIMIT_PX} px (best {error:.3g} px)")
    inverse_order, inverse, inverse_error = _fit_sip_inverse(
        sip, order, norm, (at_check.q[:, 0] - ref[0], at_check.q[:, 1] - ref[1]),
        inverse_tolerance)
    new = _sip_header(header, old, ref, linear, sip, inverse, order, inverse_order)
    new["HISTORY"] = (f"aligncore: distortion of {correction.detector} (degree "
                      f"{correction.degree}) in SIP order {order}, max error {error:.2g} px; "
                      f"inverse order {inverse_order}, max error {inverse_error:.2g} px")
    return SipSolution(new, order, inverse_order, error, inverse_error, exact)


@dataclass(frozen=True)
class _Samples:
    """The old mapping on a grid of pixels ``p``: ``q`` the pixels after ``D2IM``,
    ``lookup`` the ``CPDIS`` offsets at ``q``, ``target`` the old intermediate pixel
    coordinates (before CD) at ``p + d``; all shape ``(n, 2)``."""

    q: np.ndarray
    lookup: np.ndarray
    target: np.ndarray


class _OldMapping:
    """The old WCS at ``(x + dx, y + dy)`` and the lookup tables the new WCS keeps.

    The new WCS maps pixel ``p`` to ``CD L [(q - ref) + F(q - ref) + lookup(q)]``,
    ``q = p + D2IM(p)``; it must equal ``CD target(p)``.
    """

    def __init__(self, correction: DistortionCorrection, crpix: np.ndarray, a: np.ndarray,
                 b: np.ndarray, tables: Any) -> None:
        self.correction, self.crpix, self.a, self.b, self.tables = (correction, crpix, a, b,
                                                                    tables)

    def target(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        dx, dy = self.correction.offsets(x, y)
        if self.tables is not None:
            return np.column_stack(self.tables.pix2foc(x + dx, y + dy, 0)) - self.crpix
        u, v = x + dx - self.crpix[0], y + dy - self.crpix[1]
        return np.column_stack([u + np.polynomial.polynomial.polyval2d(u, v, self.a),
                                v + np.polynomial.polynomial.polyval2d(u, v, self.b)])

    def q(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        if self.tables is None:
            return np.column_stack([x, y])
        return np.column_stack(self.tables.det2im(x, y, 0))

    def lookup(self, q: np.ndarray) -> np.ndarray:
        if self.tables is None:
            return np.zeros_like(q)
        return np.column_stack(self.tables.p4_pix2foc(q[:, 0], q[:, 1], 0)) - q

    def sample(self, x: np.ndarray, y: np.ndarray) -> _Samples:
        q = self.q(x, y)
        return _Samples(q, self.lookup(q), self.target(x, y))

    def reference(self, linear: np.ndarray, start: np.ndarray) -> np.ndarray:
        """``q`` of the pixel where ``target - L lookup`` vanishes: the new CRPIX."""

        def value(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            q = self.q(x, y)
            rest = self.target(x, y) - self.lookup(q) @ linear.T
            return rest[:, 0], rest[:, 1]

        p = _reference_pixel(value, start)
        return self.q(p[:1], p[1:])[0]


def _sip_for_order(mapping: _OldMapping, linear: np.ndarray, crpix: np.ndarray, norm: float,
                   order: int, grid: _Samples, check: _Samples
                   ) -> tuple[np.ndarray, np.ndarray, dict[tuple[int, int], np.ndarray], float]:
    """Fit ``target - L lookup = L (w + F(w))``, ``w = q - ref``; F of orders 2..order.

    ``linear`` is the estimate of ``L`` multiplying the lookup offsets. Returns ``ref``,
    the fitted ``L`` (2x2), ``F``'s raw SIP coefficients ``{(p, q): [A_pq, B_pq]}`` and
    the largest error on the check grid (pixels).
    """
    ref = mapping.reference(linear, crpix)
    terms = _terms(1, order)
    w = (grid.q - ref) / norm
    coeffs = _fit(w[:, 0], w[:, 1], grid.target - grid.lookup @ linear.T, terms)
    fitted = np.column_stack([coeffs[terms.index((1, 0))], coeffs[terms.index((0, 1))]]) / norm
    to_focal = np.linalg.inv(fitted)
    sip = {(p, q): to_focal @ c / norm ** (p + q)
           for (p, q), c in zip(terms, coeffs, strict=True) if p + q >= 2}
    wc = check.q - ref
    focal = wc + _evaluate(sip, wc[:, 0], wc[:, 1]) + check.lookup
    error = float(np.max(np.hypot(*(focal @ fitted.T - check.target).T)))
    return ref, fitted, sip, error


def _evaluate(coeffs: dict[tuple[int, int], np.ndarray], u: np.ndarray,
              v: np.ndarray) -> np.ndarray:
    """``sum(c * u**p * v**q)`` for vector coefficients: shape ``(n, 2)``."""
    total = np.zeros((np.size(u), 2))
    for (p, q), c in coeffs.items():
        total += np.outer(u**p * v**q, c)
    return total


def _fit_sip_inverse(sip: dict[tuple[int, int], np.ndarray], order: int, norm: float,
                     w: tuple[np.ndarray, np.ndarray], tolerance: float
                     ) -> tuple[int, dict[tuple[int, int], np.ndarray], float]:
    """``AP``/``BP``: pixel offset ``w = U + G(U)`` from focal ``U = w + F(w)``."""
    wu, wv = w
    focal = np.column_stack([wu, wv]) + _evaluate(sip, wu, wv)
    back = np.column_stack([wu, wv]) - focal
    fu, fv = focal[:, 0], focal[:, 1]
    best: tuple[float, int, dict[tuple[int, int], np.ndarray]] | None = None
    for inverse_order in range(max(order, 2), MAX_SIP_ORDER + 1):
        terms = _terms(1, inverse_order)
        coeffs = _fit(fu / norm, fv / norm, back, terms)
        inverse = {t: c / norm ** (t[0] + t[1]) for t, c in zip(terms, coeffs, strict=True)}
        error = float(np.max(np.hypot(*(back - _evaluate(inverse, fu, fv)).T)))
        if best is None or error < best[0]:
            best = (error, inverse_order, inverse)
        if error <= tolerance:
            break
    assert best is not None
    if best[0] > _LIMIT_PX:
        raise AlignError(f"no inverse SIP order up to {MAX_SIP_ORDER} is accurate to "
                         f"{_LIMIT_PX} px (best {best[0]:.3g} px)")
    return best[1], best[2], best[0]


def _sip_header(header: Header, old: Any, ref: np.ndarray, linear: np.ndarray,
                sip: dict[tuple[int, int], np.ndarray],
                inverse: dict[tuple[int, int], np.ndarray], order: int,
                inverse_order: int) -> Header:
    new = header.copy()
    for key in [k for k in new if _SIP_KEY.fullmatch(k)]:
        del new[key]
    for k in (1, 2):
        ctype = str(new[f"CTYPE{k}"])
        new[f"CTYPE{k}"] = ctype if ctype.endswith("-SIP") else ctype[:8] + "-SIP"
        new[f"CRPIX{k}"] = float(ref[k - 1] + 1.0)
    cd = np.asarray(old.wcs.get_pc(), float) * np.asarray(old.wcs.get_cdelt(), float)[:, None]
    cd = cd @ linear
    if any(f"CD{i}_{j}" in header for i in (1, 2) for j in (1, 2)):
        for i in (1, 2):
            for j in (1, 2):
                new[f"CD{i}_{j}"] = float(cd[i - 1, j - 1])
    else:
        cdelt = np.asarray(old.wcs.get_cdelt(), float)
        for key in ("CROTA1", "CROTA2"):
            new.remove(key, ignore_missing=True)
        for i in (1, 2):
            new[f"CDELT{i}"] = float(cdelt[i - 1])
            for j in (1, 2):
                new[f"PC{i}_{j}"] = float(cd[i - 1, j - 1] / cdelt[i - 1])
    for prefix, k, coeffs, n in (("A", 0, sip, order), ("B", 1, sip, order),
                                 ("AP", 0, inverse, inverse_order),
                                 ("BP", 1, inverse, inverse_order)):
        new[f"{prefix}_ORDER"] = n
        for (p, q), c in sorted(coeffs.items(), key=lambda item: (sum(item[0]), -item[0][0])):
            new[f"{prefix}_{p}_{q}"] = float(c[k])
    return new


def apply_to_fits_header(header: Header, correction: DistortionCorrection,
                         shape: Sequence[int] | None = None) -> Header:
    """A new TAN-SIP header that carries ``correction`` (see `fit_sip`; ``shape``
    defaults to the header's ``NAXIS2``, ``NAXIS1``).

    ``header`` is not modified. The forward SIP reproduces ``old(x + dx, y + dy)`` to
    0.001 px over the image (exactly without a previous SIP), its inverse to 0.001 px.
    """
    return fit_sip(header, correction, shape).header


def apply_to_astropy_wcs(wcs: Any, correction: DistortionCorrection,
                         shape: Sequence[int]) -> Any:
    """A new `astropy.wcs.WCS` carrying ``correction`` as SIP (see `fit_sip`).

    ``wcs`` is not modified; its lookup-table distortions (``cpdis``, ``det2im``) and
    pixel shape are carried over unchanged, the new SIP absorbing how the tables change
    between ``(x, y)`` and ``(x + dx, y + dy)``.
    """
    from astropy.wcs import WCS

    if not isinstance(wcs, WCS):
        raise AlignError(f"expected an astropy.wcs.WCS, got {type(wcs).__name__}")
    solution = _fit_sip(wcs.to_header(relax=True), correction, shape, wcs, 1e-3, 1e-3)
    new = WCS(solution.header, relax=True)
    new.cpdis1, new.cpdis2 = wcs.cpdis1, wcs.cpdis2
    new.det2im1, new.det2im2 = wcs.det2im1, wcs.det2im2
    new.pixel_shape = wcs.pixel_shape
    return new


def apply_correction(wcs: Any, correction: DistortionCorrection,
                     shape: Sequence[int]) -> Any:
    """``wcs`` with ``correction`` written in: a `gwcs.WCS` (`apply_to_gwcs`), an
    `astropy.wcs.WCS` (`apply_to_astropy_wcs`) or a FITS header
    (`apply_to_fits_header`); the same type is returned, the input not modified."""
    import sys

    from astropy.io.fits import Header
    from astropy.wcs import WCS

    gwcs = sys.modules.get("gwcs")  # no gwcs imported: wcs cannot be a gwcs.WCS
    if gwcs is not None and isinstance(wcs, gwcs.WCS):
        return apply_to_gwcs(wcs, correction, shape)
    if isinstance(wcs, WCS):
        return apply_to_astropy_wcs(wcs, correction, shape)
    if isinstance(wcs, Header):
        return apply_to_fits_header(wcs, correction, shape)
    raise AlignError(f"cannot write a distortion correction into a {type(wcs).__name__}")


# --- GWCS ----------------------------------------------------------------------------
@dataclass(frozen=True)
class GwcsSolution:
    """A GWCS carrying a distortion correction in its ``v2v3dist`` frame.

    Attributes
    ----------
    wcs : gwcs.WCS
        The new WCS.
    inverse_degree : int
        Degree of the fitted inverse polynomials.
    inverse_max_error_px : float
        Largest error of the inverse over the image, pixels (the forward is exact).
    """

    wcs: Any
    inverse_degree: int
    inverse_max_error_px: float


def _polynomials(coeffs: dict[tuple[int, int], np.ndarray], degree: int) -> Any:
    """``(u, v) -> (u + P(u, v), v + Q(u, v))`` as two Polynomial2D models."""
    from astropy.modeling.models import Mapping, Polynomial2D

    px = {f"c{i}_{j}": float(c[0]) for (i, j), c in coeffs.items()}
    py = {f"c{i}_{j}": float(c[1]) for (i, j), c in coeffs.items()}
    px["c1_0"] = px.get("c1_0", 0.0) + 1.0
    py["c0_1"] = py.get("c0_1", 0.0) + 1.0
    return Mapping((0, 1, 0, 1)) | (Polynomial2D(degree, **px) & Polynomial2D(degree, **py))


def _normalised(model: Any, center: tuple[float, float], scale: float) -> Any:
    """``model`` in normalised coordinates, wrapped to take and give pixels."""
    from astropy.modeling.models import Scale, Shift

    into = ((Shift(-center[0]) | Scale(1.0 / scale)) & (Shift(-center[1]) | Scale(1.0 / scale)))
    out = ((Scale(scale) | Shift(center[0])) & (Scale(scale) | Shift(center[1])))
    return into | model | out


def correction_model(correction: DistortionCorrection, shape: Sequence[int], *,
                     inverse_tolerance: float = 1e-3) -> tuple[Any, int, float]:
    """The ``detector -> v2v3dist`` model ``(x, y) -> (x + dx, y + dy)`` with its inverse.

    Returns the model, the inverse's degree and its largest error over the image (px).
    """
    ny, nx = _check_inputs(correction, shape)
    s, (x0, y0) = correction.scale, correction.center
    # in normalised coordinates: u' = u + dx / s
    coeffs = {t: np.array([cx, cy]) / s for t, cx, cy in zip(
        correction.terms, correction.coeffs_x, correction.coeffs_y, strict=True)}
    degree = max([correction.degree, 1, *(i + j for i, j in correction.terms)])
    forward = _normalised(_polynomials(coeffs, degree), correction.center, correction.scale)
    # the inverse, in the same normalised coordinates: u = u' + G(u', v')
    x, y = _grid(nx, ny, _GRID, _INVERSE_MARGIN)
    dx, dy = correction.offsets(x, y)
    uc, vc = (x + dx - x0) / s, (y + dy - y0) / s
    back = np.column_stack([-dx, -dy]) / s
    xc, yc = _grid(nx, ny, _CHECK)
    cdx, cdy = correction.offsets(xc, yc)
    cu, cv = (xc + cdx - x0) / s, (yc + cdy - y0) / s
    best: tuple[float, int, dict[tuple[int, int], np.ndarray]] | None = None
    for inverse_degree in range(degree, MAX_SIP_ORDER + 1):
        terms = _terms(0, inverse_degree)
        fitted = dict(zip(terms, _fit(uc, vc, back, terms), strict=True))
        got = _evaluate(fitted, cu, cv) * s
        error = float(np.max(np.hypot(got[:, 0] + cdx, got[:, 1] + cdy)))
        if best is None or error < best[0]:
            best = (error, inverse_degree, fitted)
        if error <= inverse_tolerance:
            break
    assert best is not None
    error, inverse_degree, fitted = best
    if error > _LIMIT_PX:
        raise AlignError(f"{correction.detector}: no inverse polynomial up to degree "
                         f"{MAX_SIP_ORDER} is accurate to {_LIMIT_PX} px (best {error:.3g} px)")
    backward = _normalised(_polynomials(fitted, inverse_degree), correction.center, s)
    forward.inverse = backward
    forward.name = f"aligncore distortion correction {correction.detector}"
    backward.name = f"Inverse aligncore distortion correction {correction.detector}"
    return forward, inverse_degree, error


def gwcs_solution(wcs: GWCS, correction: DistortionCorrection, shape: Sequence[int], *,
                  inverse_tolerance: float = 1e-3) -> GwcsSolution:
    """A copy of ``wcs`` with the correction in a ``v2v3dist`` frame after ``detector``.

    The input is not modified. When ``wcs`` already has a ``v2v3dist`` frame, the new
    correction is applied before the one there (``x -> x + d_new(x)``, then the old
    correction), in the same frame.

    Raises
    ------
    aligncore.AlignError
        Not a `gwcs.WCS`, bad inputs, a ``v2v3dist`` frame out of place, or no inverse
        accurate to 0.01 px.
    """
    from astropy import units as u
    from gwcs import WCS
    from gwcs import coordinate_frames as cf

    if not isinstance(wcs, WCS):
        raise AlignError(f"expected a gwcs.WCS, got {type(wcs).__name__}")
    frames = list(wcs.available_frames)
    if len(frames) < 2:
        raise AlignError(f"the GWCS has too few frames: {', '.join(frames)}")
    model, inverse_degree, error = correction_model(correction, shape,
                                                    inverse_tolerance=inverse_tolerance)
    box = _bounding_box(wcs)
    new = copy.deepcopy(wcs)
    detector = frames[0]
    if DISTORTION_FRAME in frames:
        if frames.index(DISTORTION_FRAME) != 1:
            raise AlignError(f"the '{DISTORTION_FRAME}' frame must follow '{detector}' "
                             f"(frames: {', '.join(frames)})")
        previous = new.get_transform(detector, DISTORTION_FRAME)
        previous.bounding_box = None
        composed = model | previous
        composed.inverse = previous.inverse | model.inverse
        composed.name = model.name
        new.set_transform(detector, DISTORTION_FRAME, composed)
    else:
        first = new.pipeline[0].transform
        try:
            first.bounding_box = None
        except (AttributeError, NotImplementedError):
            pass
        frame = cf.Frame2D(name=DISTORTION_FRAME, axes_order=(0, 1), unit=(u.pix, u.pix),
                           axes_names=("x", "y"))
        new.insert_frame(detector, model, frame)
    if box is not None:
        new.bounding_box = box
    return GwcsSolution(new, inverse_degree, error)


def _bounding_box(wcs: Any) -> tuple[tuple[float, float], ...] | None:
    try:
        box = wcs.bounding_box
    except (NotImplementedError, AttributeError):
        return None
    if box is None:
        return None
    return tuple((float(lo), float(hi)) for lo, hi in box.bounding_box(order="F"))


def apply_to_gwcs(wcs: GWCS, correction: DistortionCorrection,
                  shape: Sequence[int]) -> GWCS:
    """A new GWCS that carries ``correction`` in a ``v2v3dist`` frame (see `gwcs_solution`).

    Its forward mapping is ``old(x + dx, y + dy)`` exactly; the inverse is a fitted
    polynomial accurate to 0.001 px over the image.
    """
    return gwcs_solution(wcs, correction, shape).wcs
