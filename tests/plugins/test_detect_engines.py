"""The ``fast`` DAOFIND engine against photutils' DAOStarFinder, and the fast background
against photutils' Background2D, on simulated images with noise, cosmic rays and
saturated stars."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

import aligncore
from aligncore_daofind import DaofindDetector
from aligncore_daofind.background import photutils_background
from aligncore_daofind.engine import FinderSettings
from aligncore_daofind.engine_fast import find_fast
from aligncore_daofind.engine_photutils import find_photutils
from aligncore_daofind.kernel import dao_kernel
from aligncore_daofind.meshbkg import mesh_background


@pytest.fixture(scope="module")
def scene():
    return aligncore.simulate(
        "dither",
        n_images=2,
        seed=11,
        shape=(600, 700),
        n_stars=400,
        cosmic_rays=60,
        saturated_stars=6,
    )


def match(a_x, a_y, b_x, b_y, radius=0.5):
    """Fraction of a with a b within radius, and the index of the nearest b."""
    dist, idx = cKDTree(np.c_[b_x, b_y]).query(np.c_[a_x, a_y])
    return dist <= radius, idx


@pytest.mark.parametrize(
    "settings",
    [
        FinderSettings(fwhm=2.5),
        FinderSettings(fwhm=2.0, min_separation=5.0),
        FinderSettings(fwhm=3.5, sigma_radius=2.0, sharpness_range=(0.3, 0.9)),
        FinderSettings(fwhm=2.5, roundness_range=(-0.5, 0.5), min_separation=3.7),
    ],
)
def test_fast_engine_reproduces_daostarfinder(scene, settings):
    det = DaofindDetector(kernel_fwhm=settings.fwhm, sigma_radius=settings.sigma_radius)
    data, mask = scene.images[0].load_pixels()
    prep = det.prepare("img", data, mask, scene.images[0].meta)
    fast = find_fast(prep.padded, prep.pad, prep.bad, prep.threshold, settings)
    ref = find_photutils(prep.data, prep.bad, prep.threshold, settings)
    assert len(ref) > 100
    assert len(fast) == len(ref)
    # same order (raster order of the peaks) and the same numbers
    np.testing.assert_allclose(fast.x, ref.x, atol=1e-6)
    np.testing.assert_allclose(fast.y, ref.y, atol=1e-6)
    for name in ("sharpness", "roundness1", "roundness2"):
        np.testing.assert_allclose(getattr(fast, name), getattr(ref, name), atol=1e-6)
    np.testing.assert_allclose(fast.flux, ref.flux, rtol=1e-6)
    np.testing.assert_allclose(fast.peak, ref.peak, rtol=1e-6)
    np.testing.assert_allclose(fast.convpeak, ref.convpeak, rtol=1e-5)


def test_fast_engine_handles_edges_and_masks():
    rng = np.random.default_rng(2)
    data = rng.normal(0.0, 1.0, (40, 50)).astype(np.float32)
    data[0, 0] += 80.0  # peaks on the border and in a corner
    data[20, 49] += 60.0
    data[10:12, 10:13] += 40.0
    mask = np.zeros(data.shape, dtype=bool)
    mask[30, 30] = True
    data[30, 30] += 100.0
    settings = FinderSettings(fwhm=2.0, sharpness_range=(0.0, 5.0))
    pad = dao_kernel(2.0).radius
    padded = np.pad(data, pad)
    fast = find_fast(padded, pad, mask, 3.0, settings)
    ref = find_photutils(data, mask, 3.0, settings)
    assert len(fast) == len(ref) >= 3
    np.testing.assert_allclose(fast.x, ref.x, atol=1e-6)
    np.testing.assert_allclose(fast.y, ref.y, atol=1e-6)
    assert not np.any((np.round(fast.x) == 30) & (np.round(fast.y) == 30))


def test_engines_agree_end_to_end(scene):
    """Each engine with its own background: same sources, same measurements."""
    for image in scene.images:
        fast = DaofindDetector(brightest=None, engine="fast").detect(image)
        ref = DaofindDetector(brightest=None, engine="photutils").detect(image)
        assert len(ref) > 150
        ok_f, idx_f = match(fast["x"], fast["y"], ref["x"], ref["y"])
        ok_r, _ = match(ref["x"], ref["y"], fast["x"], fast["y"])
        assert ok_f.mean() >= 0.99 and ok_r.mean() >= 0.99
        dx = np.asarray(fast["x"])[ok_f] - np.asarray(ref["x"])[idx_f[ok_f]]
        dy = np.asarray(fast["y"])[ok_f] - np.asarray(ref["y"])[idx_f[ok_f]]
        assert np.max(np.hypot(dx, dy)) < 0.01
        for name in ("sharpness", "roundness1", "roundness2"):
            diff = np.asarray(fast[name])[ok_f] - np.asarray(ref[name])[idx_f[ok_f]]
            assert np.max(np.abs(diff)) < 1e-3, name


def test_exact_background_reproduces_photutils_catalogs_to_float_precision(scene):
    """``bkg_exact``: the same catalog as photutils, edge sources included (the sampled
    background shifts their shape statistics by up to ~1e-3: the kernel's footprint
    leaves the image, where the background-subtracted data count as 0)."""
    for image in scene.images:
        fast = DaofindDetector(brightest=None, bkg_exact=True).detect(image)
        ref = DaofindDetector(brightest=None, engine="photutils").detect(image)
        assert len(fast) == len(ref) > 150
        ok, idx = match(fast["x"], fast["y"], ref["x"], ref["y"])
        assert ok.all()
        near_edge = ((np.minimum(fast["x"], image.shape[1] - 1 - fast["x"]) < 3)
                     | (np.minimum(fast["y"], image.shape[0] - 1 - fast["y"]) < 3))
        assert near_edge.sum() >= 3
        for name in ("x", "y", "sharpness", "roundness1", "roundness2", "flux"):
            diff = np.asarray(fast[name]) - np.asarray(ref[name])[idx]
            assert np.max(np.abs(diff)) < 1e-5 * max(1.0, float(np.max(np.abs(ref[name])))), name


def test_fast_background_matches_background2d(scene):
    data, mask = scene.images[1].load_pixels()
    bad = ~np.isfinite(data) | (mask != 0)
    ref = photutils_background(data, bad, 128, 3)
    fast = mesh_background(data, bad, 128, 3)
    assert fast.box_size == ref.box_size == (128, 128)
    noise = ref.rms_median
    assert fast.rms_median == pytest.approx(noise, rel=0.02)
    rows = slice(0, data.shape[0])
    diff = np.asarray(fast.rows(0, data.shape[0])) - np.asarray(ref.rows(0, data.shape[0]))
    assert np.max(np.abs(diff)) < 0.05 * noise
    yy, xx = np.mgrid[rows, 0 : data.shape[1] : 7]
    rms_diff = fast.rms_at(yy.ravel(), xx.ravel()) - ref.rms_at(yy.ravel(), xx.ravel())
    assert np.max(np.abs(rms_diff)) < 0.03 * noise


def test_fast_background_is_exact_with_all_pixels(scene):
    """With every pixel sampled, the mesh equals Background2D's to float precision."""
    data, mask = scene.images[0].load_pixels()
    bad = ~np.isfinite(data) | (mask != 0)
    bad[100:220, 50:400] = True  # excluded boxes, filled from their neighbours
    ref = photutils_background(data, bad, 100, 3)
    fast = mesh_background(data, bad, 100, 3, exact=True)
    assert fast.rms_median == pytest.approx(ref.rms_median, rel=1e-5)
    diff = np.asarray(fast.rows(0, data.shape[0])) - np.asarray(ref.rows(0, data.shape[0]))
    assert np.max(np.abs(diff)) < 1e-3


def test_fast_background_falls_back_to_one_box():
    rng = np.random.default_rng(0)
    data = rng.normal(10.0, 2.0, (90, 120)).astype(np.float32)
    bad = np.zeros(data.shape, dtype=bool)
    bad[::2, :] = True  # half of every box masked
    ref = photutils_background(data, bad, 30, 3)
    fast = mesh_background(data, bad, 30, 3)
    assert fast.method == ref.method == "single-box"
    assert fast.box_size == ref.box_size == (90, 120)
    assert fast.rms_median == pytest.approx(ref.rms_median, rel=0.03)
    assert float(fast.rows(0, 1)) == pytest.approx(float(np.mean(ref.rows(0, 1))), abs=0.1)


@pytest.mark.parametrize("outliers", [0.0, 0.05, 0.3])
def test_clipped_stats_equal_astropy_sigma_clipping(outliers):
    """Per row: astropy's sigma clipping (median centre, population std, 3 sigma, 10
    iterations), including rows clipped deeper than the running sums reach (30 %
    outliers) and rows with masked (NaN) values."""
    from astropy.stats import sigma_clip

    from aligncore_daofind.meshbkg import clipped_stats

    rng = np.random.default_rng(7)
    samples = rng.normal(100.0, 5.0, (12, 4000))
    n_out = int(outliers * samples.shape[1])
    samples[:, :n_out] += rng.uniform(30.0, 300.0, (12, n_out))
    samples[3, ::7] = np.nan
    samples[5, :] = np.nan
    med, std, count = clipped_stats(samples.astype(np.float32))
    for i, row in enumerate(samples.astype(np.float32).astype(np.float64)):
        kept = sigma_clip(row[np.isfinite(row)], sigma=3.0, maxiters=10,
                          cenfunc="median", stdfunc="std", masked=False)
        if kept.size == 0:
            assert np.isnan(med[i]) and count[i] == 0
            continue
        assert count[i] == kept.size
        assert med[i] == pytest.approx(np.median(kept), rel=1e-12)
        assert std[i] == pytest.approx(np.std(kept), rel=1e-9)
