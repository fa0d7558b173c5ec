"""Corpus cases: the reference catalog of an absolute alignment (local file or service)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.table import QTable

from corpus.harness import case, copy_images
from corpus.inputs import (
    absolute_config,
    file_refcat_config,
    refcat_rows,
    run_args,
    scene_refcat,
    unused_port,
)

BEFORE_WORK = "input error naming the catalog file, found before any work, nothing written"


def _with_file(work: Path, path: Path) -> list[str]:
    return run_args(work, copy_images(work, 2), file_refcat_config(work, path))


@case("refcat", exit_code=0, message=None, outcome="aligned to the catalog", writes=True)
def refcat_good_file(work: Path) -> list[str]:
    """Absolute alignment to a good local reference file (the control case)."""
    return _with_file(work, refcat_rows(work, scene_refcat()))


@case("refcat", exit_code=1, message=r"nowhere\.ecsv: reference catalog file not found",
      outcome=BEFORE_WORK)
def refcat_missing_file(work: Path) -> list[str]:
    """The reference catalog file does not exist."""
    return _with_file(work, work / "nowhere.ecsv")


@case("refcat", exit_code=1, message=r"ref\.ecsv: cannot read the reference catalog",
      outcome=BEFORE_WORK)
def refcat_empty_file(work: Path) -> list[str]:
    """The reference catalog file is empty (0 bytes)."""
    path = work / "ref.ecsv"
    path.write_bytes(b"")
    return _with_file(work, path)


@case("refcat", exit_code=1, message=r"ref\.ecsv: 0 usable rows", outcome=BEFORE_WORK)
def refcat_zero_rows(work: Path) -> list[str]:
    """A reference table with ra/dec columns and no row."""
    return _with_file(work, refcat_rows(work, scene_refcat()[:0]))


@case("refcat", exit_code=1, message=r"ref\.ecsv: no ra and dec column .*columns present: x, y",
      outcome=BEFORE_WORK)
def refcat_no_coordinates(work: Path) -> list[str]:
    """A reference table without ra/dec columns (pixel x, y instead)."""
    return _with_file(work, refcat_rows(work, QTable({"x": np.arange(20.0),
                                                      "y": np.arange(20.0)})))


@case("refcat", exit_code=1, message=r"ref\.ecsv: ra: ambiguous column, candidates ra, RA",
      outcome=BEFORE_WORK)
def refcat_ra_and_RA(work: Path) -> list[str]:
    """A reference table with both 'ra' and 'RA' columns (different values)."""
    table = scene_refcat()
    table["RA"] = table["ra"] + 0.01
    return _with_file(work, refcat_rows(work, table))


@case("refcat", exit_code=0, message=None,
      outcome="aligned; the NaN rows are dropped and counted (report: dropped_rows)",
      writes=True)
def refcat_some_nan_rows(work: Path) -> list[str]:
    """A reference table in which a quarter of the rows have NaN ra or dec."""
    table = scene_refcat()
    table["ra"][::8] = np.nan
    table["dec"][4::8] = np.nan
    return _with_file(work, refcat_rows(work, table))


@case("refcat", exit_code=1, message=r"ref\.ecsv: 0 usable rows .*20 dropped",
      outcome=BEFORE_WORK)
def refcat_all_nan_rows(work: Path) -> list[str]:
    """A reference table whose positions are all NaN."""
    table = QTable({"ra": np.full(20, np.nan), "dec": np.full(20, np.nan)})
    return _with_file(work, refcat_rows(work, table))


@case("refcat", exit_code=1, message=r"ref\.ecsv: 3 usable rows .*min_gaia needs at least 5",
      outcome=BEFORE_WORK)
def refcat_fewer_than_min_gaia(work: Path) -> list[str]:
    """A reference table with 3 stars (min_gaia is 5)."""
    return _with_file(work, refcat_rows(work, scene_refcat()[:3]))


@case("refcat", exit_code=1, message=r"img_000\.fits: cannot read the reference catalog",
      outcome=BEFORE_WORK)
def refcat_image_as_catalog(work: Path) -> list[str]:
    """A FITS image given as the reference catalog."""
    images = copy_images(work, 2)
    return run_args(work, images, file_refcat_config(work, images[0]))


@case("refcat", exit_code=1, message=r"ref\.ecsv: a column is not numeric .*decimal degrees",
      outcome=BEFORE_WORK)
def refcat_sexagesimal_strings(work: Path) -> list[str]:
    """A reference table whose ra/dec columns are sexagesimal strings."""
    table = QTable({"ra": ["10:00:00.1"] * 10, "dec": ["+02:00:00"] * 10})
    return _with_file(work, refcat_rows(work, table))


@case("refcat", exit_code=3, message=r"absolute alignment not applied: .*0 reference stars",
      outcome="aligned relative to each other and written; absolute not applied (exit 3)",
      writes=True)
def refcat_elsewhere(work: Path) -> list[str]:
    """A valid reference table of another part of the sky."""
    table = QTable({"ra": np.linspace(10.0, 10.1, 20), "dec": np.linspace(-40.0, -39.9, 20)})
    return _with_file(work, refcat_rows(work, table))


@case("service", exit_code=3, message=r"(?i)gsss|127\.0\.0\.1",
      outcome="aligned relative to each other and written; absolute not applied (exit 3), "
      "the message names the service", writes=True)
def service_refuses_connections(work: Path) -> list[str]:
    """The Gaia service URL is a port of 127.0.0.1 where nothing listens."""
    url = f"http://127.0.0.1:{unused_port()}"
    refcat = (f"plugin: gaia\n    params: {{url: '{url}', retries: 0, cache: 'off', "
              "timeout: 2}")
    return run_args(work, copy_images(work, 2), absolute_config(work, refcat))
