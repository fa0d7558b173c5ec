"""End-to-end relative (and absolute) alignment against the simulator's truth."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import QTable

import aligncore
from aligncore import Status
from aligncore.config import load_config


def copy_scene(scene, tmp_path):
    for path in scene.paths:
        shutil.copy(path, tmp_path / path.name)
    return [tmp_path / p.name for p in scene.paths]


def test_dither_relative_error_below_a_tenth_of_a_pixel(dither_scene):
    before = dither_scene.errors_summary([i.wcs for i in dither_scene.images])
    result = aligncore.align(dither_scene.paths)
    assert result.ok, [(r.name, r.reason) for r in result]
    statuses = sorted(r.status.value for r in result)
    assert statuses == ["REFERENCE", "SUCCESS", "SUCCESS", "SUCCESS"]
    after = dither_scene.errors(result)
    assert before["rms_pix"] > 3.0  # the simulated pointing errors are real
    assert max(after["rms_pix"]) < 0.1
    # the fitted offsets are the pointing errors: well below the residual RMS
    assert all(r.fit.rmse < 0.05 for r in result)  # arcsec
    assert all(r.n_matched >= 15 for r in result if r.status == Status.SUCCESS)


def test_input_wcs_objects_are_not_modified(small_scene):
    images = [aligncore.open_image(p) for p in small_scene.paths]
    headers = [i.wcs.to_header(relax=True) for i in images]
    result = aligncore.align(images)
    assert result.ok
    for image, header, image_result in zip(images, headers, result, strict=True):
        assert image.wcs.to_header(relax=True) == header
        if image_result.status == Status.SUCCESS:
            assert image_result.wcs is not image.wcs


def test_minobj_too_high_fails_and_leaves_wcs_untouched(small_scene):
    images = [aligncore.open_image(p) for p in small_scene.paths]
    config = load_config(None, ["align.minobj=100000"])
    result = aligncore.align(images, config)
    assert not result.ok
    failed = result.failed
    assert len(failed) == 2
    for image_result in failed:
        image = next(i for i in images if i.name == image_result.name)
        assert image_result.wcs is image.wcs
        assert image_result.fit is None
        assert "matched sources (minobj=100000)" in image_result.reason


def test_user_order_makes_the_first_image_the_reference(small_scene):
    config = load_config(None, ["align.enforce_user_order=true"])
    paths = list(reversed(small_scene.paths))
    result = aligncore.align(paths, config)
    assert result[0].status == Status.REFERENCE
    assert result[0].name == paths[0].name


def test_order_independent_result(small_scene):
    forward = aligncore.align(small_scene.paths)
    backward = aligncore.align(list(reversed(small_scene.paths)))
    errors_f = small_scene.errors(forward)
    errors_b = small_scene.errors([backward[r.name] for r in forward])
    np.testing.assert_allclose(errors_f["rms_mas"], errors_b["rms_mas"], atol=0.01)


def test_expand_refcat_aligns_too(small_scene):
    result = aligncore.align(small_scene.paths, load_config(None, ["align.expand_refcat=true"]))
    assert result.ok
    assert max(small_scene.errors(result)["rms_pix"]) < 0.1


def test_image_without_sources_fails_and_others_align(small_scene, tmp_path):
    paths = copy_scene(small_scene, tmp_path)
    blank = tmp_path / "blank.fits"
    with fits.open(paths[0]) as hdul:
        rng = np.random.default_rng(0)
        hdul["SCI"].data = rng.normal(100.0, 5.0, hdul["SCI"].data.shape).astype(np.float32)
        hdul.writeto(blank)
    result = aligncore.align([*paths, blank])
    assert result["blank.fits"].status == Status.FAILED
    assert result["blank.fits"].reason == "no sources detected"
    assert result["blank.fits"].wcs is not None
    assert sum(r.ok for r in result) == 3


def test_single_image_is_refused(small_scene):
    with pytest.raises(aligncore.InputError, match="a single image cannot be aligned"):
        aligncore.align(small_scene.paths[:1])


class Recorder:
    """Fake plugins for every stage hook, registered by the test."""

    def __init__(self, scene):
        self.scene = scene
        self.finished = []
        self.corrected = 0
        recorder = self

        class TruthDetector(aligncore.Detector):
            """Returns the true star positions (with 0.02 px noise) of bright stars."""

            name = "truth"

            def detect(self, image):
                index = recorder.scene.names.index(image.name)
                stars = recorder.scene.true_sources(index)
                stars = stars[(stars["snr"] > 30) & ~stars["saturated"]]
                rng = np.random.default_rng(index)
                table = QTable()
                table[aligncore.COL_ID] = np.arange(len(stars))
                table[aligncore.COL_X] = stars["x"] + rng.normal(0, 0.02, len(stars))
                table[aligncore.COL_Y] = stars["y"] + rng.normal(0, 0.02, len(stars))
                table[aligncore.COL_FLUX] = stars["flux"]
                return table

        class SceneRefcat(aligncore.RefCatalog):
            """The simulated Gaia-like catalog."""

            name = "scene"

            def query(self, center, radius, epoch=None):
                return recorder.scene.refcat

        class CountingCorrector(aligncore.get_plugin("corrector", "fitswcs")):
            """fitswcs, counting its calls."""

            name = "counting"

            def correct(self, wcs, fit, tangent_plane):
                recorder.corrected += 1
                return super().correct(wcs, fit, tangent_plane)

        self.classes = (TruthDetector, SceneRefcat, CountingCorrector)

    @aligncore.hookimpl
    def aligncore_add_detectors(self):
        return [self.classes[0]]

    @aligncore.hookimpl
    def aligncore_add_refcatalogs(self):
        return [self.classes[1]]

    @aligncore.hookimpl
    def aligncore_add_correctors(self):
        return [self.classes[2]]

    @aligncore.hookimpl
    def aligncore_run_finished(self, result, config):
        self.finished.append((result, config))


def test_fake_plugins_for_every_stage_and_absolute_alignment(tmp_path):
    scene = aligncore.simulate("dither", n_images=3, seed=8, shape=(512, 512), n_stars=150,
                               common_pointing_error=1.5, outdir=tmp_path)
    recorder = Recorder(scene)
    registry = aligncore.build_registry(plugins=[recorder])
    config = load_config(None, ["detector.plugin=truth", "detector.params={}",
                                "corrector.plugin=counting", "absolute.enabled=true",
                                "absolute.refcat.plugin=scene", "fitter.params.fitgeometry=rscale"],
                         registry=registry)
    result = aligncore.align(scene.paths, config, registry=registry)
    assert result.ok and result.absolute is not None
    assert recorder.corrected == 3
    assert len(recorder.finished) == 1 and recorder.finished[0][0] is result
    relative = scene.errors(result, relative=True)
    absolute = scene.errors(result, relative=False)
    nominal = scene.errors([i.wcs for i in scene.images], relative=False)
    assert min(nominal["rms_mas"]) > 500  # 1.5" common error before
    assert max(relative["rms_mas"]) < 3.0
    assert max(absolute["rms_pix"]) < 0.1


def test_local_plugin_selected_by_yaml_is_used(tmp_path):
    from test_registry import NEAREST_MATCHER

    scene = aligncore.simulate("dither", n_images=2, seed=4, shape=(512, 512), n_stars=120,
                               pointing_error=(0.1, 0.25), outdir=tmp_path / "scene")
    (tmp_path / "nearest_matcher.py").write_text(NEAREST_MATCHER)
    (tmp_path / "config.yaml").write_text(
        "plugins: [nearest_matcher.py]\n"
        "matcher:\n"
        "  plugin: nearest\n"
        "  params: {radius: 0.6}\n")
    config = load_config(tmp_path / "config.yaml")
    result = aligncore.align(scene.paths, config)
    assert result.ok
    aligned = [r for r in result if r.status == Status.SUCCESS]
    assert len(aligned) == 1 and aligned[0].meta["matcher"] == "nearest"
    assert aligned[0].n_matched >= 30
    assert max(scene.errors(result)["rms_pix"]) < 0.1
