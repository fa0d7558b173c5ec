"""Tests of the ``hist2d`` matcher plugin."""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy import units as u
from astropy.table import QTable
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import aligncore
from aligncore import COL_TP_X, COL_TP_Y, META_PIXEL_SCALE, MatchError, MatchResult
from aligncore_hist2d import Hist2dMatcher, find_offset, match_one_to_one, prune_close


def table(xy: np.ndarray, pscale: float | None = 0.1, **meta) -> QTable:
    t = QTable({COL_TP_X: xy[:, 0] * u.arcsec, COL_TP_Y: xy[:, 1] * u.arcsec})
    if pscale is not None:
        t.meta[META_PIXEL_SCALE] = pscale
    t.meta.update(meta)
    return t


def scene(
    n: int = 200,
    offset: tuple[float, float] = (0.3, -0.2),
    *,
    pscale: float = 0.1,
    size_px: float = 2000.0,
    noise: float = 0.003,
    missing: float = 0.1,
    spurious: int = 20,
    seed: int = 0,
) -> tuple[QTable, QTable, np.ndarray]:
    """Image and reference catalogs with ``ref = image + offset``.

    ``truth[i]`` is the reference row of image row ``i`` (-1: spurious source).
    """
    rng = np.random.default_rng(seed)
    size = size_px * pscale
    ref = rng.uniform(0, size, (n, 2))
    kept = np.flatnonzero(rng.random(n) >= missing)
    img = ref[kept] - np.asarray(offset) + rng.normal(0, noise, (kept.size, 2))
    img = np.vstack([img, rng.uniform(0, size, (spurious, 2))])
    truth = np.concatenate([kept, np.full(spurious, -1)])
    order = rng.permutation(len(img))
    return table(img[order], pscale), table(ref, pscale), truth[order]


def n_correct(m: MatchResult, truth: np.ndarray) -> int:
    return int(np.count_nonzero(truth[m.image_idx] == m.ref_idx))


def assert_one_to_one(m: MatchResult) -> None:
    assert np.unique(m.image_idx).size == m.image_idx.size
    assert np.unique(m.ref_idx).size == m.ref_idx.size


# --- parameters ---------------------------------------------------------------------------
def test_registered_and_defaults() -> None:
    assert aligncore.get_plugin("matcher", "hist2d") is Hist2dMatcher
    p = Hist2dMatcher().params
    assert (p.searchrad, p.separation, p.tolerance, p.use2dhist) == (1.0, 0.5, 1.0, True)
    assert (p.xoffset, p.yoffset, p.max_searchrad) == (0.0, 0.0, 10.0)
    auto = Hist2dMatcher(searchrad="auto", tolerance="auto", separation="auto").params
    assert (auto.searchrad, auto.tolerance, auto.separation) == ("auto", "auto", "auto")


def test_separation_must_exceed_sqrt2_tolerance() -> None:
    # MatchError is a ValueError: pydantic reports it as a validation error of the Params.
    with pytest.raises(
        ValidationError,
        match=r"separation \(1\"\) must be larger than sqrt\(2\) x tolerance \(1\.414\" for "
        r"tolerance 1\"\)",
    ):
        Hist2dMatcher(separation=1.0, tolerance=1.0)
    Hist2dMatcher(separation=1.0, tolerance=0.7)  # jwst's current defaults are consistent
    Hist2dMatcher(separation=1.0, tolerance="auto")


def test_seed_pair_is_accepted_with_a_warning() -> None:
    img, ref, truth = scene()
    m = Hist2dMatcher(separation=0.5, tolerance=1.0).match(img, ref)
    assert any("historical defaults" in w for w in m.meta["warnings"])
    assert n_correct(m, truth) == m.n_matched > 150


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"searchrad": -1.0}, "greater than 0"),
        ({"searchrad": "wide"}, "'auto'"),
        ({"tolerance": 0.0}, "greater than 0"),
        ({"max_searchrad": 0}, "greater than 0"),
        ({"serchrad": 2.0}, "Extra inputs are not permitted"),
    ],
)
def test_bad_params(kwargs: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Hist2dMatcher(**kwargs)


# --- histogram ----------------------------------------------------------------------------
def test_bias_case_offset_recovered() -> None:
    """tweakwcs' bias case: searchrad / pixel scale is not an integer."""
    pscale = 0.11
    img, ref, truth = scene(150, (2.3, -1.7), pscale=pscale, noise=0.0, spurious=10, seed=3)
    m = Hist2dMatcher(searchrad=3.7, tolerance=0.3, separation=0.5).match(img, ref)
    err_px = np.hypot(m.offset[0] - 2.3, m.offset[1] + 1.7) / pscale
    assert err_px < 0.05
    assert n_correct(m, truth) == m.n_matched == np.count_nonzero(truth >= 0)


@pytest.mark.parametrize("radius", [3.0, 3.4, 3.5, 3.6, 7.25])
def test_find_offset_unbiased_in_pixels(radius: float) -> None:
    rng = np.random.default_rng(5)
    ref = rng.uniform(0, 500, (300, 2))
    true = np.array([2.37, -1.81])
    img = ref - true + rng.normal(0, 0.05, ref.shape)
    peak = find_offset(img, ref, radius)
    np.testing.assert_allclose(peak.offset, true, atol=0.02)
    assert abs(peak.binned[0] - true[0]) < 0.5 and abs(peak.binned[1] - true[1]) < 0.5
    assert peak.significance > 20


def test_offset_beyond_searchrad_gives_no_false_match() -> None:
    img, ref, _ = scene(200, (4.0, 3.0), seed=1)
    m = Hist2dMatcher(searchrad=1.0, tolerance=0.5, separation=1.0).match(img, ref)
    assert m.n_matched == 0
    assert m.meta["weak"] is True
    assert m.meta["peak_significance"] < 5
    assert any("not significant" in w for w in m.meta["warnings"])


def test_sparse_field_with_spurious_sources() -> None:
    """15 stars and 40% spurious sources in each list still give the right peak."""
    rng = np.random.default_rng(11)
    stars = rng.uniform(0, 100, (15, 2))
    offset = np.array([0.62, -0.41])
    img = np.vstack([stars - offset + rng.normal(0, 0.01, stars.shape),
                     rng.uniform(0, 100, (10, 2))])
    ref = np.vstack([stars, rng.uniform(0, 100, (10, 2))])
    m = Hist2dMatcher(searchrad=2.0, tolerance=0.5, separation=1.0).match(table(img), table(ref))
    np.testing.assert_allclose(m.offset, offset, atol=0.01)
    truth_pairs = {(i, i) for i in range(15)}
    found = set(zip(m.image_idx.tolist(), m.ref_idx.tolist(), strict=True))
    assert truth_pairs <= found
    assert m.meta["peak_significance"] > 5
    assert not m.meta["weak"]


def test_edge_peak_is_reported() -> None:
    img, ref, _ = scene(200, (0.95, 0.0), seed=2)
    m = Hist2dMatcher(searchrad=1.0, tolerance=0.3, separation=0.5).match(img, ref)
    assert m.meta["peak_edge"] is True
    assert any("edge" in w for w in m.meta["warnings"])


# --- matching -----------------------------------------------------------------------------
def test_known_offset_found_and_one_to_one() -> None:
    img, ref, truth = scene(300, (0.45, -0.3), seed=4)
    m = Hist2dMatcher(searchrad=1.0, tolerance=0.3, separation=0.5).match(img, ref)
    assert_one_to_one(m)
    np.testing.assert_allclose(m.offset, (0.45, -0.3), atol=0.002)
    n_true = np.count_nonzero(truth >= 0)
    assert n_correct(m, truth) >= n_true - 5
    assert m.n_matched - n_correct(m, truth) <= 2  # a spurious source may fall on a star
    assert m.meta["n_matched"] == m.n_matched
    assert m.meta["searchrad"] == 1.0


def test_xoffset_yoffset_applied_first() -> None:
    img, ref, truth = scene(200, (5.0, -4.0), seed=6)
    m = Hist2dMatcher(searchrad=1.0, tolerance=0.3, separation=0.5,
                      xoffset=4.8, yoffset=-4.3).match(img, ref)
    np.testing.assert_allclose(m.offset, (5.0, -4.0), atol=0.002)
    assert n_correct(m, truth) >= 150


def test_use2dhist_false_uses_given_offset() -> None:
    img, ref, truth = scene(200, (0.2, 0.1), seed=7)
    m = Hist2dMatcher(use2dhist=False, tolerance=0.5, separation=1.0).match(img, ref)
    assert m.offset == (0.0, 0.0)
    assert n_correct(m, truth) >= 150
    assert "peak_significance" not in m.meta


def test_rows_with_nan_and_empty_catalogs() -> None:
    img, ref, _ = scene(100, (0.1, 0.1), seed=8)
    img[COL_TP_X][0] = np.nan * u.arcsec
    m = Hist2dMatcher(tolerance=0.3, separation=0.5).match(img, ref)
    assert 0 not in m.image_idx
    empty = Hist2dMatcher().match(table(np.zeros((0, 2))), ref)
    assert empty.n_matched == 0 and empty.meta["weak"]
    assert "no usable source" in empty.meta["warnings"][-1]


def test_missing_column_is_a_match_error() -> None:
    with pytest.raises(MatchError, match="image catalog has no 'tp_x' or 'tp_y' column"):
        Hist2dMatcher().match(QTable({"x": [1.0]}), table(np.zeros((1, 2))))


def test_pixel_scale_fallbacks() -> None:
    img, ref, _ = scene(100, seed=9)
    img.meta.pop(META_PIXEL_SCALE)
    m = Hist2dMatcher(tolerance=0.3, separation=0.5).match(img, ref)
    assert m.meta["pixel_scale"] == 0.1 and m.meta["pixel_scale_source"] == "reference"
    ref.meta.pop(META_PIXEL_SCALE)
    m = Hist2dMatcher(tolerance=0.3, separation=0.5).match(img, ref)
    assert m.meta["pixel_scale"] == 1.0 and m.meta["pixel_scale_source"] == "default"


def test_prune_close_drops_the_later_source() -> None:
    xy = np.array([[0.0, 0.0], [0.3, 0.0], [5.0, 5.0], [5.0, 5.6], [5.2, 5.0]])
    np.testing.assert_array_equal(prune_close(xy, 0.5), [True, False, True, True, False])
    assert prune_close(xy, 0.0).all()


def test_match_one_to_one_never_reuses_a_source() -> None:
    # Two reference sources both nearest to image source 0: only the closer one wins it.
    img = np.array([[0.0, 0.0], [3.0, 0.0]])
    ref = np.array([[0.1, 0.0], [-0.2, 0.0], [2.5, 0.0]])
    ii, jj = match_one_to_one(img, ref, 1.0)
    assert sorted(zip(ii.tolist(), jj.tolist(), strict=True)) == [(0, 0), (1, 2)]


# --- auto ---------------------------------------------------------------------------------
@pytest.mark.parametrize("offset", [(0.2, -0.1), (2.3, -1.7), (-3.0, 2.9)])
def test_searchrad_auto_widens(offset: tuple[float, float]) -> None:
    img, ref, truth = scene(200, offset, seed=12)
    m = Hist2dMatcher(searchrad="auto", tolerance="auto", separation="auto").match(img, ref)
    np.testing.assert_allclose(m.offset, offset, atol=0.003)
    assert n_correct(m, truth) >= 160
    assert m.meta["searchrad"] >= max(abs(offset[0]), abs(offset[1]))
    assert m.meta["searchrad"] <= 10.0
    if max(map(abs, offset)) < 0.5:
        assert len(m.meta["searchrad_tried"]) == 1  # no extra work for small offsets
    fixed = Hist2dMatcher(searchrad=1.0, tolerance=0.3, separation=0.5).match(img, ref)
    if max(map(abs, offset)) > 1.5:
        assert fixed.n_matched == 0


def test_auto_tolerance_follows_crowding() -> None:
    sparse_img, sparse_ref, _ = scene(200, seed=13)
    m = Hist2dMatcher(tolerance="auto", separation="auto").match(sparse_img, sparse_ref)
    # 3 FWHM (FWHM default 2.5 px) at first, then tightened to what the matches need
    # (5 sigma of their scatter, at least 1 FWHM)
    assert m.meta["tolerance_initial"] == pytest.approx(3 * 2.5 * 0.1)
    assert m.meta["tolerance"] == pytest.approx(max(5 * m.meta["match_sigma"], 0.25))
    assert m.meta["separation"] == pytest.approx(1.5 * m.meta["tolerance"])
    img, ref, truth = scene(5000, (0.05, 0.02), pscale=0.03, size_px=1024, noise=0.001,
                            spurious=0, seed=14)
    img.meta["fwhm"] = 2.0
    m = Hist2dMatcher(searchrad="auto", tolerance="auto", separation="auto").match(img, ref)
    assert m.meta["fwhm_pixels"] == 2.0 and m.meta["fwhm_source"] == "image"
    nn = m.meta["nn_distance"]
    first = m.meta.get("tolerance_initial", m.meta["tolerance"])
    assert first == pytest.approx(max(0.35 * nn, 2.0 * 0.03))
    assert m.meta["tolerance"] <= first < 0.5 * nn
    assert n_correct(m, truth) > 0.6 * 5000
    assert m.n_matched - n_correct(m, truth) < 0.03 * m.n_matched
    assert math.hypot(m.offset[0] - 0.05, m.offset[1] - 0.02) / 0.03 < 0.05


# --- property-based tests -------------------------------------------------------------------
@st.composite
def matcher_cases(draw: st.DrawFn) -> dict:
    return {
        "n": draw(st.integers(0, 300)),
        "kind": draw(st.sampled_from(["shift", "shift", "rotate", "flip", "skew"])),
        "offset": (draw(st.floats(-2.5, 2.5)), draw(st.floats(-2.5, 2.5))),
        "noise": draw(st.floats(0.0, 0.02)),
        "missing": draw(st.floats(0.0, 0.4)),
        "spurious": draw(st.floats(0.0, 0.4)),
        "searchrad": draw(st.sampled_from([1.0, 3.0, "auto"])),
        "tolerance": draw(st.sampled_from([0.2, 0.5, "auto"])),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(case=matcher_cases())
def test_property_one_to_one_and_within_tolerance(case: dict) -> None:
    """Whatever the catalogs, no source appears in two matches and every pair is in tolerance."""
    rng = np.random.default_rng(case["seed"])
    n, size = case["n"], 150.0
    ref = rng.uniform(0, size, (n, 2))
    c = size / 2
    if case["kind"] == "rotate":
        matrix = np.array([[1.0, -1e-3], [1e-3, 1.0]])
    elif case["kind"] == "flip":
        matrix = np.array([[-1.0, 0.0], [0.0, 1.0]])
    elif case["kind"] == "skew":
        matrix = np.array([[1.0, 0.05], [0.0, 0.98]])
    else:
        matrix = np.eye(2)
    # ref = matrix @ (img - c) + c + offset
    img = (ref - c - np.asarray(case["offset"])) @ np.linalg.inv(matrix).T + c
    img += rng.normal(0, case["noise"], img.shape) if n else 0.0
    kept = np.flatnonzero(rng.random(n) >= case["missing"])
    n_spur = int(case["spurious"] * n)
    img = np.vstack([img[kept], rng.uniform(0, size, (n_spur, 2))])
    ref = np.vstack([ref, rng.uniform(0, size, (n_spur, 2))])
    truth = np.concatenate([kept, np.full(n_spur, -1)])
    sep = "auto" if case["tolerance"] == "auto" else 1.5 * case["tolerance"]
    matcher = Hist2dMatcher(searchrad=case["searchrad"], tolerance=case["tolerance"],
                            separation=sep)
    m = matcher.match(table(img), table(ref))
    assert_one_to_one(m)
    assert np.all((m.image_idx >= 0) & (m.image_idx < len(img)))
    assert np.all((m.ref_idx >= 0) & (m.ref_idx < len(ref)))
    d = np.hypot(*(ref[m.ref_idx] - img[m.image_idx] - np.asarray(m.offset)).T)
    assert np.all(d <= m.meta["tolerance"] + 1e-12)
    if m.n_matched == 0:
        return
    if case["kind"] in ("shift", "rotate") and not m.meta["weak"]:
        good = np.count_nonzero(truth[m.image_idx] == m.ref_idx)
        assert good >= 0.7 * m.n_matched
        if case["searchrad"] == "auto" or max(map(abs, case["offset"])) < case["searchrad"] - 0.2:
            assert np.hypot(*(np.asarray(m.offset) - case["offset"])) < 0.1


# --- performance ----------------------------------------------------------------------------
def test_1e5_by_1e5_auto_match() -> None:
    # speed is measured in benchmarks/bench_match.py; this pins the result at 1e5 sources
    n = 100_000
    rng = np.random.default_rng(21)
    side = math.sqrt(n / 2.5e-4) * 0.1  # 2.5e-4 sources per pixel^2 at 0.1"/px
    ref = rng.uniform(0, side, (n, 2))
    img = ref - [0.37, -0.52] + rng.normal(0, 0.005, ref.shape)
    matcher = Hist2dMatcher(searchrad="auto", tolerance="auto", separation="auto")
    m = matcher.match(table(img), table(ref))
    assert np.mean(m.image_idx == m.ref_idx) > 0.999
    assert m.n_matched > 0.9 * n
    np.testing.assert_allclose(m.offset, [0.37, -0.52], atol=1e-3)
