"""A wrong nominal distortion: the error of a detector's distortion model, with its truth.

The nominal WCS of every image of the scene maps pixel ``p`` where the true WCS maps
``p + e(p)``, with ``e`` a polynomial of orders 2 to ``order`` (pixels), the same for all
images (one detector). The correction that undoes it, ``d ~ -e`` (an
`aligncore.DistortionCorrection`), is recorded in the scene's parameters
(``distortion_truth``), so a refinement can be scored against it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from aligncore.distortion import DistortionCorrection, polynomial_terms
from aligncore.sim import gwcs_model as sim_gwcs
from aligncore.sim import sky as sim_sky

__all__ = ["add_to_gwcs_spec", "add_to_sip_header", "make_error", "negated"]

_CORNERS = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])


def make_error(shape: tuple[int, int], amplitude: float, order: int,
               rng: np.random.Generator) -> DistortionCorrection:
    """A random error field ``e`` (pixels) of orders 2..``order``, ``amplitude`` pixels at
    the farthest image corner (the centre and normalisation of `DistortionCorrection`)."""
    ny, nx = shape
    terms = polynomial_terms(order)
    center = (0.5 * (nx - 1), 0.5 * (ny - 1))
    scale = 0.5 * float(max(nx, ny))
    cx, cy = rng.uniform(-1.0, 1.0, size=(2, len(terms)))
    unit = DistortionCorrection("SIM/DET", order, center, scale, terms, tuple(cx), tuple(cy))
    corners = np.array([[0.0, 0.0], [nx - 1.0, 0.0], [nx - 1.0, ny - 1.0], [0.0, ny - 1.0]])
    ex, ey = unit.offsets(corners[:, 0], corners[:, 1])
    factor = amplitude / float(np.max(np.hypot(ex, ey)))
    return DistortionCorrection("SIM/DET", order, center, scale, terms,
                                tuple(float(c * factor) for c in cx),
                                tuple(float(c * factor) for c in cy))


def negated(error: DistortionCorrection) -> DistortionCorrection:
    """The correction ``-e`` that undoes ``error`` (to first order)."""
    return DistortionCorrection(error.detector, error.degree, error.center, error.scale,
                                error.terms, tuple(-c for c in error.coeffs_x),
                                tuple(-c for c in error.coeffs_y))


def add_to_sip_header(header: Mapping[str, Any], error: DistortionCorrection,
                      shape: tuple[int, int]) -> dict[str, Any]:
    """FITS keywords whose SIP forward polynomial carries ``error`` (inverse refitted).

    SIP ``u`` is ``x + 1 - CRPIX1``; with CRPIX at the image centre it is
    ``x - center`` and the coefficients are the error's divided by ``scale**(i+j)``.
    """
    out = dict(header)
    ny, nx = shape
    if (abs(out["CRPIX1"] - 1.0 - error.center[0]) > 1e-9
            or abs(out["CRPIX2"] - 1.0 - error.center[1]) > 1e-9):
        raise ValueError("a distortion error needs CRPIX at the image centre")
    order = max(int(out.get("A_ORDER", 0)), error.degree)
    terms = polynomial_terms(order)
    for (i, j), cx, cy in zip(error.terms, error.coeffs_x, error.coeffs_y, strict=True):
        norm = error.scale ** (i + j)
        out[f"A_{i}_{j}"] = float(out.get(f"A_{i}_{j}", 0.0)) + cx / norm
        out[f"B_{i}_{j}"] = float(out.get(f"B_{i}_{j}", 0.0)) + cy / norm
    for i, j in terms:
        out.setdefault(f"A_{i}_{j}", 0.0)
        out.setdefault(f"B_{i}_{j}", 0.0)
    out["A_ORDER"] = out["B_ORDER"] = order
    for key in [k for k in out if k.startswith(("AP_", "BP_"))]:
        del out[key]
    out.update(sim_sky.fit_sip_inverse(out, list(terms), 0.5 * np.array([nx, ny], float),
                                       order=order + 1))
    for axis in ("CTYPE1", "CTYPE2"):
        if not out[axis].endswith("-SIP"):
            out[axis] += "-SIP"
    return out


def add_to_gwcs_spec(spec: Mapping[str, Any], error: DistortionCorrection) -> dict[str, Any]:
    """A GWCS spec whose detector -> V2/V3 polynomial carries ``error`` (inverse refitted):
    the polynomial's linear part maps the pixel error into V2/V3."""
    if error.degree > sim_gwcs.DEGREE:
        raise ValueError(f"the simulated GWCS distortion has degree {sim_gwcs.DEGREE}; a "
                         f"distortion error of order {error.degree} does not fit in it")
    g = dict(spec["gwcs"])
    d = dict(g["distortion"])
    if abs(d["xref"] - error.center[0]) > 1e-9 or abs(d["yref"] - error.center[1]) > 1e-9:
        raise ValueError("a distortion error needs the reference pixel at the image centre")
    v2, v3 = dict(d["v2"]), dict(d["v3"])
    for (i, j), cx, cy in zip(error.terms, error.coeffs_x, error.coeffs_y, strict=True):
        name = f"c{i}_{j}"
        norm = error.scale ** (i + j)
        for poly in (v2, v3):
            poly[name] = poly.get(name, 0.0) + (poly["c1_0"] * cx + poly["c0_1"] * cy) / norm
    d.update(v2=v2, v3=v3)
    ny, nx = g["shape"]
    half = 0.5 * max(nx, ny)
    pixel_scale = float(np.hypot(v2["c1_0"], v3["c1_0"]))
    d.update(sim_gwcs.fit_inverse(v2, v3, half * sim_gwcs.INVERSE_MARGIN, pixel_scale * half))
    g["distortion"] = d
    return {"gwcs": g}
