"""Tests of the ``triangles`` (asterism) matcher plugin."""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.table import QTable
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import aligncore
from aligncore import COL_FLUX, COL_TP_X, COL_TP_Y, META_PIXEL_SCALE
from aligncore_hist2d import Hist2dMatcher, TriangleMatcher, find_transform, fit_similarity
from aligncore_hist2d.triangles import triangles

SIZE = 102.4  # arcsec: a 1024 px image at 0.1"/px


def table(xy: np.ndarray, flux: np.ndarray | None = None, pscale: float = 0.1) -> QTable:
    cols = {COL_TP_X: xy[:, 0], COL_TP_Y: xy[:, 1]}
    if flux is not None:
        cols[COL_FLUX] = flux
    return QTable(cols, meta={META_PIXEL_SCALE: pscale})


def rotation(deg: float) -> np.ndarray:
    t = math.radians(deg)
    return np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])


def scene(
    offset: tuple[float, float],
    angle: float,
    *,
    missing: float = 0.3,
    flip: bool = False,
    n: int = 200,
    seed: int = 0,
) -> tuple[QTable, QTable, np.ndarray, np.ndarray]:
    """``ref = M (image - c) + c + offset``; returns tables, truth (ref row per image row) and M."""
    rng = np.random.default_rng(seed)
    ref = rng.uniform(0, SIZE, (n, 2))
    flux = rng.pareto(1.5, n) + 1.0
    matrix = rotation(angle) @ (np.diag([-1.0, 1.0]) if flip else np.eye(2))
    c = np.full(2, SIZE / 2)
    img = (ref - c - np.asarray(offset)) @ np.linalg.inv(matrix).T + c
    img += rng.normal(0, 0.005, img.shape)
    inside = np.all((img > 0) & (img < SIZE), axis=1)
    kept = np.flatnonzero(inside & (rng.random(n) >= missing))
    img_flux = flux[kept] * rng.uniform(0.8, 1.25, kept.size)  # photometric noise
    return table(img[kept], img_flux), table(ref, flux), kept, matrix


def test_registered_from_the_hist2d_package() -> None:
    assert aligncore.get_plugin("matcher", "triangles") is TriangleMatcher
    p = TriangleMatcher().params
    assert (p.tolerance, p.max_sources, p.min_matches, p.allow_flip) == ("auto", 50, 5, False)
    with pytest.raises(ValidationError, match="greater than or equal to 3"):
        TriangleMatcher(max_sources=2)


def test_large_offset_and_rotation_with_missing_sources() -> None:
    """Acceptance: 30" offset, 20 deg rotation, 30% missing sources."""
    img, ref, truth, _ = scene((30.0, -12.0), 20.0, seed=1)
    m = TriangleMatcher().match(img, ref)
    assert not m.meta["weak"]
    assert m.meta["significance"] > 10
    assert m.n_matched >= 0.95 * len(truth)
    np.testing.assert_array_equal(truth[m.image_idx], m.ref_idx)
    assert m.meta["transform"]["rotation_deg"] == pytest.approx(20.0, abs=0.01)
    assert m.meta["transform"]["scale"] == pytest.approx(1.0, abs=1e-3)
    # hist2d, even with its widest automatic search, cannot do this
    h = Hist2dMatcher(searchrad="auto", tolerance="auto", separation="auto").match(img, ref)
    assert h.n_matched == 0 or np.mean(truth[h.image_idx] == h.ref_idx) < 0.5


def test_offset_is_displacement_at_the_matched_centre() -> None:
    img, ref, _, matrix = scene((25.0, 5.0), -7.0, seed=2)
    m = TriangleMatcher().match(img, ref)
    xy = np.column_stack([img[COL_TP_X], img[COL_TP_Y]])[m.image_idx]
    centre = xy.mean(axis=0)
    c = np.full(2, SIZE / 2)
    expected = matrix @ (centre - c) + c + np.array([25.0, 5.0]) - centre
    np.testing.assert_allclose(m.offset, expected, atol=0.01)


def test_flip_needs_allow_flip() -> None:
    img, ref, truth, _ = scene((3.0, 4.0), 30.0, flip=True, seed=3)
    assert TriangleMatcher().match(img, ref).n_matched == 0
    m = TriangleMatcher(allow_flip=True).match(img, ref)
    assert m.meta["transform"]["flipped"] is True
    np.testing.assert_array_equal(truth[m.image_idx], m.ref_idx)
    assert m.n_matched >= 0.95 * len(truth)


def test_unrelated_catalogs_give_no_matches() -> None:
    rng = np.random.default_rng(4)
    a, b = table(rng.uniform(0, SIZE, (150, 2))), table(rng.uniform(0, SIZE, (150, 2)))
    m = TriangleMatcher().match(a, b)
    assert m.n_matched == 0
    assert m.meta["weak"] is True
    assert m.meta["significance"] < 5.0
    assert "no triangle solution" in m.meta["warnings"][-1]


def test_too_few_sources() -> None:
    m = TriangleMatcher().match(table(np.zeros((2, 2))), table(np.ones((10, 2))))
    assert m.n_matched == 0 and m.meta["weak"]


def test_triangle_invariants_are_similarity_invariant() -> None:
    rng = np.random.default_rng(5)
    xy = rng.uniform(0, 100, (30, 2))
    moved = 1.3 * xy @ rotation(73.0).T + [5.0, -8.0]
    v1, inv1 = triangles(xy, 4)
    v2, inv2 = triangles(moved, 4)
    np.testing.assert_array_equal(v1, v2)
    np.testing.assert_allclose(inv1, inv2, atol=1e-12)
    assert np.all((inv1 > 0) & (inv1 <= 1))


def test_fit_similarity_exact() -> None:
    rng = np.random.default_rng(6)
    xy = rng.uniform(0, 100, (10, 2))
    matrix = 0.97 * rotation(-140.0)
    t = fit_similarity(xy, xy @ matrix.T + [1.0, 2.0], allow_flip=False)
    np.testing.assert_allclose(t.matrix, matrix, atol=1e-12)
    np.testing.assert_allclose(t.shift, [1.0, 2.0], atol=1e-10)
    sol = find_transform(xy, xy @ matrix.T + [1.0, 2.0], 0.1, max_scale_error=0.1)
    assert sol.n_inliers == 10


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(
    offset=st.tuples(st.floats(-40.0, 40.0), st.floats(-40.0, 40.0)),
    angle=st.floats(-180.0, 180.0),
    missing=st.floats(0.0, 0.4),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_triangles(offset, angle: float, missing: float, seed: int) -> None:
    img, ref, truth, _ = scene(offset, angle, missing=missing, seed=seed)
    m = TriangleMatcher().match(img, ref)
    assert np.unique(m.image_idx).size == m.image_idx.size
    assert np.unique(m.ref_idx).size == m.ref_idx.size
    if len(truth) >= 40 and not m.meta["weak"]:
        assert np.mean(truth[m.image_idx] == m.ref_idx) > 0.95
        assert m.meta["transform"]["rotation_deg"] == pytest.approx(angle, abs=0.05) or (
            abs(abs(m.meta["transform"]["rotation_deg"] - angle) - 360.0) < 0.05
        )
    if len(truth) >= 60:
        assert m.n_matched >= 0.9 * len(truth)
