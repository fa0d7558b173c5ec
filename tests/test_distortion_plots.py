"""Pictures of the distortion refinement: PNG per detector and the HTML report section."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from aligncore.distortion import DistortionCorrection
from aligncore.htmlreport.distortion import distortion_section
from aligncore.htmlreport.page import render_html_report, write_html_report
from aligncore.plots.distortion import (
    distortion_field,
    distortion_filename,
    residual_arrows,
    residual_vectors,
    write_distortion_plots,
)
from html_page import parse
from synthetic_run import synthetic_result

NOISE_PX = 0.02


def known_correction() -> DistortionCorrection:
    """0.3 px at the corners: dx = 0.2 u^2 + 0.1 u v^2, dy = -0.3 u v."""
    return DistortionCorrection("NIRCAM/NRCB1", 3, (1023.5, 1023.5), 1024.0,
                                ((2, 0), (1, 1), (1, 2)), (0.2, 0.0, 0.1), (0.0, -0.3, 0.0))


def distortion_report(seed: int = 0) -> dict:
    """The report's ``distortion``, by hand: one detector refined, one declined."""
    rng = np.random.default_rng(seed)
    c = known_correction()
    x, y = rng.uniform(0, 2047, 300), rng.uniform(0, 2047, 300)
    dx, dy = c.offsets(x, y)
    after = rng.normal(0.0, NOISE_PX, (2, x.size))
    refined = {"correction": c.to_dict(), "applied": True, "reason": "", "degree": 3,
               "shape": [2048, 2048], "pixel_scale": 0.031,
               "held_back": {"n": 60, "rms_before_mas": 6.1, "rms_after_mas": 0.9},
               "residuals": {"x": x.tolist(), "y": y.tolist(),
                             "dx_before": (dx + after[0]).tolist(),
                             "dy_before": (dy + after[1]).tolist(),
                             "dx_after": after[0].tolist(), "dy_after": after[1].tolist()}}
    declined = {"correction": None, "applied": False,
                "reason": "too few matched stars (12 < 50)", "degree": 0,
                "held_back": {"n": 0, "rms_before_mas": None, "rms_after_mas": None},
                "residuals": {"x": [10.0, 900.0], "y": [20.0, 800.0],
                              "dx_before": [0.1, -0.1], "dy_before": [0.0, 0.05],
                              "dx_after": [], "dy_after": []}}
    # through JSON, as report.json carries it
    return json.loads(json.dumps({"NIRCAM/NRCB1": refined, "NIRCAM/NRCB2": declined}))


def test_field_is_the_correction_over_the_detector():
    entry = distortion_report()["NIRCAM/NRCB1"]
    field = distortion_field(entry)
    assert field.extent == (-0.5, 2047.5, -0.5, 2047.5)  # the entry's shape
    dx, dy = known_correction().offsets(field.x, field.y)
    np.testing.assert_allclose(field.dx, dx, rtol=0, atol=1e-15)
    np.testing.assert_allclose(field.dy, dy, rtol=0, atol=1e-15)
    # largest at a corner: |u| = |v| ~ 1 -> dx = 0.3, dy = 0.3 -> 0.42 px (cell centres inside)
    assert field.max_px == pytest.approx(0.3 * np.sqrt(2), rel=0.05)
    assert distortion_field(distortion_report()["NIRCAM/NRCB2"]) is None


def test_residual_vectors_and_their_rms():
    stars = residual_vectors(distortion_report()["NIRCAM/NRCB1"])
    assert stars.before.shape == stars.after.shape == (300, 2)
    assert stars.rms_after == pytest.approx(NOISE_PX * np.sqrt(2), rel=0.15)
    assert stars.rms_before > 5 * stars.rms_after  # the distortion dominates before
    declined = residual_vectors(distortion_report()["NIRCAM/NRCB2"])
    assert declined.before.shape == (2, 2) and declined.after.size == 0
    assert residual_vectors({}).x.size == 0  # no residuals reported


def test_many_stars_are_drawn_as_cell_means():
    entry = distortion_report()["NIRCAM/NRCB1"]
    stars = residual_vectors(entry)
    extent = distortion_field(entry).extent
    arrows = residual_arrows(stars, extent, cells=4)
    assert arrows.binned and arrows.x.size == 16 and arrows.n_stars == 300
    # the cell at the lower left corner: the mean of its stars' residuals
    inside = (stars.x < 511.5) & (stars.y < 511.5)
    corner = np.argmin(arrows.x + arrows.y)
    assert (arrows.x[corner], arrows.y[corner]) == (255.5, 255.5)
    np.testing.assert_allclose(arrows.before[corner], stars.before[inside].mean(axis=0),
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(arrows.after[corner], stars.after[inside].mean(axis=0),
                               rtol=0, atol=1e-12)
    # the distortion shows in the means before, the noise averages out after
    assert np.max(np.hypot(*arrows.before.T)) > 0.1 > 5 * np.max(np.hypot(*arrows.after.T))
    few = residual_arrows(residual_vectors(distortion_report()["NIRCAM/NRCB2"]), extent)
    assert not few.binned and few.x.size == 2


def test_one_png_per_detector(tmp_path):
    pil = pytest.importorskip("PIL.Image")
    pytest.importorskip("matplotlib")
    written = write_distortion_plots(distortion_report(), tmp_path)
    assert [p.name for p in written] == ["distortion_NIRCAM_NRCB1.png",
                                         "distortion_NIRCAM_NRCB2.png"]
    for path in written:
        with pil.open(path) as image:
            pixels = np.asarray(image.convert("L"), dtype=float)
        assert pixels.shape[0] > 500 and pixels.var() > 100.0  # drawn, not blank
    assert write_distortion_plots(None, tmp_path / "none") == []
    assert distortion_filename("WFC3/UVIS chip 1") == "distortion_WFC3_UVIS_chip_1.png"


def test_run_plots_include_the_distortion_figures(tmp_path):
    pytest.importorskip("matplotlib")
    from aligncore.plots import write_plots

    result = synthetic_result(3, shape=(256, 256), n_sources=30)
    with_distortion = dataclasses.replace(
        result, meta={**result.meta, "distortion": distortion_report()})
    names = {p.name for p in write_plots(with_distortion, tmp_path)}
    assert {"distortion_NIRCAM_NRCB1.png", "distortion_NIRCAM_NRCB2.png"} <= names
    plain = {p.name for p in write_plots(result, tmp_path / "plain")}
    assert not any(name.startswith("distortion_") for name in plain)


def test_html_report_has_a_distortion_section_only_with_a_refinement():
    result = synthetic_result(3, shape=(256, 256), n_sources=30)
    report = {"config": {}, "versions": {}, "distortion": distortion_report()}
    page = parse(render_html_report(result, report))
    assert {"distortion", "distortion-NIRCAM-NRCB1", "distortion-NIRCAM-NRCB2"} <= page.ids
    html = render_html_report(result, report)
    section = html[html.index('id="distortion"'):html.index("<h2>Run</h2>")]
    assert section.count("<svg") == 3 + 2  # field and before/after; before/after only
    assert "too few matched stars (12 &lt; 50)" in section
    assert "6.100" in section and "0.900" in section  # the held-back RMS
    plain = parse(render_html_report(result, {"config": {}, "versions": {}}))
    assert not any(i.startswith("distortion") for i in plain.ids)
    assert distortion_section({}) == "" and distortion_section(None) == ""
    # the refinement kept in the run's meta (report.json's "meta") is shown too
    in_meta = dataclasses.replace(result, meta={**result.meta,
                                                "distortion": distortion_report()})
    assert "distortion-NIRCAM-NRCB1" in parse(
        render_html_report(in_meta, {"config": {}, "versions": {}})).ids


@pytest.mark.chromium
def test_chromium_renders_the_distortion_section(tmp_path):
    from test_report_html import _chromium, _headless

    binary = _chromium()
    result = synthetic_result(3, shape=(256, 256), n_sources=30)
    path = write_html_report(result, {"config": {}, "versions": {},
                                      "distortion": distortion_report()},
                             tmp_path / "report.html")
    dom = _headless(binary, "--dump-dom", path.as_uri()).stdout
    page = parse(dom)
    assert {"distortion-NIRCAM-NRCB1", "distortion-NIRCAM-NRCB2"} <= page.ids
    assert dom.count("distortion correction field") >= 1
