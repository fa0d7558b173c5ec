"""Sky side of the simulator: layouts, FITS WCS headers, pointing errors, star catalogs.

Everything here works on header dictionaries and tables; no pixels. Offsets on
the sky are expressed in arcsec in a tangent plane (``xi`` East, ``eta`` North).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import product
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import QTable
from astropy.wcs import WCS

from aligncore.tangent import ARCSEC_PER_RAD, TangentPlane
from aligncore.types import (
    COL_DEC,
    COL_DEC_ERR,
    COL_EPOCH,
    COL_FLUX,
    COL_ID,
    COL_MAG,
    COL_PMDEC,
    COL_PMDEC_ERR,
    COL_PMRA,
    COL_PMRA_ERR,
    COL_RA,
    COL_RA_ERR,
    COL_SNR,
)

__all__ = [
    "SCENARIOS",
    "ZEROPOINT",
    "FluxScale",
    "apply_pointing_error",
    "default_n_stars",
    "layout",
    "make_refcat",
    "make_sip",
    "make_stars",
    "offset_sky",
    "wcs_from_header",
    "wcs_header",
]

SCENARIOS = ("dither", "mosaic", "sparse", "crowded")
ZEROPOINT = 25.0
"""Magnitude of a star with a total flux of 1 (image units)."""

_STARS_PER_1024SQ = {"dither": 200, "mosaic": 200, "crowded": 6000}
_SPARSE_STARS = 20
_DITHER_RANGE = (0.05, 0.15)  # dither offsets, fraction of the field width
_DITHER_ROLL = 1.0  # deg, roll scatter between dithered exposures
_MOSAIC_OVERLAP = 0.10
_LUMINOSITY_SLOPE = 0.25  # dN/dmag proportional to 10**(slope * mag)
_SNR_RANGE = (5.0, 2000.0)
_REFCAT_SNR = 30.0  # the reference catalog holds stars at least this bright
_REFCAT_ERR_MAS = (0.1, 1.0)
_SIP_CORNER_PX = 3.0  # size of the SIP distortion at the image corners


def default_n_stars(scenario: str, shape: tuple[int, int]) -> int:
    """Expected number of stars per image when the caller gives none."""
    if scenario == "sparse":
        return _SPARSE_STARS
    area = shape[0] * shape[1] / 1024**2
    return max(1, round(_STARS_PER_1024SQ[scenario] * area))


# --- layouts -----------------------------------------------------------------------
def layout(
    scenario: str, n_images: int, shape: tuple[int, int], rng: np.random.Generator,
    dither_range: tuple[float, float] | None = None,
    mosaic_overlap: float = _MOSAIC_OVERLAP,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Image centres (pixel offsets along the image axes) and position angles.

    ``dither_range``: (min, max) dither radius as a fraction of the image size
    (default 5-15 %), for the dither scenarios. ``mosaic_overlap`` is the
    fraction of an image shared with each grid neighbour (``mosaic`` only).

    Returns
    -------
    offsets : ndarray, shape (n_images, 2)
        Centre of each image relative to the scene centre, in pixels of the
        common orientation (x, y).
    position_angles : ndarray
        Position angle of each image's +y axis, degrees East of North.
    base_pa : float
        Common position angle the offsets are expressed in.
    """
    ny, nx = shape
    base_pa = float(rng.uniform(0.0, 360.0))
    if scenario == "mosaic":
        ncol = math.ceil(math.sqrt(n_images))
        nrow = math.ceil(n_images / ncol)
        step = (1.0 - mosaic_overlap) * np.array([nx, ny], dtype=float)
        cells = [(c, r) for r, c in product(range(nrow), range(ncol))][:n_images]
        grid = np.array(cells, dtype=float) - [(ncol - 1) / 2.0, (nrow - 1) / 2.0]
        return grid * step, np.full(n_images, base_pa), base_pa
    size = 0.5 * (nx + ny)
    radius = rng.uniform(*(dither_range or _DITHER_RANGE), size=n_images) * size
    angle = rng.uniform(0.0, 2.0 * np.pi, size=n_images)
    offsets = np.column_stack([radius * np.cos(angle), radius * np.sin(angle)])
    offsets[0] = 0.0
    rolls = rng.uniform(-_DITHER_ROLL, _DITHER_ROLL, size=n_images)
    rolls[0] = 0.0
    return offsets, base_pa + rolls, base_pa


def cd_matrix(pixel_scale: float, pa_deg: float) -> np.ndarray:
    """CD matrix (deg/px) for North-up-East-left rotated by ``pa_deg`` (East of North)."""
    s = pixel_scale / 3600.0
    c, n = math.cos(math.radians(pa_deg)), math.sin(math.radians(pa_deg))
    return s * np.array([[-c, n], [n, c]])


# --- headers -------------------------------------------------------------------
def make_sip(shape: tuple[int, int], rng: np.random.Generator) -> dict[str, Any]:
    """Random SIP distortion (orders 2 and 3), ~``_SIP_CORNER_PX`` px at the corners.

    The inverse (AP/BP, order 4) is fitted by least squares on a grid that
    extends 10 % beyond the image.
    """
    ny, nx = shape
    half = 0.5 * np.array([nx, ny], dtype=float)
    terms = [(p, q) for p in range(4) for q in range(4) if 2 <= p + q <= 3]
    coeff = {k: rng.uniform(-1.0, 1.0, size=len(terms)) for k in "AB"}
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=float) * half
    disp = np.column_stack([_poly(coeff[k], terms, corners / half) for k in "AB"])
    scale = _SIP_CORNER_PX / np.max(np.hypot(disp[:, 0], disp[:, 1]))
    sip: dict[str, Any] = {"A_ORDER": 3, "B_ORDER": 3}
    for k in "AB":
        for (p, q), c in zip(terms, coeff[k], strict=True):
            sip[f"{k}_{p}_{q}"] = float(c * scale / (half[0] ** p * half[1] ** q))
    sip.update(fit_sip_inverse(sip, terms, half))
    return sip


def _poly(coeff: np.ndarray, terms: list[tuple[int, int]], uv: np.ndarray) -> np.ndarray:
    return sum(c * uv[:, 0] ** p * uv[:, 1] ** q for c, (p, q) in zip(coeff, terms, strict=True))


def fit_sip_inverse(
    sip: dict[str, Any], terms: list[tuple[int, int]], half: np.ndarray, order: int = 4
) -> dict[str, Any]:
    g = np.linspace(-1.1, 1.1, 41)
    uu, vv = np.meshgrid(g * half[0], g * half[1])
    uv = np.column_stack([uu.ravel(), vv.ravel()])
    fwd = {k: _poly(np.array([sip[f"{k}_{p}_{q}"] for p, q in terms]), terms, uv) for k in "AB"}
    foc = uv + np.column_stack([fwd["A"], fwd["B"]])
    inv_terms = [(p, q) for p in range(order + 1) for q in range(order + 1) if 1 <= p + q <= order]
    norm = foc / half
    design = np.column_stack([norm[:, 0] ** p * norm[:, 1] ** q for p, q in inv_terms])
    out: dict[str, Any] = {"AP_ORDER": order, "BP_ORDER": order}
    for k, target in (("AP", uv[:, 0] - foc[:, 0]), ("BP", uv[:, 1] - foc[:, 1])):
        sol = np.linalg.lstsq(design, target, rcond=None)[0]
        for (p, q), c in zip(inv_terms, sol, strict=True):
            out[f"{k}_{p}_{q}"] = float(c / (half[0] ** p * half[1] ** q))
    return out


def wcs_header(
    crval: tuple[float, float],
    cd: np.ndarray,
    shape: tuple[int, int],
    sip: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """FITS TAN (or TAN-SIP) WCS keywords, CRPIX at the image centre."""
    ny, nx = shape
    suffix = "-SIP" if sip else ""
    header: dict[str, Any] = {
        "WCSAXES": 2,
        "CTYPE1": "RA---TAN" + suffix,
        "CTYPE2": "DEC--TAN" + suffix,
        "CUNIT1": "deg",
        "CUNIT2": "deg",
        "CRPIX1": (nx + 1) / 2.0,
        "CRPIX2": (ny + 1) / 2.0,
        "CRVAL1": float(crval[0]) % 360.0,
        "CRVAL2": float(crval[1]),
        "CD1_1": float(cd[0, 0]),
        "CD1_2": float(cd[0, 1]),
        "CD2_1": float(cd[1, 0]),
        "CD2_2": float(cd[1, 1]),
        "RADESYS": "ICRS",
    }
    if sip:
        header.update(sip)
    return header


def wcs_from_header(header: dict[str, Any], shape: tuple[int, int]) -> WCS:
    """An `astropy.wcs.WCS` from header keywords, with its pixel shape set."""
    wcs = WCS(fits.Header(header))
    wcs.array_shape = tuple(shape)
    return wcs


def apply_pointing_error(
    header: dict[str, Any], shift: np.ndarray, roll_deg: float, scale: float
) -> dict[str, Any]:
    """Nominal header: CRVAL moved by ``shift`` (arcsec, tangent plane at CRVAL),
    the CD matrix rotated by ``roll_deg`` about CRPIX and scaled by ``1 + scale``.
    SIP coefficients are left untouched."""
    plane = TangentPlane(header["CRVAL1"], header["CRVAL2"])
    ra, dec = plane.tp_to_world(shift[0], shift[1])
    c, s = math.cos(math.radians(roll_deg)), math.sin(math.radians(roll_deg))
    rot = (1.0 + scale) * np.array([[c, -s], [s, c]])
    cd = rot @ np.array([[header["CD1_1"], header["CD1_2"]], [header["CD2_1"], header["CD2_2"]]])
    nominal = dict(header)
    nominal.update(
        {
            "CRVAL1": float(ra),
            "CRVAL2": float(dec),
            "CD1_1": float(cd[0, 0]),
            "CD1_2": float(cd[0, 1]),
            "CD2_1": float(cd[1, 0]),
            "CD2_2": float(cd[1, 1]),
        }
    )
    return nominal


# --- stars ---------------------------------------------------------------------
def offset_sky(
    ra: np.ndarray, dec: np.ndarray, dxi: np.ndarray, deta: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Move each point by ``(dxi, deta)`` arcsec in its own tangent plane (deg in/out)."""
    x = np.asarray(dxi, dtype=float) / ARCSEC_PER_RAD
    y = np.asarray(deta, dtype=float) / ARCSEC_PER_RAD
    a0, d0 = np.radians(ra), np.radians(dec)
    denom = np.cos(d0) - y * np.sin(d0)
    new_ra = a0 + np.arctan2(x, denom)
    new_dec = np.arctan2(np.sin(d0) + y * np.cos(d0), np.hypot(x, denom))
    return np.degrees(new_ra) % 360.0, np.degrees(new_dec)


@dataclass(frozen=True)
class FluxScale:
    """Relation between flux, magnitude and signal-to-noise ratio for one scene.

    ``snr = F / sqrt(F + area * (sky + read_noise**2))`` with ``area`` the
    noise-equivalent area of the PSF.
    """

    area: float
    pixel_variance: float

    def flux_at_snr(self, snr: float) -> float:
        bg = self.area * self.pixel_variance
        return 0.5 * (snr**2 + math.sqrt(snr**4 + 4.0 * snr**2 * bg))

    def snr(self, flux: np.ndarray) -> np.ndarray:
        flux = np.asarray(flux, dtype=float)
        return flux / np.sqrt(flux + self.area * self.pixel_variance)

    @staticmethod
    def mag(flux: np.ndarray) -> np.ndarray:
        return ZEROPOINT - 2.5 * np.log10(flux)

    @staticmethod
    def flux(mag: np.ndarray) -> np.ndarray:
        return 10.0 ** (-0.4 * (np.asarray(mag, dtype=float) - ZEROPOINT))

    @property
    def faintest(self) -> float:
        return self.flux_at_snr(_SNR_RANGE[0])

    @property
    def brightest(self) -> float:
        return self.flux_at_snr(_SNR_RANGE[1])

    @property
    def refcat_mag_limit(self) -> float:
        return float(self.mag(self.flux_at_snr(_REFCAT_SNR)))


def _draw_mags(rng: np.random.Generator, n: int, bright: float, faint: float) -> np.ndarray:
    """Magnitudes with dN/dm proportional to 10**(slope m) between the limits."""
    span = faint - bright
    low = 10.0 ** (-_LUMINOSITY_SLOPE * span)
    u = rng.uniform(size=n)
    return faint + np.log10(low + u * (1.0 - low)) / _LUMINOSITY_SLOPE


def make_stars(
    rng: np.random.Generator,
    plane: TangentPlane,
    bbox: tuple[float, float, float, float],
    n_total: int,
    fluxes: FluxScale,
    proper_motion: float,
    years: float,
) -> QTable:
    """True star catalog: uniform positions in ``bbox`` (arcsec in ``plane``) at the
    reference-catalog epoch, proper motions, and positions propagated by ``years``."""
    xi = rng.uniform(bbox[0], bbox[1], n_total)
    eta = rng.uniform(bbox[2], bbox[3], n_total)
    ra0, dec0 = plane.tp_to_world(xi, eta)
    sigma = proper_motion / math.sqrt(math.pi / 2.0)  # Rayleigh with mean |pm|
    pmra = rng.normal(0.0, sigma, n_total) if sigma > 0 else np.zeros(n_total)
    pmdec = rng.normal(0.0, sigma, n_total) if sigma > 0 else np.zeros(n_total)
    ra, dec = offset_sky(ra0, dec0, pmra * years / 1000.0, pmdec * years / 1000.0)
    mag = _draw_mags(
        rng, n_total, float(fluxes.mag(fluxes.brightest)), float(fluxes.mag(fluxes.faintest))
    )
    stars = QTable()
    stars[COL_ID] = np.arange(1, n_total + 1, dtype=np.int64)
    stars[COL_RA] = ra
    stars[COL_DEC] = dec
    stars["ra_refepoch"] = ra0
    stars["dec_refepoch"] = dec0
    stars[COL_PMRA] = pmra
    stars[COL_PMDEC] = pmdec
    stars[COL_MAG] = mag
    stars[COL_FLUX] = fluxes.flux(mag)
    stars[COL_SNR] = fluxes.snr(stars[COL_FLUX])
    stars["saturated"] = np.zeros(n_total, dtype=bool)
    return stars


def make_refcat(stars: QTable, rng: np.random.Generator, fluxes: FluxScale, epoch: float,
                *, pm_error: float = 0.0) -> QTable:
    """Gaia-like catalog of the stars brighter than ``fluxes.refcat_mag_limit``.

    Positions are those at the catalog epoch perturbed by their errors
    (0.1 mas for the brightest stars, growing with magnitude up to 1 mas).
    Proper motions are exact when ``pm_error`` is 0; otherwise they are perturbed
    by errors of ``pm_error`` mas/yr for the brightest stars, growing like the
    position errors, stated in ``pmra_err, pmdec_err`` (drawn after the position
    errors, so that the positions do not depend on ``pm_error``).
    """
    sub = stars[np.asarray(stars[COL_MAG]) <= fluxes.refcat_mag_limit]
    mag = np.asarray(sub[COL_MAG], dtype=float)
    lo, hi = _REFCAT_ERR_MAS
    bright = float(fluxes.mag(fluxes.brightest))
    err = np.clip(lo * 10.0 ** (0.2 * (mag - bright)), lo, hi)
    dxi, deta = rng.normal(0.0, 1.0, (2, mag.size)) * err
    ra, dec = offset_sky(sub["ra_refepoch"], sub["dec_refepoch"], dxi / 1000.0, deta / 1000.0)
    ref = QTable()
    ref[COL_ID] = np.asarray(sub[COL_ID])
    ref[COL_RA] = ra
    ref[COL_DEC] = dec
    ref[COL_RA_ERR] = err
    ref[COL_DEC_ERR] = err.copy()
    ref[COL_PMRA] = np.asarray(sub[COL_PMRA], dtype=float)
    ref[COL_PMDEC] = np.asarray(sub[COL_PMDEC], dtype=float)
    if pm_error > 0:
        pm_err = pm_error * err / lo
        dpm = rng.normal(0.0, 1.0, (2, mag.size)) * pm_err
        ref[COL_PMRA] = ref[COL_PMRA] + dpm[0]
        ref[COL_PMDEC] = ref[COL_PMDEC] + dpm[1]
        ref[COL_PMRA_ERR] = pm_err
        ref[COL_PMDEC_ERR] = pm_err.copy()
    ref[COL_MAG] = mag
    ref[COL_EPOCH] = np.full(mag.size, float(epoch))
    return ref
