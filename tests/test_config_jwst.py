"""configs/jwst-3.0.yaml reproduces jwst 3.0.0's TweakRegStep defaults, key for key.

``JWST_3_0_DEFAULTS`` lists the step's parameter defaults as jwst 3.0.0 declares
them (``jwst/tweakreg/tweakreg_step.py``, the ``spec`` string); where jwst is
installed, the list itself is checked against the step class.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import aligncore
from aligncore.config import load_config

ROOT = Path(__file__).resolve().parents[1]

# TweakRegStep parameter -> (aligncore section, key, jwst 3.0.0 default)
JWST_3_0_DEFAULTS = {
    "kernel_fwhm": ("detector", "kernel_fwhm", 2.5),
    "snr_threshold": ("detector", "snr_threshold", 10.0),
    "bkg_boxsize": ("detector", "bkg_boxsize", 400),
    "minsep_fwhm": ("detector", "minsep_fwhm", 0.0),
    "sigma_radius": ("detector", "sigma_radius", 1.5),
    "sharplo": ("detector", "sharplo", 0.5),
    "sharphi": ("detector", "sharphi", 2.0),
    "roundlo": ("detector", "roundlo", 0.0),
    "roundhi": ("detector", "roundhi", 0.2),
    "brightest": ("detector", "brightest", 200),
    "peakmax": ("detector", "peakmax", None),
    "searchrad": ("matcher", "searchrad", 2.0),
    "use2dhist": ("matcher", "use2dhist", True),
    "separation": ("matcher", "separation", 1.0),
    "tolerance": ("matcher", "tolerance", 0.7),
    "xoffset": ("matcher", "xoffset", 0.0),
    "yoffset": ("matcher", "yoffset", 0.0),
    "fitgeometry": ("fitter", "fitgeometry", "rshift"),
    "nclip": ("fitter", "nclip", 3),
    "sigma": ("fitter", "sigma", 3.0),
    "enforce_user_order": ("align", "enforce_user_order", False),
    "expand_refcat": ("align", "expand_refcat", False),
    "minobj": ("align", "minobj", 15),
    "abs_minobj": ("absolute", "min_gaia", 15),
    "abs_fitgeometry": ("absolute.fitter", "fitgeometry", "rshift"),
    "abs_nclip": ("absolute.fitter", "nclip", 3),
    "abs_sigma": ("absolute.fitter", "sigma", 3.0),
    "abs_searchrad": ("absolute.matcher", "searchrad", 6.0),
    "abs_separation": ("absolute.matcher", "separation", 1.0),
    "abs_tolerance": ("absolute.matcher", "tolerance", 0.7),
    "save_abs_catalog": ("absolute", "save_gaia_catalog", False),
    "save_catalogs": ("output", "save_catalogs", False),
    "catalog_format": ("output", "catalog_format", "ecsv"),
}
STARFINDER = {"dao": "daofind", "iraf": "iraf", "segmentation": "segmentation"}


def _value(config, section: str, key: str):
    choice = config
    for part in section.split("."):
        choice = getattr(choice, part)
    if section.endswith(("detector", "matcher", "fitter")):
        return choice.params[key]
    return getattr(choice, key)


def test_jwst_3_0_config_has_every_step_default():
    config = load_config(ROOT / "configs" / "jwst-3.0.yaml")
    assert config.detector.plugin == STARFINDER["iraf"]
    assert config.absolute.enabled is False
    assert config.align.use_weights is False
    for parameter, (section, key, default) in JWST_3_0_DEFAULTS.items():
        assert _value(config, section, key) == default, parameter


def test_jwst_3_0_separation_rule_holds():
    # jwst 3.0.0 refuses separation < sqrt(2) * tolerance, for both stages
    config = load_config(ROOT / "configs" / "jwst-3.0.yaml")
    assert config.matcher.params["separation"] >= 2**0.5 * config.matcher.params["tolerance"]
    absolute = config.absolute.matcher.params
    assert absolute["separation"] >= 2**0.5 * absolute["tolerance"]


def test_jwst_3_0_stages_build():
    config = load_config(ROOT / "configs" / "jwst-3.0.yaml")
    registry = aligncore.build_registry()
    detector = config.build_stage("detector", registry)
    assert (detector.name, detector.params.snr_threshold, detector.params.brightest) == (
        "iraf", 10.0, 200)


def test_defaults_table_matches_the_installed_step():
    tweakreg = pytest.importorskip("jwst.tweakreg.tweakreg_step")
    import jwst

    if jwst.__version__.split(".")[0] != "3":
        pytest.skip(f"jwst {jwst.__version__} installed, the table is for 3.0.0")
    step = tweakreg.TweakRegStep()
    for parameter, (_, _, default) in JWST_3_0_DEFAULTS.items():
        assert getattr(step, parameter) == default, parameter
    assert STARFINDER[step.starfinder] == "iraf"
