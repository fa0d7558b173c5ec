"""Centroids near the Cramér-Rao limit: ``centroid: win | gauss`` against ``dao``."""

from __future__ import annotations

import numpy as np
import pytest
from detect_helpers import moffat_field, nearest, star_field

from aligncore import AlignImage
from aligncore_daofind import DaofindDetector
from aligncore_daofind.centroids import gauss_centroids, window_centroids


def detect(field, fwhm, centroid):
    image = AlignImage.from_arrays(field.data, None, name="moffat", meta={"gain": field.gain})
    cat = DaofindDetector(brightest=None, kernel_fwhm=fwhm, centroid=centroid).detect(image)
    idx, dist = nearest(field.x, field.y, cat["x"], cat["y"])
    assert np.all(dist < 1.0)
    err = np.hypot(np.asarray(cat["x"]) - field.x[idx], np.asarray(cat["y"]) - field.y[idx])
    return cat, idx, err / np.sqrt(2.0)  # per-axis error


@pytest.fixture(scope="module", params=[2.0, 2.5])
def moffat(request):
    return request.param, moffat_field(request.param, seed=int(10 * request.param))


def test_gauss_centroids_reach_the_cramer_rao_bound(moffat):
    fwhm, field = moffat
    cat, idx, err = detect(field, fwhm, "gauss")
    _, idx_dao, err_dao = detect(field, fwhm, "dao")
    snr, crlb = field.snr[idx], field.crlb[idx]
    usable = snr >= 20
    assert usable.sum() > 100
    rms = np.sqrt(np.mean(err[usable] ** 2))
    bound = np.sqrt(np.mean(crlb[usable] ** 2))
    assert rms <= 1.5 * bound
    # bright stars: DAOFIND's centroids are limited by their pixel-phase bias
    bright = snr >= 100
    bright_dao = field.snr[idx_dao] >= 100
    rms_bright = np.sqrt(np.mean(err[bright] ** 2))
    rms_dao_bright = np.sqrt(np.mean(err_dao[bright_dao] ** 2))
    assert rms_bright * 3.0 <= rms_dao_bright
    # the reported errors are calibrated (ratio of mean squares near 1)
    reported = np.asarray(cat["x_err"])[usable]
    assert 0.7 < np.sqrt(np.mean(reported**2)) / rms < 1.4


def test_window_centroids_beat_dao_for_bright_stars(moffat):
    fwhm, field = moffat
    _, idx, err = detect(field, fwhm, "win")
    _, idx_dao, err_dao = detect(field, fwhm, "dao")
    bright = field.snr[idx] >= 100
    bright_dao = field.snr[idx_dao] >= 100
    assert np.sqrt(np.mean(err[bright] ** 2)) * 2.0 < np.sqrt(np.mean(err_dao[bright_dao] ** 2))


def test_dao_errors_include_the_systematic_floor(moffat):
    fwhm, field = moffat
    cat, _, err = detect(field, fwhm, "dao")
    reported = np.asarray(cat["x_err"])
    assert np.all(reported >= 0.03)
    # not overconfident: the reported errors cover the actual ones
    assert np.sqrt(np.mean(reported**2)) >= 0.8 * np.sqrt(np.mean(err**2))


@pytest.mark.parametrize("method", [window_centroids, gauss_centroids])
def test_refinement_functions_on_gaussian_stars(method):
    field = star_field(seed=7, n=25, noise=2.0, flux_range=(20000.0, 40000.0))
    data = (field.data - field.sky).astype(np.float32)
    x0 = np.round(field.x) + 0.3  # start away from the truth
    y0 = np.round(field.y) - 0.2
    res = method(data, None, x0, y0, 2.5, np.full(x0.size, 2.0))
    assert res.ok.all()
    assert np.max(np.abs(res.x - field.x)) < 0.01
    assert np.max(np.abs(res.y - field.y)) < 0.01
    assert np.all((res.x_err > 0) & (res.x_err < 0.01))


@pytest.mark.parametrize("method", [window_centroids, gauss_centroids])
def test_refinement_failures_keep_the_start(method):
    data = np.zeros((30, 30), dtype=np.float32)  # nothing to centre on
    res = method(data, None, np.array([15.2]), np.array([14.7]), 2.5, np.array([1.0]))
    assert not res.ok[0]
    assert (res.x[0], res.y[0]) == (15.2, 14.7)


def test_refinement_ignores_bad_pixels():
    field = star_field(seed=8, n=10, noise=1.0, flux_range=(20000.0, 30000.0))
    data = (field.data - field.sky).astype(np.float32)
    bad = np.zeros(data.shape, dtype=bool)
    ix, iy = np.round(field.x).astype(int), np.round(field.y).astype(int)
    bad[iy, ix + 2] = True
    data[bad] = 1e5  # garbage under the mask must not pull the centroid
    res = gauss_centroids(data, bad, field.x, field.y, 2.5, np.full(10, 1.0))
    assert np.max(np.hypot(res.x - field.x, res.y - field.y)) < 0.01


def test_empty_input():
    res = gauss_centroids(np.zeros((5, 5)), None, np.zeros(0), np.zeros(0), 2.5, np.zeros(0))
    assert res.x.size == 0 and res.ok.size == 0


def test_gauss_is_three_times_closer_to_the_bound_than_dao_over_snr_20_to_500(moffat):
    """Each star's error in units of its own Cramér-Rao bound, RMS over SNR 20-500 (an
    RMS in pixels would be the faint stars' alone): gauss ~1.0, DAOFIND ~4."""
    fwhm, field = moffat
    _, idx, err = detect(field, fwhm, "gauss")
    _, idx_dao, err_dao = detect(field, fwhm, "dao")

    def normalised_rms(index, error):
        snr, crlb = field.snr[index], field.crlb[index]
        sel = (snr >= 20) & (snr <= 500)
        assert sel.sum() > 100
        return np.sqrt(np.mean((error[sel] / crlb[sel]) ** 2))

    gauss, dao = normalised_rms(idx, err), normalised_rms(idx_dao, err_dao)
    assert gauss <= 1.5
    assert dao >= 3.0 * gauss


def test_window_errors_equal_the_direct_sums():
    """The separable evaluation of the windowed-centroid errors equals the sums over
    each stamp written out directly (with and without the Poisson term)."""
    from aligncore_daofind.centroids import _window_errors

    rng = np.random.default_rng(4)
    n, half, s = 50, 6, 1.1
    radius = 4.0 * s
    off = np.arange(-half, half + 1, dtype=float)
    sub = rng.uniform(-0.5, 0.5, (n, 2))
    dx = off[None, :] - sub[:, :1]
    dy = off[None, :] - sub[:, 1:]
    values = rng.normal(0.0, 3.0, (n, 2 * half + 1, 2 * half + 1))
    values += 200.0 * np.exp(-0.5 * (dy[:, :, None] ** 2 + dx[:, None, :] ** 2) / s**2)
    usable = rng.random(values.shape) > 0.05
    rms = rng.uniform(2.0, 4.0, n)
    for gain in (None, 2.0):
        ddx = np.broadcast_to(dx[:, None, :], values.shape)
        ddy = np.broadcast_to(dy[:, :, None], values.shape)
        r2 = ddx**2 + ddy**2
        w = np.where(usable & (r2 < radius**2), np.exp(-0.5 * r2 / s**2), 0.0)
        var = rms[:, None, None] ** 2 + (0.0 if gain is None else np.maximum(values, 0) / gain)
        norm = np.abs((w * values).sum(axis=(1, 2)))
        x_ref = np.sqrt(4.0 * (w * w * var * ddx**2).sum(axis=(1, 2))) / norm
        y_ref = np.sqrt(4.0 * (w * w * var * ddy**2).sum(axis=(1, 2))) / norm
        x_err, y_err = _window_errors(values, usable, dx, dy, s, radius, rms, gain)
        np.testing.assert_allclose(x_err, x_ref, rtol=1e-12)
        np.testing.assert_allclose(y_err, y_ref, rtol=1e-12)
        assert 0.001 < np.median(x_err) < 1.0


def test_stamps_of_a_slice_equal_fancy_indexing():
    """Stamps gathered through flat indices equal 2D indexing, on a slice of a larger
    array (viewed in place; its mask sliced alike or contiguous) and a transposed one,
    with pixels beyond the edges and bad pixels zeroed and unusable."""
    from aligncore_daofind.centroids import _stamps

    rng = np.random.default_rng(6)
    big = rng.normal(size=(70, 90)).astype(np.float32)
    bad_big = rng.random(big.shape) < 0.1
    inner = big[3:-3, 5:-5]
    for image, bad in ((inner, bad_big[3:-3, 5:-5]), (big.T, bad_big.T), (big, None),
                       (inner, np.ascontiguousarray(bad_big[3:-3, 5:-5]))):
        ny, nx = image.shape
        yc = np.array([0, 5, ny - 1, 30, ny // 2])
        xc = np.array([0, nx - 2, 3, nx - 1, nx // 2])
        values, usable, yy, xx = _stamps(image, bad, yc, xc, 4)
        off = np.arange(-4, 5)
        for k in range(len(yc)):
            ry, rx = yc[k] + off, xc[k] + off
            inside = ((ry >= 0) & (ry < ny))[:, None] & ((rx >= 0) & (rx < nx))[None, :]
            ref = image[np.clip(ry, 0, ny - 1)[:, None], np.clip(rx, 0, nx - 1)[None, :]]
            ok = inside.copy()
            if bad is not None:
                ok &= ~bad[np.clip(ry, 0, ny - 1)[:, None], np.clip(rx, 0, nx - 1)[None, :]]
            np.testing.assert_array_equal(usable[k], ok)
            np.testing.assert_array_equal(values[k], np.where(ok, ref, 0.0))
            np.testing.assert_array_equal(yy[k], np.broadcast_to(ry[:, None], (9, 9)))
            np.testing.assert_array_equal(xx[k], np.broadcast_to(rx[None, :], (9, 9)))
        assert usable.sum() < usable.size  # edges (and bad pixels) do occur
