"""A reference catalog read from a local table file (ECSV, FITS, CSV, Parquet, VOTable)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from astropy import units as u
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
from aligncore.catalogs import (
    as_jyear,
    drop_unusable_rows,
    find_column,
    propagate,
    reference_table,
)
from aligncore.stages import require_query_types

__all__ = ["COLUMN_ALIASES", "FileRefCatalog", "read_reference_table"]

COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    COL_RA: ("ra", "ra_deg", "radeg", "raj2000", "ra_icrs", "alpha", "ra_j2000"),
    COL_DEC: ("dec", "dec_deg", "decdeg", "dej2000", "decj2000", "de_icrs", "delta", "de",
              "dec_j2000"),
    COL_ID: ("id", "objid", "source_id", "sourceid", "designation", "name"),
    COL_MAG: ("mag", "phot_g_mean_mag", "gmag", "g", "magnitude"),
    COL_RA_ERR: ("ra_err", "ra_error", "e_ra", "e_radeg", "era", "raerr", "sig_ra"),
    COL_DEC_ERR: ("dec_err", "dec_error", "e_dec", "e_de", "e_dedeg", "edec", "decerr",
                  "sig_dec"),
    COL_PMRA: ("pmra", "pm_ra", "pmra_cosdec", "pm_ra_cosdec", "pmracosdec"),
    COL_PMDEC: ("pmdec", "pm_dec", "pmde"),
    COL_EPOCH: ("epoch", "ref_epoch", "epoch_year", "jyear", "refepoch"),
}
"""aligncore column -> names looked for in a file (compared case-insensitively)."""

_FORMATS = {".ecsv": "ascii.ecsv", ".csv": "ascii.csv", ".fits": "fits", ".fit": "fits",
            ".fits.gz": "fits", ".parquet": "parquet", ".pq": "parquet", ".vot": "votable",
            ".xml": "votable"}

_UNITS = {COL_RA: u.deg, COL_DEC: u.deg, COL_RA_ERR: u.mas, COL_DEC_ERR: u.mas,
          COL_PMRA: u.mas / u.yr, COL_PMDEC: u.mas / u.yr}


def _find(colnames: list[str], column: str, path: Path) -> str | None:
    if column in (COL_RA, COL_DEC):  # the positions must not be a guess
        return find_column(colnames, COLUMN_ALIASES[column], f"{path}: {column}")
    lower = {name.lower(): name for name in colnames}
    for alias in COLUMN_ALIASES[column]:
        if alias in lower:
            return lower[alias]
    return None


def _format_for(path: Path) -> str | None:
    name = path.name.lower()
    for suffix, fmt in sorted(_FORMATS.items(), key=lambda item: -len(item[0])):
        if name.endswith(suffix):
            return fmt
    return None


def _values(table: Table, name: str, column: str, path: Path) -> Any:
    """Column values in aligncore's units (converted when the file gives a unit)."""
    col = table[name]
    unit = getattr(col, "unit", None)
    target = _UNITS.get(column)
    if unit is None or target is None or unit == u.dimensionless_unscaled:
        return col
    try:
        factor = (1.0 * u.Unit(unit)).to_value(target)
    except (u.UnitConversionError, ValueError, TypeError):
        raise aligncore.InputError(
            f"{path}: column {name!r} has unit {unit}, which cannot be converted to {target}"
        ) from None
    values = np.ma.asarray(getattr(col, "value", col), dtype=float)
    return values * factor


def read_reference_table(path: str | Path, *, fmt: str | None = None,
                         epoch: float | None = None) -> QTable:
    """Read a reference table and give its columns aligncore's names and units.

    Columns are found case-insensitively among :data:`COLUMN_ALIASES`
    (``ra``/``RA``/``RAJ2000``, ``pmra``, ``ra_error``, ``ref_epoch``, ...).
    Without a unit, ``ra, dec`` are taken as degrees, errors as mas, proper
    motions as mas/yr and epochs as decimal years.

    Parameters
    ----------
    path : path
        ECSV, FITS, CSV, Parquet (needs pyarrow) or VOTable file.
    fmt : str, optional
        astropy format name, when the extension does not say.
    epoch : float, optional
        Epoch of the positions when the file has no epoch column (else
        ``meta['epoch']`` of the file, if any).

    Returns
    -------
    QTable
        ``id, ra, dec, mag, ra_err, dec_err, pmra, pmdec, epoch`` (NaN where unknown).

    Raises
    ------
    aligncore.InputError
        The file is missing or unreadable, or has no RA/Dec columns (the
        message lists the columns it has), or several candidates for one of them
        (``ra`` and ``RA``; the message lists them). Rows with a masked or
        non-finite position or ``|dec| > 90`` are dropped (counted in
        ``meta['dropped_rows']``).
    """
    path = Path(path)
    if not path.exists():
        raise aligncore.InputError(f"{path}: reference catalog file not found")
    fmt = fmt or _format_for(path)
    try:
        raw = Table.read(path, format=fmt) if fmt else Table.read(path)
    except ImportError as exc:
        raise aligncore.InputError(f"{path}: reading this format needs a package that is not "
                                   f"installed ({exc}); e.g. pip install pyarrow for Parquet"
                                   ) from None
    except Exception as exc:
        raise aligncore.InputError(f"{path}: cannot read the reference catalog: {exc}") from None
    found = {column: _find(raw.colnames, column, path) for column in COLUMN_ALIASES}
    if found[COL_RA] is None or found[COL_DEC] is None:
        missing = " and ".join(c for c in (COL_RA, COL_DEC) if found[c] is None)
        raise aligncore.InputError(
            f"{path}: no {missing} column (looked for {', '.join(COLUMN_ALIASES[COL_RA][:3])} "
            f"/ {', '.join(COLUMN_ALIASES[COL_DEC][:3])}, any case); columns present: "
            f"{', '.join(raw.colnames) or 'none'}"
        )
    values = {c: (_values(raw, name, c, path) if name is not None else None)
              for c, name in found.items()}
    file_epoch = epoch if epoch is not None else _meta_epoch(raw.meta)
    try:
        table = reference_table(
            values[COL_RA], values[COL_DEC], ids=values[COL_ID], mag=values[COL_MAG],
            ra_err=values[COL_RA_ERR], dec_err=values[COL_DEC_ERR], pmra=values[COL_PMRA],
            pmdec=values[COL_PMDEC],
            epoch=values[COL_EPOCH] if values[COL_EPOCH] is not None else file_epoch,
            meta={"source": str(path)},
        )
    except (TypeError, ValueError) as exc:
        raise aligncore.InputError(f"{path}: a column is not numeric ({exc}); ra and dec must "
                                   "be decimal degrees") from None
    if file_epoch is not None:
        table.meta["ref_epoch"] = float(file_epoch)
        epochs = np.asarray(table[COL_EPOCH], dtype=float)
        table[COL_EPOCH] = np.where(np.isfinite(epochs), epochs, float(file_epoch))
    for key in ("catalog", "CATALOG"):
        if key in raw.meta:
            table.meta["catalog"] = str(raw.meta[key])
    with np.errstate(invalid="ignore"):
        on_sky = ~(np.abs(np.asarray(table[COL_DEC], float)) > 90.0)
    return drop_unusable_rows(table, (COL_RA, COL_DEC), on_sky)


def _meta_epoch(meta: dict[str, Any]) -> float | None:
    for key in ("epoch", "EPOCH", "ref_epoch", "REFEPOCH"):
        if key in meta:
            try:
                return as_jyear(meta[key])
            except (TypeError, ValueError):
                continue
    return None


class FileRefCatalog(aligncore.RefCatalog):
    """Reference stars from a local table file (ECSV, FITS, CSV, Parquet, VOTable).

    Columns are found case-insensitively: ``ra``/``dec`` (degrees, required)
    and, when present, ``id``, ``mag``, ``ra_err``/``dec_err`` (mas),
    ``pmra``/``pmdec`` (mas/yr) and ``epoch`` (decimal year); see
    `aligncore_refcats.file.COLUMN_ALIASES` for the accepted spellings. Units
    in the file are honoured. With an ``epoch`` argument, stars with proper
    motions are moved to it; stars without keep their catalog position (NaN
    proper motion) for the caller's ``refcat_pm`` policy.
    """

    name = "file"

    class Params(aligncore.Params):
        path: Path = Field(description="Table file: ECSV, FITS, CSV, Parquet or VOTable.")
        format: str | None = Field(
            None, description="astropy table format, when the file extension does not say."
        )
        epoch: float | None = Field(
            None,
            description="Epoch (decimal year) of the positions when the file has no epoch "
            "column or metadata.",
        )

    def check(self, min_rows: int) -> list[str]:
        """Problems of the file, found before any work: unreadable, no or ambiguous
        ra/dec columns, fewer than ``min_rows`` usable rows."""
        try:
            table = read_reference_table(self.params.path, fmt=self.params.format,
                                         epoch=self.params.epoch)
        except aligncore.InputError as exc:
            return [str(exc)]
        if len(table) < min_rows:
            dropped = table.meta.get("dropped_rows", 0)
            return [f"{self.params.path}: {len(table)} usable rows ({dropped} dropped: masked, "
                    f"non-finite or off-sky positions), absolute.min_gaia needs at least "
                    f"{min_rows}"]
        return []

    def query(self, center: SkyCoord, radius: Angle, epoch: Time | None = None) -> QTable:
        require_query_types(self.name, center, radius, epoch)
        p = self.params
        table = read_reference_table(p.path, fmt=p.format, epoch=p.epoch)
        if epoch is not None:
            table = propagate(table, epoch, pm_mode="keep")
        if len(table):
            stars = SkyCoord(np.asarray(table[COL_RA], float), np.asarray(table[COL_DEC], float),
                             unit="deg")
            table = table[stars.separation(center) <= Angle(radius)]
        table.meta.update(self.provenance())
        table.meta.setdefault("catalog", Path(p.path).stem)
        return table
