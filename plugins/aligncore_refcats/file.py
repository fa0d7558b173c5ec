"""A reference catalog read from a local table file (ECSV, FITS, CSV, Parquet, VOTable)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.coordinates import Angle, SkyCoord
from astropy.table import QTable
from astropy.time import Time
from pydantic import Field

import aligncore
from aligncore import COL_DEC, COL_RA
from aligncore.refcat import COLUMN_ALIASES, propagate, read_reference_table
from aligncore.stages import require_query_types

__all__ = ["COLUMN_ALIASES", "FileRefCatalog", "read_reference_table"]
# COLUMN_ALIASES and read_reference_table live in the public aligncore.refcat


class FileRefCatalog(aligncore.RefCatalog):
    """Reference stars from a local table file (ECSV, FITS, CSV, Parquet, VOTable).

    Columns are found case-insensitively: ``ra``/``dec`` (degrees, required)
    and, when present, ``id``, ``mag``, ``ra_err``/``dec_err`` (mas),
    ``pmra``/``pmdec`` (mas/yr) and ``epoch`` (decimal year); see
    `aligncore.refcat.COLUMN_ALIASES` for the accepted spellings. Units
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
            dropped = table.meta.get(aligncore.META_DROPPED_ROWS, 0)
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
