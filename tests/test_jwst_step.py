"""`aligncore.jwst.AlignStep`, the jwst pipeline step (needs jwst: the ``jwst-step`` extra).

Runs jwst for real: ``strun`` on an association, ``AlignStep.call`` with parameters, and
jwst's Image3Pipeline with AlignStep as its tweakreg step through to the drizzled
``_i2d`` product. CRDS is never asked (no network): the parameter-reference lookups
are turned off with ``STPIPE_DISABLE_CRDS_STEPPARS``, and the steps run here need no
reference file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("stpipe")
pytest.importorskip("jwst")
from jwst.datamodels import ModelLibrary
from jwst.tweakreg.tweakreg_step import TweakRegStep
from stdatamodels.jwst import datamodels

import aligncore
from aligncore.config import load_config
from aligncore.jwst import AlignStep, Image3Pipeline, changed_settings, step_config
from jwst_files import PRODUCT, SHAPE, cal_file, cal_name, write_association

ROOT = Path(__file__).resolve().parents[1]
FRAMES = ["detector", "v2v3", "v2v3corr", "world"]


@pytest.fixture(autouse=True)
def _no_crds(monkeypatch):
    monkeypatch.setenv("STPIPE_DISABLE_CRDS_STEPPARS", "true")


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """Three NIRCam-like exposures (0.063"/px), pointing errors 0.2-1.5", roll <= 0.02 deg."""
    return aligncore.simulate("dither", n_images=3, seed=21, shape=SHAPE, pixel_scale=0.063,
                              n_stars=80, pointing_error=(0.2, 1.5), roll_error=0.02,
                              wcs="gwcs", outdir=tmp_path_factory.mktemp("step_sim"))


@pytest.fixture(scope="module")
def asn(scene, tmp_path_factory):
    data = tmp_path_factory.mktemp("step_data")
    files = [cal_file(path, data / cal_name(k), k) for k, path in enumerate(scene.paths)]
    return write_association(files, data / "jw01234-o001_image3_00001_asn.json")


def _wcs_list(models) -> list:
    return [m.meta.wcs for m in models]


def test_parameters_are_tweakregs():
    ours, theirs = AlignStep().get_pars(), TweakRegStep().get_pars()
    assert {k: ours[k] for k in theirs} == theirs  # every name, with jwst 3.0.0's default
    assert set(ours) - set(theirs) == {"aligncore_config"}


def test_default_parameters_are_configs_jwst_3_0(tmp_path):
    import yaml

    path = tmp_path / "step.yaml"
    path.write_text(yaml.safe_dump(step_config(AlignStep().get_pars())))
    mapped, reference = load_config(path), load_config(ROOT / "configs" / "jwst-3.0.yaml")
    for section in ("detector", "matcher", "fitter", "align", "corrector"):
        assert getattr(mapped, section) == getattr(reference, section), section
    # the same, except that the step names abs_use2dhist (hist2d's default, true)
    absolute = mapped.absolute.model_dump()
    assert absolute["matcher"]["params"].pop("use2dhist") is True
    assert absolute == reference.absolute.model_dump()
    assert mapped.output.save_catalogs is False and mapped.output.catalog_format == "ecsv"


def test_which_config_the_parameters_apply_to(tmp_path):
    jwst_mode, _ = AlignStep(aligncore_config="jwst")._config(None)
    reference = load_config(ROOT / "configs" / "jwst-3.0.yaml")
    assert jwst_mode.matcher == reference.matcher and jwst_mode.detector == reference.detector
    default, _ = AlignStep()._config(None)  # aligncore's config, nothing changed
    assert default.matcher == load_config().matcher
    changed, _ = AlignStep(searchrad=5.0, starfinder="segmentation", npixels=7,
                           abs_refcat="GAIADR3")._config(None)
    assert changed.matcher.params["searchrad"] == 5.0
    assert changed.matcher.params["tolerance"] == "auto"  # aligncore's own, not tweakreg's
    assert changed.detector.plugin == "segmentation" and changed.detector.params["npixels"] == 7
    assert changed.absolute.enabled and changed.absolute.refcat.params == {"catalog": "GAIADR3"}
    config = tmp_path / "mine.yaml"
    config.write_text("matcher:\n  plugin: hist2d\n  params: {tolerance: 0.3}\n")
    mine, _ = AlignStep(aligncore_config=str(config), minobj=7)._config(None)
    assert mine.matcher.params["tolerance"] == 0.3 and mine.align.minobj == 7


def test_changed_settings():
    defaults = AlignStep().get_pars()
    assert changed_settings(defaults, defaults) == {}
    changed = changed_settings({**defaults, "searchrad": 5.0, "starfinder": "dao",
                                "abs_refcat": "GAIADR3"}, defaults)
    assert changed == {"matcher.params.searchrad": 5.0, "detector.plugin": "daofind",
                       "absolute.enabled": True, "absolute.refcat.plugin": "gaia",
                       "absolute.refcat.params.catalog": "GAIADR3"}


def test_parameter_mapping():
    pars = {**AlignStep().get_pars(), "starfinder": "segmentation", "npixels": 7,
            "searchrad": 3.5, "fitgeometry": "general", "minobj": 9,
            "abs_refcat": "gaiadr3", "abs_searchrad": 4.0, "abs_nclip": 1}
    config = step_config(pars)
    assert config["detector"]["plugin"] == "segmentation"
    assert config["detector"]["params"]["npixels"] == 7
    assert "sharplo" not in config["detector"]["params"]  # a DAO/IRAF parameter
    assert config["matcher"]["params"]["searchrad"] == 3.5
    assert config["fitter"]["params"]["fitgeometry"] == "general"
    assert config["align"]["minobj"] == 9
    absolute = config["absolute"]
    assert absolute["enabled"] is True
    assert absolute["refcat"] == {"plugin": "gaia", "params": {"catalog": "GAIADR3"}}
    assert absolute["matcher"]["params"]["searchrad"] == 4.0
    assert absolute["fitter"]["params"]["nclip"] == 1


def test_strun_on_an_association(scene, asn, tmp_path):
    strun = shutil.which("strun", path=str(Path(sys.executable).parent))
    if strun is None:
        pytest.skip("no strun script next to this Python")
    env = {**os.environ, "STPIPE_DISABLE_CRDS_STEPPARS": "true"}
    done = subprocess.run([strun, "aligncore.jwst.AlignStep", str(asn)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    outputs = sorted(tmp_path.glob("*_alignstep.fits"))
    assert [p.name for p in outputs] == [cal_name(k).replace("_cal", "_alignstep")
                                         for k in range(3)]
    models = [datamodels.open(p) for p in outputs]
    try:
        assert max(scene.errors(_wcs_list(models))["rms_pix"]) < 0.1
        assert [m.meta.cal_step.tweakreg for m in models] == ["COMPLETE"] * 3
        frames = sorted(len(m.meta.wcs.available_frames) for m in models)
        assert frames == [3, 4, 4]  # the reference is left as it was
        for m in models:
            m.validate()
    finally:
        for m in models:
            m.close()


def test_call_aligns_to_a_catalog_file(scene, asn, tmp_path):
    refcat = scene.paths[0].parent / "refcat.ecsv"
    before = scene.errors_summary([m for m in scene.nominal_wcs], relative=False)
    library = AlignStep.call(str(asn), abs_refcat=str(refcat), save_abs_catalog=True,
                             output_dir=str(tmp_path), fitgeometry="rshift")
    assert isinstance(library, ModelLibrary)
    with library:
        models = list(library)
        wcss = _wcs_list(models)
        names = [m.meta.wcs.name for m in models]
        status = [m.meta.cal_step.tweakreg for m in models]
        for index, model in enumerate(models):
            library.shelve(model, index, modify=False)
    after = scene.errors_summary(wcss, relative=False)
    assert before["rms_pix"] > 2.0 and after["rms_pix"] < 0.15, (before, after)
    assert names == [f"FIT-LVL3-{refcat}"] * 3  # jwst's name of an absolute fit
    assert status == ["COMPLETE"] * 3
    assert (tmp_path / "fit_refcat_ref.ecsv").exists()


def test_one_exposure_is_skipped_as_jwst_skips_it(asn, tmp_path):
    one = write_association([asn.parent / cal_name(0)], asn.parent / "one_asn.json")
    library = AlignStep.call(str(one))
    with library:
        model = library.borrow(0)
        assert model.meta.cal_step.tweakreg == "SKIPPED"
        assert model.meta.wcs.available_frames == ["detector", "v2v3", "world"]
        library.shelve(model, 0, modify=False)


def test_in_place_of_tweakreg_in_image3_pipeline(scene, asn, tmp_path):
    Image3Pipeline.call(str(asn), output_dir=str(tmp_path), save_results=True, steps={
        "tweakreg": {"save_results": True, "searchrad": 2.0},
        "outlier_detection": {"skip": True},  # needs no reference file, but is slow
        "source_catalog": {"skip": True},  # needs CRDS reference files
    })
    aligned = sorted(tmp_path.glob("*_tweakreg.fits"))
    assert len(aligned) == 3
    models = [datamodels.open(p) for p in aligned]
    try:
        assert max(scene.errors(_wcs_list(models))["rms_pix"]) < 0.1
    finally:
        for m in models:
            m.close()
    with datamodels.open(tmp_path / f"{PRODUCT}_i2d.fits") as i2d:
        assert i2d.meta.cal_step.resample == "COMPLETE"
        assert i2d.meta.cal_step.tweakreg == "COMPLETE"
        assert np.isfinite(i2d.data).sum() > 0.9 * SHAPE[0] * SHAPE[1]
