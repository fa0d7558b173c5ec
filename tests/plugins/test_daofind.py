"""The ``daofind`` detector: detection, selection, masks, edge cases, parameters."""

from __future__ import annotations

import numpy as np
import pytest
from detect_helpers import gaussian_stamp, nearest, star_field
from pydantic import ValidationError

import aligncore
from aligncore import AlignImage, InputError
from aligncore_daofind import DaofindDetector

EXPECTED_COLUMNS = [
    aligncore.COL_ID,
    aligncore.COL_X,
    aligncore.COL_Y,
    aligncore.COL_X_ERR,
    aligncore.COL_Y_ERR,
    aligncore.COL_FLUX,
    aligncore.COL_PEAK,
    aligncore.COL_SHARPNESS,
    aligncore.COL_ROUNDNESS1,
    aligncore.COL_ROUNDNESS2,
    aligncore.COL_SNR,
]

ENGINES = ["fast", "photutils"]


def image_of(data, mask=None, **meta) -> AlignImage:
    return AlignImage.from_arrays(np.asarray(data), None, name="img.fits", mask=mask, meta=meta)


@pytest.fixture(scope="module")
def field():
    return star_field(seed=1)


# --- registration -------------------------------------------------------------------
def test_registered_through_entry_point():
    import aligncore_daofind

    assert aligncore.get_plugin("detector", "daofind") is DaofindDetector
    assert isinstance(aligncore_daofind.__version__, str)
    assert DaofindDetector.kind == "detector"


def test_defaults_are_the_seed_values():
    p = DaofindDetector().params
    assert (p.engine, p.centroid, p.cr_reject, p.dq_bitmask) == ("fast", "dao", True, None)
    assert (p.kernel_fwhm, p.snr_threshold, p.brightest, p.peakmax) == (2.5, 5.0, 100, None)
    assert (p.sharplo, p.sharphi, p.roundlo, p.roundhi) == (0.2, 1.0, -1.0, 1.0)
    assert (p.sigma_radius, p.minsep_fwhm, p.bkg_boxsize, p.bkg_filter_size) == (1.5, 0.0, 400, 3)


# --- detection ------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ENGINES)
def test_finds_every_star_with_accurate_positions(field, engine):
    cat = DaofindDetector(brightest=None, engine=engine).detect(image_of(field.data))
    assert cat.colnames == EXPECTED_COLUMNS
    assert len(cat) == len(field.x)
    idx, dist = nearest(field.x, field.y, cat["x"], cat["y"])
    assert np.unique(idx).size == len(field.x)
    bright = cat["snr"] > 50
    assert bright.sum() >= 20
    rms = np.sqrt(np.mean(dist[bright] ** 2))
    assert rms < 0.05
    assert dist.max() < 0.15
    # flux is close to the total flux (kernel box holds most of it)
    ratio = cat["flux"] / field.flux[idx]
    assert np.all((ratio > 0.6) & (ratio < 1.05))
    # sorted by decreasing flux, ids from 1
    assert np.all(np.diff(cat["flux"]) <= 0)
    assert list(cat["id"]) == list(range(1, len(cat) + 1))
    # errors: DAOFIND's systematic floor plus a statistical part shrinking with SNR
    assert np.all(cat["x_err"] >= 0.03) and np.all(cat["y_err"] >= 0.03)
    assert np.corrcoef(np.log(cat["snr"]), np.log(cat["x_err"] - 0.029))[0, 1] < -0.8


def test_positions_are_zero_based():
    data = np.zeros((41, 41))
    sy, sx, stamp = gaussian_stamp(data.shape, 20.0, 13.0, 10000.0, 2.5)
    data[sy, sx] += stamp
    data += np.random.default_rng(3).normal(0, 1.0, data.shape)
    cat = DaofindDetector().detect(image_of(data))
    assert len(cat) == 1
    assert cat["x"][0] == pytest.approx(20.0, abs=0.03)
    assert cat["y"][0] == pytest.approx(13.0, abs=0.03)


def test_brightest_keeps_the_top_fluxes(field):
    full = DaofindDetector(brightest=None).detect(image_of(field.data))
    top = DaofindDetector(brightest=7).detect(image_of(field.data))
    assert len(top) == 7
    np.testing.assert_allclose(top["flux"], full["flux"][:7])
    np.testing.assert_allclose(top["x"], full["x"][:7])


def test_meta_has_provenance_and_image_name(field):
    cat = DaofindDetector(snr_threshold=7.0).detect(image_of(field.data))
    assert cat.meta["stage"] == "detector"
    assert cat.meta["plugin"] == "daofind"
    assert cat.meta["plugin_version"] == "0.1.0"
    assert cat.meta["params"]["snr_threshold"] == 7.0
    assert cat.meta["image"] == "img.fits"
    assert cat.meta["warnings"] == []
    # the threshold is snr_threshold x the background RMS (noise = 5)
    assert cat.meta["threshold"] == pytest.approx(7.0 * field.noise, rel=0.05)


def test_snr_threshold_controls_depth():
    f = star_field(seed=4, flux_range=(100.0, 3000.0), n=40)
    n_low = len(DaofindDetector(brightest=None, snr_threshold=4.0).detect(image_of(f.data)))
    n_high = len(DaofindDetector(brightest=None, snr_threshold=20.0).detect(image_of(f.data)))
    assert n_low > n_high > 0
    cat = DaofindDetector(brightest=None, snr_threshold=20.0).detect(image_of(f.data))
    assert np.nanmin(cat["snr"]) > 20.0 * 0.9


# --- masks and saturation ---------------------------------------------------------------
def test_nan_pixels_and_bool_mask_are_ignored(field):
    data = field.data.copy()
    data[:, :15] = np.nan  # a NaN strip
    mask = np.zeros(data.shape, dtype=bool)
    mask[-15:, :] = True
    data[-15:, :] = 1e6  # garbage under the mask
    cat = DaofindDetector(brightest=None).detect(image_of(data, mask))
    assert len(cat) > 0
    assert np.all(cat["x"] > 15) and np.all(cat["y"] < data.shape[0] - 15)
    assert np.all(np.isfinite(cat["flux"]))
    _, dist = nearest(field.x, field.y, cat["x"], cat["y"])
    assert dist.max() < 0.2


def test_dq_bitmask_selects_flags(field):
    dq = np.zeros(field.data.shape, dtype=np.uint32)
    dq[:, : field.data.shape[1] // 2] = 4  # a flag that is not "bad" for this bitmask
    everything = DaofindDetector(brightest=None).detect(image_of(field.data, dq))
    ignore_4 = DaofindDetector(brightest=None, dq_bitmask=1 | 2).detect(image_of(field.data, dq))
    assert len(ignore_4) == len(field.x)
    assert 0 < len(everything) < len(field.x)
    assert np.all(everything["x"] > field.data.shape[1] // 2)


def test_saturated_stars_are_rejected():
    f = star_field(seed=5, n=12, flux_range=(5000.0, 8000.0))
    data = f.data.copy()
    sy, sx, stamp = gaussian_stamp(data.shape, 100.3, 100.6, 4e5, 2.5)
    data[sy, sx] += stamp
    level = 20000.0
    data = np.minimum(data, level)
    # saturation from the header level
    cat = DaofindDetector(brightest=None).detect(image_of(data, saturate=level))
    _, dist_sat = nearest(np.array([100.3]), np.array([100.6]), cat["x"], cat["y"])
    assert np.all(dist_sat > 5)
    # saturation from peakmax
    cat = DaofindDetector(brightest=None, peakmax=15000.0).detect(image_of(data))
    _, dist_sat = nearest(np.array([100.3]), np.array([100.6]), cat["x"], cat["y"])
    assert np.all(dist_sat > 5)
    assert len(cat) >= 10
    # without either, the saturated star is found
    cat = DaofindDetector(brightest=None, sharphi=5.0).detect(image_of(data))
    _, dist_sat = nearest(np.array([100.3]), np.array([100.6]), cat["x"], cat["y"])
    assert dist_sat.min() < 1.0


# --- edge cases: empty catalogs or clear errors -----------------------------------------
def assert_empty_with_warning(cat, text):
    assert len(cat) == 0
    assert cat.colnames == EXPECTED_COLUMNS
    assert any(text in w for w in cat.meta["warnings"]), cat.meta["warnings"]


@pytest.mark.parametrize("engine", ENGINES)
def test_blank_image_gives_empty_catalog(engine):
    cat = DaofindDetector(engine=engine).detect(image_of(np.full((64, 64), 3.0)))
    assert_empty_with_warning(cat, "no sources found")


def test_pure_noise_gives_few_sources():
    data = np.random.default_rng(0).normal(10.0, 1.0, (128, 128))
    cat = DaofindDetector(brightest=None).detect(image_of(data))
    assert len(cat) <= 3


def test_all_nan_image_is_an_input_error():
    with pytest.raises(InputError, match=r"img\.fits: image has no finite pixels"):
        DaofindDetector().detect(image_of(np.full((32, 32), np.nan)))


def test_fully_flagged_image_gives_empty_catalog(field):
    dq = np.ones(field.data.shape, dtype=np.uint16)
    cat = DaofindDetector().detect(image_of(field.data, dq))
    assert_empty_with_warning(cat, "every pixel is flagged")


def test_tiny_image():
    data = np.random.default_rng(1).normal(0.0, 1.0, (5, 5))
    data[2, 2] += 50.0
    cat = DaofindDetector(sharphi=10.0).detect(image_of(data))
    assert cat.colnames == EXPECTED_COLUMNS
    assert len(cat) <= 1


def test_image_smaller_than_background_box(field):
    small = field.data[:60, :80]
    cat = DaofindDetector(brightest=None, bkg_boxsize=400).detect(image_of(small))
    inside = (field.x < 80 - 3) & (field.y < 60 - 3)
    assert len(cat) >= inside.sum() > 0
    assert cat.meta["background"]["box_size"] == [60, 80]


def test_heavily_masked_image_falls_back_to_one_box(field):
    mask = np.zeros(field.data.shape, dtype=bool)
    mask[:, ::3] = True  # 1/3 masked in every box: the mesh is unusable
    cat = DaofindDetector(brightest=None, bkg_boxsize=50).detect(image_of(field.data, mask))
    assert cat.meta["background"]["method"] == "single-box"
    assert any("one box" in w for w in cat.meta["warnings"])


def test_not_2d_is_an_input_error():
    det = DaofindDetector()
    with pytest.raises(InputError, match="must be 2D"):
        det.prepare("cube.fits", np.zeros((2, 3, 4)), None)


def test_integer_data_is_accepted(field):
    data = np.clip(field.data, 0, None).astype(np.uint16)
    cat = DaofindDetector(brightest=None).detect(image_of(data))
    assert len(cat) == len(field.x)


# --- parameters ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kernel_fwhm": 0}, r"kernel_fwhm\n  Input should be greater than 0"),
        ({"snr_threshold": -1}, r"snr_threshold\n  Input should be greater than 0"),
        ({"brightest": 0}, r"brightest\n  Input should be greater than 0"),
        ({"brightest": 2.5}, r"brightest\n  Input should be a valid integer"),
        ({"peakmax": -5.0}, r"peakmax\n  Input should be greater than 0"),
        ({"sharplo": 1.5, "sharphi": 1.0}, r"sharplo \(1\.5\) must be <= sharphi \(1\.0\)"),
        ({"roundlo": 0.5, "roundhi": 0.2}, r"roundlo \(0\.5\) must be <= roundhi \(0\.2\)"),
        ({"engine": "gpu"}, r"engine\n  Input should be 'fast' or 'photutils'"),
        ({"centroid": "psf"}, r"centroid\n  Input should be 'dao', 'win' or 'gauss'"),
        ({"bkg_filter_size": 4}, r"bkg_filter_size must be odd, got 4"),
        ({"minsep_fwhm": -1}, r"minsep_fwhm\n  Input should be greater than or equal to 0"),
        ({"dq_bitmask": -1}, r"dq_bitmask\n  Input should be greater than or equal to 0"),
        ({"kernel_fhwm": 2.0}, r"kernel_fhwm\n  Extra inputs are not permitted"),
    ],
)
def test_bad_parameters_are_rejected(kwargs, message):
    with pytest.raises(ValidationError, match=message):
        DaofindDetector(**kwargs)


def test_brightest_none_and_repr():
    det = DaofindDetector(brightest=None, kernel_fwhm=2.0)
    assert det.params.brightest is None
    assert "kernel_fwhm=2.0" in repr(det)
