"""Config files layered on the recommended defaults (``extends``), ``validate --show``, and
failures that say what limited them (issue 16, items 5)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import aligncore
from aligncore.cli import main
from aligncore.config import DEFAULT_CONFIG_PATH, ConfigError, describe_config, load_config
from aligncore.config_layers import BUILTIN_CONFIGS
from aligncore.diagnosis import explain_few_matches
from aligncore.types import Status

ROOT = Path(__file__).resolve().parents[1]

MINE = ("import aligncore\n"
        "from aligncore_hist2d import Hist2dMatcher\n"
        "class Mine(Hist2dMatcher):\n"
        "    name = 'mine'\n"
        "@aligncore.hookimpl\n"
        "def aligncore_add_matchers():\n"
        "    return [Mine]\n")


def test_a_partial_config_is_layered_on_the_recommended_defaults(tmp_path):
    path = tmp_path / "partial.yaml"
    path.write_text("matcher:\n  params: {searchrad: 3.0}\n")
    config = load_config(path)
    recommended = load_config(None)
    assert config.matcher.params == {**recommended.matcher.params, "searchrad": 3.0}
    assert config.align.minobj == recommended.align.minobj == 5
    assert config.align.fallback == ["triangles"]
    assert config.detector.params["centroid"] == "gauss"


def test_another_plugin_drops_the_base_params_but_keeps_the_rest(tmp_path):
    (tmp_path / "mine.py").write_text(MINE)
    path = tmp_path / "partial.yaml"
    path.write_text("plugins: [mine.py]\nmatcher: {plugin: mine}\n")
    config = load_config(path)
    assert config.matcher.plugin == "mine"
    assert config.matcher.params == {}  # hist2d's params in default.yaml are not mine's
    assert (config.align.minobj, config.detector.params["brightest"]) == (5, None)


def test_extends_the_builtins_and_other_files(tmp_path):
    jwst = tmp_path / "j.yaml"
    jwst.write_text("extends: jwst\nalign: {minobj: 9}\n")
    config = load_config(jwst)
    assert (config.align.minobj, config.matcher.params["searchrad"], config.align.fallback,
            config.detector.params["brightest"]) == (9, 1.0, [], 100)
    j3 = tmp_path / "j3.yaml"
    j3.write_text("extends: jwst-3.0\n")
    config = load_config(j3)
    assert (config.detector.plugin, config.matcher.params["searchrad"],
            config.absolute.matcher.params["searchrad"], config.absolute.min_gaia) == (
        "iraf", 2.0, 6.0, 15)
    # a chain: sub/child.yaml -> ../j.yaml -> jwst; paths are relative to each file
    (tmp_path / "sub").mkdir()
    child = tmp_path / "sub" / "child.yaml"
    child.write_text("extends: ../j.yaml\nfitter: {params: {nclip: 1}}\n")
    config = load_config(child)
    assert (config.align.minobj, config.fitter.params, config.extends) == (
        9, {"fitgeometry": "rshift", "nclip": 1, "sigma": 3.0}, "../j.yaml")
    none = tmp_path / "none.yaml"
    none.write_text("extends: none\n")
    assert load_config(none).align.minobj == 15  # aligncore's own default (the seed's)


def test_builtins_are_package_data_identical_to_configs():
    for name, path in BUILTIN_CONFIGS.items():
        assert path.parent == DEFAULT_CONFIG_PATH.parent
        assert path.read_text() == (ROOT / "configs" / path.name).read_text(), name


def test_local_plugins_of_a_base_stay_relative_to_it(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "mine.py").write_text(MINE)
    (tmp_path / "base" / "base.yaml").write_text("plugins: [mine.py]\nmatcher: {plugin: mine}\n")
    (tmp_path / "run.yaml").write_text("extends: base/base.yaml\n")
    config = load_config(tmp_path / "run.yaml")
    assert config.plugin_files() == [tmp_path / "base" / "mine.py"]
    assert config.matcher.plugin == "mine"


def test_extends_cycle_and_bad_names_name_file_line_and_valid_values(tmp_path):
    (tmp_path / "a.yaml").write_text("# a\nextends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("align: {minobj: 3}\nextends: a.yaml\n")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "a.yaml")
    (problem,) = err.value.problems
    assert str(problem) == (
        f"{tmp_path / 'b.yaml'}:2: extends: the configs extend each other in a cycle: "
        f"{tmp_path / 'a.yaml'} -> {tmp_path / 'b.yaml'} -> {tmp_path / 'a.yaml'}")
    (tmp_path / "c.yaml").write_text("matcher: {}\nextends: jwst-2\n")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "c.yaml")
    assert str(err.value.problems[0]) == (
        f"{tmp_path / 'c.yaml'}:2: extends: no built-in config 'jwst-2' and no file "
        f"{tmp_path / 'jwst-2'}; valid: default, jwst, jwst-3.0, none, or a path to a YAML file "
        "relative to this one")


def test_extends_cannot_be_set_on_the_command_line():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["extends=jwst"])
    assert str(err.value.problems[0]) == ("--set: extends: the base of a config cannot be set "
                                          "with --set; write `extends:` in the config file")


def test_problems_in_a_base_name_the_base_file_and_line(tmp_path):
    (tmp_path / "base.yaml").write_text("matcher:\n  params:\n    tolerance: -1\n")
    (tmp_path / "top.yaml").write_text("extends: base.yaml\nalign: {minobj: 0}\n")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "top.yaml")
    text = str(err.value)
    assert f"{tmp_path / 'top.yaml'}:2: align.minobj: Input should be greater than or equal " \
           "to 1 (got 0)" in text
    assert f"{tmp_path / 'base.yaml'}:3: matcher.params.tolerance:" in text


def test_seed_names_in_a_base_and_the_new_names_on_top(tmp_path):
    # jwst-3.0.yaml writes abs_searchrad / align_to_gaia; a file on top uses the new names
    (tmp_path / "c.yaml").write_text(
        "extends: jwst-3.0\nabsolute:\n  enabled: true\n  refcat: {plugin: file, params: "
        "{path: x.ecsv}}\n  matcher: {params: {searchrad: 4.0}}\n")
    config = load_config(tmp_path / "c.yaml")
    assert config.absolute.enabled is True
    assert config.absolute.matcher.params["searchrad"] == 4.0
    assert config.absolute.matcher.params["tolerance"] == 0.7


def test_describe_config_names_file_line_default_and_set(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("extends: jwst\nalign:\n  minobj: 9\n")
    config, registry = aligncore.config.load_config_and_registry(path, ["fitter.params.nclip=1"])
    lines = describe_config(config, registry)
    assert lines[0] == f"# files read (base first): <built-in jwst.yaml>, {path}"
    assert "  minobj: 9  # " + f"{path}:3" in lines
    assert "    searchrad: 1.0  # <built-in jwst.yaml>:36" in lines
    assert "    nclip: 1  # --set" in lines
    assert "  max_rms_factor: 5.0  # default" in lines
    assert "    max_searchrad: 10.0  # default" in lines  # the plugin's own default


def test_validate_show_prints_the_resolved_config(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("matcher:\n  params: {searchrad: 2.5}\n")
    assert main(["validate", str(path), "--show"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{path}: OK"
    assert "    searchrad: 2.5  # " + f"{path}:2" in out
    assert "  minobj: 5  # <built-in default.yaml>:35" in out


# --- failures that say what limited them --------------------------------------------------
def _grid(n: int, step: float = 4.0) -> np.ndarray:
    side = int(np.ceil(np.sqrt(n)))
    xy = np.stack(np.meshgrid(np.arange(side), np.arange(side)), -1).reshape(-1, 2)[:n]
    rng = np.random.default_rng(n)
    return xy * step + rng.uniform(-1.0, 1.0, (n, 2))


SQUARE = np.array([[-5.0, -5.0], [60.0, -5.0], [60.0, 60.0], [-5.0, 60.0]])


def test_explains_no_overlap():
    text = explain_few_matches(_grid(100), np.zeros((0, 2)), SQUARE, 0, 5, 1.0, 0.5)
    assert text == ("no overlap: no reference source lies near the image's footprint; check "
                    "its WCS, or align it together with an image that overlaps both")


def test_explains_an_offset_beyond_the_search_radius():
    image = _grid(200)
    text = explain_few_matches(image, image + [3.0, -1.5], SQUARE, 0, 15, 1.0, 0.3)
    assert text.startswith("search radius: the catalogs line up at an offset of (3.00\", "
                           "-1.50\") = 3.35\" (")
    assert ("beyond the matcher's search reach of 1.00\"; raise the search radius to at least "
            "4.1\" (hist2d: matcher.params.searchrad, or 'auto'), or give the offset as "
            "matcher.params.xoffset/yoffset") in text


def test_explains_the_search_radius_in_a_crowded_field():
    rng = np.random.default_rng(0)
    image = rng.uniform(0.0, 60.0, (8000, 2))
    ref = np.vstack([image + [12.0, 5.0], rng.uniform(-30.0, 90.0, (8000, 2))])
    text = explain_few_matches(image, ref, SQUARE, 0, 5, 10.0, 0.3)
    assert text.startswith("search radius: the catalogs line up at an offset of (12.")
    assert "beyond the matcher's search reach of 10.00\"" in text


def test_explains_too_few_sources():
    image = _grid(9)
    text = explain_few_matches(image, image + 0.1, SQUARE, 3, 15, 1.0, 0.3)
    assert text == ("too few sources: the image has 9 sources and 9 reference sources lie in "
                    "its footprint, fewer than minobj=15; detect more (lower "
                    "detector.params.snr_threshold, raise or unset detector.params.brightest) "
                    "or lower align.minobj")


def test_explains_minobj():
    image = _grid(100)
    text = explain_few_matches(image, image[:40] + 0.1, SQUARE, 8, 15, 1.0, 0.3)
    assert text == ("minobj: 8 matched of 100 image and 40 reference sources in the footprint, "
                    "fewer than minobj=15; lower align.minobj to 8 if a fit of so few is "
                    "acceptable, or widen the match (matcher.params.tolerance, or add a fallback "
                    "matcher to align.fallback)")


@pytest.fixture(scope="module")
def offset_scene(tmp_path_factory):
    """Three images with 2-3" pointing errors: beyond the seed's 1" search radius."""
    return aligncore.simulate("dither", n_images=3, seed=4, pointing_error=(2.0, 3.0),
                              outdir=tmp_path_factory.mktemp("offset"))


def test_issue16_partial_config_aligns_what_align_paths_aligns(offset_scene, tmp_path):
    """Issue 16: ``matcher: {plugin: mine}`` alone used to mean the seed's values and fail
    with "only 0 matched sources (minobj=15)"; layered on the defaults it aligns."""
    assert aligncore.align(offset_scene.paths).ok
    (tmp_path / "mine.py").write_text(MINE)
    (tmp_path / "partial.yaml").write_text("plugins: [mine.py]\nmatcher: {plugin: mine}\n")
    result = aligncore.align(offset_scene.paths, load_config(tmp_path / "partial.yaml"))
    assert result.ok
    assert max(offset_scene.errors(result)["rms_pix"]) < 0.1


def test_issue16_seed_config_failure_names_the_search_radius(offset_scene, tmp_path):
    (tmp_path / "mine.py").write_text(MINE)
    (tmp_path / "seed.yaml").write_text(
        "extends: jwst\nplugins: [mine.py]\nmatcher: {plugin: mine}\n")
    result = aligncore.align(offset_scene.paths, load_config(tmp_path / "seed.yaml"))
    failed = [r for r in result if r.status == Status.FAILED]
    assert failed
    for r in failed:
        assert r.reason.startswith("only 0 matched sources (minobj=15): search radius: the "
                                   "catalogs line up at an offset of (")
        assert "beyond the matcher's search reach of 1.00\"; raise the search radius to at " \
               "least" in r.reason


def test_an_image_off_the_mosaic_fails_naming_no_overlap():
    scene = aligncore.simulate("dither", n_images=3, seed=4)
    images = scene.images
    wcs = images[2].wcs
    wcs.wcs.crval = wcs.wcs.crval + [0.3, 0.0]  # 0.3 deg away from the other two
    wcs.wcs.set()
    result = aligncore.align(images)
    (failed,) = [r for r in result if r.status == Status.FAILED]
    assert failed.reason.startswith(
        "only 0 matched sources (minobj=5): no overlap: no reference source lies near the "
        "image's footprint; check its WCS, or align it together with an image that overlaps "
        "both; ")
