"""The DAOFIND density-enhancement kernel (Stetson 1987).

A circular Gaussian of the given FWHM, truncated at ``sigma_radius`` sigma
(but always covering a radius of 2 pixels, in a box of at least 5x5), shifted
and scaled so that it sums to zero and convolving an image with it gives, at
each pixel, the least-squares amplitude of a unit-height Gaussian plus a
constant. ``rel_err`` converts a pixel noise into the noise of that
amplitude.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = ["FWHM_TO_SIGMA", "DaoKernel", "dao_kernel"]

FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


@dataclass(frozen=True)
class DaoKernel:
    """The DAOFIND kernel and the quantities derived from it.

    Attributes
    ----------
    fwhm, sigma : float
        Gaussian FWHM and standard deviation in pixels.
    radius : int
        Half width of the (square, odd) kernel box.
    data : ndarray
        Zero-sum convolution kernel (0 outside ``mask``).
    mask : ndarray of bool
        Footprint of the kernel.
    gaussian : ndarray
        The untruncated unit-height Gaussian on the kernel box.
    n_pixels : int
        Number of pixels in the footprint.
    rel_err : float
        ``1 / sqrt(sum((g - mean(g))**2))`` over the footprint.
    """

    fwhm: float
    sigma: float
    radius: int
    data: np.ndarray
    mask: np.ndarray
    gaussian: np.ndarray
    n_pixels: int
    rel_err: float

    @property
    def shape(self) -> tuple[int, int]:
        return (2 * self.radius + 1, 2 * self.radius + 1)


@lru_cache(maxsize=16)
def dao_kernel(fwhm: float, sigma_radius: float = 1.5) -> DaoKernel:
    """Build the DAOFIND kernel for a circular Gaussian.

    Parameters
    ----------
    fwhm : float
        FWHM in pixels (> 0).
    sigma_radius : float
        Truncation radius in units of sigma (> 0).
    """
    if not fwhm > 0:
        raise ValueError("fwhm must be > 0")
    if not sigma_radius > 0:
        raise ValueError("sigma_radius must be > 0")
    sigma = fwhm * FWHM_TO_SIGMA
    radius = int(max(2.0, sigma_radius * sigma))
    offsets = np.arange(-radius, radius + 1, dtype=float)
    r2 = offsets[None, :] ** 2 + offsets[:, None] ** 2
    scaled = r2 / (2.0 * sigma**2)
    mask = (scaled <= sigma_radius**2 / 2.0) | (r2 <= 4.0)
    gaussian = np.exp(-scaled)
    inside = gaussian * mask
    n_pixels = int(mask.sum())
    variance_sum = float((inside**2).sum() - inside.sum() ** 2 / n_pixels)
    data = (inside - inside.sum() / n_pixels) / variance_sum * mask
    for arr in (data, mask, gaussian):
        arr.setflags(write=False)
    return DaoKernel(
        fwhm=float(fwhm),
        sigma=float(sigma),
        radius=radius,
        data=data,
        mask=mask,
        gaussian=gaussian,
        n_pixels=n_pixels,
        rel_err=1.0 / math.sqrt(variance_sum),
    )
