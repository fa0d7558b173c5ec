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


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("outliers", [0.0, 0.05, 0.3])
def test_clipped_stats_equal_astropy_sigma_clipping(outliers, dtype):
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
    med, std, count = clipped_stats(samples.astype(dtype))
    for i, row in enumerate(samples.astype(dtype).astype(np.float64)):
        kept = sigma_clip(row[np.isfinite(row)], sigma=3.0, maxiters=10,
                          cenfunc="median", stdfunc="std", masked=False)
        if kept.size == 0:
            assert np.isnan(med[i]) and count[i] == 0
            continue
        assert count[i] == kept.size
        assert med[i] == pytest.approx(np.median(kept), rel=1e-12)
        assert std[i] == pytest.approx(np.std(kept), rel=1e-9)


def _background2d(data, bad, box):
    """photutils' Background2D as jwst's tweakreg configures it (the mesh itself)."""
    import warnings

    from astropy.stats import SigmaClip
    from astropy.utils.exceptions import AstropyUserWarning
    from photutils.background import Background2D, MedianBackground, StdBackgroundRMS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyUserWarning)
        return Background2D(data, box, mask=bad, filter_size=3,
                            sigma_clip=SigmaClip(sigma=3.0, maxiters=10),
                            bkg_estimator=MedianBackground(),
                            bkg_rms_estimator=StdBackgroundRMS())


@pytest.mark.parametrize("exact", [False, True])
def test_fine_64px_background_equals_background2d(scene, exact):
    """A 64 px box (10 x 11 boxes, partial ones at the right and bottom edges): every box
    is clipped over all its pixels (a pilot only predicts which ones to sort), so the
    meshes and the full-resolution maps equal Background2D's to float32 rounding, far
    below the 0.5 % of the noise that would move any source."""
    data, mask = scene.images[1].load_pixels()
    bad = ~np.isfinite(data) | (mask != 0)
    bad[200:330, 100:260] = True  # a few excluded boxes, filled from their neighbours
    ref = _background2d(data, bad, 64)
    fast = mesh_background(data, bad, 64, 3, exact=exact)
    noise = float(ref.background_rms_median)
    assert fast.mesh.shape == ref.background_mesh.shape == (10, 11)
    assert np.isnan(_mesh_before_filling(data, bad, 64)).sum() >= 4
    np.testing.assert_allclose(fast.mesh, ref.background_mesh, rtol=0, atol=1e-6 * noise)
    np.testing.assert_allclose(fast.rms_mesh, ref.background_rms_mesh, rtol=0,
                               atol=1e-6 * noise)
    assert fast.rms_median == pytest.approx(noise, rel=1e-6)
    diff = np.asarray(fast.rows(0, data.shape[0])) - ref.background
    assert np.max(np.abs(diff)) < 1e-5 * noise
    rms_diff = np.asarray(fast.rms_rows(0, data.shape[0])) - ref.background_rms
    assert np.max(np.abs(rms_diff)) < 1e-5 * noise


def _mesh_before_filling(data, bad, box):
    from aligncore_daofind.meshbkg import _mesh_stats

    return _mesh_stats(data, bad, (box, box), 10.0)[0]


def test_fine_64px_box_catalogs_equal_photutils(scene):
    """Detection with a 64 px background box: the same sources as photutils, the same
    centroids and shape statistics to float precision."""
    for image in scene.images:
        fast = DaofindDetector(brightest=None, bkg_boxsize=64).detect(image)
        ref = DaofindDetector(brightest=None, bkg_boxsize=64, engine="photutils").detect(image)
        assert len(fast) == len(ref) > 150
        ok, idx = match(fast["x"], fast["y"], ref["x"], ref["y"])
        assert ok.all()
        for name in ("x", "y", "sharpness", "roundness1", "roundness2"):
            diff = np.asarray(fast[name]) - np.asarray(ref[name])[idx]
            assert np.max(np.abs(diff)) < 1e-5, name


def test_clipped_stats_without_sorting_equal_sorting_every_value():
    """Rows long enough for the pilot (predicted core counted, tails and median band
    sorted) give the same clipped statistics as sorting every value, whatever the
    contamination: clean rows, stars (a bright tail), a few very faint values, masked
    values, a constant row, a fully masked one and rows where the prediction fails."""
    from aligncore_daofind.meshbkg import _clip_sorted, clipped_stats

    rng = np.random.default_rng(3)
    nrows, ncols = 300, 4096
    samples = rng.normal(50.0, 3.0, (nrows, ncols))
    star = rng.random(nrows) < 0.5
    for i in np.flatnonzero(star):
        n = rng.integers(20, 600)
        samples[i, :n] += 10.0 ** rng.uniform(0.5, 4.0, n)
    samples[::7, :40] -= 200.0  # dead pixels
    samples[::5, rng.integers(0, ncols, 300)] = np.nan
    samples[10] = 7.0
    samples[11] = np.nan
    samples[12, : ncols // 2] += 40.0  # two populations: the pilot's guess fails
    samples = samples.astype(np.float32)
    med, std, count = clipped_stats(samples)
    ref_med, ref_std, ref_count = _clip_sorted(samples, np.arange(nrows), 3.0, 10)
    np.testing.assert_array_equal(count, ref_count)
    np.testing.assert_array_equal(med, ref_med)  # the same order statistics
    np.testing.assert_allclose(std, ref_std, rtol=1e-9)
    assert med[10] == 7.0 and std[10] == 0.0 and count[10] == ncols
    assert np.isnan(med[11]) and count[11] == 0


def test_zoom_rows_equal_the_dense_spline_operator():
    """The background rows from the 4-tap factorisation of the cubic-spline zoom equal
    ``zoom_y @ mesh @ zoom_x.T`` (scipy's ``zoom``), at any row block boundaries."""
    from aligncore_daofind.meshbkg import MeshBackground, zoom_operator

    rng = np.random.default_rng(5)
    for ny, nx, box in ((600, 700, 64), (2048, 300, 400), (90, 120, 30)):
        my, mx = -(-ny // box), -(-nx // box)
        mesh = rng.normal(100.0, 2.0, (my, mx))
        rms = rng.normal(5.0, 0.2, (my, mx))
        zy, zx = zoom_operator(my, box, ny), zoom_operator(mx, box, nx)
        bkg = MeshBackground(rms_median=5.0, box_size=(box, box), method="mesh", mesh=mesh,
                             rms_mesh=rms, zoom_y=zy, zoom_x=zx)
        expect = np.clip(zy @ mesh @ zx.T, mesh.min(), mesh.max())
        got = np.concatenate([bkg.rows(y, min(ny, y + 37)) for y in range(0, ny, 37)])
        assert np.max(np.abs(got - expect)) < 1e-6 * 100.0 * 4
        expect_rms = np.clip(zy @ rms @ zx.T, rms.min(), rms.max())
        assert np.max(np.abs(bkg.rms_rows(0, ny) - expect_rms)) < 1e-6 * 5.0 * 4


def test_zoom_rows_skip_clipping_only_where_it_changes_nothing():
    """A smooth mesh with one spike: the rows far from the spike are convex combinations
    of coefficient rows inside the mesh's range (clipping skipped), the rows near it
    overshoot (clipped); both equal the dense spline clipped everywhere."""
    from aligncore_daofind.meshbkg import MeshBackground, zoom_operator

    ny, nx, box = 1024, 640, 64
    my, mx = ny // box, nx // box
    yy, xx = np.mgrid[0:my, 0:mx]
    mesh = 100.0 + 0.3 * yy + 0.2 * xx + 0.01 * yy * xx
    mesh[3, 4] += 40.0  # a box with a bright star: the spline overshoots around it
    zy, zx = zoom_operator(my, box, ny), zoom_operator(mx, box, nx)
    bkg = MeshBackground(rms_median=5.0, box_size=(box, box), method="mesh", mesh=mesh,
                         rms_mesh=np.full((my, mx), 5.0), zoom_y=zy, zoom_x=zx)
    dense = zy @ mesh @ zx.T
    expect = np.clip(dense, mesh.min(), mesh.max())
    got = np.concatenate([bkg.rows(y, min(ny, y + 50)) for y in range(0, ny, 50)])
    inside = bkg._coeff["background:inside"]
    assert 0 < np.count_nonzero(inside) < my  # both paths are taken
    outside = (dense < mesh.min() - 1e-3) | (dense > mesh.max() + 1e-3)
    assert np.any(outside)  # and clipping matters somewhere
    assert np.max(np.abs(got - expect)) < 1e-6 * 140.0 * 4


def test_mesh_median_filter_equals_nanmedian_of_each_window():
    from aligncore_daofind.meshbkg import _median_filter

    rng = np.random.default_rng(8)
    mesh = rng.normal(10.0, 3.0, (7, 9))
    mesh[2, 3] = mesh[2, 4] = mesh[0, 0] = np.nan
    for size in (3, 5):
        half = size // 2
        padded = np.pad(mesh, half, constant_values=np.nan)
        expect = np.array([[np.nanmedian(padded[i : i + size, j : j + size])
                            for j in range(mesh.shape[1])] for i in range(mesh.shape[0])])
        np.testing.assert_array_equal(_median_filter(mesh, size), expect)
    all_nan = np.full((3, 3), np.nan)
    all_nan[0, 0] = 1.0
    out = _median_filter(all_nan, 1)
    assert out is all_nan


def test_local_maxima_and_cutouts_equal_the_direct_computation():
    """Peaks found through flat indices are the candidates equal to scipy's
    ``maximum_filter`` of the margin-padded convolved image (kernel footprint and a
    min_separation circle), and the cut-outs equal 2D slices."""
    from scipy import ndimage

    from aligncore_daofind.engine_fast import _cutouts, _local_maxima, peak_footprint
    from aligncore_daofind.kernel import dao_kernel

    rng = np.random.default_rng(9)
    ny, nx, pad = 60, 75, 4
    conv = np.zeros((ny + 2 * pad, nx + 2 * pad), np.float32)
    conv[pad:-pad, pad:-pad] = rng.normal(size=(ny, nx)).astype(np.float32)
    conv[pad + 10, pad + 20] = conv[pad + 10, pad + 21] = 9.0  # a tie: both are peaks
    flat = np.flatnonzero(conv[pad:-pad, pad:-pad] > 1.0)
    kernel = dao_kernel(2.5)
    for footprint in (peak_footprint(kernel, 0.0), peak_footprint(kernel, 3.0)):
        got = _local_maxima(conv, pad, nx, flat, footprint)
        peak = conv == ndimage.maximum_filter(conv, footprint=footprint, mode="constant")
        expect = flat[peak[pad:-pad, pad:-pad].reshape(-1)[flat]]
        np.testing.assert_array_equal(got, expect)
        assert 10 < got.size < flat.size
        assert {10 * nx + 20, 10 * nx + 21} <= set(got.tolist())
    y, x = np.array([pad, 30, ny + pad - 1]), np.array([pad, 40, nx + pad - 1])
    cut = _cutouts(conv, y, x, 2)
    for k in range(3):
        np.testing.assert_array_equal(cut[k], conv[y[k] - 2 : y[k] + 3, x[k] - 2 : x[k] + 3])


def test_box_samples_equal_the_masked_copy():
    """The masked samples set to NaN by scattering equal a masked copy of every box's
    sub-grid, for every stride and offset (odd box sizes, strides 1-3)."""
    from aligncore_daofind.meshbkg import _box_samples

    rng = np.random.default_rng(11)
    data = rng.normal(size=(91, 120)).astype(np.float32)
    bad = rng.random(data.shape) < 0.05
    for by, bx, s in ((13, 20, 1), (13, 20, 2), (7, 15, 3), (91, 40, 2)):
        nby, nbx = 91 // by, 120 // bx
        got, n = _box_samples(data, bad, 0, nby * by, 0, nbx * bx, by, bx, s)
        off_y, off_x = ((by - 1) % s) // 2, ((bx - 1) % s) // 2
        expect = []
        for i in range(nby):
            for j in range(nbx):
                box = data[i * by : (i + 1) * by, j * bx : (j + 1) * bx][off_y::s, off_x::s]
                flags = bad[i * by : (i + 1) * by, j * bx : (j + 1) * bx][off_y::s, off_x::s]
                expect.append(np.where(flags, np.nan, box).reshape(-1))
        assert n == nby * nbx
        np.testing.assert_array_equal(got, np.array(expect, dtype=np.float32))
        assert np.isnan(got).any()


def test_background_at_pixels_equals_the_dense_spline_operator():
    """``rms_at``/``background_at`` from the 4-tap factorisation equal the dense
    ``zoom_y @ mesh @ zoom_x.T`` (clipped to the mesh's range) at the same pixels."""
    from aligncore_daofind.meshbkg import MeshBackground, zoom_operator

    rng = np.random.default_rng(12)
    for ny, nx, box in ((700, 600, 64), (300, 2048, 400), (90, 120, 30)):
        my, mx = -(-ny // box), -(-nx // box)
        mesh, rms = rng.normal(100.0, 2.0, (my, mx)), rng.normal(5.0, 0.3, (my, mx))
        zy, zx = zoom_operator(my, box, ny), zoom_operator(mx, box, nx)
        bkg = MeshBackground(rms_median=5.0, box_size=(box, box), method="mesh", mesh=mesh,
                             rms_mesh=rms, zoom_y=zy, zoom_x=zx)
        y, x = rng.integers(0, ny, 500), rng.integers(0, nx, 500)
        for got, grid in ((bkg.background_at(y, x), mesh), (bkg.rms_at(y, x), rms)):
            dense = np.clip(zy @ grid @ zx.T, grid.min(), grid.max())[y, x]
            np.testing.assert_allclose(got, dense, rtol=1e-12)
            assert np.ptp(got) > 0.1
