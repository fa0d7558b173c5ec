"""A plugin's failure is contained: that image FAILED naming the plugin, the run goes on.

Registry.run_stage is the one place plugin code runs; these tests pin what it
turns exceptions and wrong return types into, and what a whole run then
writes (report, FITS keywords, exit code, --debug traceback).
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from astropy.io import fits

import aligncore
from aligncore.cli import main
from aligncore.registry import PluginRunError

RAISING_DETECTOR = '''
import aligncore
from aligncore_daofind import DaofindDetector


class Picky(DaofindDetector):
    """daofind, except that it cannot handle img_001."""

    name = "picky"

    def detect(self, image):
        if image.name == "img_001.fits":
            return {}["x"]
        return super().detect(image)


@aligncore.hookimpl
def aligncore_add_detectors():
    return [Picky]
'''

ABSOLUTE_ONLY_MATCHER = '''
import aligncore
from aligncore_hist2d import Hist2dMatcher


class Relative(Hist2dMatcher):
    """hist2d, except on the combined catalog of the absolute stage."""

    name = "relonly"

    def match(self, image_cat, ref_cat):
        if "pos_err" in image_cat.colnames:
            raise ZeroDivisionError("absolute")
        return super().match(image_cat, ref_cat)


@aligncore.hookimpl
def aligncore_add_matchers():
    return [Relative]
'''


class _Stage:
    """A stand-in stage whose method returns or raises what it is given."""

    def __init__(self, kind: str, outcome: object) -> None:
        self.kind, self.name, self.outcome = kind, "stub", outcome

    def __getattr__(self, method: str):
        def call(*args):
            if isinstance(self.outcome, BaseException):
                raise self.outcome
            return self.outcome
        return call


@pytest.fixture(scope="module")
def registry():
    return aligncore.build_registry()


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """Three overlapping 512^2 images with pointing errors within hist2d's default radius."""
    return aligncore.simulate("dither", n_images=3, seed=5, shape=(512, 512), n_stars=120,
                              pointing_error=(0.1, 0.5), outdir=tmp_path_factory.mktemp("s"))


def test_an_unexpected_exception_names_the_plugin_and_keeps_the_traceback(registry):
    with pytest.raises(PluginRunError, match=r"^plugin 'stub' \(matcher\) raised KeyError: "
                       r"'x'$") as error:
        registry.run_stage(_Stage("matcher", KeyError("x")), None, None)
    assert "Traceback" in error.value.trace and "KeyError: 'x'" in error.value.trace
    assert isinstance(error.value, aligncore.AlignError)


def test_an_align_error_passes_through_unchanged(registry):
    with pytest.raises(aligncore.MatchError, match=r"^no overlap$"):
        registry.run_stage(_Stage("matcher", aligncore.MatchError("no overlap")), None, None)


@pytest.mark.parametrize("kind, value, message", [
    ("matcher", {"image_idx": []}, r"plugin 'stub' \(matcher\) returned dict, expected "
                                   r"MatchResult"),
    ("detector", [1, 2], r"plugin 'stub' \(detector\) returned list, expected an astropy Table"),
    ("fitter", None, r"plugin 'stub' \(fitter\) returned NoneType, expected FitResult"),
    ("refcatalog", "gaia", r"plugin 'stub' \(refcatalog\) returned str, expected an astropy"),
    ("corrector", None, r"plugin 'stub' \(corrector\) returned NoneType, expected a WCS"),
])
def test_a_wrong_return_type_names_the_plugin_and_the_type(registry, kind, value, message):
    with pytest.raises(PluginRunError, match=message):
        registry.run_stage(_Stage(kind, value))


def test_a_right_return_type_is_returned(registry):
    fit = aligncore.FitResult.identity()
    assert registry.run_stage(_Stage("fitter", fit)) is fit


def test_the_error_travels_from_a_worker_process():
    error = pickle.loads(pickle.dumps(PluginRunError("plugin 'x' (detector) raised E", "tb")))
    assert (str(error), error.trace) == ("plugin 'x' (detector) raised E", "tb")


def _run(tmp_path, scene, plugin: str, sections: str, *extra: str) -> tuple[int, dict]:
    (tmp_path / "plugin.py").write_text(plugin)
    config = tmp_path / "config.yaml"
    config.write_text(f"plugins: [plugin.py]\n{sections}")
    out = tmp_path / "out"
    code = main([*extra, "run", str(config), *map(str, scene.paths), "-o", str(out), "-q"])
    report = json.loads((out / "report.json").read_text())
    return code, report


@pytest.mark.parametrize("executor", ["serial", "processes"])
def test_a_detector_raising_on_one_image_fails_that_image_only(scene, tmp_path, capsys,
                                                               executor):
    code, report = _run(tmp_path, scene, RAISING_DETECTOR,
                        f"detector: {{plugin: picky}}\nexecution: {{executor: {executor}}}\n")
    assert code == 1
    images = {image["name"]: image for image in report["images"]}
    failed = images.pop("img_001.fits")
    assert failed["status"] == "FAILED"
    assert failed["reason"] == "plugin 'picky' (detector) raised KeyError: 'x'"
    assert "Traceback" in failed["meta"]["traceback"]
    assert {image["status"] for image in images.values()} == {"SUCCESS", "REFERENCE"}
    assert all(image["reason"] == "" for image in images.values())
    header = fits.getheader(tmp_path / "out" / "img_001.fits", "SCI")
    assert header["ALNSTAT"] == "FAILED" and header["ALNREAS"] == failed["reason"]
    err = capsys.readouterr().err
    assert err.count("plugin 'picky' (detector) raised KeyError") == 1
    assert "Traceback" not in err


def test_debug_prints_the_plugins_traceback(scene, tmp_path, capsys):
    code, _ = _run(tmp_path, scene, RAISING_DETECTOR, "detector: {plugin: picky}\n",
                   "--debug")
    assert code == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and 'return {}["x"]' in err


def test_the_absolute_stage_matcher_raising_keeps_the_relative_alignment(scene, tmp_path,
                                                                          capsys):
    refcat = scene.paths[0].parent / "refcat.ecsv"
    sections = ("matcher: {plugin: relonly}\nabsolute:\n  enabled: true\n"
                "  matcher: {plugin: relonly}\n"
                f"  refcat: {{plugin: file, params: {{path: '{refcat}'}}}}\n")
    code, report = _run(tmp_path, scene, ABSOLUTE_ONLY_MATCHER, sections)
    assert code == 3
    assert {image["status"] for image in report["images"]} == {"SUCCESS", "REFERENCE"}
    reason = report["meta"]["absolute"]["reason"]
    assert reason == ("matching to the reference catalog failed: plugin 'relonly' (matcher) "
                      "raised ZeroDivisionError: absolute")
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if "absolute" in line] == [
        f"warning: absolute alignment not applied: {reason}"]


def test_a_long_reason_is_kept_whole_in_continue_cards(scene, tmp_path):
    from aligncore.formats import open_image
    from aligncore.formats.fits import fit_keywords, write_fits_image

    reason = "plugin 'x' (matcher) raised ValueError:" + " a long explanation" * 12
    image = open_image(scene.paths[0])
    result = aligncore.ImageResult(name=image.name, status=aligncore.Status.FAILED,
                                   reason=reason, wcs=image.wcs)
    assert fit_keywords(result)["ALNREAS"][0] == reason
    target = write_fits_image(image, result, tmp_path / "out.fits", wcsname="X", version="0")
    header = fits.getheader(target, "SCI")
    assert header["ALNREAS"] == reason
    assert "CONTINUE" in header.tostring()


def test_counts_and_rms_agree_between_table_header_and_report(scene, tmp_path, capsys):
    out = tmp_path / "out"
    config = str(aligncore.__path__[0]) + "/../../configs/default.yaml"
    assert main(["run", config, *map(str, scene.paths), "-o", str(out)]) == 0
    table = capsys.readouterr().out.splitlines()
    columns = table[0].split()
    report = {image["name"]: image for image in json.loads(
        (out / "report.json").read_text())["images"]}
    for line in table[2:2 + len(report)]:
        row = dict(zip(columns, line.split(), strict=True))
        image = report[row["image"]]
        header = fits.getheader(out / row["image"], "SCI")
        assert int(row["pairs"]) == image["n_matched"] == header["ALNNMAT"]
        assert int(row["kept"]) == image["fit"]["n_used"] == header["ALNNUSE"]
        assert float(row["rms[mas]"]) == pytest.approx(header["ALNRMSE"] * 1000.0, abs=0.006)
        assert header["ALNRMSE"] == pytest.approx(image["fit"]["rmse"])
        assert "ALNREAS" not in header and image["reason"] == ""
    assert np.all([image["status"] != "FAILED" for image in report.values()])


def test_a_failing_wrapper_is_not_blamed_on_the_stage():
    class Broken:
        @aligncore.hookimpl(wrapper=True)
        def aligncore_run_stage(self, kind, stage, args):
            result = yield
            return result["missing"]

    registry = aligncore.build_registry(plugins=[Broken()])
    with pytest.raises(PluginRunError, match=r"^a wrapper of aligncore_run_stage around plugin "
                       r"'stub' \(fitter\) raised TypeError"):
        registry.run_stage(_Stage("fitter", aligncore.FitResult.identity()))


def test_a_wrapper_sees_the_stage_failure_and_it_keeps_its_name():
    seen = []

    class Watcher:
        @aligncore.hookimpl(wrapper=True)
        def aligncore_run_stage(self, kind, stage, args):
            try:
                return (yield)
            except Exception as exc:
                seen.append(type(exc).__name__)
                raise

    registry = aligncore.build_registry(plugins=[Watcher()])
    with pytest.raises(PluginRunError, match=r"^plugin 'stub' \(matcher\) raised KeyError"):
        registry.run_stage(_Stage("matcher", KeyError("x")))
    assert seen == ["PluginRunError"]


def test_matches_outside_the_catalogs_are_a_wrong_result(registry):
    result = aligncore.MatchResult([0, 1], [1, 2])
    assert registry.run_stage(_Stage("matcher", result), [0, 0], [0, 0, 0]) is result
    with pytest.raises(PluginRunError, match=r"returned reference indices outside 0\.\.1$"):
        registry.run_stage(_Stage("matcher", result), [0, 0], [0, 0])
    with pytest.raises(PluginRunError, match=r"returned image indices outside 0\.\.0$"):
        registry.run_stage(_Stage("matcher", result), [0], [0, 0, 0])


def test_a_detector_table_needs_the_required_columns(registry):
    from astropy.table import QTable

    table = QTable({"id": [1], "x": [1.0], "flux": [2.0]})
    with pytest.raises(PluginRunError, match=r"returned a table without the column\(s\) y$"):
        registry.run_stage(_Stage("detector", table), None)
    table["y"] = [3.0]
    assert registry.run_stage(_Stage("detector", table), None) is table
