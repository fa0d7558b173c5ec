"""Tests of the scene simulator: truth, rendering accuracy, files and metrics."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import QTable
from astropy.time import Time
from astropy.wcs import WCS

from aligncore import COL_DEC, COL_FLUX, COL_ID, COL_RA, AlignImage
from aligncore.sim import Scene, simulate
from aligncore.sim.sky import apply_pointing_error, wcs_from_header

QUIET = {"cosmic_rays": 0, "hot_pixels": 0, "saturated_stars": 0, "noise": False}


def _pixels(wcs: WCS, table: QTable) -> tuple[np.ndarray, np.ndarray]:
    ra, dec = np.asarray(table[COL_RA]), np.asarray(table[COL_DEC])
    return wcs.all_world2pix(ra, dec, 0, tolerance=1e-10, maxiter=100)


# --- determinism -------------------------------------------------------------------
def test_same_seed_same_scene_other_seed_other_scene():
    kwargs = {"n_images": 2, "shape": (96, 128), "n_stars": 30}
    a, b = simulate(seed=5, **kwargs), simulate(seed=5, **kwargs)
    c = simulate(seed=6, **kwargs)
    for ia, ib in zip(a.images, b.images, strict=True):
        np.testing.assert_array_equal(ia.load_pixels()[0], ib.load_pixels()[0])
        np.testing.assert_array_equal(ia.load_pixels()[1], ib.load_pixels()[1])
    assert a.truth == b.truth
    np.testing.assert_array_equal(a.stars[COL_RA], b.stars[COL_RA])
    assert a.truth[0]["nominal_wcs"] != c.truth[0]["nominal_wcs"]
    assert not np.array_equal(a.images[0].load_pixels()[0], c.images[0].load_pixels()[0])


def test_noise_settings_do_not_move_stars():
    a = simulate(seed=2, n_images=1, shape=(64, 64), n_stars=20)
    b = simulate(seed=2, n_images=1, shape=(64, 64), n_stars=20, read_noise=9.0, cosmic_rays=0)
    np.testing.assert_array_equal(a.stars[COL_RA], b.stars[COL_RA])
    for key in ("true_wcs", "nominal_wcs", "errors"):
        assert a.truth[0][key] == b.truth[0][key]


# --- rendering accuracy --------------------------------------------------------------
@pytest.mark.parametrize(
    ("psf", "sip"), [("gaussian", False), ("moffat", False), ("gaussian", True), ("moffat", True)]
)
def test_stars_rendered_where_true_wcs_predicts(psf, sip):
    size, half = 1024, 20
    scene = simulate(
        "sparse", n_images=1, seed=7, shape=(size, size), n_stars=40, psf=psf, sip=sip, **QUIET
    )
    x, y = _pixels(scene.true_wcs[0], scene.stars)
    flux = np.asarray(scene.stars[COL_FLUX])
    data = scene.images[0].load_pixels()[0].astype(float) - scene.params["sky"]
    checked = 0
    for i in range(len(x)):
        inside = half + 2 < min(x[i], y[i]) and max(x[i], y[i]) < size - half - 3
        dist = np.hypot(x - x[i], y - y[i])
        dist[i] = np.inf
        if not inside or flux[i] < 1000 or dist.min() < 80:
            continue
        ic, jc = round(x[i]), round(y[i])
        box = data[jc - half : jc + half + 1, ic - half : ic + half + 1]
        yy, xx = np.mgrid[jc - half : jc + half + 1, ic - half : ic + half + 1]
        cx, cy = (box * xx).sum() / box.sum(), (box * yy).sum() / box.sum()
        assert math.hypot(cx - x[i], cy - y[i]) < 0.01
        assert box.sum() == pytest.approx(flux[i], rel=2e-3)
        checked += 1
    assert checked >= 8


def test_sip_distortion_is_a_few_pixels_and_inverse_is_accurate():
    scene = simulate(n_images=1, shape=(512, 512), n_stars=0, sip=True, **QUIET)
    wcs = scene.true_wcs[0]
    assert wcs.sip is not None and scene.truth[0]["nominal_wcs"]["A_ORDER"] == 3
    g = np.linspace(0, 511, 17)
    pix = np.column_stack([a.ravel() for a in np.meshgrid(g, g)])
    focal = wcs.sip_pix2foc(pix, 0)
    shift = np.hypot(*(focal - (pix - (wcs.wcs.crpix - 1))).T)
    assert 2.0 < shift.max() < 6.0
    assert np.abs(wcs.sip_foc2pix(focal, 0) - pix).max() < 0.01  # AP/BP inverse
    for key, value in scene.truth[0]["true_wcs"].items():  # same SIP in the nominal WCS
        if key[:2] in ("A_", "B_", "AP", "BP"):
            assert scene.truth[0]["nominal_wcs"][key] == value


# --- applied errors and metrics ------------------------------------------------------
def test_nominal_error_matches_applied_shift():
    scene = simulate(
        n_images=3,
        shape=(128, 128),
        n_stars=0,
        pointing_error=(1.0, 2.0),
        roll_error=0.0,
        scale_error=0.0,
        **QUIET,
    )
    table = scene.errors(scene.nominal_wcs, relative=False)
    for row, item in zip(table, scene.truth, strict=True):
        expected = 1000.0 * math.hypot(*item["errors"]["shift_arcsec"])
        assert 1000.0 <= expected <= 2000.0
        assert row["rms_mas"] == pytest.approx(expected, abs=0.5)
        assert row["rms_pix"] == pytest.approx(expected / 100.0, rel=1e-3)


def test_nominal_error_includes_roll_and_scale():
    scene = simulate(
        n_images=2, shape=(200, 300), n_stars=0, roll_error=0.5, scale_error=1e-3, **QUIET
    )
    table = scene.errors(scene.nominal_wcs, relative=False, grid=16)
    ny, nx = 200, 300
    yy, xx = np.meshgrid(np.linspace(0, ny - 1, 16), np.linspace(0, nx - 1, 16), indexing="ij")
    for row, item in zip(table, scene.truth, strict=True):
        err = item["errors"]
        h = item["true_wcs"]
        cd = np.array([[h["CD1_1"], h["CD1_2"]], [h["CD2_1"], h["CD2_2"]]]) * 3600.0
        q = np.column_stack([xx.ravel() - (h["CRPIX1"] - 1), yy.ravel() - (h["CRPIX2"] - 1)])
        q = q @ cd.T
        rot = math.radians(err["roll_deg"])
        m = (1 + err["scale"]) * np.array(
            [[math.cos(rot), -math.sin(rot)], [math.sin(rot), math.cos(rot)]]
        )
        vec = np.asarray(err["shift_arcsec"]) + q @ (m - np.eye(2)).T
        expected = 1000.0 * np.sqrt(np.mean(np.sum(vec**2, axis=1)))
        assert row["rms_mas"] == pytest.approx(expected, rel=2e-3)


def test_true_wcs_has_zero_error():
    scene = simulate(n_images=3, shape=(64, 64), n_stars=0, sip=True, **QUIET)
    for relative in (True, False):
        summary = scene.errors_summary(scene.true_wcs, relative=relative)
        assert summary["max_mas"] < 1e-6
        assert np.all(scene.errors(scene.true_wcs, relative=relative)["max_mas"] < 1e-6)


def test_relative_error_removes_a_common_shift():
    scene = simulate("mosaic", n_images=4, shape=(256, 256), n_stars=0, **QUIET)
    shifted = [
        wcs_from_header(
            apply_pointing_error(item["true_wcs"], np.array([1.2, -0.9]), 0, 0),
            tuple(item["shape"]),
        )
        for item in scene.truth
    ]
    rel = scene.errors_summary(shifted, relative=True)
    absolute = scene.errors_summary(shifted, relative=False)
    assert rel["rms_mas"] < 0.1
    assert absolute["rms_mas"] == pytest.approx(1500.0, abs=1.0)
    assert absolute["rms_pix"] == pytest.approx(15.0, abs=0.01)


def test_common_pointing_error_is_shared():
    scene = simulate(
        n_images=3,
        shape=(128, 128),
        n_stars=0,
        pointing_error=(0.0, 0.0),
        common_pointing_error=2.0,
        roll_error=0.0,
        scale_error=0.0,
        **QUIET,
    )
    assert scene.errors_summary(scene.nominal_wcs, relative=True)["rms_mas"] < 0.1
    absolute = scene.errors(scene.nominal_wcs, relative=False)
    np.testing.assert_allclose(absolute["rms_mas"], 2000.0, atol=1.0)
    # relative errors of independent shifts are large, and smaller than absolute ones
    scene2 = simulate(n_images=3, shape=(128, 128), n_stars=0, common_pointing_error=5.0, **QUIET)
    rel2 = scene2.errors_summary(scene2.nominal_wcs, relative=True)["rms_mas"]
    abs2 = scene2.errors_summary(scene2.nominal_wcs, relative=False)["rms_mas"]
    assert 50.0 < rel2 < abs2


def test_errors_accepts_results_and_checks_length():
    scene = simulate(n_images=2, shape=(64, 64), n_stars=0, **QUIET)

    class Result:
        def __init__(self, wcs_list):
            self.images = [type("R", (), {"wcs": w})() for w in wcs_list]

    assert scene.errors_summary(Result(scene.true_wcs))["max_mas"] < 1e-6
    with pytest.raises(ValueError, match=r"one WCS per image \(2\), got 1"):
        scene.errors(scene.true_wcs[:1])
    with pytest.raises(ValueError, match=r"wcs_list\[1\] is not a WCS"):
        scene.errors([scene.true_wcs[0], "nope"])


# --- files --------------------------------------------------------------------------
def test_files_written_and_loaded_back(tmp_path):
    kwargs = {"n_images": 2, "seed": 3, "shape": (96, 80), "n_stars": 40, "sip": True}
    scene = simulate(outdir=tmp_path / "scene", **kwargs)
    memory = simulate(**kwargs)
    out = tmp_path / "scene"
    names = ["img_000.fits", "img_001.fits"]
    assert scene.names == names and scene.paths == [out / n for n in names]
    for k, path in enumerate(scene.paths):
        with fits.open(path) as hdul:
            date = Time(hdul[0].header["DATE-OBS"], scale="utc")
            assert date.tt.jyear == pytest.approx(2025.0, abs=1e-8)
            assert hdul[0].header["MJD-OBS"] == pytest.approx(date.mjd, abs=1e-8)
            sci, dq = hdul["SCI"], hdul["DQ"]
            assert sci.header["BITPIX"] == -32 and dq.data.dtype.kind == "u"
            assert dq.data.dtype.itemsize == 4
            assert sci.header["SATURATE"] == scene.params["saturate"]
            assert sci.header["BUNIT"] == "electron"
            file_wcs = WCS(sci.header)
            ra, dec = file_wcs.all_pix2world([0, 50], [0, 90], 0)
            ra2, dec2 = scene.nominal_wcs[k].all_pix2world([0, 50], [0, 90], 0)
            np.testing.assert_allclose(ra, ra2, rtol=0, atol=1e-11)
            np.testing.assert_allclose(dec, dec2, rtol=0, atol=1e-11)
        data, mask = scene.images[k].load_pixels()
        assert data.dtype == np.float32 and mask.dtype == bool
        np.testing.assert_array_equal(data, memory.images[k].load_pixels()[0])
        np.testing.assert_array_equal(mask, memory.images[k].load_pixels()[1])
        assert isinstance(scene.images[k], AlignImage) and scene.images[k].path == path
        assert scene.images[k].epoch.jyear == pytest.approx(2025.0)
        assert scene.images[k].meta["saturate"] == scene.params["saturate"]
    doc = json.loads((out / "truth.json").read_text())
    assert doc["params"]["seed"] == 3 and len(doc["images"]) == 2
    assert set(doc["images"][0]) >= {"name", "true_wcs", "nominal_wcs", "errors"}
    loaded = Scene.load(out)
    assert loaded.truth == memory.truth
    assert len(loaded.stars) == len(memory.stars) and len(loaded.refcat) == len(memory.refcat)
    np.testing.assert_array_equal(loaded.refcat[COL_RA], memory.refcat[COL_RA])
    t1 = loaded.errors(loaded.nominal_wcs, relative=False)
    t2 = memory.errors(memory.nominal_wcs, relative=False)
    np.testing.assert_allclose(t1["rms_mas"], t2["rms_mas"], rtol=1e-12)


def test_load_rejects_a_directory_without_truth(tmp_path):
    with pytest.raises(FileNotFoundError, match="no simulation truth file"):
        Scene.load(tmp_path)


# --- layouts and catalogs -----------------------------------------------------------
def _overlap_x(scene: Scene, a: int, b: int) -> float:
    """Fraction of image a's width covered by image b (b to the +x side of a)."""
    ny, nx = scene.images[a].shape
    ra, dec = scene.true_wcs[b].all_pix2world([-0.5], [ny / 2 - 0.5], 0)
    x, _ = scene.true_wcs[a].all_world2pix(ra, dec, 0)
    return float((nx - 0.5 - x[0]) / nx)


def test_mosaic_layout_has_ten_percent_overlaps():
    scene = simulate("mosaic", n_images=4, shape=(100, 160), n_stars=0, **QUIET)
    assert _overlap_x(scene, 0, 1) == pytest.approx(0.10, abs=0.005)
    assert _overlap_x(scene, 2, 3) == pytest.approx(0.10, abs=0.005)
    pa = [item["position_angle"] for item in scene.truth]
    assert max(pa) == min(pa)


def test_dither_layout_overlaps_heavily():
    scene = simulate("dither", n_images=4, shape=(200, 200), n_stars=0, **QUIET)
    for k in range(1, 4):
        x, y = scene.true_wcs[0].all_world2pix(*scene.true_wcs[k].all_pix2world(99.5, 99.5, 0), 0)
        offset = math.hypot(x - 99.5, y - 99.5)
        assert 0.05 * 200 - 0.5 <= offset <= 0.15 * 200 + 0.5


def test_star_counts_per_scenario():
    dither = simulate(n_images=2, shape=(512, 512), **QUIET)
    counts = [len(dither.true_sources(i)) for i in range(2)]
    assert all(30 < c < 80 for c in counts)  # 200 per 1024^2 -> 50 per 512^2
    sparse = simulate("sparse", n_images=3, shape=(512, 512), **QUIET)
    assert all(10 <= len(sparse.true_sources(i)) <= 32 for i in range(3))
    crowded = simulate("crowded", n_images=1, shape=(512, 512), cosmic_rays=0, hot_pixels=0)
    assert len(crowded.true_sources(0)) >= 5000 / 4


def test_fluxes_span_the_snr_range_and_saturation_is_flagged():
    scene = simulate(n_images=2, shape=(512, 512), seed=4, hot_pixels=10, cosmic_rays=5)
    stars = scene.stars
    normal = stars[~stars["saturated"]]
    assert normal["snr"].min() >= 4.9 and normal["snr"].max() <= 2000.0
    assert normal["snr"].min() < 7 and normal["snr"].max() > 300
    saturate = scene.params["saturate"]
    for k, image in enumerate(scene.images):
        data, mask = image.load_pixels()
        assert data.max() == np.float32(saturate)
        assert np.count_nonzero(scene.true_sources(k)["saturated"]) >= 3
        assert image.meta["saturate"] == saturate
        assert np.all(mask[data == np.float32(saturate)])
        assert np.count_nonzero(mask & (data < saturate)) == 5  # half the hot pixels
    # unsaturated bright stars stay below SATURATE in a noiseless render
    quiet = simulate(n_images=1, shape=(512, 512), seed=4, **QUIET)
    assert quiet.images[0].load_pixels()[0].max() < saturate


def test_sky_noise_level():
    scene = simulate(
        n_images=1,
        shape=(128, 128),
        n_stars=0,
        cosmic_rays=0,
        hot_pixels=0,
        sky=50.0,
        read_noise=4.0,
    )
    data = scene.images[0].load_pixels()[0]
    assert data.mean() == pytest.approx(50.0, abs=0.2)
    assert data.var() == pytest.approx(50.0 + 16.0, rel=0.05)


def test_refcat_is_gaia_like_with_proper_motions():
    scene = simulate(
        n_images=2,
        shape=(256, 256),
        n_stars=150,
        proper_motion=10.0,
        epoch=2026.0,
        refcat_epoch=2016.0,
        **QUIET,
    )
    ref, stars = scene.refcat, scene.stars
    assert set(ref.colnames) >= {
        "id",
        "ra",
        "dec",
        "ra_err",
        "dec_err",
        "pmra",
        "pmdec",
        "mag",
        "epoch",
    }
    assert len(ref) >= 10 and np.all(ref["epoch"] == 2016.0)
    assert ref["mag"].max() <= scene.params["refcat_mag_limit"]
    assert 0.1 <= ref["ra_err"].min() and ref["ra_err"].max() <= 1.0
    truth = stars[np.searchsorted(stars[COL_ID], ref[COL_ID])]
    cosd = np.cos(np.radians(ref["dec"]))
    dra = (ref["ra"] - truth["ra_refepoch"]) * cosd * 3.6e6
    ddec = (ref["dec"] - truth["dec_refepoch"]) * 3.6e6
    pulls = np.concatenate([dra / ref["ra_err"], ddec / ref["dec_err"]])
    assert 0.7 < np.std(pulls) < 1.3
    moved = (
        np.hypot(
            (stars["ra"] - stars["ra_refepoch"]) * np.cos(np.radians(stars["dec"])),
            stars["dec"] - stars["dec_refepoch"],
        )
        * 3.6e6
    )
    np.testing.assert_allclose(moved, 10.0 * np.hypot(stars["pmra"], stars["pmdec"]), rtol=1e-6)
    assert np.mean(np.hypot(stars["pmra"], stars["pmdec"])) == pytest.approx(10.0, rel=0.15)


# --- validation ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scenario": "grid"}, r"scenario must be one of 'dither', 'mosaic', 'sparse', 'crowded'"),
        ({"n_images": 0}, r"n_images must be an integer >= 1, got 0"),
        ({"psf": "airy"}, r"psf must be one of 'moffat', 'gaussian', got 'airy'"),
        ({"shape": (10, 64)}, r"shape must be a pair of integers >= 32"),
        ({"pointing_error": (2.0, 1.0)}, r"pointing_error\[1\] must be a number >= 2"),
        ({"fwhm": -1.0}, r"fwhm must be a number in \[0.3, 100\], got -1.0"),
        ({"n_stars": -5}, r"n_stars must be an integer >= 0"),
        ({"dec": 95.0}, r"dec must be a number in \[-90, 90\]"),
        ({"sip": "yes"}, r"sip must be True or False"),
        ({"seed": 1.5}, r"seed must be an integer >= 0"),
    ],
)
def test_bad_parameters_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        simulate(**kwargs)
