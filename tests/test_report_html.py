"""The HTML run report: structure (html.parser) and rendering (headless Chromium)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

import aligncore
from aligncore.config import load_config
from aligncore.formats import open_image
from aligncore.htmlreport.page import TABLE_COLUMNS, render_html_report, write_html_report
from aligncore.outputs import write_outputs
from html_page import parse
from synthetic_run import synthetic_result


@pytest.fixture(scope="module")
def run_with_blank(small_scene, tmp_path_factory):
    """The three-image scene plus a blank image (no sources: FAILED), written out."""
    workdir = tmp_path_factory.mktemp("html")
    paths = []
    for path in small_scene.paths:
        shutil.copy(path, workdir / path.name)
        paths.append(workdir / path.name)
    blank = workdir / "blank.fits"
    with fits.open(paths[0]) as hdul:
        rng = np.random.default_rng(0)
        hdul["SCI"].data = rng.normal(100.0, 5.0, hdul["SCI"].data.shape).astype(np.float32)
        hdul.writeto(blank)
    paths.append(blank)
    config = load_config(None)
    result = aligncore.align(paths, config)
    images = [open_image(p) for p in paths]
    written = write_outputs(result, images, config, workdir / "aligned")
    return result, workdir / "aligned" / "report.html", written


def test_report_html_is_written_beside_report_json(run_with_blank):
    _, html_path, written = run_with_blank
    assert html_path in written
    assert (html_path.parent / "report.json").exists()


def test_one_row_per_image_and_the_failed_one_is_marked(run_with_blank):
    result, html_path, _ = run_with_blank
    page = parse(html_path.read_text())
    assert len(page.rows) == len(result.images) == 4
    names = [cells[TABLE_COLUMNS.index(next(c for c in TABLE_COLUMNS if c.title == "image"))]
             for cells in page.cells]
    assert names == [r.name for r in result.images]
    classes = {name: row.get("class", "") for name, row in zip(names, page.rows, strict=True)}
    assert classes["blank.fits"] == "failed"
    assert [c for n, c in classes.items() if n != "blank.fits"].count("failed") == 0
    assert sum(c == "reference" for c in classes.values()) == 1


def test_sky_map_has_one_outline_per_image_coloured_by_status(run_with_blank):
    result, html_path, _ = run_with_blank
    page = parse(html_path.read_text())
    assert len(page.polygons) == len(result.images)
    failed = [p for p in page.polygons if "failed" in p["class"]]
    assert len(failed) == 1


def test_report_is_self_contained(run_with_blank):
    _, html_path, _ = run_with_blank
    text = html_path.read_text()
    page = parse(text)
    assert page.external == []
    assert "<script src" not in text
    assert {"sky-map", "images", "worst", "config"} <= page.ids


def test_failed_image_figures_come_first(run_with_blank):
    _, html_path, _ = run_with_blank
    text = html_path.read_text()
    figures = text[text.index('id="worst"'):]
    assert figures.index("blank.fits") < min(figures.index(f"img_00{k}") for k in range(3))


def test_large_run_keeps_figures_for_the_worst_only():
    result = synthetic_result(150, failed_every=40)
    text = render_html_report(result, {"config": {}, "versions": {}}, worst=5, collapsed=10)
    page = parse(text)
    assert len(page.rows) == 150
    assert len(page.polygons) == 150
    figure_ids = {i for i in page.ids if i.startswith("fig-")}
    assert len(figure_ids) == 15
    assert {"fig-40", "fig-80", "fig-120"} <= figure_ids  # the failed ones
    assert "135 further images" in text


def test_mismatched_images_are_refused(run_with_blank):
    result, _, _ = run_with_blank
    with pytest.raises(ValueError, match="2 images given for a result of 4"):
        render_html_report(result, {}, images=[object(), object()])


# --- headless Chromium ---------------------------------------------------------------
def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no chromium binary found (apt-get install chromium)")


def _headless(binary: str, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
    """Run headless Chromium with a profile of its own (no lock shared with other runs)."""
    with tempfile.TemporaryDirectory() as profile:
        command = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                   "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              check=True)


def _screenshot_variance(binary: str, html_path: Path, png: Path) -> float:
    image_module = pytest.importorskip("PIL.Image")
    _headless(binary, "--window-size=1280,1600", f"--screenshot={png}", html_path.as_uri())
    with image_module.open(png) as image:
        pixels = np.asarray(image.convert("L"), dtype=float)
    return float(pixels.var())


@pytest.mark.chromium
def test_chromium_renders_the_report(run_with_blank, tmp_path):
    binary = _chromium()
    result, html_path, _ = run_with_blank
    assert _screenshot_variance(binary, html_path, tmp_path / "shot.png") > 100.0
    dom = parse(_headless(binary, "--dump-dom", html_path.as_uri()).stdout)
    assert len(dom.rows) == len(result.images)
    failed = [row for row in dom.rows if row.get("class") == "failed"]
    assert len(failed) == 1
    assert len(dom.polygons) == len(result.images)


@pytest.mark.chromium
@pytest.mark.timeout(300)
def test_chromium_renders_a_1024_image_report(tmp_path):
    binary = _chromium()
    result = synthetic_result(1024)
    path = write_html_report(result, {"config": {}, "versions": {}}, tmp_path / "report.html")
    start = time.perf_counter()
    dom = parse(_headless(binary, "--dump-dom", path.as_uri(), timeout=240).stdout)
    seconds = time.perf_counter() - start
    assert len(dom.rows) == 1024
    assert sum(row.get("class") == "failed" for row in dom.rows) == len(result.failed)
    assert seconds < 240


def test_absolute_fit_residuals_are_shown(small_scene):
    refcat = small_scene.paths[0].parent / "refcat.ecsv"
    config = load_config(None, ["absolute.enabled=true", "absolute.refcat.plugin=file",
                                f'absolute.refcat.params={{"path": "{refcat}"}}'])
    result = aligncore.align(small_scene.paths, config)
    assert result.absolute is not None, result.meta["absolute"].get("reason")
    page = parse(render_html_report(result, {"config": {}, "versions": {}}))
    assert "absolute-residuals" in page.ids


def test_without_absolute_alignment_there_is_no_absolute_section(run_with_blank):
    _, html_path, _ = run_with_blank
    assert "absolute-residuals" not in parse(html_path.read_text()).ids
