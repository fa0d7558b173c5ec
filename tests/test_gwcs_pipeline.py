"""End to end on NIRCam-like ASDF exposures: `aligncore run`, re-alignment, mixed inputs."""

from __future__ import annotations

import warnings
from pathlib import Path

import asdf
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

import aligncore
from aligncore import Status
from aligncore.cli import main
from aligncore.config import load_config
from aligncore.outputs import write_outputs

DEFAULT = str(Path(__file__).resolve().parents[1] / "configs" / "default.yaml")
FRAMES = ["detector", "v2v3", "v2v3corr", "world"]


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """Four 512^2 NIRCam-like exposures (0.063"/px), pointing errors 0.2-1.5", roll <= 0.02 deg."""
    return aligncore.simulate("dither", n_images=4, seed=21, shape=(512, 512), pixel_scale=0.063,
                              pointing_error=(0.2, 1.5), roll_error=0.02, wcs="gwcs",
                              outdir=tmp_path_factory.mktemp("gwcs_in"))


@pytest.fixture(scope="module")
def aligned(scene, tmp_path_factory):
    out = tmp_path_factory.mktemp("gwcs_out")
    code = main(["run", DEFAULT, *map(str, scene.paths), "-o", str(out), "-q"])
    assert code == 0
    return [out / path.name for path in scene.paths]


def _grid(n=7, size=512):
    x, y = np.meshgrid(np.linspace(0, size - 1, n), np.linspace(0, size - 1, n))
    return x.ravel(), y.ravel()


def test_run_aligns_asdf_exposures_with_one_v2v3corr_frame_each(scene, aligned):
    before = scene.errors_summary(scene.nominal_wcs)
    assert before["rms_pix"] > 2.0  # the simulated pointing errors are real
    images = [aligncore.open_image(path) for path in aligned]
    after = scene.errors([image.wcs for image in images])
    assert max(after["rms_pix"]) < 0.1
    x, y = _grid()
    for image, source in zip(images, scene.paths, strict=True):
        wcs = image.wcs
        assert wcs.available_frames == FRAMES
        with asdf.open(source) as af:
            original = af.tree["wcs"]
            np.testing.assert_array_equal(
                wcs.get_transform("detector", "v2v3")(x, y),
                original.get_transform("detector", "v2v3")(x, y))
            v2, v3 = original.get_transform("detector", "v2v3")(x, y)
            np.testing.assert_array_equal(wcs.get_transform("v2v3corr", "world")(v2, v3),
                                          original.get_transform("v2v3", "world")(v2, v3))
            data = np.array(af.tree["data"])
        with asdf.open(image.path) as af:
            record = af.tree["meta"]["aligncore"]
            assert record["status"] in ("SUCCESS", "REFERENCE")
            assert record["wcsname"] == "FIT-REL"
            np.testing.assert_array_equal(af.tree["data"], data)


def test_aligning_again_composes_into_the_same_frame(scene, aligned):
    images = [aligncore.open_image(path) for path in aligned]
    result = aligncore.align(images)
    assert result.ok
    for image_result in result:
        assert image_result.wcs.available_frames == FRAMES
        assert np.hypot(*image_result.fit.shift) < 0.01  # arcsec: already aligned
    assert max(scene.errors(result)["rms_pix"]) < 0.1


def _fits_copy(path: Path, target: Path) -> Path:
    """``path`` as a FITS file whose WCS is a SIP approximation (0.01 px) of its GWCS."""
    with asdf.open(path) as af:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            header = af.tree["wcs"].to_fits_sip(max_pix_error=0.01, max_inv_pix_error=0.01)
        hdus = [fits.PrimaryHDU(), fits.ImageHDU(np.array(af.tree["data"]), header, name="SCI"),
                fits.ImageHDU(np.array(af.tree["dq"]), name="DQ")]
    fits.HDUList(hdus).writeto(target)
    return target


def test_mixed_fits_and_gwcs_inputs_each_get_their_own_corrector(scene, tmp_path):
    paths = list(scene.paths)
    paths[1] = _fits_copy(paths[1], tmp_path / "img_001.fits")
    images = [aligncore.open_image(path) for path in paths]
    config = load_config(DEFAULT)
    result = aligncore.align(images, config)
    assert result.ok, [(r.name, r.reason) for r in result]
    assert isinstance(result[1].wcs, WCS)
    assert all(result[k].wcs.available_frames == FRAMES for k in (0, 2, 3))
    assert max(scene.errors(result)["rms_pix"]) < 0.1
    written = write_outputs(result, images, config, tmp_path / "out")
    assert {p.name for p in written} >= {"img_000.asdf", "img_001.fits", "img_003.asdf"}
    with fits.open(tmp_path / "out" / "img_001.fits") as hdul:
        assert hdul["SCI"].header["WCSNAME"] == "FIT-REL"


def test_forcing_the_gwcs_corrector_fails_fits_images_clearly(scene, tmp_path):
    paths = [_fits_copy(scene.paths[0], tmp_path / "img_000.fits"), *scene.paths[1:3]]
    config = load_config(DEFAULT, ["corrector.plugin=gwcs"])
    result = aligncore.align(paths, config)
    failed = {r.name: r.reason for r in result if r.status == Status.FAILED}
    assert list(failed) == ["img_000.fits"]
    assert "the gwcs corrector corrects gwcs.WCS objects, got WCS" in failed["img_000.fits"]
    assert all(r.wcs.available_frames == FRAMES for r in result if r.ok)


def test_gwcs_images_detect_on_a_process_pool_as_serially(scene):
    from aligncore.execution import _can_travel
    from aligncore.formats import open_image

    # the opened image (GWCS and all) is pickled to the worker, which reads the pixels
    assert all(_can_travel(open_image(path)) for path in scene.paths)
    serial = aligncore.align(scene.paths)
    pooled = aligncore.align(scene.paths, load_config(
        None, ["execution.executor=processes", "execution.workers=2"]))
    assert serial.ok and pooled.ok
    for a, b in zip(serial, pooled, strict=True):
        assert a.n_sources == b.n_sources and a.n_matched == b.n_matched
        if a.fit is not None:
            assert np.array_equal(a.fit.matrix, b.fit.matrix)
            assert np.array_equal(a.fit.shift, b.fit.shift)
