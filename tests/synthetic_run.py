"""A synthetic `AlignResult` of any size, without pixels or a pipeline run.

A grid mosaic of FITS WCSs with small fits, residuals, noise bounds and
random catalogs; image 0 is the reference, every ``failed_every``-th image
failed. Used by the HTML report tests and ``benchmarks/bench_report.py``.
"""

from __future__ import annotations

import math

import numpy as np
from astropy.table import QTable
from astropy.wcs import WCS

from aligncore.tangent import TangentPlane
from aligncore.types import COL_X, COL_Y, AlignResult, FitResult, ImageResult, Status

__all__ = ["synthetic_result"]


def _wcs(ra: float, dec: float, shape: tuple[int, int], scale: float) -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = [shape[1] / 2.0, shape[0] / 2.0]
    wcs.wcs.cd = np.array([[-scale, 0.0], [0.0, scale]]) / 3600.0
    wcs.pixel_shape = (shape[1], shape[0])
    return wcs


def synthetic_result(n_images: int, *, seed: int = 0, shape: tuple[int, int] = (512, 512),
                     n_sources: int = 60, failed_every: int = 50,
                     catalogs: bool = True) -> AlignResult:
    """A run of ``n_images`` on a 10 %-overlap grid; see the module docstring."""
    rng = np.random.default_rng(seed)
    scale = 0.1
    side = math.ceil(math.sqrt(n_images))
    step = 0.9 * shape[0] * scale / 3600.0
    dec0, ra0 = 2.0, 150.0
    images = []
    for k in range(n_images):
        row, col = divmod(k, side)
        dec = dec0 + (row - side / 2) * step
        ra = ra0 + (col - side / 2) * step / math.cos(math.radians(dec0))
        failed = k > 0 and failed_every > 0 and k % failed_every == 0
        catalog = None
        if catalogs:
            size = 0 if failed else n_sources
            catalog = QTable({COL_X: rng.uniform(0, shape[1] - 1, size),
                              COL_Y: rng.uniform(0, shape[0] - 1, size)})
        status = Status.REFERENCE if k == 0 else Status.FAILED if failed else Status.SUCCESS
        fit = None
        if status == Status.REFERENCE:
            fit = FitResult.identity(fitgeometry="shift")
        elif status == Status.SUCCESS:
            res = rng.normal(0.0, 0.002, (n_sources // 2, 2))
            fit = FitResult(matrix=np.eye(2) * (1 + rng.normal(0, 1e-6)),
                            shift=rng.normal(0, 0.3, 2), fitgeometry="rscale",
                            fitmask=np.ones(len(res), bool), residuals=res,
                            rmse=float(np.sqrt(np.mean(np.sum(res**2, axis=1)))))
        images.append(ImageResult(
            name=f"img_{k:04d}.fits", status=status,
            reason="no sources detected" if failed else "",
            fit=fit, wcs=_wcs(ra, dec, shape, scale),
            n_sources=0 if failed else n_sources,
            n_matched=0 if failed else n_sources // 2,
            timings={"detect": 0.1}, catalog=catalog,
            meta={"noise_bound_mas": 2.0 + rng.uniform(0, 0.5)} if fit is not None else {}))
    return AlignResult(images=tuple(images), tangent_plane=TangentPlane(ra0, dec0),
                       timings={"total": 1.0}, meta={"absolute": {"enabled": False}})
