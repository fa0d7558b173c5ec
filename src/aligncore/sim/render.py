"""Pixel side of the simulator: pixel-integrated PSFs, detector effects and noise.

Stars are rendered on small stamps, many stars at once with numpy broadcasting,
and added to the image with one ``bincount``. Two PSFs are available:

``gaussian``
    Integrated exactly over each pixel with differences of the error function
    (the Gaussian is separable, so a stamp is the outer product of two 1D
    integrals).
``moffat``
    ``I(r) = (beta - 1) / (pi alpha^2) (1 + r^2 / alpha^2)^-beta`` with
    ``beta = 2.5``, integrated over each pixel with a 3 x 3 sub-pixel midpoint
    rule. The wings are cut by a smooth circular taper *centred on the star*,
    so the rendered light stays symmetric about the true position: the first
    moments of a stamp equal the star position to ~1e-5 px whatever the
    sub-pixel phase (the pixel integration zeroes the sampling aliases).

The stamp radius of each star grows with its flux, up to the radius where the
PSF falls below a small fraction of the pixel noise.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy.special import erf

__all__ = [
    "DQ_DO_NOT_USE",
    "DQ_HOT",
    "DQ_SATURATED",
    "MOFFAT_BETA",
    "PSFS",
    "add_cosmic_rays",
    "add_hot_pixels",
    "add_noise",
    "apply_saturation",
    "psf_properties",
    "render_stars",
]

PSFS = ("moffat", "gaussian")
MOFFAT_BETA = 2.5
FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))

DQ_DO_NOT_USE = 1
"""JWST DQ bit: the pixel must not be used."""
DQ_SATURATED = 2
"""JWST DQ bit: the pixel is saturated."""
DQ_HOT = 2048
"""JWST DQ bit: hot pixel."""

_TAPER_START = 0.8  # the Moffat taper runs from 0.8 R to R
_RADII = np.array([3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96])
_CHUNK = 3_000_000  # PSF evaluations per vectorised chunk (bounds memory)


def moffat_alpha(fwhm: float, beta: float = MOFFAT_BETA) -> float:
    """Moffat core width ``alpha`` (pixels) for a given FWHM."""
    return fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))


def _needed_radius(flux: np.ndarray, psf: str, fwhm: float, threshold: float) -> np.ndarray:
    """Radius (px) where ``flux * PSF(r)`` falls to ``threshold``."""
    if psf == "gaussian":
        sigma = fwhm * FWHM_TO_SIGMA
        ratio = np.maximum(flux / (2.0 * np.pi * sigma**2 * threshold), 1.0)
        return sigma * np.sqrt(2.0 * np.log(ratio))
    alpha = moffat_alpha(fwhm)
    peak = (MOFFAT_BETA - 1.0) / (np.pi * alpha**2)
    ratio = np.maximum(flux * peak / threshold, 1.0)
    return alpha * np.sqrt(ratio ** (1.0 / MOFFAT_BETA) - 1.0) / _TAPER_START


def stamp_radii(flux: np.ndarray, psf: str, fwhm: float, threshold: float) -> np.ndarray:
    """Stamp radius of each star, from a short ladder so stars can be batched."""
    ladder = np.unique(np.maximum(_RADII, math.ceil(1.5 * fwhm)))
    need = _needed_radius(np.asarray(flux, dtype=float), psf, fwhm, threshold)
    pos = np.minimum(np.searchsorted(ladder, need), ladder.size - 1)
    return ladder[pos]


def _gaussian_stamps(dx0: np.ndarray, dy0: np.ndarray, half: int, fwhm: float) -> np.ndarray:
    """Unit-flux Gaussian stamps; ``dx0 = centre pixel - x`` per star."""
    sigma = fwhm * FWHM_TO_SIGMA
    edges = np.arange(-half, half + 2) - 0.5
    scale = 1.0 / (math.sqrt(2.0) * sigma)
    px = np.diff(0.5 * erf((dx0[:, None] + edges[None, :]) * scale), axis=1)
    py = np.diff(0.5 * erf((dy0[:, None] + edges[None, :]) * scale), axis=1)
    return py[:, :, None] * px[:, None, :]


def _moffat_corner(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``3/(2 pi)`` times the integral of ``(1 + s^2 + t^2)^-5/2`` over ``[0,u] x [0,v]``.

    Differentiating the closed form of the ``-3/2`` power integral,
    ``c^-1/2 arctan(uv / sqrt(c (c + u^2 + v^2)))``, with respect to ``c`` gives
    this closed form for the ``-5/2`` power (the Moffat profile with beta 2.5).
    """
    rho2 = u * u + v * v
    w = 1.0 + rho2
    uv = u * v
    sw = np.sqrt(w)
    corner = np.arctan(uv / sw) + uv * (2.0 + rho2) / (sw * (w + uv * uv))
    return corner / (2.0 * np.pi)


def _moffat_stamps(
    dx0: np.ndarray, dy0: np.ndarray, half: int, radius: float, fwhm: float
) -> np.ndarray:
    """Unit-flux Moffat (beta 2.5) stamps integrated exactly over each pixel.

    The wings are cut by a smooth taper of the distance between each pixel
    centre and the star, so the stamp stays symmetric about the star.
    """
    alpha = moffat_alpha(fwhm)
    edges = np.arange(-half, half + 2) - 0.5
    u = (dx0[:, None] + edges[None, :]) / alpha
    v = (dy0[:, None] + edges[None, :]) / alpha
    corners = _moffat_corner(u[:, None, :], v[:, :, None])
    stamps = np.diff(np.diff(corners, axis=1), axis=2)
    centres = np.arange(-half, half + 1)
    dx = dx0[:, None] + centres[None, :]
    dy = dy0[:, None] + centres[None, :]
    dist = np.sqrt(dy[:, :, None] ** 2 + dx[:, None, :] ** 2)
    t = np.clip((radius - dist) / ((1.0 - _TAPER_START) * radius), 0.0, 1.0)
    stamps *= t * t * (3.0 - 2.0 * t)
    return stamps / stamps.sum(axis=(1, 2), keepdims=True)


def _add_stamps(
    flat: np.ndarray,
    shape: tuple[int, int],
    x: np.ndarray,
    y: np.ndarray,
    flux: np.ndarray,
    radius: int,
    psf: str,
    fwhm: float,
) -> None:
    """Render stars sharing one stamp radius and accumulate them into ``flat``."""
    ny, nx = shape
    half = radius if psf == "gaussian" else radius + 1
    size = 2 * half + 1
    per_star = (size + 1) ** 2
    step = max(1, _CHUNK // per_star)
    offsets = np.arange(-half, half + 1)
    for start in range(0, x.size, step):
        sl = slice(start, start + step)
        ic = np.rint(x[sl]).astype(np.int64)
        jc = np.rint(y[sl]).astype(np.int64)
        dx0, dy0 = ic - x[sl], jc - y[sl]
        if psf == "gaussian":
            stamps = _gaussian_stamps(dx0, dy0, half, fwhm)
        else:
            stamps = _moffat_stamps(dx0, dy0, half, float(radius), fwhm)
        stamps *= flux[sl][:, None, None]
        cols = np.broadcast_to(ic[:, None, None] + offsets[None, None, :], stamps.shape)
        rows = np.broadcast_to(jc[:, None, None] + offsets[None, :, None], stamps.shape)
        inside = (cols >= 0) & (cols < nx) & (rows >= 0) & (rows < ny)
        index = rows[inside] * nx + cols[inside]
        flat += np.bincount(index, weights=stamps[inside], minlength=flat.size)


def render_stars(
    shape: tuple[int, int],
    x: np.ndarray,
    y: np.ndarray,
    flux: np.ndarray,
    *,
    psf: str,
    fwhm: float,
    threshold: float,
) -> np.ndarray:
    """Noiseless image of point sources.

    Parameters
    ----------
    shape : tuple of int
        ``(ny, nx)`` of the image.
    x, y : ndarray
        0-based pixel positions (the centre of the first pixel is 0).
    flux : ndarray
        Total flux of each star (image units).
    psf : {"moffat", "gaussian"}
        PSF shape.
    fwhm : float
        PSF full width at half maximum in pixels.
    threshold : float
        Surface brightness (per pixel) below which the wings may be cut.

    Returns
    -------
    ndarray
        ``float64`` image of shape ``shape``.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    flux = np.asarray(flux, dtype=float)
    ny, nx = shape
    flat = np.zeros(ny * nx)
    radii = stamp_radii(flux, psf, fwhm, threshold)
    near = (x + radii + 1 >= 0) & (x - radii - 1 < nx) & (y + radii + 1 >= 0) & (y - radii - 1 < ny)
    for radius in np.unique(radii[near]):
        sel = near & (radii == radius)
        _add_stamps(flat, (ny, nx), x[sel], y[sel], flux[sel], int(radius), psf, fwhm)
    return flat.reshape(ny, nx)


@lru_cache(maxsize=32)
def psf_properties(psf: str, fwhm: float) -> tuple[float, float]:
    """Peak pixel fraction and noise-equivalent area (px) of the rendered PSF.

    Returns
    -------
    peak : float
        Largest pixel value of a unit-flux star centred on a pixel.
    area : float
        ``1 / sum(p**2)``: the number of pixels whose noise enters a PSF fit.
    """
    half = int(max(32, math.ceil(15 * fwhm)))
    n = 2 * half + 1
    stamp = render_stars(
        (n, n),
        np.array([half]),
        np.array([half]),
        np.array([1.0]),
        psf=psf,
        fwhm=fwhm,
        threshold=1e-12,
    )
    return float(stamp.max()), float(1.0 / np.sum(stamp**2))


def add_noise(signal: np.ndarray, rng: np.random.Generator, read_noise: float) -> np.ndarray:
    """Poisson noise on ``signal`` (electrons) plus Gaussian read noise."""
    noisy = rng.poisson(np.maximum(signal, 0.0)).astype(float)
    if read_noise > 0:
        noisy += rng.normal(0.0, read_noise, size=signal.shape)
    return noisy


def _log_uniform(rng: np.random.Generator, low: float, high: float, size: int) -> np.ndarray:
    return np.exp(rng.uniform(math.log(low), math.log(max(high, low)), size))


def add_cosmic_rays(
    image: np.ndarray, rng: np.random.Generator, count: int, max_value: float
) -> None:
    """Add ``count`` short straight cosmic-ray tracks (1-12 px), not flagged."""
    ny, nx = image.shape
    for _ in range(count):
        x0, y0 = rng.uniform(0, nx - 1), rng.uniform(0, ny - 1)
        length = rng.uniform(1.0, 12.0)
        angle = rng.uniform(0.0, np.pi)
        t = np.linspace(0.0, length, int(4 * length) + 2)
        cols = np.rint(x0 + t * np.cos(angle)).astype(int)
        rows = np.rint(y0 + t * np.sin(angle)).astype(int)
        ok = (cols >= 0) & (cols < nx) & (rows >= 0) & (rows < ny)
        pixels = np.unique(rows[ok] * nx + cols[ok])
        deposit = _log_uniform(rng, 200.0, min(5000.0, max_value), pixels.size)
        image.flat[pixels] += deposit


def add_hot_pixels(
    image: np.ndarray, dq: np.ndarray, rng: np.random.Generator, count: int, max_value: float
) -> None:
    """Add ``count`` hot pixels; the first half of them is flagged HOT + DO_NOT_USE."""
    if count <= 0:
        return
    pixels = rng.choice(image.size, size=min(count, image.size), replace=False)
    image.flat[pixels] += _log_uniform(rng, 300.0, max_value, pixels.size)
    flagged = pixels[: (pixels.size + 1) // 2]
    dq.flat[flagged] |= np.uint32(DQ_HOT | DQ_DO_NOT_USE)


def apply_saturation(image: np.ndarray, dq: np.ndarray, level: float) -> int:
    """Clip at ``level`` and flag SATURATED + DO_NOT_USE; returns the pixel count."""
    saturated = image >= level
    image[saturated] = level
    dq[saturated] |= np.uint32(DQ_SATURATED | DQ_DO_NOT_USE)
    return int(np.count_nonzero(saturated))
