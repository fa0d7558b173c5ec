"""Config loading: every problem at once, with file:line, key, allowed values, suggestions."""

from pathlib import Path

import pytest

import aligncore
from aligncore.cli import main
from aligncore.config import DEFAULT_CONFIG_PATH, ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]

BAD = """\
detector:
  plugin: daofind
  params:
    kernel_fwhm: 2.5
matcher:
  plugin: hist2d
  params:
    searchrad: -1.0
    tolerence: 1.0
fitter:
  plugin: affine
  params:
    fitgeometry: rotate
"""


@pytest.fixture
def bad_config(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    return path


def test_three_problems_reported_at_once(bad_config):
    with pytest.raises(ConfigError) as err:
        load_config(bad_config)
    lines = [str(p) for p in err.value.problems]
    assert lines == [
        f"{bad_config}:8: matcher.params.searchrad: Input should be greater than 0 or 'auto' "
        "(got -1.0)",
        f"{bad_config}:9: matcher.params.tolerence: unknown key; did you mean 'tolerance'? "
        "Allowed: fwhm, max_searchrad, min_significance, searchrad, separation, tolerance, "
        "use2dhist, xoffset, yoffset.",
        f"{bad_config}:13: fitter.params.fitgeometry: Input should be 'shift', 'rshift', "
        "'rscale', 'general' or 'auto' (got 'rotate')",
    ]


def test_cli_exit_code_2_and_no_traceback(bad_config, capsys):
    assert main(["validate", str(bad_config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 3 problems in the configuration:")
    assert "Traceback" not in err
    assert "bad.yaml:8" in err and "bad.yaml:9" in err and "bad.yaml:13" in err


def test_unknown_section_and_plugin_name(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("detecter: {}\nmatcher:\n  plugin: hist3d\nalign:\n  minobj: 0\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert f"{path}:1: detecter: unknown key; did you mean 'detector'?" in text
    assert (f"{path}:3: matcher.plugin: matcher plugin 'hist3d' is not available (plugin may "
            "not be installed); did you mean 'hist2d'? Installed: hist2d") in text
    assert f"{path}:5: align.minobj: Input should be greater than or equal to 1 (got 0)" in text


def test_yaml_syntax_error_has_a_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("matcher:\n  plugin: hist2d\n  params: {searchrad: [1, 2\n")
    with pytest.raises(ConfigError, match=r"broken.yaml:\d+: invalid YAML"):
        load_config(path)


def test_missing_file():
    with pytest.raises(ConfigError, match=r"nope\.yaml: file not found"):
        load_config("nope.yaml")


def test_overrides_apply_and_are_validated(tmp_path):
    config = load_config(ROOT / "configs" / "jwst.yaml", ["matcher.params.tolerance=0.3",
                                                         "align.minobj=7"])
    assert config.matcher.params["tolerance"] == 0.3
    assert config.align.minobj == 7
    with pytest.raises(ConfigError, match=r"--set: fitter\.params\.nclip: Input should be greater "
                                          r"than or equal to 0 \(got -2\)"):
        load_config(ROOT / "configs" / "jwst.yaml", ["fitter.params.nclip=-2"])
    with pytest.raises(ConfigError, match=r"jwst.yaml:35: matcher.params: separation \(0.5\"\) "
                                          r"must be larger than sqrt\(2\) x tolerance"):
        load_config(ROOT / "configs" / "jwst.yaml", ["matcher.params.tolerance=0.4"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(None, ["matcher.params.tolerance"])


def test_seed_names_accepted_with_their_defaults():
    config = load_config(ROOT / "configs" / "jwst.yaml")
    registry = aligncore.build_registry()
    detector = config.build_stage("detector", registry)
    matcher = config.build_stage("matcher", registry)
    fitter = config.build_stage("fitter", registry)
    assert (detector.params.kernel_fwhm, detector.params.snr_threshold,
            detector.params.brightest, detector.params.peakmax) == (2.5, 5.0, 100, None)
    assert (matcher.params.searchrad, matcher.params.separation, matcher.params.tolerance,
            matcher.params.use2dhist, matcher.params.xoffset,
            matcher.params.yoffset) == (1.0, 0.5, 1.0, True, 0.0, 0.0)
    assert (fitter.params.fitgeometry, fitter.params.nclip, fitter.params.sigma) == (
        "rshift", 3, 3.0)
    assert (config.align.enforce_user_order, config.align.expand_refcat,
            config.align.minobj) == (False, False, 15)
    assert (config.absolute.enabled, config.absolute.gaia_catalog, config.absolute.min_gaia,
            config.absolute.save_gaia_catalog) == (False, "GAIADR2", 5, False)
    assert (config.output.save_catalogs, config.output.catalog_format) == (False, "ecsv")
    # the plugins' own defaults are the seed's too
    for stage, expected in ((detector, config.detector.params),
                            (matcher, config.matcher.params), (fitter, config.fitter.params)):
        defaults = type(stage)().params.model_dump()
        assert {k: defaults[k] for k in expected} == expected


def test_default_config_is_the_packaged_one():
    assert (ROOT / "configs" / "default.yaml").read_text() == DEFAULT_CONFIG_PATH.read_text()
    config = load_config(None)
    assert config.matcher.params["searchrad"] == "auto"


def test_local_plugin_file_relative_to_config(tmp_path):
    (tmp_path / "mine.py").write_text(
        "import aligncore\n"
        "from aligncore_affine import AffineFitter\n"
        "class Mine(AffineFitter):\n"
        "    name = 'mine'\n"
        "@aligncore.hookimpl\n"
        "def aligncore_add_fitters():\n"
        "    return [Mine]\n")
    (tmp_path / "c.yaml").write_text("plugins: [mine.py]\nfitter:\n  plugin: mine\n"
                                    "  params: {fitgeometry: shift}\n")
    config = load_config(tmp_path / "c.yaml")
    assert config.plugin_files() == [tmp_path / "mine.py"]


def test_a_setting_given_under_two_names(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("absolute:\n  enabled: false\n  align_to_gaia: true\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value.problems[0]) == (
        f"{path}:3: absolute.align_to_gaia: 'enabled' and 'align_to_gaia' are two names of the "
        "same setting (enabled); give only one")
    # a command-line override of the other name wins over the file
    config = load_config(None, ["absolute.align_to_gaia=true",
                                "absolute.refcat={plugin: file, params: {path: x.ecsv}}"])
    assert config.absolute.enabled is True
