"""Corpus cases: HST multi-chip files (two SCI chips per exposure) with one broken chip."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from astropy.io import fits

from aligncore.sim.hst import simulate_hst
from corpus.harness import case
from corpus.inputs import run_args

NOTHING = "input error naming the file and the chip, nothing written"
_CELESTIAL = re.compile(r"^(CTYPE\d|CUNIT\d|CRPIX\d|CRVAL\d|CD\d_\d|[AB]_\w+|LONPOLE|LATPOLE|"
                        r"RADESYS|WCSNAME|ORIENTAT)$")


def _exposures(work: Path) -> list[Path]:
    """Two small simulated two-chip WFC3/UVIS-like exposures in ``work/in``."""
    return simulate_hst(2, outdir=work / "in", seed=5, binning=16, n_stars=40).paths


@case("wcs", exit_code=1, message=r"hst_001_flt\.fits: SCI,2: no celestial WCS",
      outcome=NOTHING)
def hst_chip_without_wcs(work: Path) -> list[str]:
    """An HST two-chip file whose second chip (SCI,2) has no WCS keywords at all."""
    paths = _exposures(work)
    with fits.open(paths[1], mode="update") as hdul:
        header = hdul["SCI", 2].header
        for key in [k for k in header if _CELESTIAL.match(k)]:
            del header[key]
    return run_args(work, paths)


@case("fits", exit_code=1,
      message=r"hst_000_flt\.fits: SCI,2: DQ shape \(10, 10\) differs from SCI shape "
              r"\(128, 256\)", outcome=NOTHING)
def hst_chip_dq_shape(work: Path) -> list[str]:
    """An HST two-chip file whose DQ,2 array is 10 x 10 (SCI,2 is 128 x 256)."""
    paths = _exposures(work)
    with fits.open(paths[0]) as hdul:
        hdus = [hdu.copy() for hdu in hdul]
    for index, hdu in enumerate(hdus):
        if hdu.name == "DQ" and hdu.ver == 2:
            hdus[index] = fits.ImageHDU(np.zeros((10, 10), np.int16), name="DQ", ver=2)
    fits.HDUList(hdus).writeto(paths[0], overwrite=True)
    return run_args(work, paths)
