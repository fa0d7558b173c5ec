"""A reference catalog read from a local table file (ECSV, FITS, CSV, ...)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.coordinates import Angle, SkyCoord
from astropy.table import QTable, Table
from astropy.time import Time
from pydantic import Field

import aligncore
from aligncore import (
    COL_DEC,
    COL_DEC_ERR,
    COL_EPOCH,
    COL_ID,
    COL_MAG,
    COL_PMDEC,
    COL_PMRA,
    COL_RA,
    COL_RA_ERR,
)

__all__ = ["FileRefCatalog", "read_reference_table"]

_ALIASES: dict[str, tuple[str, ...]] = {
    COL_RA: ("ra", "ra_deg", "raj2000", "ra_icrs", "alpha"),
    COL_DEC: ("dec", "dec_deg", "dej2000", "decj2000", "de_icrs", "delta"),
    COL_ID: ("id", "objid", "source_id", "designation"),
    COL_MAG: ("mag", "phot_g_mean_mag", "gmag", "g"),
    COL_RA_ERR: ("ra_err", "ra_error"),
    COL_DEC_ERR: ("dec_err", "dec_error"),
    COL_PMRA: ("pmra",),
    COL_PMDEC: ("pmdec",),
    COL_EPOCH: ("epoch", "ref_epoch"),
}

_FORMATS = {".ecsv": "ascii.ecsv", ".csv": "ascii.csv", ".fits": "fits", ".fit": "fits",
            ".parquet": "parquet", ".vot": "votable", ".xml": "votable"}


def _find(table: Table, column: str) -> str | None:
    lower = {name.lower(): name for name in table.colnames}
    for alias in _ALIASES[column]:
        if alias in lower:
            return lower[alias]
    return None


def read_reference_table(path: Path) -> QTable:
    """Read a reference table and rename its columns to aligncore's names.

    Raises
    ------
    aligncore.InputError
        The file is missing or unreadable, or has no RA/Dec columns.
    """
    if not path.exists():
        raise aligncore.InputError(f"{path}: reference catalog file not found")
    fmt = _FORMATS.get(path.suffix.lower())
    try:
        raw = Table.read(path, format=fmt) if fmt else Table.read(path)
    except Exception as exc:
        raise aligncore.InputError(f"{path}: cannot read the reference catalog: {exc}") from None
    out = QTable()
    for column in _ALIASES:
        found = _find(raw, column)
        if found is not None:
            values = raw[found]
            out[column] = np.asarray(getattr(values, "value", values))
    if COL_RA not in out.colnames or COL_DEC not in out.colnames:
        raise aligncore.InputError(
            f"{path}: no RA/Dec columns (looked for e.g. 'ra'/'dec'); "
            f"columns present: {', '.join(raw.colnames)}"
        )
    if COL_ID not in out.colnames:
        out[COL_ID] = np.arange(1, len(out) + 1)
    if COL_MAG not in out.colnames:
        out[COL_MAG] = np.full(len(out), np.nan)
    out.meta["source"] = str(path)
    return out


def _propagate(table: QTable, epoch: Time) -> QTable:
    """Move stars with proper motions from their catalog epoch to ``epoch`` (linear)."""
    needed = (COL_PMRA, COL_PMDEC, COL_EPOCH)
    if not all(name in table.colnames for name in needed):
        return table
    dt = epoch.jyear - np.asarray(table[COL_EPOCH], dtype=float)
    pmra = np.nan_to_num(np.asarray(table[COL_PMRA], dtype=float))
    pmdec = np.nan_to_num(np.asarray(table[COL_PMDEC], dtype=float))
    dec = np.asarray(table[COL_DEC], dtype=float)
    table[COL_DEC] = dec + pmdec * dt / 3.6e6
    table[COL_RA] = (np.asarray(table[COL_RA], float)
                     + pmra * dt / 3.6e6 / np.cos(np.radians(dec))) % 360.0
    table[COL_EPOCH] = np.full(len(table), epoch.jyear)
    return table


class FileRefCatalog(aligncore.RefCatalog):
    """Reference sources from a local table file.

    Columns are found case-insensitively: ``ra``/``dec`` (degrees, required),
    and optionally ``id``, ``mag``, ``ra_err``/``dec_err`` (mas), ``pmra``/``pmdec``
    (mas/yr) and ``epoch`` (decimal year). With proper motions, positions are
    moved to the requested epoch.
    """

    name = "file"

    class Params(aligncore.Params):
        path: Path = Field(description="Table file: ECSV, FITS, CSV, Parquet or VOTable.")

    def query(self, center: SkyCoord, radius: Angle, epoch: Time | None = None) -> QTable:
        table = read_reference_table(Path(self.params.path))
        if epoch is not None:
            table = _propagate(table, epoch)
        stars = SkyCoord(np.asarray(table[COL_RA], float), np.asarray(table[COL_DEC], float),
                         unit="deg")
        inside = stars.separation(center) <= radius
        result = table[inside]
        result.meta.update(self.provenance())
        return result
