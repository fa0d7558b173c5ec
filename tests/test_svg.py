"""The report's SVG figures: orientation, merging of histogram bins, empty inputs."""

from __future__ import annotations

import re

import numpy as np

from aligncore.htmlreport.svg import (
    Footprint,
    _merge_bins,
    histogram_svg,
    quiver_svg,
    scatter_svg,
    sky_map_svg,
)


def _square(cx: float, cy: float, half: float = 1.0) -> np.ndarray:
    return np.array([[cx - half, cy - half], [cx + half, cy - half],
                     [cx + half, cy + half], [cx - half, cy + half]])


def _polygon_x(svg: str, name: str) -> float:
    match = re.search(rf'points="([^"]+)"[^>]*><title>{name}:', svg)
    assert match, name
    return float(np.mean([float(p.split(",")[0]) for p in match.group(1).split()]))


def test_sky_map_draws_east_left_and_failed_on_top():
    svg = sky_map_svg([Footprint("east", "FAILED", _square(10.0, 0.0)),
                       Footprint("west", "SUCCESS", _square(-10.0, 0.0))])
    assert _polygon_x(svg, "east") < _polygon_x(svg, "west")
    assert svg.index("<title>west:") < svg.index("<title>east:")  # failed drawn last


def test_sky_map_marks_the_reference_and_links_rows():
    svg = sky_map_svg([Footprint("ref", "REFERENCE", _square(0.0, 0.0), "img-0"),
                       Footprint("b", "SUCCESS", _square(1.0, 0.0), "img-1")])
    assert svg.count("&#9733;") == 1
    assert 'href="#img-0"' in svg and 'href="#img-1"' in svg


def test_histogram_bins_are_merged_to_the_limit():
    hist = np.zeros((401, 401))
    hist[200, 200] = 5
    hist[0, 400] = 1
    svg = histogram_svg(hist, np.linspace(-2.0, 2.0, 401), max_bins=41)
    assert svg.count("<rect") - 1 == 2  # background + the two occupied merged cells
    assert "peak 5 pairs" in svg


def test_empty_figures_say_so():
    assert "no matched sources" in quiver_svg(np.zeros((0, 2)), np.zeros((0, 2)))
    assert "no residuals" in scatter_svg(np.zeros((0, 2)))


def test_scatter_reports_rms_in_mas():
    residuals = np.array([[0.003, 0.004], [-0.003, -0.004]])  # 5 mas each
    assert "RMS 5.00 mas" in scatter_svg(residuals, expected_mas=2.0)


def test_merged_bins_keep_every_count_and_the_zero_offset_in_the_middle():
    rng = np.random.default_rng(1)
    hist = rng.integers(0, 5, (401, 401)).astype(float)
    merged, centers = _merge_bins(hist, np.linspace(-4.0, 4.0, 401), 41)
    assert merged.shape[0] <= 41 and merged.shape[0] % 2 == 1
    assert merged.sum() == hist.sum()
    assert centers[len(centers) // 2] == 0.0
