"""Matching never allocates from absurd input values: a typed error instead of MemoryError."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from astropy.table import QTable
from astropy.wcs import WCS

import aligncore
from aligncore_hist2d import pairing
from aligncore_hist2d.histogram import MAX_BINS, find_offset
from aligncore_hist2d.matcher import Hist2dMatcher
from aligncore_hist2d.triangles import find_transform


def _points(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 20.0, (n, 2))


def test_histogram_refuses_more_bins_than_the_bound():
    xy = _points(50)
    with pytest.raises(aligncore.MatchError, match=f"at most {MAX_BINS // 2} bins"):
        find_offset(xy, xy + 0.5, radius=10.0, bin_size=1e-6)
    peak = find_offset(xy, xy + 0.5, radius=10.0, bin_size=10.0 / (MAX_BINS // 2))
    np.testing.assert_allclose(peak.offset, [0.5, 0.5], atol=0.01)


@pytest.mark.parametrize("bin_size", [0.0, np.nan, np.inf, -1.0])
def test_histogram_refuses_a_degenerate_bin_size(bin_size):
    with pytest.raises(aligncore.MatchError, match="must be positive and finite"):
        find_offset(_points(5), _points(5), radius=1.0, bin_size=bin_size)


def test_matcher_with_an_absurd_pixel_scale_raises_match_error():
    table = QTable({"tp_x": _points(40)[:, 0], "tp_y": _points(40)[:, 1]})
    table.meta[aligncore.META_PIXEL_SCALE] = 1e-9
    with pytest.raises(aligncore.MatchError, match="check the pixel scale"):
        Hist2dMatcher(searchrad=5.0, tolerance=1.0, separation=1.5).match(table, table)


def test_neighbour_queries_are_counted_before_they_are_built(monkeypatch):
    monkeypatch.setattr(pairing, "MAX_PAIRS", 1000)
    xy = _points(200)
    with pytest.raises(aligncore.MatchError, match=r"separation: \d+ source pairs lie within"):
        pairing.prune_close(xy, 1e6)
    assert pairing.prune_close(xy, 1e-6).all()


def test_triangle_candidates_are_bounded(monkeypatch):
    monkeypatch.setattr(pairing, "MAX_PAIRS", 10)
    grid = np.stack(np.meshgrid(np.arange(8.0), np.arange(8.0)), axis=-1).reshape(-1, 2)
    with pytest.raises(aligncore.MatchError, match="triangle invariants"):
        find_transform(grid, grid + 0.3, tolerance=0.1)


def test_tiny_pixel_scale_image_fails_with_a_reason_not_memory(small_scene):
    images = [aligncore.open_image(p) for p in small_scene.paths[:2]]
    header = images[1].wcs.to_header()
    for key in ("CD1_1", "CD1_2", "CD2_1", "CD2_2", "PC1_1", "PC1_2", "PC2_1", "PC2_2"):
        if key in header:
            header[key] = header[key] * 2e-3
    if "CDELT1" in header:
        header["CDELT1"] *= 2e-3
        header["CDELT2"] *= 2e-3
    images[1] = dataclasses.replace(images[1], wcs=WCS(header))
    config = aligncore.load_config(None, ["matcher.params.searchrad=10.0",
                                          "matcher.params.tolerance=1.0",
                                          "matcher.params.separation=2.0"])
    result = aligncore.align(images, config)
    failed = [image for image in result.images if image.status == aligncore.Status.FAILED]
    assert len(failed) == 1
    assert "bins" in failed[0].reason or "matched sources" in failed[0].reason


@pytest.mark.parametrize("name", ["daofind", "iraf", "segmentation"])
def test_a_kernel_larger_than_the_image_is_refused_before_allocation(name):
    from aligncore.registry import build_registry
    from conftest import simple_wcs

    data = np.random.default_rng(0).normal(100.0, 5.0, (64, 64))
    image = aligncore.AlignImage(name="small", wcs=simple_wcs(), shape=(64, 64),
                                 loader=lambda: (data, None))
    detector = build_registry(()).get("detector", name)({"kernel_fwhm": 1e5})
    with pytest.raises(aligncore.InputError,
                       match=r"small: kernel_fwhm 100000 px is too large for a 64 x 64 image "
                             r"\(at most 8 px\)"):
        detector.detect(image)


def test_triangle_count_is_bounded_before_building_them():
    from aligncore_hist2d.triangles import MAX_TRIANGLES, triangles

    xy = _points(2000)
    with pytest.raises(aligncore.MatchError, match=f"more than {MAX_TRIANGLES}"):
        triangles(xy, neighbors=1000)
    vertices, _ = triangles(xy[:50], neighbors=6)
    assert 0 < len(vertices) <= 50 * 15
