"""A wrong nominal distortion: the error of a detector's distortion model, with its truth.

The nominal WCS of every image of the scene maps pixel ``p`` where the true WCS maps
``p + e(p)``, with ``e`` a polynomial of orders 2 to ``order`` (pixels), the same for all
images (one detector). The correction that undoes it, ``d ~ -e`` (an
`aligncore.DistortionCorrection`, `negated`), is recorded in the scene's parameters
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


def negated(error: DistortionCorrection, shape: tuple[int, int]) -> DistortionCorrection:
    """The correction ``d`` that undoes ``error``: ``d(p) = -e(p + d(p))`` (the nominal WCS at
    ``p + d`` is the truth at ``p``), solved by iteration on a grid over the image and
    fitted with the error's terms (exact to second order in the error)."""
    ny, nx = shape
    x, y = (a.ravel() for a in np.meshgrid(np.linspace(0, nx - 1, 33),
                                           np.linspace(0, ny - 1, 33)))
    dx, dy = np.zeros_like(x), np.zeros_like(y)
    for _ in range(4):
        ex, ey = error.offsets(x + dx, y + dy)
        dx, dy = -ex, -ey
    design = error.basis(x, y)
    cx = np.linalg.lstsq(design, dx, rcond=None)[0]
    cy = np.linalg.lstsq(design, dy, rcond=None)[0]
    return DistortionCorrection(error.detector, error.degree, error.center, error.scale,
                                error.terms, tuple(float(c) for c in cx),
                                tuple(float(c) for c in cy))


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
    """A GWCS spec whose detector -> V2/V3 polynomial is ``v(p + e(p))`` (inverse refitted).

    The composition is fitted by least squares on a grid over the image (10 % beyond
    it) with a polynomial of the distortion's degree plus the error's order, so that
    the nominal WCS carries the error to ~1e-4 px.
    """
    g = dict(spec["gwcs"])
    d = dict(g["distortion"])
    if abs(d["xref"] - error.center[0]) > 1e-9 or abs(d["yref"] - error.center[1]) > 1e-9:
        raise ValueError("a distortion error needs the reference pixel at the image centre")
    ny, nx = g["shape"]
    half = 0.5 * max(nx, ny)
    grid = np.linspace(-half * sim_gwcs.INVERSE_MARGIN, half * sim_gwcs.INVERSE_MARGIN, 41)
    du, dv = (a.ravel() for a in np.meshgrid(grid, grid))
    ex, ey = error.offsets(du + error.center[0], dv + error.center[1])
    degree = sim_gwcs.degree_of(d["v2"], d["v3"]) + error.degree
    terms = [(i, j) for i in range(degree + 1) for j in range(degree + 1 - i)]
    design = np.column_stack([(du / half) ** i * (dv / half) ** j for i, j in terms])
    for key in ("v2", "v3"):
        target = sim_gwcs.evaluate(d[key], du + ex, dv + ey)
        solution = np.linalg.lstsq(design, target, rcond=None)[0]
        d[key] = {f"c{i}_{j}": float(c / half ** (i + j))
                  for (i, j), c in zip(terms, solution, strict=True)}
    pixel_scale = float(np.hypot(d["v2"]["c1_0"], d["v3"]["c1_0"]))
    d.update(sim_gwcs.fit_inverse(d["v2"], d["v3"], half * sim_gwcs.INVERSE_MARGIN,
                                  pixel_scale * half))
    g["distortion"] = d
    return {"gwcs": g}
