"""Small synthetic star fields for the detector tests (no simulator needed)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import erf

FWHM_TO_SIGMA = 1.0 / 2.3548200450309493


@dataclass
class StarField:
    data: np.ndarray
    x: np.ndarray
    y: np.ndarray
    flux: np.ndarray
    noise: float
    sky: float


def gaussian_stamp(
    shape: tuple[int, int], x: float, y: float, flux: float, fwhm: float, half: int = 8
) -> tuple[slice, slice, np.ndarray]:
    """A pixel-integrated circular Gaussian of total ``flux`` centred at (x, y)."""
    sigma = fwhm * FWHM_TO_SIGMA
    ix, iy = round(x), round(y)
    y0, y1 = max(iy - half, 0), min(iy + half + 1, shape[0])
    x0, x1 = max(ix - half, 0), min(ix + half + 1, shape[1])

    def profile(lo: int, hi: int, c: float) -> np.ndarray:
        edges = np.arange(lo, hi + 1) - 0.5 - c
        return 0.5 * np.diff(erf(edges / (np.sqrt(2.0) * sigma)))

    stamp = flux * np.outer(profile(y0, y1, y), profile(x0, x1, x))
    return slice(y0, y1), slice(x0, x1), stamp


def star_field(
    shape: tuple[int, int] = (200, 220),
    n: int = 30,
    fwhm: float = 2.5,
    flux_range: tuple[float, float] = (3000.0, 30000.0),
    noise: float = 5.0,
    sky: float = 100.0,
    margin: int = 10,
    min_sep: float = 12.0,
    seed: int = 0,
) -> StarField:
    """Isolated Gaussian stars (separated by ``min_sep``) on a flat sky with Gaussian noise."""
    rng = np.random.default_rng(seed)
    xs: list[float] = []
    ys: list[float] = []
    while len(xs) < n:
        x = rng.uniform(margin, shape[1] - 1 - margin)
        y = rng.uniform(margin, shape[0] - 1 - margin)
        if all((x - a) ** 2 + (y - b) ** 2 > min_sep**2 for a, b in zip(xs, ys, strict=True)):
            xs.append(x)
            ys.append(y)
    flux = rng.uniform(*flux_range, size=n)
    data = np.full(shape, sky, dtype=float)
    for x, y, f in zip(xs, ys, flux, strict=True):
        sy, sx, stamp = gaussian_stamp(shape, x, y, f, fwhm)
        data[sy, sx] += stamp
    data += rng.normal(0.0, noise, size=shape)
    return StarField(data, np.array(xs), np.array(ys), flux, noise, sky)


def nearest(
    x_true: np.ndarray, y_true: np.ndarray, x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest true star for each detection, and the distance."""
    d2 = (np.asarray(x)[:, None] - x_true[None, :]) ** 2 + (
        np.asarray(y)[:, None] - y_true[None, :]
    ) ** 2
    idx = np.argmin(d2, axis=1) if d2.size else np.zeros(0, dtype=int)
    return idx, np.sqrt(d2[np.arange(len(idx)), idx]) if d2.size else np.zeros(0)


def moffat_stamp(
    dx: float, dy: float, fwhm: float, beta: float = 2.5, half: int = 10, sub: int = 5
) -> np.ndarray:
    """Unit-flux Moffat integrated over pixels (``sub`` x ``sub`` midpoint rule), centred
    ``(dx, dy)`` from the central pixel of a ``2 half + 1`` square stamp."""
    alpha = fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    o = (np.arange(sub) + 0.5) / sub - 0.5
    pix = np.arange(-half, half + 1)
    xs = (pix[None, :, None, None] + o[None, None, None, :]) - dx
    ys = (pix[:, None, None, None] + o[None, None, :, None]) - dy
    profile = (beta - 1.0) / (np.pi * alpha**2) * (1.0 + (xs**2 + ys**2) / alpha**2) ** (-beta)
    return profile.mean(axis=(2, 3))


@dataclass
class MoffatField:
    data: np.ndarray
    x: np.ndarray
    y: np.ndarray
    flux: np.ndarray
    crlb: np.ndarray
    snr: np.ndarray
    gain: float


def moffat_field(
    fwhm: float,
    n_side: int = 16,
    spacing: int = 24,
    sky: float = 50.0,
    read_noise: float = 5.0,
    gain: float = 1.0,
    log_flux: tuple[float, float] = (3.0, 5.3),
    seed: int = 0,
) -> MoffatField:
    """Isolated Moffat stars on a grid with Poisson + read noise (data in electrons / gain),
    with each star's Cramér-Rao bound on x (jointly with y, flux and sky) and its flux SNR."""
    rng = np.random.default_rng(seed)
    n = n_side * n_side
    size = n_side * spacing
    half = 8
    data = np.full((size, size), sky)
    flux = 10.0 ** rng.uniform(*log_flux, n)
    xs = np.zeros(n)
    ys = np.zeros(n)
    crlb = np.zeros(n)
    snr = np.zeros(n)
    h = 1e-3
    for k in range(n):
        cy = (k // n_side) * spacing + spacing // 2
        cx = (k % n_side) * spacing + spacing // 2
        dx, dy = rng.uniform(-0.5, 0.5, 2)
        stamp = moffat_stamp(dx, dy, fwhm, half=half)
        data[cy - half : cy + half + 1, cx - half : cx + half + 1] += flux[k] * stamp
        xs[k], ys[k] = cx + dx, cy + dy
        dmx = moffat_stamp(dx + h, dy, fwhm, half=half) - moffat_stamp(dx - h, dy, fwhm, half=half)
        dmy = moffat_stamp(dx, dy + h, fwhm, half=half) - moffat_stamp(dx, dy - h, fwhm, half=half)
        jac = np.stack(
            [flux[k] * dmx / (2 * h), flux[k] * dmy / (2 * h), stamp, np.ones_like(stamp)], axis=-1
        ).reshape(-1, 4)
        var = ((flux[k] * stamp + sky) / gain + (read_noise / gain) ** 2).reshape(-1, 1)
        cov = np.linalg.inv(jac.T @ (jac / var))
        crlb[k] = np.sqrt(cov[0, 0])
        snr[k] = flux[k] / np.sqrt(cov[2, 2])
    electrons = rng.poisson(np.maximum(data * gain, 0.0)) + rng.normal(0, read_noise, data.shape)
    return MoffatField((electrons / gain).astype(np.float32), xs, ys, flux, crlb, snr, gain)
