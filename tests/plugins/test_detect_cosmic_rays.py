"""Acceptance: with 100 cosmic rays and 20 saturated stars, none of the ``brightest``
sources is a cosmic ray or a saturated star."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

import aligncore
from aligncore import AlignImage
from aligncore_daofind import DaofindDetector


@pytest.fixture(scope="module", params=[3, 4])
def scene(request):
    return aligncore.simulate(
        "dither",
        n_images=1,
        seed=request.param,
        shape=(1024, 1024),
        cosmic_rays=100,
        saturated_stars=20,
    )


def contamination(scene, cat):
    """(sources farther than 2 px from every star, sources within 8 px of a saturated star)."""
    x, y = scene.true_wcs[0].world_to_pixel_values(
        np.asarray(scene.stars["ra"]), np.asarray(scene.stars["dec"])
    )
    saturated = np.asarray(scene.stars["saturated"], dtype=bool)
    xy = np.c_[cat["x"], cat["y"]]
    dist, _ = cKDTree(np.c_[x, y]).query(xy)
    dist_sat, _ = cKDTree(np.c_[x[saturated], y[saturated]]).query(xy)
    return int(np.count_nonzero(dist > 2.0)), int(np.count_nonzero(dist_sat < 8.0))


def test_brightest_sources_are_stars(scene):
    saturate = scene.params["saturate"]
    assert np.count_nonzero(scene.true_sources(0)["saturated"]) == 20
    det = DaofindDetector(brightest=60, peakmax=0.8 * saturate)
    cat = det.detect(scene.images[0])
    assert len(cat) == 60
    assert contamination(scene, cat) == (0, 0)
    assert cat.meta["n_rejected_cosmic_ray"] > 20


def test_peakmax_alone_rejects_saturated_stars(scene):
    """No SATURATE in the header and DQ flags ignored: peakmax still does it."""
    data, _ = scene.images[0].load_pixels()
    image = AlignImage.from_arrays(data, None, name="nometa")
    det = DaofindDetector(brightest=60, peakmax=0.5 * scene.params["saturate"])
    assert contamination(scene, det.detect(image))[1] == 0


def test_without_the_defences_the_test_would_fail(scene):
    data, _ = scene.images[0].load_pixels()
    image = AlignImage.from_arrays(data, None, name="bare")
    cat = DaofindDetector(brightest=100, cr_reject=False).detect(image)
    cosmic_rays, saturated = contamination(scene, cat)
    assert cosmic_rays >= 10
    assert saturated >= 1
