"""`aligncore run CONFIG x_asn.json` on NIRCam-like ``*_cal.fits`` files: outputs filled as
jwst 3.0's TweakRegStep fills them (needs stdatamodels; the checks against jwst's own
functions run where jwst is installed)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

pytest.importorskip("stdatamodels")
from stdatamodels.jwst import datamodels

import aligncore
from aligncore.cli import main
from aligncore.formats.jwst import exposure_group, output_name, sip_approximation
from jwst_files import POOL, PRODUCT, SHAPE, cal_file, cal_name, write_association

DEFAULT = str(Path(__file__).resolve().parents[1] / "configs" / "default.yaml")


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """Three NIRCam-like exposures (0.063"/px), pointing errors 0.2-1.5", roll <= 0.02 deg."""
    return aligncore.simulate("dither", n_images=3, seed=21, shape=SHAPE, pixel_scale=0.063,
                              n_stars=80, pointing_error=(0.2, 1.5), roll_error=0.02,
                              wcs="gwcs", outdir=tmp_path_factory.mktemp("asn_sim"))


@pytest.fixture(scope="module")
def asn(scene, tmp_path_factory):
    """The exposures as ``*_cal.fits`` in ``data/`` with an image3 association."""
    data = tmp_path_factory.mktemp("asn_data")
    files = [cal_file(path, data / cal_name(k), k) for k, path in enumerate(scene.paths)]
    return write_association(files, data / "jw01234-o001_image3_00001_asn.json")


@pytest.fixture(scope="module")
def run(asn, tmp_path_factory):
    """``aligncore run default.yaml x_asn.json -o out``: (output directory, inputs, outputs)."""
    out = tmp_path_factory.mktemp("asn_out")
    assert main(["run", DEFAULT, str(asn), "-o", str(out), "-q"]) == 0
    inputs = sorted(asn.parent.glob("*_cal.fits"))
    return out, inputs, [out / output_name(p.name) for p in inputs]


def _status(path: Path) -> str:
    return fits.getval(path, "ALNSTAT", "SCI")


def test_outputs_are_aligned_valid_and_marked_as_jwst_marks_them(scene, run):
    *_, outputs = run
    wcss = []
    for k, path in enumerate(outputs):
        with datamodels.open(path) as model:
            model.validate()  # the schema of the file's data model
            wcss.append(model.meta.wcs)
            assert model.meta.cal_step.tweakreg == "COMPLETE"
            assert model.meta.group_id == f"jw01234001001_02101_{k + 1:05d}"
            assert model.meta.asn.exptype == "science"
            assert model.meta.asn.table_name == "jw01234-o001_image3_00001_asn.json"
            assert model.meta.asn.pool_name == POOL
    assert max(scene.errors(wcss)["rms_pix"]) < 0.1
    assert sorted(map(_status, outputs)) == ["REFERENCE", "SUCCESS", "SUCCESS"]


def test_group_id_follows_jwst_rules(run):
    jwst_group = pytest.importorskip("jwst.datamodels.utils.group_id")
    _, inputs, _ = run
    for path in inputs:
        with datamodels.open(path) as model:
            meta = model.meta.instance
            assert exposure_group(meta, path.name) == jwst_group.attrs_to_group_id(
                model.meta.observation)


def test_reference_is_left_untouched(run):
    _, inputs, outputs = run
    (source, target), = [(i, o) for i, o in zip(inputs, outputs, strict=True)
                         if _status(o) == "REFERENCE"]
    with datamodels.open(source) as a, datamodels.open(target) as b:
        assert b.meta.wcs.available_frames == ["detector", "v2v3", "world"]  # no v2v3corr
        assert a.meta.wcsinfo.instance == b.meta.wcsinfo.instance
        x, y = np.meshgrid(np.arange(0, SHAPE[1], 40.0), np.arange(0, SHAPE[0], 40.0))
        np.testing.assert_array_equal(a.meta.wcs(x, y), b.meta.wcs(x, y))
        assert b.meta.cal_step.tweakreg == "COMPLETE"
    with fits.open(source) as a, fits.open(target) as b:
        for key in ("CRVAL1", "CRVAL2", "CD1_1", "A_ORDER", "A_2_0", "S_REGION", "AP_0_1"):
            assert b["SCI"].header[key] == a["SCI"].header[key]
        assert "WCSNAME" not in b["SCI"].header


def _inverse_error_pix(header: fits.Header, gwcs) -> float:
    """Largest distance (pixels) between a pixel and the inverse SIP of the header applied
    to the GWCS's sky position of that pixel (world -> linear FITS WCS -> AP_/BP_)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        fits_wcs = WCS(header)
    x, y = (a.ravel() for a in np.meshgrid(np.linspace(-0.5, SHAPE[1] - 0.5, 25),
                                           np.linspace(-0.5, SHAPE[0] - 0.5, 25)))
    ra, dec = gwcs(x, y)
    focal = fits_wcs.wcs_world2pix(np.column_stack([ra, dec]), 0)  # linear part only
    u, v = focal[:, 0] - (header["CRPIX1"] - 1), focal[:, 1] - (header["CRPIX2"] - 1)
    # the SIP convention's inverse: pixel offset = (u, v) + sum AP_p_q u^p v^q (BP_ for y)
    terms = {axis: sum(header.get(f"{axis}_{p}_{q}", 0.0) * u**p * v**q
                       for p in range(10) for q in range(10 - p)) for axis in ("AP", "BP")}
    dx = u + terms["AP"] + header["CRPIX1"] - 1 - x
    dy = v + terms["BP"] + header["CRPIX2"] - 1 - y
    return float(np.max(np.hypot(dx, dy)))


def test_sip_approximation_has_its_inverse(run):
    _, _, outputs = run
    moved = [p for p in outputs if _status(p) == "SUCCESS"]
    for path in moved:
        with fits.open(path) as hdul, datamodels.open(path) as model:
            header = hdul["SCI"].header
            assert 1 <= header["AP_ORDER"] <= 5 and header["AP_ORDER"] == header["BP_ORDER"]
            assert model.meta.aligncore.sip_max_inverse_error_pix <= 0.01
            error = _inverse_error_pix(header, model.meta.wcs)
            assert error < 0.011, error
            # without the inverse the same path is off by the whole distortion
            stripped = header.copy()
            for key in [k for k in stripped if k.startswith(("AP_", "BP_"))]:
                del stripped[key]
            stripped["AP_ORDER"] = stripped["BP_ORDER"] = 1
            assert _inverse_error_pix(stripped, model.meta.wcs) > 1.0


def test_sip_approximation_matches_jwst(run):
    util = pytest.importorskip("jwst.assign_wcs.util")
    _, _, outputs = run
    path = next(p for p in outputs if _status(p) == "SUCCESS")
    with datamodels.open(path) as model:
        ours = sip_approximation(model.meta.wcs, SHAPE,
                                 (model.meta.wcsinfo.crpix1, model.meta.wcsinfo.crpix2))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = util.update_fits_wcsinfo(model)  # jwst's defaults, as its tweakreg calls it
    for key in ("A_ORDER", "B_ORDER", "AP_ORDER", "BP_ORDER", "CRPIX1", "CRPIX2"):
        assert ours[key] == theirs[key], key
    for key in [k for k in theirs if k.startswith(("A_", "B_", "AP_", "BP_", "CD", "CRVAL"))]:
        assert ours[key] == pytest.approx(theirs[key], rel=1e-9, abs=1e-15), key


def _polygon(text: str) -> np.ndarray:
    assert text.startswith("POLYGON ICRS  ")
    return np.array(text.split()[2:], float).reshape(4, 2)


def test_s_region_corners_in_jwst_order(run):
    _, _, outputs = run
    path = next(p for p in outputs if _status(p) == "SUCCESS")
    with datamodels.open(path) as model:
        corners = _polygon(model.meta.wcsinfo.s_region)
        wcs = model.meta.wcs
        box = ((-0.5, SHAPE[1] - 0.5), (-0.5, SHAPE[0] - 0.5))
        expected = wcs.footprint(box, center=False, axis_type="spatial")  # gwcs' order
        np.testing.assert_allclose(corners, expected, rtol=0, atol=1e-9)
        # bottom left, top left, top right, bottom right
        np.testing.assert_allclose(corners[1], wcs(-0.5, SHAPE[0] - 0.5), rtol=0, atol=1e-9)
        try:
            from stcal.alignment.util import compute_s_region_imaging
        except ImportError:
            return
        assert model.meta.wcsinfo.s_region == compute_s_region_imaging(
            wcs, shape=SHAPE, center=False)


def test_output_association_lists_the_products(run, asn):
    out, _, outputs = run
    written = json.loads((out / asn.name).read_text())
    assert written["asn_pool"] == POOL and written["asn_type"] == "image3"
    assert written["products"][0]["name"] == PRODUCT
    assert written["products"][0]["members"] == [
        {"expname": p.name, "exptype": "science", "group_id": f"jw01234001001_02101_{k:05d}"}
        for k, p in enumerate(outputs, start=1)]
    report = json.loads((out / "report.json").read_text())
    assert str(out / asn.name) in report["outputs"]
    library = pytest.importorskip("jwst.datamodels")
    models = library.ModelLibrary(str(out / asn.name), asn_exptypes=["science"])
    assert len(models) == 3
    assert sorted(models.group_names) == [f"jw01234001001_02101_{k:05d}" for k in (1, 2, 3)]


def test_grouping_image_moves_every_image_alone(asn, tmp_path):
    out = tmp_path / "out"
    assert main(["run", DEFAULT, str(asn), "-o", str(out), "-q", "--set",
                 "align.grouping=image"]) == 0
    members = json.loads((out / asn.name).read_text())["products"][0]["members"]
    assert [m.get("group_id") for m in members] == [None, None, None]
    for member in members:
        with datamodels.open(out / member["expname"]) as model:
            assert "group_id" not in model.meta.instance
            assert model.meta.cal_step.tweakreg == "COMPLETE"
