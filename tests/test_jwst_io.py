"""JWST ``*_cal.fits`` ImageModels (optional ``jwst`` extra): reading, `aligncore run`, outputs."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import asdf
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS, FITSFixedWarning

pytest.importorskip("stdatamodels")
from stdatamodels.jwst import datamodels

import aligncore
from aligncore import ImageResult, InputError, Status
from aligncore.cli import main
from aligncore.formats.jwst import (
    exposure_group,
    is_jwst_fits,
    output_name,
    sip_approximation,
    write_jwst_image,
)
from jwst_files import SHAPE, cal_file, cal_name

DEFAULT = str(Path(__file__).resolve().parents[1] / "configs" / "default.yaml")
FRAMES = ["detector", "v2v3", "v2v3corr", "world"]
SCALE = 0.063  # arcsec per pixel


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """Three NIRCam-like exposures (0.063"/px), pointing errors 0.2-1.5", roll <= 0.02 deg."""
    return aligncore.simulate("dither", n_images=3, seed=21, shape=SHAPE, pixel_scale=SCALE,
                              n_stars=80, pointing_error=(0.2, 1.5), roll_error=0.02,
                              wcs="gwcs", outdir=tmp_path_factory.mktemp("jwst_sim"))


@pytest.fixture(scope="module")
def cal_files(scene, tmp_path_factory):
    directory = tmp_path_factory.mktemp("jwst_cal")
    return [cal_file(path, directory / cal_name(k), k) for k, path in enumerate(scene.paths)]


@pytest.fixture(scope="module")
def aligned(cal_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("jwst_out")
    assert main(["run", DEFAULT, *map(str, cal_files), "-o", str(out), "-q"]) == 0
    return [out / output_name(path.name) for path in cal_files]


def _grid(n: int = 13) -> tuple[np.ndarray, np.ndarray]:
    g = np.linspace(-0.5, SHAPE[1] - 0.5, n)
    x, y = np.meshgrid(g, g)
    return x.ravel(), y.ravel()


def _sip_error_pix(path: Path, gwcs) -> float:
    """Largest distance (pixels) between the SCI header's FITS WCS of ``path`` and ``gwcs``."""
    with fits.open(path) as hdul, warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        fits_wcs = WCS(hdul["SCI"].header)
    x, y = _grid(29)
    ra, dec = gwcs(x, y)
    sky = fits_wcs.pixel_to_world(x, y)
    return float(np.max(sky.separation(SkyCoord(ra, dec, unit="deg")).arcsec) / SCALE)


def test_open_image_reads_a_cal_file(scene, cal_files):
    path = cal_files[1]
    assert is_jwst_fits(path)
    assert not is_jwst_fits(Path(__file__))
    image = aligncore.open_image(path)
    assert image.meta["format"] == "jwst"
    assert image.meta["model_type"] == "ImageModel"
    assert image.shape == SHAPE
    assert image.group_id == "jw01234001001_02101_00002"
    assert abs((image.epoch - Time("2024-05-01T12:00:00", scale="utc")).sec) < 1e-3
    assert image.wcs.available_frames == ["detector", "v2v3", "world"]
    spec = scene.truth[1]["nominal_wcs"]["gwcs"]
    assert image.wcs.aligncore_wcsinfo == {key: spec[key] for key in
                                           ("v2_ref", "v3_ref", "roll_ref", "ra_ref", "dec_ref")}
    x, y = _grid()
    np.testing.assert_allclose(image.wcs(x, y), scene.nominal_wcs[1](x, y), rtol=0, atol=1e-12)
    data, dq = image.load_pixels()
    with asdf.open(scene.paths[1]) as af:
        np.testing.assert_array_equal(data, af.tree["data"])
        np.testing.assert_array_equal(dq, af.tree["dq"])
    assert aligncore.open_image(path, group_id="mine").group_id == "mine"


def test_run_corrects_the_gwcs_and_the_sip_header(scene, cal_files, aligned):
    before = scene.errors_summary(scene.nominal_wcs)
    assert before["rms_pix"] > 2.0  # the simulated pointing errors are real
    x, y = _grid()
    corrected, sip_errors, stale_sip = [], [], []
    for source, path in zip(cal_files, aligned, strict=True):
        with datamodels.open(path) as model, datamodels.open(source) as original:
            wcs = model.meta.wcs
            corrected.append(wcs)
            assert model.meta.cal_step.tweakreg == "COMPLETE"
            if model.meta.aligncore.status == "REFERENCE":  # not moved: left as it was
                assert wcs.available_frames == FRAMES[:2] + FRAMES[3:]
                assert model.meta.wcsinfo.s_region == original.meta.wcsinfo.s_region
                continue
            assert wcs.available_frames == FRAMES  # exactly one v2v3corr, after v2v3
            np.testing.assert_array_equal(
                wcs.get_transform("detector", "v2v3")(x, y),
                original.meta.wcs.get_transform("detector", "v2v3")(x, y))
            assert model.meta.aligncore.status == "SUCCESS"
            assert model.meta.aligncore.sip_max_error_pix < 0.01
            assert model.meta.filename == path.name
            assert model.meta.wcsinfo.v2_ref == original.meta.wcsinfo.v2_ref
            np.testing.assert_array_equal(model.data, original.data)
            np.testing.assert_array_equal(model.dq, original.dq)
        sip_errors.append(_sip_error_pix(path, wcs))
        stale_sip.append(_sip_error_pix(source, wcs))
    assert len(sip_errors) == 2  # one reference, two moved
    assert max(scene.errors(corrected)["rms_pix"]) < 0.1
    assert max(sip_errors) < 0.01  # the SCI header's SIP follows the corrected GWCS
    assert max(stale_sip) > 2.0  # ... which the input's SIP did not
    moved = [p for p in aligned if fits.getval(p, "ALNSTAT", "SCI") == "SUCCESS"]
    with fits.open(moved[0]) as hdul:
        header = hdul["SCI"].header
        assert header["WCSNAME"] == "FIT-REL"
        assert header["CTYPE1"] == "RA---TAN-SIP"
        assert "PC1_1" not in header and "CDELT1" not in header
        assert header["AP_ORDER"] >= 1 and header["AP_0_1"] != 1e-6  # a new inverse SIP
        assert header["S_REGION"].startswith("POLYGON ICRS")
    image = aligncore.open_image(moved[0])  # outputs are valid inputs
    assert image.meta["format"] == "jwst" and image.wcs.available_frames == FRAMES


def test_failed_image_keeps_its_wcs_and_header(cal_files, tmp_path):
    image = aligncore.open_image(cal_files[0])
    result = ImageResult(name=image.name, status=Status.FAILED, reason="too few matches",
                         wcs=image.wcs)
    target = write_jwst_image(image, result, tmp_path / "out_cal.fits", wcsname="FIT-REL",
                              version="test")
    with fits.open(cal_files[0]) as a, fits.open(target) as b:
        for key in ("CRVAL1", "CRVAL2", "CD1_1", "A_ORDER", "A_2_0", "B_0_2"):
            assert b["SCI"].header[key] == a["SCI"].header[key]
        assert b["SCI"].header["ALNSTAT"] == "FAILED"
        assert b["SCI"].header["ALNREAS"] == "too few matches"
        assert "WCSNAME" not in b["SCI"].header
        assert b["SCI"].header["AP_0_1"] == a["SCI"].header["AP_0_1"] == 1e-6
    with datamodels.open(target) as model:
        assert model.meta.wcs.available_frames == ["detector", "v2v3", "world"]
        assert model.meta.aligncore.status == "FAILED"
        assert model.meta.cal_step.tweakreg == "SKIPPED"  # as jwst marks what it did not do


def test_exposure_group_and_output_name():
    observation = {"program_number": "01234", "observation_number": "002",
                   "visit_number": "003", "visit_group": "04", "sequence_id": "1",
                   "activity_id": "0a", "exposure_number": "00007"}
    assert exposure_group({"observation": observation}) == "jw01234002003_0410a_00007"
    assert exposure_group({"group_id": "g1", "observation": observation}) == "g1"
    assert exposure_group({"observation": {"program_number": "01234"}},
                          "jw01234001001_02101_00003_nrcb4_cal.fits") == "jw01234001001_02101_00003"
    assert exposure_group({}, "image.fits") is None
    assert output_name("jw01234001001_02101_00001_nrca1_cal.fits") == (
        "jw01234001001_02101_00001_nrca1_tweakreg.fits")
    assert output_name("x_CAL.fits.gz") == "x_tweakreg.fits.gz"
    assert output_name("calibrated.fits") == "calibrated.fits"


def test_missing_stdatamodels_names_the_extra(cal_files, monkeypatch):
    for name in ("stdatamodels", "stdatamodels.jwst", "stdatamodels.jwst.datamodels"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(InputError, match=r"pip install 'aligncore\[jwst\]'"):
        aligncore.open_image(cal_files[0])


def test_other_data_models_are_refused(tmp_path):
    path = tmp_path / "cube_cal.fits"
    with datamodels.CubeModel((2, 8, 8)) as cube:
        cube.save(str(path))
    with pytest.raises(InputError, match=r"reads JWST ImageModel files.*CubeModel"):
        aligncore.open_image(path)


def _max_error_pix(header: fits.Header, gwcs, shape: tuple[int, int]) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        fits_wcs = WCS(header)
    ny, nx = shape
    x, y = (a.ravel() for a in np.meshgrid(np.linspace(-0.5, nx - 0.5, 33),
                                           np.linspace(-0.5, ny - 0.5, 33)))
    ra, dec = gwcs(x, y)
    sep = fits_wcs.pixel_to_world(x, y).separation(SkyCoord(ra, dec, unit="deg")).arcsec
    scale = np.sqrt(abs(np.linalg.det(fits_wcs.pixel_scale_matrix))) * 3600.0
    return float(np.max(sep) / scale)


def test_sip_approximation_of_the_real_nircam_gwcs():
    gwcs = pytest.importorskip("gwcs")
    path = Path(gwcs.__file__).parent / "tests" / "data" / "nircamwcs.asdf"
    if not path.exists():
        pytest.skip("gwcs ships no nircamwcs.asdf")
    with asdf.open(path) as af:
        wcs = af.tree["wcs"]
        header = sip_approximation(wcs, (2048, 2048))
        assert header["CTYPE1"] == "RA---TAN-SIP"
        assert header["A_ORDER"] <= 6
        assert _max_error_pix(header, wcs, (2048, 2048)) < 0.01


def test_sip_approximation_warns_when_the_degree_cap_is_too_low(scene, monkeypatch):
    import aligncore.formats.jwst as io_jwst

    monkeypatch.setattr(io_jwst, "SIP_MAX_DEGREE", 1)
    wcs = scene.nominal_wcs[0]
    with pytest.warns(UserWarning, match=r"reaches .* px, not 0.01 px \(degree 1, at most 1\)"):
        header = sip_approximation(wcs, SHAPE)
    error = _max_error_pix(header, wcs, SHAPE)
    assert 0.01 < error < 10.0  # the corners' ~5 px cubic distortion is not linear
    assert header["SIPMXERR"] == pytest.approx(error, rel=0.5)
