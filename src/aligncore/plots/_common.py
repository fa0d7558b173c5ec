"""Helpers shared by the figure modules: the matplotlib check, round numbers for keys."""

from __future__ import annotations

import math
from typing import Any

__all__: list[str] = []


def _require_matplotlib() -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError("plots need matplotlib: pip install 'aligncore[plots]'") from exc
    return Figure


def _nice(value: float) -> float:
    """``value`` rounded down to 1, 2 or 5 times a power of ten."""
    if not (value > 0 and math.isfinite(value)):
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (5.0, 2.0, 1.0):
        if value >= step * power:
            return step * power
    return power
