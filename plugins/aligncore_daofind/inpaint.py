"""Filling unusable pixels before source finding.

A bad pixel set to the background level punches a hole in a star; a
saturated core flagged in the DQ array then becomes a ring whose rim the
finder reports as several spurious sources. Instead, bad pixels are filled
from the outside in: each pass gives every bad pixel that touches a known
pixel (8-neighbourhood) the mean of its known neighbours. A flagged
saturated core becomes a plateau at the level of its rim (one flat maximum,
where no peak is allowed since its pixels are masked), an isolated bad pixel
gets the mean of its neighbours. Pixels still unknown after ``max_passes``
(the inside of large masked areas) are set to 0, the background.
"""

from __future__ import annotations

import numpy as np

__all__ = ["fill_bad_pixels"]

_NEIGHBOURS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


def fill_bad_pixels(padded: np.ndarray, pad: int, bad: np.ndarray, max_passes: int = 16) -> None:
    """Fill the bad pixels of a zero-padded, background-subtracted image in place.

    Parameters
    ----------
    padded : ndarray, shape (ny + 2 pad, nx + 2 pad)
        Image with a margin of ``pad >= 1`` pixels (the margin is not "known").
    pad : int
        Margin width.
    bad : ndarray of bool, shape (ny, nx)
        Pixels to fill.
    max_passes : int
        Number of outside-in passes.
    """
    if pad < 1:
        raise ValueError("fill_bad_pixels needs a margin of at least 1 pixel")
    ny, nx = bad.shape
    width = nx + 2 * pad
    flat_bad = np.flatnonzero(bad)
    if flat_bad.size == 0:
        return
    yb, xb = np.divmod(flat_bad, nx)
    pending = (yb + pad) * width + (xb + pad)
    values = padded.reshape(-1)
    values[pending] = 0.0
    known = np.zeros(padded.shape, dtype=bool)
    known[pad : pad + ny, pad : pad + nx] = ~bad
    known_flat = known.reshape(-1)
    waiting = np.zeros(padded.size, dtype=bool)
    waiting[pending] = True
    offsets = np.array([dy * width + dx for dy, dx in _NEIGHBOURS], dtype=np.intp)

    candidates = pending
    for _ in range(max_passes):
        if candidates.size == 0:
            break
        neighbours = candidates[:, None] + offsets[None, :]
        usable = known_flat[neighbours]
        count = usable.sum(axis=1)
        ready = count > 0
        if not ready.any():
            break
        sums = np.where(usable, values[neighbours], 0.0).sum(axis=1)
        filled = candidates[ready]
        values[filled] = sums[ready] / count[ready]
        known_flat[filled] = True
        waiting[filled] = False
        # next pass: the still-waiting neighbours of what was just filled
        nxt = (filled[:, None] + offsets[None, :]).reshape(-1)
        candidates = np.unique(nxt[waiting[nxt]])
