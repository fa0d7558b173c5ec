"""A shape test that tells cosmic rays from stars.

A cosmic ray deposits charge in a few pixels with (almost) nothing around
them; the light of a star is spread by the PSF, so on both sides of its
brightest pixel, in every direction, the neighbours keep a sizeable fraction
of that pixel. The statistic is

    q = (min over the 4 directions of the mean of the 2 opposite neighbours - p)
        / (brightest pixel - p)

where ``p`` is the local pedestal (a plane fitted to the 16 pixels of the 5x5
ring around the brightest pixel, so that the wings of a bright neighbour or a
background gradient cancel). For a pixel-integrated Gaussian of FWHM ``f``,
``q`` is smallest for a star centred on a pixel corner; a source is
cosmic-ray-like when ``q`` is below half of that minimum computed for a PSF
25% narrower than the kernel (tolerance for PSF mismatch), by more than 3
times the background RMS (tolerance for noise).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

__all__ = ["cosmic_ray_like", "min_pair_fraction"]

_DIRECTIONS = ((0, 1), (1, 0), (1, 1), (1, -1))
_RING = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if max(abs(dy), abs(dx)) == 2]
# least-squares plane through the ring, evaluated at the centre: a fixed linear
# combination of the ring pixels (the mean, by symmetry)
_PLANE_CENTRE = np.linalg.pinv(np.array([[1.0, dx, dy] for dy, dx in _RING]))[0]


@lru_cache(maxsize=32)
def min_pair_fraction(fwhm: float) -> float:
    """Smallest ``q`` (see the module docstring) of a noiseless pixelated Gaussian."""
    s = fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0))) * math.sqrt(2.0)
    worst = 1.0
    for py in np.linspace(0.0, 0.5, 6):
        for px in np.linspace(0.0, 0.5, 6):
            u = np.arange(-3, 4)
            fy = np.array([math.erf((v + 0.5 - py) / s) - math.erf((v - 0.5 - py) / s) for v in u])
            fx = np.array([math.erf((v + 0.5 - px) / s) - math.erf((v - 0.5 - px) / s) for v in u])
            img = np.outer(fy, fx)
            by, bx = np.unravel_index(np.argmax(img[2:5, 2:5]), (3, 3))
            by, bx = by + 2, bx + 2
            peak = img[by, bx]
            pair = min(
                0.5 * (img[by + dy, bx + dx] + img[by - dy, bx - dx]) for dy, dx in _DIRECTIONS
            )
            worst = min(worst, pair / peak)
    return float(worst)


def cosmic_ray_like(
    image: np.ndarray, x: np.ndarray, y: np.ndarray, fwhm: float, rms: np.ndarray
) -> np.ndarray:
    """Flag sources whose brightest pixel is too isolated for a PSF of the kernel's width.

    Parameters
    ----------
    image : ndarray
        Background-subtracted image.
    x, y : ndarray
        Source positions (0-based pixels); the brightest pixel is searched in
        the 3x3 box around the nearest pixel.
    fwhm : float
        Kernel FWHM in pixels.
    rms : ndarray
        Background RMS at each source.

    Returns
    -------
    ndarray of bool
        True for cosmic-ray-like sources. Near the edges the image is
        mirrored (half-sample symmetric) to complete the stamps.
    """
    x = np.asarray(x, dtype=float)
    n = x.size
    if n == 0:
        return np.zeros(0, dtype=bool)
    ny, nx = image.shape
    if nx < 4 or ny < 4:
        return np.zeros(n, dtype=bool)
    xc = np.clip(np.round(np.nan_to_num(x)), 0, nx - 1).astype(np.intp)
    yc = np.clip(np.round(np.nan_to_num(np.asarray(y, dtype=float))), 0, ny - 1).astype(np.intp)
    off = np.arange(-3, 4)
    rows = _mirror(yc[:, None] + off, ny)
    cols = _mirror(xc[:, None] + off, nx)
    stamp = image[rows[:, :, None], cols[:, None, :]].astype(np.float64)
    best = np.argmax(stamp[:, 2:5, 2:5].reshape(n, 9), axis=1)
    by, bx = np.divmod(best, 3)
    by += 2
    bx += 2
    idx = np.arange(n)
    peak = stamp[idx, by, bx]
    ring = np.stack([stamp[idx, by + dy, bx + dx] for dy, dx in _RING], axis=1)
    pedestal = ring @ _PLANE_CENTRE
    pair = np.min(
        np.stack(
            [
                0.5 * (stamp[idx, by + dy, bx + dx] + stamp[idx, by - dy, bx - dx])
                for dy, dx in _DIRECTIONS
            ],
            axis=1,
        ),
        axis=1,
    )
    limit = 0.5 * min_pair_fraction(0.75 * fwhm)
    noise = 3.0 * np.where(np.isfinite(rms), rms, 0.0)
    return pair - pedestal < limit * (peak - pedestal) - noise


def _mirror(index: np.ndarray, size: int) -> np.ndarray:
    """Indices reflected at the array edges (..., 1, 0 | 0, 1, ... | n-1, n-2, ...)."""
    index = np.where(index < 0, -index - 1, index)
    return np.where(index >= size, 2 * size - index - 1, index)
