"""The ``hist2d`` neighbour searches against straightforward reference implementations.

The matcher finds its candidate pairs on a grid of cells (``aligncore_hist2d.grid``)
and plays the one-to-one matching on that pair list. These tests pin, on random
catalogs, that it returns exactly what brute force over all N x M pairs returns:
the same histogram offsets, the same pruned sources, the same matched pairs
(greedy by increasing distance, no source used twice) and, end to end, the same
``MatchResult`` as with all pairs or with the KD-tree fallback.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.table import QTable
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aligncore import COL_TP_X, COL_TP_Y, META_PIXEL_SCALE
from aligncore_hist2d import (
    Hist2dMatcher,
    grid,
    histogram,
    match_one_to_one,
    median_nn_distance,
    pair_offsets,
    pairing,
    prune_close,
)

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


# --- reference implementations ------------------------------------------------------------
def all_pairs(a: np.ndarray, b: np.ndarray, reach: float, limit: int):
    """Every index pair: a `grid.candidate_pairs` that cannot miss one."""
    i, j = np.meshgrid(np.arange(len(a)), np.arange(len(b)), indexing="ij")
    return i.ravel(), j.ravel()


def reference_greedy(img: np.ndarray, ref: np.ndarray, tol: float, shift) -> set:
    """Pairs by increasing distance, each accepted when both sources are still free."""
    moved = img + np.asarray(shift, dtype=float)
    found = []
    for i in range(len(img)):
        for j in range(len(ref)):
            dx, dy = moved[i, 0] - ref[j, 0], moved[i, 1] - ref[j, 1]
            d2 = dx * dx + dy * dy
            if d2 < tol * tol:
                found.append((d2, i, j))
    used_i, used_j, out = set(), set(), set()
    for _, i, j in sorted(found):
        if i not in used_i and j not in used_j:
            used_i.add(i)
            used_j.add(j)
            out.add((i, j))
    return out


def reference_prune(xy: np.ndarray, sep: float) -> np.ndarray:
    keep = np.ones(len(xy), dtype=bool)
    for j in range(len(xy)):
        for i in range(j):
            if np.hypot(*(xy[i] - xy[j])) < sep:
                keep[j] = False
    return keep


def reference_offsets(img: np.ndarray, ref: np.ndarray, half_width: float) -> np.ndarray:
    d = (ref[None, :, :] - img[:, None, :]).reshape(-1, 2)
    return d[np.max(np.abs(d), axis=1) <= half_width]


def sorted_rows(d: np.ndarray) -> np.ndarray:
    return d[np.lexsort((d[:, 1], d[:, 0]))]


# --- random catalogs ----------------------------------------------------------------------
@st.composite
def catalogs(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """Two random lists in a box, crowded enough that sources compete for partners."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n, m = draw(st.integers(1, 70)), draw(st.integers(1, 70))
    size = draw(st.sampled_from([3.0, 10.0, 40.0]))
    origin = draw(st.sampled_from([0.0, -1e3, 5e4]))
    img = origin + rng.uniform(0, size, (n, 2))
    if draw(st.booleans()):  # a shifted copy of the image list, plus extras
        k = rng.integers(0, n + 1)
        ref = np.vstack([img[:k] + 0.3 + rng.normal(0, 0.2, (k, 2)),
                         origin + rng.uniform(0, size, (m, 2))])
    else:
        ref = origin + rng.uniform(0, size, (m, 2))
    radius = draw(st.sampled_from([0.05, 0.3, 1.0, 2.5, 100.0]))
    shift = rng.normal(0, 0.5, 2)
    return img, ref, radius, shift


# --- the pieces ---------------------------------------------------------------------------
@SETTINGS
@given(case=catalogs())
def test_match_one_to_one_is_the_greedy_matching(case) -> None:
    img, ref, tol, shift = case
    rounds = len(img) + len(ref) + 1  # enough rounds for any chain of conflicts
    ii, jj = match_one_to_one(img, ref, tol, shift=shift, max_rounds=rounds)
    assert set(zip(ii.tolist(), jj.tolist(), strict=True)) == reference_greedy(img, ref, tol,
                                                                                  shift)
    # strictly one-to-one, sorted by reference row, every pair within tolerance
    assert np.unique(ii).size == ii.size and np.unique(jj).size == jj.size
    assert np.all(np.diff(jj) > 0)
    assert np.all(np.hypot(*(img[ii] + shift - ref[jj]).T) < tol)
    # maximal: no free image source has a free reference source within tolerance
    free_i = np.setdiff1d(np.arange(len(img)), ii)
    free_j = np.setdiff1d(np.arange(len(ref)), jj)
    if free_i.size and free_j.size:
        d = np.hypot(*(img[free_i, None, :] + shift - ref[None, free_j, :]).transpose(2, 0, 1))
        assert not np.any(d < tol)


@SETTINGS
@given(case=catalogs())
def test_match_one_to_one_tree_fallback_is_identical(case) -> None:
    img, ref, tol, shift = case
    grid_ii, grid_jj = match_one_to_one(img, ref, tol, shift=shift)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pairing, "candidate_pairs", lambda *args: None)
        tree_ii, tree_jj = match_one_to_one(img, ref, tol, shift=shift)
    np.testing.assert_array_equal(grid_ii, tree_ii)
    np.testing.assert_array_equal(grid_jj, tree_jj)


@SETTINGS
@given(case=catalogs())
def test_prune_close_is_brute_force(case) -> None:
    img, ref, sep, _ = case
    for xy in (img, ref):
        np.testing.assert_array_equal(prune_close(xy, sep), reference_prune(xy, sep))


@SETTINGS
@given(case=catalogs())
def test_pair_offsets_are_all_the_offsets_in_the_box(case) -> None:
    img, ref, half_width, _ = case
    got = pair_offsets(img, ref, half_width)
    want = reference_offsets(img, ref, half_width)
    assert got.shape == want.shape
    np.testing.assert_array_equal(sorted_rows(got), sorted_rows(want))


@SETTINGS
@given(case=catalogs())
def test_grid_candidates_include_every_close_pair(case) -> None:
    a, b, reach, _ = case
    out = grid.candidate_pairs(a, b, reach, limit=10**7)
    assert out is not None
    i, j = out
    assert len(set(zip(i.tolist(), j.tolist(), strict=True))) == i.size  # no pair twice
    close = np.max(np.abs(a[:, None, :] - b[None, :, :]), axis=2) <= reach
    got = np.zeros_like(close)
    got[i, j] = True
    assert not np.any(close & ~got)


@SETTINGS
@given(case=catalogs(), layout=st.sampled_from(["uniform", "clumped", "lattice"]))
def test_median_nn_distance_is_brute_force(case, layout: str) -> None:
    img, ref, _, _ = case
    xy = np.vstack([img, ref])
    if layout == "clumped":  # most sources in a tight clump, a few far away
        xy[: len(xy) * 2 // 3] = xy[0] + (xy[: len(xy) * 2 // 3] - xy[0]) * 1e-3
    elif layout == "lattice":  # more regular than random: the first radius is too small
        side = math.ceil(math.sqrt(len(xy)))
        k = np.arange(len(xy))
        xy = xy[0] + np.column_stack([k % side, k // side]) * 0.7 + (xy - xy[0]) * 1e-3
    d = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
    np.fill_diagonal(d, np.inf)
    want = float(np.median(d.min(axis=1))) if len(xy) > 1 else np.nan
    assert median_nn_distance(xy) == pytest.approx(want, rel=1e-15, nan_ok=True)
    if len(xy) >= 6:  # a sample of the sources
        max_points = len(xy) // 3
        sample = float(np.median(d.min(axis=1)[:: len(xy) // max_points]))
        assert median_nn_distance(xy, max_points=max_points) == pytest.approx(sample,
                                                                              rel=1e-15)


def test_grid_gives_up_beyond_the_limit() -> None:
    xy = np.random.default_rng(0).uniform(0, 1, (50, 2))
    assert grid.candidate_pairs(xy, xy, 10.0, limit=2499) is None
    i, _ = grid.candidate_pairs(xy, xy, 10.0, limit=2500)
    assert i.size == 2500
    assert grid.candidate_pairs(xy, xy, np.inf, limit=10**6) is None


# --- end to end ---------------------------------------------------------------------------
def bench_like(n: int, seed: int, offset=(0.37, -0.52), pscale: float = 0.1):
    """Catalogs as benchmarks/bench_match.py makes them (2.5e-4 sources per pixel^2)."""
    rng = np.random.default_rng(seed)
    side = np.sqrt(n / 2.5e-4) * pscale
    ref = rng.uniform(0, side, (n, 2))
    kept = np.flatnonzero(rng.random(n) >= 0.1)
    img = ref[kept] - offset + rng.normal(0, 0.005, (kept.size, 2))
    img = np.vstack([img, rng.uniform(0, side, (n // 20, 2))])
    img = img[rng.permutation(len(img))]
    meta = {META_PIXEL_SCALE: pscale}
    return (QTable({COL_TP_X: img[:, 0], COL_TP_Y: img[:, 1]}, meta=meta),
            QTable({COL_TP_X: ref[:, 0], COL_TP_Y: ref[:, 1]}, meta=meta))


PARAMS = [
    {"searchrad": 1.0, "separation": 0.5, "tolerance": 1.0},  # the seed's
    {"searchrad": "auto", "separation": "auto", "tolerance": "auto"},
    {"searchrad": 3.7, "separation": 0.5, "tolerance": 0.3},  # tweakwcs' bias case
]


@pytest.mark.parametrize("params", PARAMS)
@pytest.mark.parametrize(("n", "seed"), [(300, 1), (2000, 2)])
@pytest.mark.parametrize("reference", ["all pairs", "trees"])
def test_match_equals_the_reference_pipeline(params, n, seed, reference, monkeypatch) -> None:
    img, ref = bench_like(n, seed)
    fast = Hist2dMatcher(**params).match(img, ref)
    with monkeypatch.context() as mp:
        replacement = all_pairs if reference == "all pairs" else (lambda *args: None)
        mp.setattr(histogram, "candidate_pairs", replacement)
        mp.setattr(pairing, "candidate_pairs", replacement)
        slow = Hist2dMatcher(**params).match(img, ref)
    assert fast.n_matched > 0.8 * n
    np.testing.assert_array_equal(fast.image_idx, slow.image_idx)
    np.testing.assert_array_equal(fast.ref_idx, slow.ref_idx)
    assert np.max(np.abs(np.subtract(fast.offset, slow.offset))) < 1e-9
    for key in ("n_image", "n_ref", "n_pruned_image", "n_pruned_ref", "peak_counts",
                "n_candidates", "tolerance", "separation", "searchrad"):
        assert fast.meta.get(key) == slow.meta.get(key), key
    assert fast.meta["peak_significance"] == pytest.approx(slow.meta["peak_significance"],
                                                           rel=1e-12)
    assert np.unique(fast.image_idx).size == fast.n_matched
    assert np.unique(fast.ref_idx).size == fast.n_matched
