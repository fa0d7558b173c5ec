"""Reading ASDF images with a GWCS and writing corrected copies."""

from __future__ import annotations

import asdf
import numpy as np
import pytest
from astropy.time import Time

import aligncore
from aligncore import AlignImage, FitResult, ImageResult, Status
from aligncore.formats.asdf import (
    is_asdf,
    open_asdf,
    write_asdf,
    write_asdf_image,
)
from aligncore.formats.common import WCSINFO_ATTRIBUTE, alignment_record
from aligncore.sim import gwcs_model as sim_gwcs
from aligncore_wcs import GWCSCorrector

SHAPE = (48, 64)


def spec():
    dist = sim_gwcs.make_distortion(SHAPE, 0.063, np.random.default_rng(0))
    return sim_gwcs.make_spec(dist, 80.0, -69.5, 200.0, SHAPE)


def tree(**meta):
    data = np.arange(SHAPE[0] * SHAPE[1], dtype=np.float32).reshape(SHAPE)
    dq = np.zeros(SHAPE, dtype=np.uint32)
    dq[3, 4] = 5
    base = {"wcsinfo": sim_gwcs.wcsinfo(spec()), "observation": {"mjd": 60500.25},
            "exposure": {"group_id": "visit-1"}, "saturate": 6e4, "extra": {"keep": [1, 2]}}
    base.update(meta)
    return {"data": data, "dq": dq, "wcs": sim_gwcs.build_wcs(spec()), "meta": base}


def write(path, content):
    asdf.AsdfFile(content).write_to(path)
    return path


def test_open_asdf_reads_wcs_meta_and_pixels_lazily(tmp_path):
    path = write(tmp_path / "exp.asdf", tree())
    image = aligncore.open_image(path)  # dispatched on the suffix
    assert isinstance(image, AlignImage) and image.name == "exp.asdf" and image.path == path
    assert image.shape == SHAPE and image.group_id == "visit-1"
    assert image.epoch.mjd == pytest.approx(60500.25, abs=1e-9)
    assert image.meta["saturate"] == 6e4 and image.meta["format"] == "asdf"
    assert image.meta["wcsinfo"] == sim_gwcs.wcsinfo(spec())
    assert getattr(image.wcs, WCSINFO_ATTRIBUTE) == sim_gwcs.wcsinfo(spec())
    assert image.wcs.pixel_shape == (SHAPE[1], SHAPE[0])
    x, y = np.array([0.0, 63.0]), np.array([0.0, 47.0])
    np.testing.assert_allclose(image.wcs(x, y), sim_gwcs.build_wcs(spec())(x, y), rtol=0,
                               atol=1e-12)
    data, dq = image.load_pixels()
    assert data.dtype == float and data[1, 2] == 66.0
    assert dq.dtype == np.uint32 and dq[3, 4] == 5
    assert open_asdf(path, group_id="mine").group_id == "mine"


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        ({"observation": {"date": "2024-03-01", "time": "12:00:00"}}, "2024-03-01T12:00:00"),
        ({"observation": {"date": "2024-03-01T06:00:00"}}, "2024-03-01T06:00:00"),
        ({"observation": {}, "exposure": {"mid_time": 60000.5}}, "2023-02-25T12:00:00"),
        ({"observation": {"mjd": Time("2022-01-01T00:00:00")}}, "2022-01-01T00:00:00"),
        ({"observation": {"date": "not a date"}}, None),
    ],
)
def test_epoch_from_the_observation_or_exposure_meta(tmp_path, meta, expected):
    image = open_asdf(write(tmp_path / "e.asdf", tree(**meta)))
    if expected is None:
        assert image.epoch is None
    else:
        assert abs((image.epoch - Time(expected, scale="utc")).sec) < 1e-3


def test_images_without_wcsinfo_or_dq_are_read(tmp_path):
    content = tree(wcsinfo={"v2_ref": "unknown"})
    del content["dq"]
    image = open_asdf(write(tmp_path / "bare.asdf", content))
    assert image.meta["wcsinfo"] == {} and not hasattr(image.wcs, WCSINFO_ATTRIBUTE)
    assert image.load_pixels()[1] is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.pop("data"), "needs a 2D 'data' array, got shape None"),
        (lambda t: t.update(data=np.zeros((2, 3, 4))), r"got shape \(2, 3, 4\)"),
        (lambda t: t.update(dq=np.zeros((3, 3), np.uint32)), r"dq shape \(3, 3\) differs"),
        (lambda t: t.pop("wcs"), "'wcs' must be a gwcs.WCS, got NoneType"),
        (lambda t: t.update(wcs="TAN"), "'wcs' must be a gwcs.WCS, got str"),
    ],
)
def test_unusable_trees_raise_input_errors(tmp_path, change, message):
    content = tree()
    change(content)
    with pytest.raises(aligncore.InputError, match=message):
        open_asdf(write(tmp_path / "bad.asdf", content))


def test_missing_unreadable_and_blank_files(tmp_path):
    with pytest.raises(aligncore.InputError, match="file not found"):
        aligncore.open_image(tmp_path / "none.asdf")
    (tmp_path / "dir.asdf").mkdir()
    with pytest.raises(aligncore.InputError, match="is a directory"):
        open_asdf(tmp_path / "dir.asdf")
    (tmp_path / "text.asdf").write_text("hello")
    with pytest.raises(aligncore.InputError, match="not a readable ASDF file"):
        open_asdf(tmp_path / "text.asdf")
    content = tree()
    content["data"] = np.full(SHAPE, np.nan, dtype=np.float32)
    image = open_asdf(write(tmp_path / "nan.asdf", content))
    with pytest.raises(aligncore.InputError, match="no finite pixel"):
        image.load_pixels()
    assert is_asdf("a/b.ASDF") and not is_asdf("a.fits") and not is_asdf(None)


def _result(image, status=Status.SUCCESS, wcs=None, fit=None):
    return ImageResult(name=image.name, status=status, wcs=wcs if wcs is not None else image.wcs,
                       fit=fit, n_matched=21, reason="" if status != Status.FAILED else "nope")


def test_corrected_copy_has_the_new_wcs_and_the_fit_in_meta(tmp_path):
    path = write(tmp_path / "in.asdf", tree())
    image = open_asdf(path)
    corrector = GWCSCorrector()
    new_wcs = corrector.correct_plane(image.wcs, np.eye(2), [0.5, -0.3])
    fit = FitResult(matrix=np.eye(2), shift=[0.5, -0.3], fitgeometry="shift")
    target = tmp_path / "out" / "in.asdf"
    assert write_asdf_image(image, _result(image, wcs=new_wcs, fit=fit), target,
                            wcsname="FIT-REL", version="9.9") == target
    assert sorted(p.name for p in target.parent.iterdir()) == ["in.asdf"]  # no temporary left
    with asdf.open(target) as af:
        out = af.tree
        assert out["wcs"].available_frames == ["detector", "v2v3", "v2v3corr", "world"]
        record = out["meta"]["aligncore"]
        assert record["status"] == "SUCCESS" and record["n_matched"] == 21
        assert record["wcsname"] == "FIT-REL" and record["version"] == "9.9"
        assert record["fit"]["shift"] == [0.5, -0.3]
        assert out["meta"]["extra"] == {"keep": [1, 2]}
        assert out["meta"]["wcsinfo"] == sim_gwcs.wcsinfo(spec())
        np.testing.assert_array_equal(out["data"], tree()["data"])
        np.testing.assert_array_equal(out["dq"], tree()["dq"])
    with asdf.open(path) as af:  # the input is untouched
        assert af.tree["wcs"].available_frames == ["detector", "v2v3", "world"]
        assert "aligncore" not in af.tree["meta"]


def test_failed_image_keeps_its_wcs_and_in_place_update_works(tmp_path):
    path = write(tmp_path / "in.asdf", tree())
    image = open_asdf(path)
    write_asdf_image(image, _result(image, Status.FAILED), path, wcsname="FIT-REL", version="1")
    with asdf.open(path) as af:
        assert af.tree["wcs"].available_frames == ["detector", "v2v3", "world"]
        assert af.tree["meta"]["aligncore"]["status"] == "FAILED"
        assert af.tree["meta"]["aligncore"]["reason"] == "nope"
        assert af.tree["meta"]["aligncore"]["wcsname"] is None
    memory = AlignImage.from_arrays(np.zeros(SHAPE), image.wcs)
    with pytest.raises(aligncore.InputError, match="not read from a file"):
        write_asdf_image(memory, _result(memory), tmp_path / "x.asdf", wcsname="A", version="1")


def test_write_asdf_is_atomic(tmp_path):
    target = write_asdf({"a": 1}, tmp_path / "ok.asdf")
    with pytest.raises(Exception, match="object"):
        write_asdf({"a": object()}, target)
    with asdf.open(target) as af:
        assert af.tree["a"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ok.asdf"]


def test_alignment_record_of_an_unaligned_image():
    image = AlignImage.from_arrays(np.zeros(SHAPE), None, name="x")
    record = alignment_record(_result(image, Status.SKIPPED), wcsname="W", version="1")
    assert record == {"status": "SKIPPED", "reason": "", "n_matched": 21, "wcsname": None,
                      "version": "1", "fit": None}
