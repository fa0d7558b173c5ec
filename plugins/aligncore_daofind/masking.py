"""Which pixels a detector may use: DQ flags, non-finite values, saturation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["bad_pixel_mask", "count_flagged", "dq_bitmask_of", "saturation_level"]

_SATURATION_KEYS = ("saturate", "SATURATE", "saturation", "SATURATION")


def bad_pixel_mask(data: np.ndarray, mask: np.ndarray | None, dq_bitmask: int | None) -> np.ndarray:
    """Pixels that must not be used: non-finite values and flagged pixels.

    Parameters
    ----------
    data : ndarray
        Science array.
    mask : ndarray or None
        Either a boolean mask (True = bad, used as given) or an integer DQ
        array, whose pixels are bad where ``dq & dq_bitmask`` is nonzero.
    dq_bitmask : int or None
        Bits of an integer DQ array that make a pixel bad; None means any
        nonzero flag.

    Returns
    -------
    ndarray of bool
        True where the pixel is unusable.
    """
    bad = ~np.isfinite(data)
    if mask is None:
        return bad
    mask = np.asarray(mask)
    if mask.shape != data.shape:
        raise ValueError(f"mask shape {mask.shape} differs from data shape {data.shape}")
    if mask.dtype == bool:
        bad |= mask
    elif np.issubdtype(mask.dtype, np.integer):
        bad |= (mask != 0) if dq_bitmask is None else (mask & dq_bitmask) != 0
    else:
        bad |= mask.astype(bool)
    return bad


def dq_bitmask_of(param: int | None, meta: Mapping[str, Any]) -> int | None:
    """The DQ bits that make a pixel bad: the detector's ``dq_bitmask`` when set, else the
    image's own convention (``meta["dq_bitmask"]``, set by the reader, e.g. for HST
    files), else None (any nonzero flag)."""
    if param is not None:
        return param
    value = meta.get("dq_bitmask")
    if isinstance(value, int | np.integer) and not isinstance(value, bool) and value >= 0:
        return int(value)
    return None


def saturation_level(meta: Mapping[str, Any]) -> float | None:
    """The saturation level (raw data units) recorded in an image's ``meta``, if any."""
    for key in _SATURATION_KEYS:
        value = meta.get(key)
        if value is None:
            continue
        try:
            level = float(value)
        except (TypeError, ValueError):
            continue
        if np.isfinite(level):
            return level
    return None


def count_flagged(
    flags: np.ndarray, xpix: np.ndarray, ypix: np.ndarray, half_width: int
) -> np.ndarray:
    """Number of flagged pixels in the box of ``2 * half_width + 1`` pixels centred
    on each ``(xpix, ypix)`` (integer pixel positions; pixels beyond the image
    do not count)."""
    xpix = np.asarray(xpix, dtype=np.intp).reshape(-1)
    ypix = np.asarray(ypix, dtype=np.intp).reshape(-1)
    if xpix.size == 0:
        return np.zeros(xpix.shape, dtype=np.intp)
    ny, nx = flags.shape
    offsets = np.arange(-half_width, half_width + 1)
    rows = ypix[:, None] + offsets
    cols = xpix[:, None] + offsets
    inside = ((rows >= 0) & (rows < ny))[:, :, None] & ((cols >= 0) & (cols < nx))[:, None, :]
    values = flags[np.clip(rows, 0, ny - 1)[:, :, None], np.clip(cols, 0, nx - 1)[:, None, :]]
    return np.count_nonzero(values & inside, axis=(1, 2))
