"""Roman WFI level-2 images (optional ``roman`` extra): reading, `aligncore run`, outputs.

The files are made with roman_datamodels' own model maker
(``ImageModel.create_fake_data``), filled with the pixels, GWCS and wcsinfo of
aligncore's simulated GWCS exposures (Roman's 0.11"/px) so that the truth is known.
"""

from __future__ import annotations

import sys
from pathlib import Path

import asdf
import astropy.units as u
import numpy as np
import pytest

pytest.importorskip("roman_datamodels")
import roman_datamodels
from roman_datamodels import datamodels as rdm

import aligncore
from aligncore import ImageResult, InputError, Status
from aligncore.cli import main
from aligncore_formats import RomanFormat
from aligncore_formats.roman import output_name, roman_tag, write_roman_image
from roman_files import EXPOSURE_S, START, make_l1, make_l2, roman_name

DEFAULT = str(Path(__file__).resolve().parents[1] / "configs" / "default.yaml")
SCALE = 0.11  # arcsec per pixel (WFI)
SHAPE = (320, 320)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """Three WFI-like exposures (0.11"/px), pointing errors 0.2-1.5", roll <= 0.02 deg."""
    return aligncore.simulate("dither", n_images=3, seed=21, shape=SHAPE, pixel_scale=SCALE,
                              n_stars=80, pointing_error=(0.2, 1.5), roll_error=0.02,
                              wcs="gwcs", outdir=tmp_path_factory.mktemp("roman_sim"))


@pytest.fixture(scope="module")
def l2_files(scene, tmp_path_factory):
    directory = tmp_path_factory.mktemp("roman_l2")
    return [make_l2(path, directory / roman_name(k), k) for k, path in enumerate(scene.paths)]


@pytest.fixture(scope="module")
def aligned(l2_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("roman_out")
    assert main(["run", DEFAULT, *map(str, l2_files), "-o", str(out), "-q"]) == 0
    return [out / output_name(path.name) for path in l2_files]


def _grid(n: int = 13) -> tuple[np.ndarray, np.ndarray]:
    g = np.linspace(-0.5, SHAPE[1] - 0.5, n)
    x, y = np.meshgrid(g, g)
    return x.ravel(), y.ravel()


def test_roman_files_are_claimed_before_plain_asdf(scene, l2_files):
    assert roman_tag(l2_files[0]).startswith("asdf://stsci.edu/datamodels/roman/tags/wfi_image-")
    assert roman_tag(scene.paths[0]) is None  # a plain GWCS ASDF image
    assert roman_tag(Path(__file__)) is None
    assert RomanFormat.identify(l2_files[0]) and not RomanFormat.identify(scene.paths[0])
    assert aligncore.formats.format_of(l2_files[0]).name == "roman"
    assert aligncore.formats.format_of(scene.paths[0]).name == "asdf"


def test_open_image_reads_an_l2_file(scene, l2_files):
    image = aligncore.open_image(l2_files[1])
    assert image.meta["format"] == "roman"
    assert image.meta["model_type"] == "ImageModel"
    assert image.shape == SHAPE
    assert image.group_id == "obs2"
    mid = START + (300.0 + EXPOSURE_S / 2.0) * u.s
    assert abs((image.epoch - mid).sec) < 1e-3
    spec = scene.truth[1]["nominal_wcs"]["gwcs"]
    assert image.wcs.aligncore_wcsinfo == {key: spec[key] for key in
                                           ("v2_ref", "v3_ref", "roll_ref", "ra_ref", "dec_ref")}
    x, y = _grid()
    np.testing.assert_allclose(image.wcs(x, y), scene.nominal_wcs[1](x, y), rtol=0, atol=1e-12)
    data, dq = image.load_pixels()
    with asdf.open(scene.paths[1]) as af:
        np.testing.assert_array_equal(data, af.tree["data"])
        np.testing.assert_array_equal(dq, af.tree["dq"])
    assert aligncore.open_image(l2_files[1], group_id="mine").group_id == "mine"


def test_run_writes_l2_files_with_the_corrected_gwcs(scene, l2_files, aligned):
    before = scene.errors_summary(scene.nominal_wcs)
    assert before["rms_pix"] > 2.0  # the injected pointing errors are real
    x, y = _grid()
    corrected = []
    for source, path in zip(l2_files, aligned, strict=True):
        assert path.name.endswith("_tweakreg.asdf")
        with rdm.open(path) as model, rdm.open(source) as original:
            assert isinstance(model, rdm.ImageModel)
            wcs = model.meta.wcs
            corrected.append(wcs)
            assert wcs.available_frames == ["detector", "v2v3", "v2v3corr", "world"]
            assert wcs.name == "FIT-REL"
            np.testing.assert_array_equal(
                wcs.get_transform("detector", "v2v3")(x, y),
                original.meta.wcs.get_transform("detector", "v2v3")(x, y))
            assert model.meta.cal_step.tweakreg == "COMPLETE"
            assert model.meta.cal_step.flat_field == "COMPLETE"  # other steps kept
            fit = model.meta.wcs_fit_results
            assert fit["status"] == "SUCCESS" and fit["nmatches"] >= 20
            assert model.meta.aligncore["status"] in ("SUCCESS", "REFERENCE")
            assert model.meta.filename == path.name
            assert model.meta.wcsinfo.v2_ref == original.meta.wcsinfo.v2_ref
            np.testing.assert_array_equal(model.data, original.data)
            np.testing.assert_array_equal(model.dq, original.dq)
            ra, dec = wcs(-0.5, -0.5)
            first = [float(v) for v in model.meta.wcsinfo.s_region.split()[2:4]]
            assert first == pytest.approx([ra % 360.0, dec], abs=1e-8)
            assert model.meta.wcsinfo.s_region != original.meta.wcsinfo.s_region
    # the injected errors (2-14 px) are recovered to a few hundredths of a pixel
    errors = scene.errors(corrected)
    assert max(errors["rms_pix"]) < 0.05
    image = aligncore.open_image(aligned[0])  # outputs are valid inputs
    assert image.meta["format"] == "roman"


def test_aligning_the_outputs_again_composes_the_correction(scene, aligned, tmp_path):
    assert main(["run", DEFAULT, *map(str, aligned), "-o", str(tmp_path), "-q"]) == 0
    again = []
    for path in aligned:
        with rdm.open(tmp_path / path.name) as model:
            assert model.meta.wcs.available_frames.count("v2v3corr") == 1
            again.append(model.meta.wcs)
    assert max(scene.errors(again)["rms_pix"]) < 0.05


def test_failed_image_keeps_its_wcs(l2_files, tmp_path):
    image = aligncore.open_image(l2_files[0])
    result = ImageResult(name=image.name, status=Status.FAILED, reason="too few matches",
                         wcs=image.wcs)
    target = write_roman_image(image, result, tmp_path / "out_cal.asdf", wcsname="FIT-REL",
                               version="test")
    x, y = _grid()
    with rdm.open(target) as model, rdm.open(l2_files[0]) as original:
        assert model.meta.wcs.available_frames == ["detector", "v2v3", "world"]
        np.testing.assert_array_equal(model.meta.wcs(x, y), original.meta.wcs(x, y))
        assert model.meta.cal_step.tweakreg == "FAILED"
        assert model.meta.wcs_fit_results["status"] == "FAILED"
        assert model.meta.aligncore["reason"] == "too few matches"


def test_output_name():
    assert output_name("r0000101001001001001_0001_wfi01_cal.asdf") == (
        "r0000101001001001001_0001_wfi01_tweakreg.asdf")
    assert output_name("image.asdf") == "image.asdf"


def test_a_level1_file_is_refused_in_one_line(l2_files, tmp_path):
    path = make_l1(tmp_path / roman_name(0, "uncal"))
    with pytest.raises(InputError, match=r"reads Roman level-2 ImageModel.*ScienceRawModel$"):
        aligncore.open_image(path)
    out = tmp_path / "out"
    assert main(["run", DEFAULT, str(l2_files[0]), str(path), "-o", str(out), "-q"]) == 1
    assert not out.exists()


def test_missing_roman_datamodels_names_the_extra(l2_files, monkeypatch):
    for name in [n for n in sys.modules if n.startswith("roman_datamodels")]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(InputError, match=r"pip install 'aligncore\[roman\]'"):
        aligncore.open_image(l2_files[0])
    assert roman_datamodels.__version__.startswith("1.2")
