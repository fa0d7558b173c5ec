"""aligncore.geometry: the one table of fit geometries and its parameter blocks."""

from __future__ import annotations

import numpy as np
import pytest

from aligncore import geometry
from aligncore_affine import iter_fit


def test_tables_agree():
    assert geometry.GEOMETRIES == ("shift", "rshift", "rscale", "general")
    assert set(geometry.MIN_POINTS) == set(geometry.N_PARAMS) == set(geometry.GEOMETRIES)
    for name in geometry.GEOMETRIES:
        assert 2 * geometry.MIN_POINTS[name] >= geometry.N_PARAMS[name]
    assert set(geometry.AUTO_GEOMETRIES) < set(geometry.GEOMETRIES)


def test_check_geometry_lists_the_allowed():
    assert geometry.check_geometry("rshift") == "rshift"
    assert geometry.check_geometry("auto", allow_auto=True) == "auto"
    with pytest.raises(ValueError, match="unknown fitgeometry 'affine'; expected one of shift"):
        geometry.check_geometry("affine")
    with pytest.raises(ValueError, match="unknown fitgeometry 'auto'"):
        geometry.check_geometry("auto")


@pytest.mark.parametrize("name", ["shift", "rshift", "rscale", "general"])
def test_block_is_the_linearised_update(name):
    rng = np.random.default_rng(0)
    xy = rng.uniform(-50, 50, (20, 2))
    center = np.array([3.0, -2.0])
    params = rng.normal(0, 1e-6, geometry.N_PARAMS[name])
    block = geometry.design_block(xy, center, name)
    assert block.shape == (40, geometry.N_PARAMS[name])
    matrix, shift = geometry.small_update(params, center, name)
    moved = xy @ matrix.T + shift - xy
    np.testing.assert_allclose(moved.reshape(-1), block @ params, atol=1e-9)


@pytest.mark.parametrize("name", ["shift", "rshift", "rscale", "general"])
def test_affine_fit_reports_the_table_names(name):
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 100, (10, 2))
    fit = iter_fit(xy, xy + [0.5, -0.25], name)
    assert fit.param_names == geometry.PARAM_NAMES[name]
