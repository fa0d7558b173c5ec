"""Source catalog files: writing detector catalogs and reading user catalogs.

ECSV, FITS and Parquet tables (astropy's unified table I/O) with 0-based ``x``, ``y``
pixel columns; written atomically beside the images' outputs.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from astropy.table import QTable, Table

from aligncore.catalogs import drop_unusable_rows, find_column
from aligncore.errors import InputError
from aligncore.formats.common import atomic_path, serializable_meta
from aligncore.types import COL_FLUX, COL_ID, COL_X, COL_Y

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


def read_catalog(path: str | Path) -> QTable:
    """Read a source catalog (ECSV, FITS, CSV, Parquet) with 0-based ``x``, ``y`` pixel columns.

    ``xcentroid``/``ycentroid`` are accepted for ``x``/``y``; ``id`` and ``flux``
    are added when missing.

    Raises
    ------
    InputError
        The file is missing, unreadable, lacks pixel coordinates or has several
        candidates for one of them (``x`` and ``xcentroid``). Rows with a masked or
        non-finite position are dropped; ``meta['dropped_rows']`` counts them.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: catalog file not found")
    try:
        table = QTable.read(path)
    except Exception as exc:
        raise InputError(f"{path}: cannot read the catalog: {exc}") from None
    for column, aliases in _CATALOG_ALIASES.items():
        found = find_column(table.colnames, aliases, f"{path}: {column!r} (0-based pixels)")
        if found is None:
            raise InputError(f"{path}: no {column!r} column (0-based pixels); columns present: "
                             f"{', '.join(table.colnames)}")
        if found != column:
            table.rename_column(found, column)
    try:
        table = drop_unusable_rows(table, (COL_X, COL_Y))
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    if COL_ID not in table.colnames:
        table[COL_ID] = np.arange(1, len(table) + 1)
    if COL_FLUX not in table.colnames:
        table[COL_FLUX] = np.ones(len(table))
    table.meta["source_file"] = str(path)
    return table
