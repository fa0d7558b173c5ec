"""Shared fixtures: simulated scenes written once per test session."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

import aligncore


@pytest.fixture(scope="session")
def dither_scene(tmp_path_factory):
    """Four overlapping 1024^2 images with 0.1-3" pointing errors (read-only: copy to modify)."""
    return aligncore.simulate("dither", n_images=4, seed=11,
                              outdir=tmp_path_factory.mktemp("dither"))


def simple_wcs(crval=(150.0, 2.0), shape=(64, 64), scale=0.1) -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = list(crval)
    wcs.wcs.crpix = [shape[1] / 2.0, shape[0] / 2.0]
    wcs.wcs.cd = np.array([[-scale, 0.0], [0.0, scale]]) / 3600.0
    return wcs


def write_image(path, data, wcs: WCS | None, dq=None):
    """A minimal FITS image with a SCI extension (and DQ)."""
    header = wcs.to_header() if wcs is not None else fits.Header()
    hdus = [fits.PrimaryHDU(), fits.ImageHDU(np.asarray(data, np.float32), header, name="SCI")]
    if dq is not None:
        hdus.append(fits.ImageHDU(np.asarray(dq, np.uint32), name="DQ"))
    fits.HDUList(hdus).writeto(path)
    return path


@pytest.fixture(scope="session")
def small_scene(tmp_path_factory):
    """Three 512^2 images, ~120 stars each: fast enough for failure-mode tests."""
    return aligncore.simulate("dither", n_images=3, seed=5, shape=(512, 512), n_stars=120,
                              outdir=tmp_path_factory.mktemp("small"))


def pytest_configure(config):
    config.addinivalue_line("markers", "chromium: renders in headless Chromium (skipped without)")
