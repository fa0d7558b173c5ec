"""GWCS side of the simulator: NIRCam-like exposures described by JSON-ready specs.

A spec holds everything needed to rebuild one exposure's `gwcs.WCS`:

- ``detector -> v2v3``: a cubic polynomial distortion about the reference
  pixel (the image centre), NIRCam-like: anamorphic scale, a small skew, a
  tilt of the detector axes against V3, and quadratic/cubic terms displacing
  the corners by a few pixels. Its inverse is a fitted degree-7 polynomial
  (~1e-7 px over a 512x512 image and a 10 % margin; ~1e-5 px for tiny images).
- ``v2v3 -> world``: the pointing rotation ``zyxyz`` by
  ``(v2_ref, -v3_ref, roll_ref, dec_ref, -ra_ref)`` (arcsec -> deg ->
  cartesian -> rotation -> spherical), as in JWST files: ``roll_ref`` is the
  position angle of +V3 at the reference point.

Specs are plain dictionaries (``{"gwcs": {...}}``), so the truth file stays JSON.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from astropy.modeling.models import Mapping as AxisMapping
from astropy.modeling.models import Polynomial2D, RotationSequence3D, Scale, Shift

from aligncore.sim.sky import offset_sky

__all__ = [
    "DEGREE",
    "INVERSE_DEGREE",
    "V2_REF",
    "V3_REF",
    "apply_pointing_error",
    "build_wcs",
    "degree_of",
    "evaluate",
    "fit_inverse",
    "is_spec",
    "make_distortion",
    "make_spec",
    "pointing_for",
    "position_angle",
    "star_pixels",
    "wcsinfo",
]

V2_REF = 120.67
"""V2 of the simulated aperture reference point, arcsec (NIRCam A1-like)."""
V3_REF = -527.54
"""V3 of the simulated aperture reference point, arcsec."""
DEGREE = 3
INVERSE_DEGREE = 7
_V3_TILT = -0.55  # deg, detector +y against +V3
_ANAMORPHISM = 1.0048  # y scale / x scale
_SKEW = 0.08  # deg
# Quadratic and cubic terms (pixels at the image corner, before the random jitter),
# in the detector-aligned ideal frame: NIRCam SW-like pattern, ~5 px at the corners.
_X_TERMS = {(2, 0): 0.6, (1, 1): -3.5, (0, 2): -0.6, (3, 0): 0.3, (1, 2): 0.4}
_Y_TERMS = {(2, 0): 1.6, (1, 1): 1.2, (0, 2): -2.2, (2, 1): 0.35, (0, 3): -0.25}
_JITTER = 0.2  # relative random jitter of the distortion terms
INVERSE_MARGIN = 1.1  # the inverse is fitted over the image plus 10 %


def is_spec(spec: Mapping[str, Any]) -> bool:
    """True for a GWCS spec (``{"gwcs": {...}}``), False for FITS header keywords."""
    return isinstance(spec, Mapping) and "gwcs" in spec


def _poly_terms(degree: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(degree + 1) for j in range(degree + 1 - i)]


def degree_of(*coeffs: Mapping[str, float]) -> int:
    """The highest order ``i + j`` of polynomial coefficients named ``c{i}_{j}``."""
    return max(sum(int(k) for k in name[1:].split("_")) for c in coeffs for name in c)


def evaluate(coeffs: Mapping[str, float], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    total = np.zeros(np.broadcast(x, y).shape)
    for name, value in coeffs.items():
        i, j = (int(k) for k in name[1:].split("_"))
        total = total + value * x**i * y**j
    return total


def make_distortion(
    shape: tuple[int, int], pixel_scale: float, rng: np.random.Generator
) -> dict[str, Any]:
    """NIRCam-like ``detector -> v2v3`` polynomial offsets (arcsec) and their inverse.

    Returns a dictionary with ``xref, yref`` (0-based reference pixel),
    ``v2, v3`` (forward coefficients ``c{i}_{j}`` in pixel offsets) and
    ``x, y`` (inverse coefficients in V2/V3 offsets, arcsec).
    """
    ny, nx = shape
    half = 0.5 * max(nx, ny)
    skew = math.radians(_SKEW)
    # ideal (detector-aligned) offsets in arcsec: linear part, then distortion terms
    ideal_x = {(1, 0): pixel_scale, (0, 1): pixel_scale * math.sin(skew)}
    ideal_y = {(0, 1): pixel_scale * _ANAMORPHISM}
    for terms, ideal in ((_X_TERMS, ideal_x), (_Y_TERMS, ideal_y)):
        for (i, j), pixels in terms.items():
            size = pixels * (1.0 + _JITTER * rng.uniform(-1.0, 1.0))
            ideal[(i, j)] = size * pixel_scale / half ** (i + j)
    # V2/V3 offsets: x points to -V2 (the sky parity of a North-up East-left image),
    # the detector is tilted by _V3_TILT against V3
    c, s = math.cos(math.radians(_V3_TILT)), math.sin(math.radians(_V3_TILT))
    v2: dict[str, float] = {}
    v3: dict[str, float] = {}
    for i, j in _poly_terms(DEGREE):
        ix, iy = ideal_x.get((i, j), 0.0), ideal_y.get((i, j), 0.0)
        v2[f"c{i}_{j}"] = -c * ix - s * iy
        v3[f"c{i}_{j}"] = -s * ix + c * iy
    spec: dict[str, Any] = {"xref": (nx - 1) / 2.0, "yref": (ny - 1) / 2.0, "v2": v2, "v3": v3}
    spec.update(fit_inverse(v2, v3, half * INVERSE_MARGIN, pixel_scale * half))
    return spec


def fit_inverse(
    v2: Mapping[str, float], v3: Mapping[str, float], extent: float, norm: float
) -> dict[str, dict[str, float]]:
    """Least-squares inverse polynomial, V2/V3 offsets -> pixel offsets."""
    g = np.linspace(-extent, extent, 31)
    dx, dy = (a.ravel() for a in np.meshgrid(g, g))
    dv2, dv3 = evaluate(v2, dx, dy), evaluate(v3, dx, dy)
    terms = _poly_terms(INVERSE_DEGREE)
    design = np.column_stack([(dv2 / norm) ** i * (dv3 / norm) ** j for i, j in terms])
    # normal equations: a tiny well-scaled system (LAPACK's lstsq is slow under load)
    gram = design.T @ design
    solution = np.linalg.solve(gram, design.T @ np.column_stack([dx, dy]))
    return {key: {f"c{i}_{j}": float(b / norm ** (i + j))
                  for (i, j), b in zip(terms, solution[:, k], strict=True)}
            for k, key in enumerate(("x", "y"))}


def position_angle(distortion: Mapping[str, Any]) -> float:
    """Angle (deg) of detector +y in the V2/V3 frame, from +V3 towards +V2."""
    return math.degrees(math.atan2(distortion["v2"]["c0_1"], distortion["v3"]["c0_1"]))


def make_spec(
    distortion: Mapping[str, Any], ra_ref: float, dec_ref: float, roll_ref: float,
    shape: Sequence[int],
) -> dict[str, Any]:
    """A GWCS spec: ``distortion``, pointing and image shape."""
    return {"gwcs": {
        "v2_ref": V2_REF,
        "v3_ref": V3_REF,
        "roll_ref": float(roll_ref) % 360.0,
        "ra_ref": float(ra_ref) % 360.0,
        "dec_ref": float(dec_ref),
        "shape": [int(shape[0]), int(shape[1])],
        "scale": 1.0,
        "distortion": dict(distortion),
    }}


def apply_pointing_error(
    spec: Mapping[str, Any], shift: np.ndarray, roll_deg: float, scale: float
) -> dict[str, Any]:
    """Nominal spec: the reference point moved by ``shift`` (arcsec, tangent plane at
    the reference point), the image rotated by ``roll_deg`` about it (counter-clockwise
    on the sky in East/North, like the FITS simulator) and scaled by ``1 + scale``."""
    g = dict(spec["gwcs"])
    ra, dec = offset_sky(np.array([g["ra_ref"]]), np.array([g["dec_ref"]]),
                         np.array([shift[0]]), np.array([shift[1]]))
    g.update(ra_ref=float(ra[0]), dec_ref=float(dec[0]),
             roll_ref=float(g["roll_ref"] - roll_deg) % 360.0,
             scale=float(g["scale"] * (1.0 + scale)))
    return {"gwcs": g}


def wcsinfo(spec: Mapping[str, Any]) -> dict[str, float]:
    """The JWST-style ``meta.wcsinfo`` of a spec."""
    g = spec["gwcs"]
    return {k: float(g[k]) for k in ("v2_ref", "v3_ref", "roll_ref", "ra_ref", "dec_ref")}


def _polynomials(coeffs: tuple[Mapping[str, float], Mapping[str, float]], degree: int,
                 factor: float = 1.0) -> Any:
    px = Polynomial2D(degree, **{k: v * factor for k, v in coeffs[0].items()})
    py = Polynomial2D(degree, **{k: v * factor for k, v in coeffs[1].items()})
    return AxisMapping((0, 1, 0, 1)) | (px & py)


def build_wcs(spec: Mapping[str, Any], shape: Sequence[int] | None = None) -> Any:
    """The `gwcs.WCS` (frames ``detector``, ``v2v3``, ``world``) of a spec."""
    # gwcs is imported here so that ``import aligncore`` stays light
    import astropy.units as u
    from astropy.coordinates import ICRS
    from gwcs import WCS
    from gwcs import coordinate_frames as cf
    from gwcs.geometry import CartesianToSpherical, SphericalToCartesian

    g = spec["gwcs"]
    d = g["distortion"]
    ny, nx = shape if shape is not None else g["shape"]
    factor = float(g["scale"])
    forward = ((Shift(-d["xref"]) & Shift(-d["yref"]))
               | _polynomials((d["v2"], d["v3"]), degree_of(d["v2"], d["v3"]), factor)
               | (Shift(g["v2_ref"]) & Shift(g["v3_ref"])))
    backward = ((Shift(-g["v2_ref"]) & Shift(-g["v3_ref"]))
                | (Scale(1.0 / factor) & Scale(1.0 / factor))
                | _polynomials((d["x"], d["y"]), INVERSE_DEGREE)
                | (Shift(d["xref"]) & Shift(d["yref"])))
    forward.inverse = backward
    forward.name = "distortion"
    sky = ((Scale(1.0 / 3600.0) & Scale(1.0 / 3600.0))
           | SphericalToCartesian(wrap_lon_at=180)
           | RotationSequence3D(
               [g["v2_ref"] / 3600.0, -g["v3_ref"] / 3600.0, g["roll_ref"], g["dec_ref"],
                -g["ra_ref"]], "zyxyz")
           | CartesianToSpherical(wrap_lon_at=360))
    sky.name = "v23tosky"
    detector = cf.Frame2D(name="detector", axes_order=(0, 1), unit=(u.pix, u.pix))
    v2v3 = cf.Frame2D(name="v2v3", axes_order=(0, 1), unit=(u.arcsec, u.arcsec),
                      axes_names=("v2", "v3"))
    world = cf.CelestialFrame(reference_frame=ICRS(), name="world")
    wcs = WCS([(detector, forward), (v2v3, sky), (world, None)], name="aligncore-sim")
    wcs.bounding_box = ((-0.5, nx - 0.5), (-0.5, ny - 0.5))
    wcs.pixel_shape = (int(nx), int(ny))
    return wcs


def star_pixels(
    wcs: Any, ra: np.ndarray, dec: np.ndarray, shape: Sequence[int], margin: float
) -> tuple[np.ndarray, np.ndarray]:
    """Exact 0-based pixels of sky positions within ``margin`` px of the image (else NaN).

    The fitted inverse polynomial gives a start; Newton iterations on the
    forward distortion refine it to ~1e-10 px.
    """
    x = np.full(ra.size, np.nan)
    y = np.full(ra.size, np.nan)
    if ra.size == 0:
        return x, y
    v2, v3 = wcs.get_transform("world", "v2v3")(ra, dec)
    to_v2v3 = wcs.get_transform("detector", "v2v3")
    x0, y0 = to_v2v3.inverse(v2, v3)
    ny, nx = shape
    pad = margin + 16.0
    near = np.flatnonzero((x0 > -pad) & (x0 < nx + pad) & (y0 > -pad) & (y0 < ny + pad))
    if near.size == 0:
        return x, y
    xs, ys = np.array(x0[near], float), np.array(y0[near], float)
    t2, t3 = v2[near], v3[near]
    step = 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for _ in range(8):
            f2, f3 = to_v2v3(xs, ys)
            ax2, ax3 = to_v2v3(xs + step, ys)
            bx2, bx3 = to_v2v3(xs - step, ys)
            ay2, ay3 = to_v2v3(xs, ys + step)
            by2, by3 = to_v2v3(xs, ys - step)
            j11, j21 = (ax2 - bx2) / (2 * step), (ax3 - bx3) / (2 * step)
            j12, j22 = (ay2 - by2) / (2 * step), (ay3 - by3) / (2 * step)
            r2, r3 = t2 - f2, t3 - f3
            det = j11 * j22 - j12 * j21
            xs = xs + (j22 * r2 - j12 * r3) / det
            ys = ys + (j11 * r3 - j21 * r2) / det
        f2, f3 = to_v2v3(xs, ys)
    scale = float(np.hypot(j11, j21).mean()) if xs.size else 1.0
    ok = np.isfinite(xs) & (np.hypot(f2 - t2, f3 - t3) < 1e-8 * scale)
    x[near[ok]], y[near[ok]] = xs[ok], ys[ok]
    return x, y


def pointing_for(
    distortion: Mapping[str, Any], centre: tuple[float, float], pa_deg: float
) -> tuple[float, float, float]:
    """``(ra_ref, dec_ref, roll_ref)`` putting the image centre at ``centre`` with
    its +y axis at position angle ``pa_deg``."""
    return float(centre[0]), float(centre[1]), float(pa_deg - position_angle(distortion))
