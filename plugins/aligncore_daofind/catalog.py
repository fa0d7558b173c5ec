"""Building the detector's output table (frozen aligncore column names)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from astropy.table import QTable

from aligncore import (
    COL_FLUX,
    COL_ID,
    COL_PEAK,
    COL_ROUNDNESS1,
    COL_ROUNDNESS2,
    COL_SHARPNESS,
    COL_SNR,
    COL_X,
    COL_X_ERR,
    COL_Y,
    COL_Y_ERR,
)

__all__ = ["CATALOG_COLUMNS", "make_catalog"]

CATALOG_COLUMNS: tuple[str, ...] = (
    COL_ID,
    COL_X,
    COL_Y,
    COL_X_ERR,
    COL_Y_ERR,
    COL_FLUX,
    COL_PEAK,
    COL_SHARPNESS,
    COL_ROUNDNESS1,
    COL_ROUNDNESS2,
    COL_SNR,
)
"""Columns of every catalog the detectors of this package return, in order."""


def make_catalog(
    columns: Mapping[str, np.ndarray], meta: Mapping[str, Any] | None = None
) -> QTable:
    """A catalog with exactly :data:`CATALOG_COLUMNS`, ids numbered from 1.

    Parameters
    ----------
    columns : mapping
        Arrays for every column of :data:`CATALOG_COLUMNS` except ``id``;
        all of the same length (possibly 0).
    meta : mapping, optional
        Table metadata.
    """
    lengths = {np.size(columns[name]) for name in CATALOG_COLUMNS[1:]}
    if len(lengths) != 1:
        raise ValueError(f"catalog columns have different lengths: {sorted(lengths)}")
    n = lengths.pop()
    table = QTable(meta=dict(meta or {}))
    table[COL_ID] = np.arange(1, n + 1, dtype=np.int64)
    for name in CATALOG_COLUMNS[1:]:
        table[name] = np.asarray(columns[name], dtype=np.float64).reshape(n)
    return table
