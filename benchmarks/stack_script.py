"""The photutils + tweakwcs stack as jwst's tweakreg runs it, as a script (no aligncore).

Detection: photutils ``Background2D`` (box 400, 3x3 filter, 3-sigma clipping, median)
and ``DAOStarFinder`` (FWHM 2.5 px, 5 sigma, 200 brightest, sharpness 0.2-1, roundness
+-1, DQ DO_NOT_USE masked): jwst's ``make_tweakreg_catalog`` defaults. Alignment:
``tweakwcs.align_wcs`` with ``FITSWCSCorrector`` and ``XYXYMatch`` (``TPMatch``;
separation 0.5", tolerance 1", searchrad 1" or 6", 2D histogram), ``fitgeom='rshift'``,
``minobj=15``, ``nclip=3``, ``sigma=(3, 'rmse')``, ``expand_refcat=True``,
``enforce_user_order=False``; corrected headers written to new FITS copies.

``benchmarks/bench_align.py`` runs these functions in its own process;
``benchmarks/bench_cli.py`` runs this file as a whole process, the way a user runs a
script, against ``aligncore run``::

    python benchmarks/stack_script.py OUTDIR IMAGE.fits [IMAGE.fits ...] [--searchrad 6]
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.stats import SigmaClip
from astropy.table import Table
from astropy.utils.exceptions import AstropyUserWarning
from astropy.wcs import WCS
from photutils.background import Background2D, MedianBackground
from photutils.detection import DAOStarFinder
from tweakwcs import FITSWCSCorrector, XYXYMatch, align_wcs

SEED_SEPARATION, SEED_TOLERANCE = 0.5, 1.0  # arcsec
DQ_DO_NOT_USE = 1


def tweakreg_catalog(data: np.ndarray, mask: np.ndarray, fwhm: float = 2.5,
                     snr_threshold: float = 5.0, brightest: int = 200) -> Table:
    """jwst ``make_tweakreg_catalog`` with the DAO finder: background mesh, then DAOFIND."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyUserWarning)
        bkg = Background2D(data, 400, mask=mask, filter_size=3,
                           sigma_clip=SigmaClip(sigma=3.0, maxiters=10),
                           bkg_estimator=MedianBackground())
        threshold = snr_threshold * float(bkg.background_rms_median)
        finder = DAOStarFinder(threshold, fwhm, n_brightest=brightest,
                               sharpness_range=(0.2, 1.0), roundness_range=(-1.0, 1.0))
        found = finder.find_stars(data - bkg.background, mask=mask)
    if found is None or len(found) == 0:
        return Table({"x": np.zeros(0), "y": np.zeros(0)})
    return Table({"x": np.asarray(found["x_centroid"], float),
                  "y": np.asarray(found["y_centroid"], float)})


def detect(paths: Sequence[Path]) -> tuple[list[Table], list[WCS], dict[str, float]]:
    """Read every image and detect its sources, as jwst's tweakreg does."""
    catalogs, wcs_list = [], []
    t_read = t_detect = 0.0
    for path in paths:
        t0 = time.perf_counter()
        with fits.open(path) as hdul:
            data = np.asarray(hdul["SCI"].data, dtype=float)
            dq = np.asarray(hdul["DQ"].data)
            wcs = WCS(hdul["SCI"].header, hdul)
        mask = ((dq & DQ_DO_NOT_USE) != 0) | ~np.isfinite(data)
        t1 = time.perf_counter()
        catalogs.append(tweakreg_catalog(data, mask))
        wcs_list.append(wcs)
        t_read += t1 - t0
        t_detect += time.perf_counter() - t1
    return catalogs, wcs_list, {"read": t_read, "detect": t_detect}


def align(paths: Sequence[Path], catalogs: Sequence[Table], wcs_list: Sequence[WCS],
          searchrad: float, outdir: Path) -> dict[str, Any]:
    """``align_wcs`` with FITSWCSCorrector + XYXYMatch, then the corrected FITS copies.

    Returns
    -------
    dict
        ``solutions`` (a WCS per image: the corrected one, or the input's when its fit
        failed), ``failed`` (``"name: status"`` lines), ``error`` (an exception of
        ``align_wcs``, or "") and ``times`` (``align``, ``write``; seconds).
    """
    t0 = time.perf_counter()
    scales = wcs_list[0].proj_plane_pixel_scales()
    pscale = float(np.mean([abs(s.to_value("deg")) for s in scales])) * 3600.0
    correctors = [FITSWCSCorrector(wcs.deepcopy(), meta={"catalog": cat, "name": p.name,
                                                         "group_id": None})
                  for p, cat, wcs in zip(paths, catalogs, wcs_list, strict=True)]
    # FITSWCSCorrector's tangent plane is in (reference image) pixels: arcsec -> pixels
    match = XYXYMatch(searchrad=searchrad / pscale, separation=SEED_SEPARATION / pscale,
                      tolerance=SEED_TOLERANCE / pscale, use2dhist=True)
    error = ""
    try:
        align_wcs(correctors, enforce_user_order=False, expand_refcat=True, minobj=15,
                  match=match, fitgeom="rshift", nclip=3, sigma=(3.0, "rmse"))
    except Exception as exc:  # NotEnoughCatalogs, MatchSourceConfusionError, ...
        error = f"{type(exc).__name__}: {exc}"
    t_align = time.perf_counter() - t0
    failed, solutions = [], []
    for p, corrector, wcs in zip(paths, correctors, wcs_list, strict=True):
        status = "FAILED: " + error if error else corrector.meta.get("fit_info", {}).get(
            "status", "FAILED: no fit_info")
        ok = status in ("SUCCESS", "REFERENCE")
        solutions.append(corrector.wcs if ok else wcs)
        if not ok:
            failed.append(f"{p.name}: {status}")
    t1 = time.perf_counter()
    outdir.mkdir(parents=True, exist_ok=True)
    for p, wcs in zip(paths, solutions, strict=True):
        with fits.open(p) as hdul:
            hdul["SCI"].header.update(wcs.to_header(relax=True))
            hdul.writeto(outdir / p.name, overwrite=True)
    return {"solutions": solutions, "failed": failed, "error": error,
            "times": {"align": t_align, "write": time.perf_counter() - t1}}


def main(argv: Sequence[str] | None = None) -> int:
    """Detect, align and write, as a user's script would; prints one summary line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--searchrad", type=float, default=6.0, help="arcsec (default 6)")
    args = parser.parse_args(argv)
    catalogs, wcs_list, times = detect(args.images)
    out = align(args.images, catalogs, wcs_list, args.searchrad, args.outdir)
    times.update(out["times"])
    print(" ".join(f"{k}={v:.3f}" for k, v in times.items()), f"failed={len(out['failed'])}")
    return 1 if out["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
