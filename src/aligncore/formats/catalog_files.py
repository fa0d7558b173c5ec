"""Source catalog files: writing detector catalogs and reading user catalogs.

ECSV, FITS and Parquet tables (astropy's unified table I/O) with 0-based ``x``, ``y``
pixel columns; written atomically beside the images' outputs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import QTable, Table

from aligncore.catalogs import drop_unusable_rows, find_column
from aligncore.errors import InputError
from aligncore.formats.common import atomic_path, serializable_meta
from aligncore.tangent import world_to_pixel
from aligncore.types import COL_FLUX, COL_ID, COL_X, COL_X_ERR, COL_Y, COL_Y_ERR

__all__ = ["CATALOG_FORMATS", "catalog_path", "read_catalog", "write_catalog"]

CATALOG_FORMATS = {"ecsv": ("ascii.ecsv", ".ecsv"), "fits": ("fits", ".fits"),
                   "parquet": ("parquet", ".parquet")}


def write_catalog(table: Table, target: str | Path, fmt: str = "ecsv") -> Path:
    """Write a catalog atomically in ``fmt`` (ecsv, fits or parquet)."""
    if fmt not in CATALOG_FORMATS:
        raise ValueError(f"catalog format {fmt!r}; expected one of {', '.join(CATALOG_FORMATS)}")
    astropy_format, _ = CATALOG_FORMATS[fmt]
    table = Table(table, copy=False)
    table.meta = serializable_meta(table.meta)
    with atomic_path(target) as tmp:
        table.write(tmp, format=astropy_format, overwrite=True)
    return Path(target)


_CATALOG_ALIASES = {COL_X: ("x", "xcentroid", "x_centroid"),
                    COL_Y: ("y", "ycentroid", "y_centroid")}
COL_WEIGHT = "weight"
"""Per-source weight of a user catalog (tweakwcs' column): 1 / sigma^2, sigma in pixels."""
_SKY_COLUMNS = ("sky_centroid",)
"""SkyCoord columns of JWST source catalogs (``<name>_cat.ecsv``)."""


_CHIP = re.compile(r"^(?P<file>.+)\[(?P<ext>[A-Za-z]+),(?P<ver>\d+)\]$")
"""A chip's image name, ``FILE[SCI,2]`` (`aligncore.open_images`)."""


def catalog_path(outdir: Path, image_name: str, fmt: str) -> Path:
    """``<outdir>/<stem>_cat.<ext>`` for an image file name; ``<stem>_sci<k>_cat.<ext>`` for
    chip ``k`` of a multi-chip file (image name ``FILE[SCI,k]``)."""
    chip = _CHIP.match(Path(image_name).name)
    stem = chip["file"] if chip else Path(image_name).name
    for suffix in (".fits.gz", ".fits", ".fit", ".asdf"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    if chip:
        stem = f"{stem}_{chip['ext'].lower()}{chip['ver']}"
    return outdir / f"{stem}_cat{CATALOG_FORMATS[fmt][1]}"


def read_catalog(path: str | Path, wcs: Any = None) -> QTable:
    """Read a source catalog (ECSV, FITS, CSV, Parquet) with 0-based ``x``, ``y`` pixel columns.

    ``xcentroid``/``ycentroid`` are accepted for ``x``/``y``; ``id`` and ``flux``
    are added when missing. A catalog with only sky positions (a ``sky_centroid``
    SkyCoord column, as jwst's ``_cat.ecsv``) is placed on the image with its WCS.
    A ``weight`` column (tweakwcs') is read as ``1 / sigma^2`` with sigma the
    centroid error in pixels: it sets ``x_err = y_err = 1 / sqrt(weight)`` unless the
    catalog has ``x_err``/``y_err``; rows of weight 0 are dropped (tweakwcs leaves
    them out of the fits).

    Parameters
    ----------
    path : path
        The catalog file.
    wcs : WCS, optional
        The image's WCS, needed for a catalog with only sky positions.

    Raises
    ------
    InputError
        The file is missing, unreadable, lacks pixel coordinates (and sky positions
        with a WCS to place them) or has several candidates for one of them (``x``
        and ``xcentroid``), or has negative or non-finite weights. Rows with a masked
        or non-finite position are dropped; ``meta['dropped_rows']`` counts them.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: catalog file not found")
    try:
        table = QTable.read(path)
    except Exception as exc:
        raise InputError(f"{path}: cannot read the catalog: {exc}") from None
    if not any(name in table.colnames for name in (*_CATALOG_ALIASES[COL_X],
                                                    *_CATALOG_ALIASES[COL_Y])):
        _pixels_from_sky(table, path, wcs)
    for column, aliases in _CATALOG_ALIASES.items():
        found = find_column(table.colnames, aliases, f"{path}: {column!r} (0-based pixels)")
        if found is None:
            raise InputError(f"{path}: no {column!r} column (0-based pixels) and no "
                             f"sky_centroid column; columns present: {', '.join(table.colnames)}")
        if found != column:
            table.rename_column(found, column)
    try:
        table = drop_unusable_rows(table, (COL_X, COL_Y))
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    if COL_WEIGHT in table.colnames:
        table = _errors_from_weights(table, path)
    if COL_ID not in table.colnames:
        table[COL_ID] = np.arange(1, len(table) + 1)
    if COL_FLUX not in table.colnames:
        table[COL_FLUX] = np.ones(len(table))
    table.meta["source_file"] = str(path)
    return table


def _pixels_from_sky(table: QTable, path: Path, wcs: Any) -> None:
    """Add ``x``, ``y`` from a ``sky_centroid`` column through the image's WCS."""
    name = next((n for n in _SKY_COLUMNS if n in table.colnames), None)
    if name is None:
        return  # the caller reports the missing pixel columns
    sky = table[name]
    if not isinstance(sky, SkyCoord):
        raise InputError(f"{path}: column {name!r} is not a sky coordinate (SkyCoord) column")
    if wcs is None:
        raise InputError(f"{path}: the catalog has sky positions ({name}) but no pixel "
                         "columns, and no image WCS was given to place them")
    icrs = sky.icrs
    x, y = world_to_pixel(wcs, icrs.ra.deg, icrs.dec.deg)
    table[COL_X] = x
    table[COL_Y] = y


def _errors_from_weights(table: QTable, path: Path) -> QTable:
    """``x_err = y_err = 1 / sqrt(weight)``; weight-0 rows dropped (counted in meta)."""
    weight = np.ma.filled(np.ma.asarray(table[COL_WEIGHT], dtype=float), np.nan)
    if not np.all(np.isfinite(weight)) or np.any(weight < 0):
        bad = int(np.count_nonzero(~(np.isfinite(weight) & (weight >= 0))))
        raise InputError(f"{path}: column 'weight' must be finite and >= 0 ({bad} rows are "
                         "not)")
    keep = weight > 0
    dropped = int(np.count_nonzero(~keep))
    table = table[keep]
    if COL_X_ERR not in table.colnames and COL_Y_ERR not in table.colnames:
        error = 1.0 / np.sqrt(weight[keep])
        table[COL_X_ERR] = error
        table[COL_Y_ERR] = error
    if dropped:
        table.meta["dropped_rows"] = int(table.meta.get("dropped_rows", 0)) + dropped
    return table
