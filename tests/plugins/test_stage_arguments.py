"""Every stage method of the default plugins refuses wrong argument types and shapes the
same way: TypeError for a wrong type, ValueError (or a typed ValueError) for a wrong shape."""

from __future__ import annotations

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import Angle, SkyCoord
from astropy.table import QTable

import aligncore
from aligncore.registry import build_registry
from aligncore.tangent import TangentPlane
from conftest import simple_wcs

REGISTRY = build_registry(())
WRONG = [None, "catalog.ecsv", np.zeros((3, 3)), {"x": [1.0]}]
WRONG_IDS = ["None", "str", "ndarray", "dict"]


def _stage(kind: str, name: str):
    params = {"path": "unused.ecsv"} if name == "file" else {}
    return REGISTRY.get(kind, name)(params)


def _names(kind: str) -> list[str]:
    return sorted(info.name for info in REGISTRY.plugins(kind) if
                  info.distribution == "aligncore")


@pytest.mark.parametrize("name", _names("detector"))
@pytest.mark.parametrize("wrong", WRONG, ids=WRONG_IDS)
def test_detectors_want_an_align_image(name, wrong):
    with pytest.raises(TypeError, match=rf"{name}\.detect: image must be an AlignImage, got"):
        _stage("detector", name).detect(wrong)


@pytest.mark.parametrize("name", _names("matcher"))
@pytest.mark.parametrize("wrong", WRONG, ids=WRONG_IDS)
def test_matchers_want_tables(name, wrong):
    good = QTable({"tp_x": [0.0, 1.0], "tp_y": [0.0, 1.0]})
    with pytest.raises(TypeError, match=rf"{name}\.match: image_cat must be a Table"):
        _stage("matcher", name).match(wrong, good)
    with pytest.raises(TypeError, match=rf"{name}\.match: ref_cat must be a Table"):
        _stage("matcher", name).match(good, wrong)


@pytest.mark.parametrize("name", _names("matcher"))
def test_matchers_want_tangent_plane_columns(name):
    table = QTable({"x": [0.0, 1.0], "y": [0.0, 1.0]})
    with pytest.raises(ValueError, match="tp_x"):
        _stage("matcher", name).match(table, table)


@pytest.mark.parametrize("name", _names("fitter"))
@pytest.mark.parametrize(("image_xy", "ref_xy", "weights", "error"), [
    (np.zeros((5, 3)), np.zeros((5, 3)), None, ValueError),
    (np.zeros((5, 2)), np.zeros((4, 2)), None, ValueError),
    (np.zeros((4, 2)), np.zeros((4, 2)), np.ones((2, 2)), ValueError),
    ("abc", np.zeros((4, 2)), None, TypeError),
    ({"x": 1}, np.zeros((4, 2)), None, TypeError),
], ids=["3 columns", "lengths differ", "weights 2x2", "str", "dict"])
def test_fitters_check_points_and_weights(name, image_xy, ref_xy, weights, error):
    with pytest.raises(error):
        _stage("fitter", name).fit(image_xy, ref_xy, weights)


@pytest.mark.parametrize("name", _names("refcatalog"))
def test_reference_catalogs_want_sky_angle_time(name):
    stage = _stage("refcatalog", name)
    center, radius = SkyCoord(150.0, 2.0, unit="deg"), Angle(0.1, u.deg)
    with pytest.raises(TypeError, match=rf"{name}\.query: center must be a SkyCoord, got tuple"):
        stage.query((150.0, 2.0), radius)
    with pytest.raises(TypeError, match=rf"{name}\.query: radius must be a Quantity, got float"):
        stage.query(center, 0.1)
    with pytest.raises(TypeError, match=rf"{name}\.query: radius must be an angle, got unit m"):
        stage.query(center, 3.0 * u.m)
    with pytest.raises(TypeError, match=rf"{name}\.query: epoch must be a Time, got float"):
        stage.query(center, radius, 2016.0)


@pytest.mark.parametrize(("name", "refusal"), [("fitswcs", "corrects 2D celestial astropy WCS"),
                                             ("gwcs", "corrects gwcs.WCS objects")])
def test_correctors_want_a_fit_and_a_plane(name, refusal):
    stage = _stage("corrector", name)
    fit = aligncore.FitResult.identity(fitgeometry="shift")
    plane = TangentPlane(150.0, 2.0)
    with pytest.raises(TypeError, match=rf"{name}\.correct: fit must be a FitResult, got dict"):
        stage.correct(simple_wcs(), {"shift": [0, 0]}, plane)
    with pytest.raises(TypeError, match=rf"{name}\.correct: tangent_plane must be a "
                                        "TangentPlane, got tuple"):
        stage.correct(simple_wcs(), fit, (150.0, 2.0))
    with pytest.raises(aligncore.AlignError, match=refusal):
        stage.correct("RA---TAN", fit, plane)
