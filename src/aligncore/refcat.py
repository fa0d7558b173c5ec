"""Public helpers for reference-catalog plugins: tables, columns, epochs, caching.

A reference-catalog plugin (`aligncore.RefCatalog`) returns a table with
aligncore's reference columns. These helpers do the common work, the same way
for every plugin:

- :func:`read_reference_table` reads a table file (ECSV, FITS, CSV, Parquet,
  VOTable) and gives its columns aligncore's names (:data:`COLUMN_ALIASES`,
  case-insensitive) and units; :func:`find_column` finds one column among
  aliases and refuses an ambiguous choice;
- :func:`reference_table` builds a table with :data:`REFERENCE_COLUMNS`
  (``id, ra, dec, mag, ra_err, dec_err, pmra, pmdec, epoch``), NaN where unknown;
- :func:`drop_unusable_rows` / :func:`usable_rows` remove rows without a
  finite position (counted in ``meta[aligncore.META_DROPPED_ROWS]``);
- :func:`as_jyear`, :func:`row_epochs`, :func:`has_proper_motion` and
  :func:`propagate` (positions moved to an observation epoch with the proper
  motions; a policy for stars without them) handle epochs;
- :class:`CatalogCache` / :class:`CacheKey` keep query results on disk, and
  :func:`retry_call` retries transient failures of a remote service, which
  raises :class:`CatalogServiceError` (naming the service and the
  :data:`FALLBACK_ADVICE`).

Warnings for the user go in ``meta[aligncore.META_WARNINGS]`` of the
returned table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from astropy import units as u
from astropy.table import QTable, Table

from aligncore.catalogs import (
    CACHE_MODES,
    DEFAULT_UNKNOWN_PM,
    FALLBACK_ADVICE,
    PM_MODES,
    REFERENCE_COLUMNS,
    CacheKey,
    CacheMode,
    CatalogCache,
    CatalogServiceError,
    PmMode,
    as_jyear,
    default_cache_dir,
    drop_unusable_rows,
    find_column,
    has_proper_motion,
    propagate,
    reference_table,
    retry_call,
    row_epochs,
    usable_rows,
)
from aligncore.errors import InputError
from aligncore.types import (
    COL_DEC,
    COL_DEC_ERR,
    COL_EPOCH,
    COL_ID,
    COL_MAG,
    COL_PMDEC,
    COL_PMDEC_ERR,
    COL_PMRA,
    COL_PMRA_ERR,
    COL_RA,
    COL_RA_ERR,
    META_DROPPED_ROWS,
)

__all__ = [
    "CACHE_MODES",
    "COLUMN_ALIASES",
    "DEFAULT_UNKNOWN_PM",
    "FALLBACK_ADVICE",
    "META_DROPPED_ROWS",
    "PM_MODES",
    "REFERENCE_COLUMNS",
    "CacheKey",
    "CacheMode",
    "CatalogCache",
    "CatalogServiceError",
    "PmMode",
    "as_jyear",
    "default_cache_dir",
    "drop_unusable_rows",
    "find_column",
    "has_proper_motion",
    "propagate",
    "read_reference_table",
    "reference_table",
    "retry_call",
    "row_epochs",
    "usable_rows",
]

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
    COL_PMRA_ERR: ("pmra_err", "pmra_error", "e_pmra"),
    COL_PMDEC_ERR: ("pmdec_err", "pmdec_error", "e_pmdec", "e_pmde"),
    COL_EPOCH: ("epoch", "ref_epoch", "epoch_year", "jyear", "refepoch"),
}
"""aligncore column -> names looked for in a file (compared case-insensitively)."""

_FORMATS = {".ecsv": "ascii.ecsv", ".csv": "ascii.csv", ".fits": "fits", ".fit": "fits",
            ".fits.gz": "fits", ".parquet": "parquet", ".pq": "parquet", ".vot": "votable",
            ".xml": "votable"}

_UNITS = {COL_RA: u.deg, COL_DEC: u.deg, COL_RA_ERR: u.mas, COL_DEC_ERR: u.mas,
          COL_PMRA: u.mas / u.yr, COL_PMDEC: u.mas / u.yr, COL_PMRA_ERR: u.mas / u.yr,
          COL_PMDEC_ERR: u.mas / u.yr}


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
        raise InputError(
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
    InputError
        The file is missing or unreadable, or has no RA/Dec columns (the
        message lists the columns it has), or several candidates for one of them
        (``ra`` and ``RA``; the message lists them). Rows with a masked or
        non-finite position or ``|dec| > 90`` are dropped (counted in
        ``meta['dropped_rows']``).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: reference catalog file not found")
    fmt = fmt or _format_for(path)
    try:
        raw = Table.read(path, format=fmt) if fmt else Table.read(path)
    except ImportError as exc:
        raise InputError(f"{path}: reading this format needs a package that is not "
                                   f"installed ({exc}); e.g. pip install pyarrow for Parquet"
                                   ) from None
    except Exception as exc:
        raise InputError(f"{path}: cannot read the reference catalog: {exc}") from None
    found = {column: _find(raw.colnames, column, path) for column in COLUMN_ALIASES}
    if found[COL_RA] is None or found[COL_DEC] is None:
        missing = " and ".join(c for c in (COL_RA, COL_DEC) if found[c] is None)
        raise InputError(
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
            pmdec=values[COL_PMDEC], pmra_err=values[COL_PMRA_ERR],
            pmdec_err=values[COL_PMDEC_ERR],
            epoch=values[COL_EPOCH] if values[COL_EPOCH] is not None else file_epoch,
            meta={"source": str(path)},
        )
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path}: a column is not numeric ({exc}); ra and dec must "
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
