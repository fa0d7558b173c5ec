"""`aligncore compare`: specs, numbers against an independent error computation, resume,
local plugin files, parallel runs, image directories, the command line."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

import aligncore
from aligncore.cli import main
from aligncore.compare import CompareSpecError, load_spec, run_compare
from aligncore.config import load_config
from html_page import parse

SIM = {"scenario": "dither", "n_images": 3, "shape": [256, 256], "n_stars": 60,
       "pointing_error": [0.3, 0.8]}
TRIANGLES = ["matcher.plugin=triangles", "matcher.params={}"]

SMALL_SPEC = """\
name: small
variants:
  - name: hist2d
  - name: triangles
    set: {matcher.plugin: triangles, matcher.params: {}}
datasets:
  - name: dither
    simulate: {scenario: dither, n_images: 3, shape: [256, 256], n_stars: 60,
               pointing_error: [0.3, 0.8]}
    seeds: [1, 2]
"""

NEAREST = '''\
import numpy as np
from pydantic import Field
from scipy.spatial import cKDTree

import aligncore


class NearestMatcher(aligncore.Matcher):
    """Match each image source to its nearest reference source."""

    name = "nearest"

    class Params(aligncore.Params):
        radius: float = Field(0.5, gt=0, description="match radius, arcsec")

    def match(self, image_cat, ref_cat):
        img = np.column_stack([image_cat[aligncore.COL_TP_X], image_cat[aligncore.COL_TP_Y]])
        ref = np.column_stack([ref_cat[aligncore.COL_TP_X], ref_cat[aligncore.COL_TP_Y]])
        dist, idx = cKDTree(ref).query(img, distance_upper_bound=self.params.radius)
        first = {}
        for i in np.flatnonzero(np.isfinite(dist)):
            first.setdefault(int(idx[i]), int(i))
        return aligncore.MatchResult(list(first.values()), list(first.keys()))


@aligncore.hookimpl
def aligncore_add_matchers():
    return [NearestMatcher]
'''


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """The 2 variants x 2 seeds spec, run once (with figures and peak memory)."""
    root = tmp_path_factory.mktemp("compare")
    spec = write(root / "small.yaml", SMALL_SPEC)
    return spec, root / "out", run_compare(spec, root / "out")


# --- an independent computation of the error from the truth ---------------------------
def _unit(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    ra, dec = np.radians(ra), np.radians(dec)
    return np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])


def _gnomonic(ra: np.ndarray, dec: np.ndarray, ra0: float, dec0: float) -> np.ndarray:
    """Standard coordinates (degrees) about (ra0, dec0)."""
    ra, dec, ra0, dec0 = map(np.radians, (ra, dec, ra0, dec0))
    cos_c = np.sin(dec0) * np.sin(dec) + np.cos(dec0) * np.cos(dec) * np.cos(ra - ra0)
    xi = np.cos(dec) * np.sin(ra - ra0) / cos_c
    eta = (np.cos(dec0) * np.sin(dec) - np.sin(dec0) * np.cos(dec) * np.cos(ra - ra0)) / cos_c
    return np.degrees(np.column_stack([xi, eta]))


def independent_errors(true_wcs, solved_wcs, shape, centre, n=16):
    """Absolute and relative (common affine removed) RMS and max errors in mas."""
    ny, nx = shape
    x, y = np.meshgrid(np.linspace(0, nx - 1, n), np.linspace(0, ny - 1, n))
    truth = np.vstack([np.column_stack(w.all_pix2world(x.ravel(), y.ravel(), 0))
                       for w in true_wcs])
    solved = np.vstack([np.column_stack(w.all_pix2world(x.ravel(), y.ravel(), 0))
                        for w in solved_wcs])
    a, b = _unit(*truth.T), _unit(*solved.T)
    angle = np.arctan2(np.linalg.norm(np.cross(a, b), axis=1), np.sum(a * b, axis=1))
    absolute = np.degrees(angle) * 3.6e6
    t, s = _gnomonic(*truth.T, *centre), _gnomonic(*solved.T, *centre)
    design = np.column_stack([s, np.ones(len(s))])
    moved = design @ np.linalg.lstsq(design, t, rcond=None)[0]
    relative = np.hypot(*(moved - t).T) * 3.6e6
    rms = lambda d: float(np.sqrt(np.mean(d**2)))  # noqa: E731
    return {"abs_rms_mas": rms(absolute), "abs_max_mas": float(absolute.max()),
            "rel_rms_mas": rms(relative), "rel_max_mas": float(relative.max())}


def test_numbers_match_an_independent_error_computation(small):
    result = small[2]
    table = result.results
    assert len(table) == 4 and sorted(set(table["variant"])) == ["hist2d", "triangles"]
    registry = aligncore.build_registry()
    for row in table:
        scene = aligncore.simulate(**SIM, seed=int(row["seed"]))
        overrides = TRIANGLES if row["variant"] == "triangles" else []
        again = aligncore.align(scene.images, load_config(None, overrides), registry=registry)
        mine = independent_errors(scene.true_wcs, [r.wcs for r in again], (256, 256),
                                  (150.0, 2.0))
        for key, value in mine.items():
            assert row[key] == pytest.approx(value, rel=2e-3, abs=0.02), key
        before = independent_errors(scene.true_wcs, scene.nominal_wcs, (256, 256), (150.0, 2.0))
        assert row["nominal_rel_rms_mas"] == pytest.approx(before["rel_rms_mas"], rel=2e-3)
        # the pointing errors were real (>= 0.3") and the alignment removed them
        assert before["rel_rms_mas"] > 200.0 and row["rel_rms_mas"] < 10.0
        assert row["status"] == "success" and row["n_failed"] == 0
        assert row["rel_rms_pix"] == pytest.approx(row["rel_rms_mas"] / 100.0, rel=1e-3)
        assert row["rel_max_pix"] == pytest.approx(row["rel_max_mas"] / 100.0, rel=1e-3)
        assert row["abs_max_pix"] == pytest.approx(row["abs_max_mas"] / 100.0, rel=1e-3)
        assert row["n_matched"] == sum(r.n_matched for r in again if r.status == "SUCCESS")
        bounds = [r.meta["noise_bound_mas"] for r in again if r.status == "SUCCESS"]
        assert row["noise_bound_mas"] == pytest.approx(np.sqrt(np.mean(np.square(bounds))))
        assert row["noise_ratio"] == pytest.approx(row["rel_rms_mas"] / row["noise_bound_mas"])
        # the bound is that of an unweighted shift: 1/sigma^2 weights (the default) beat it
        # by favouring the bright stars, as far as ~0.3x on these fields
        assert 0.1 < row["noise_ratio"] < 5.0
        assert row["t_total"] > 0 and row["t_detect"] < row["t_total"]
        assert row["peak_mem_mb"] > 0.1
    baseline = table[table["variant"] == "hist2d"]
    assert np.all(baseline["agree_rms_mas"] == 0.0)
    other = table[table["variant"] == "triangles"]
    assert np.all(other["agree_rms_mas"] < 5.0)  # both matchers find the same solution


def test_outputs_summary_and_provenance(small):
    spec, out, result = small
    for name in ("results.ecsv", "results.md", "summary.ecsv", "summary.md", "variants.md",
                 "report.md", "spec.yaml", "spec.json", "fig_time.png",
                 "fig_residuals_dither.png"):
        assert (out / name).is_file(), name
    assert result.files["fig_residuals_dither.png"] == out / "fig_residuals_dither.png"
    report = (out / "report.md").read_text()
    assert "![fig_residuals_dither](fig_residuals_dither.png)" in report
    assert f"aligncore compare small.yaml -o {out}" in report
    assert "- seeds: dither: 1, 2" in report and "numpy 2." in report
    assert (out / "spec.yaml").read_text() == spec.read_text()
    doc = json.loads((out / "spec.json").read_text())
    assert doc["versions"]["aligncore"] and [v["name"] for v in doc["variants"]] == [
        "hist2d", "triangles"]
    assert doc["variants"][1]["config"]["matcher"]["plugin"] == "triangles"
    assert [s["seed"] for s in doc["scenes"]] == [1, 2]
    table = Table.read(out / "results.ecsv")
    np.testing.assert_allclose(table["rel_rms_mas"], result.results["rel_rms_mas"])
    summary = result.summary
    assert len(summary) == 2 and list(summary["n_runs"]) == [2, 2]
    assert list(summary["success_rate"]) == [1.0, 1.0]
    rows = result.results[result.results["variant"] == "hist2d"]["rel_rms_mas"]
    assert summary["rel_rms_mas"][0] == pytest.approx(np.median(rows))
    assert summary["rel_rms_mas_spread"][0] == pytest.approx(
        (np.percentile(rows, 84) - np.percentile(rows, 16)) / 2)
    markdown = (out / "summary.md").read_text()
    assert markdown.startswith("| dataset | case | variant | n_runs | success_rate |")
    assert "| dither | - | triangles | 2 | 100% |" in markdown


def test_html_report_has_sortable_tables_and_embedded_figures(small):
    _, out, result = small
    text = (out / "report.html").read_text()
    page = parse(text, "results")
    assert result.files["report.html"] == out / "report.html"
    assert len(page.rows) == len(result.results)
    assert len(parse(text, "summary").rows) == len(result.summary)
    figures = sorted(p.name for p in out.glob("fig_*.png"))
    assert len(page.images) == len(figures) > 0
    assert all(src.startswith("data:image/png;base64,") for src in page.images)
    assert page.external == []


def test_rerun_skips_finished_runs(small, tmp_path):
    spec, out, first = small
    again = run_compare(spec, out, plots=False)
    assert (again.n_new, again.n_reused) == (0, 4)
    np.testing.assert_array_equal(again.results["rel_rms_mas"], first.results["rel_rms_mas"])
    # a changed variant is run again; the other one is reused
    copy = shutil.copytree(out, tmp_path / "out")
    changed = write(tmp_path / "changed.yaml", SMALL_SPEC.replace(
        "  - name: hist2d\n", "  - name: hist2d\n    set: {fitter.params.fitgeometry: shift}\n"))
    third = run_compare(changed, copy, plots=False)
    assert (third.n_new, third.n_reused) == (2, 2)


BROKEN = """\
import aligncore


class Broken(aligncore.Matcher):
    name = "broken"

    class Params(aligncore.Params):
        pass

    def match(self, image_cat, ref_cat):
        raise RuntimeError("boom")


@aligncore.hookimpl
def aligncore_add_matchers():
    return [Broken]
"""


def test_local_plugin_file_compared_without_installing(tmp_path):
    write(tmp_path / "my_matcher.py", NEAREST)
    write(tmp_path / "broken.py", BROKEN)
    spec = write(tmp_path / "spec.yaml", """\
        variants:
          - name: default
          - name: nearest
            plugins: [my_matcher.py]
            set: {matcher.plugin: nearest, matcher.params: {radius: 2.0}}
          - name: broken
            plugins: [broken.py]
            set: {matcher.plugin: broken, matcher.params: {}}
        metrics: {memory: false}
        datasets:
          - name: d
            simulate: {n_images: 3, shape: [256, 256], n_stars: 60, pointing_error: [0.1, 0.3]}
        """)
    result = run_compare(spec, tmp_path / "out", plots=False)
    _, nearest, broken = result.results
    assert nearest["status"] == "success" and nearest["rel_rms_pix"] < 0.1
    assert nearest["agree_rms_mas"] < 5.0
    assert "nearest" not in aligncore.build_registry().names("matcher")
    # a raising plugin fails the images of its run with its error (the run itself completes)
    assert broken["status"] == "failed" and "RuntimeError: boom" in broken["reason"]
    assert broken["rel_rms_mas"] == pytest.approx(broken["nominal_rel_rms_mas"])
    again = run_compare(spec, tmp_path / "out", plots=False)
    assert (again.n_new, again.n_reused) == (0, 3)
    # fixing the plugin file changes the variant's fingerprint: that run is done again
    write(tmp_path / "broken.py", BROKEN.replace('raise RuntimeError("boom")',
                                                 'raise aligncore.MatchError("fixed")'))
    fixed = run_compare(spec, tmp_path / "out", plots=False)
    assert (fixed.n_new, fixed.n_reused) == (1, 2)


def test_parallel_jobs_give_the_serial_numbers(small, tmp_path):
    spec = write(tmp_path / "one.yaml", SMALL_SPEC.replace("seeds: [1, 2]", "seeds: [1]"))
    result = run_compare(spec, tmp_path / "out", jobs=2, plots=False)
    serial = small[2].results
    serial = serial[serial["seed"] == 1]
    assert result.n_new == 2
    np.testing.assert_allclose(result.results["rel_rms_mas"], serial["rel_rms_mas"], rtol=1e-9)


def test_image_directories_with_truth_or_reference_catalog(tmp_path):
    scene = aligncore.simulate(**SIM, seed=4, outdir=tmp_path / "scene")
    spec = write(tmp_path / "dirs.yaml", """\
        variants: [{name: default}]
        metrics: {memory: false}
        datasets:
          - {name: truth, path: scene}
          - {name: refcat, path: scene, truth: false, refcat: scene/refcat.ecsv}
        """)
    table = run_compare(spec, tmp_path / "out", plots=False).results
    with_truth, with_refcat = table
    assert with_truth["seed"] == -1 and with_truth["status"] == "success"
    assert with_truth["rel_rms_mas"] < 10.0
    assert np.isnan(with_refcat["rel_rms_mas"]) and with_refcat["status"] == "success"
    # the same images and config: the two runs agree, and the reference catalog sees the
    # common offset relative alignment leaves, like the truth does
    assert with_refcat["refcat_n"] > 50
    assert with_refcat["refcat_rms_mas"] == pytest.approx(with_truth["abs_rms_mas"], rel=0.25)
    assert len(scene.paths) == 3


def test_spec_problems_are_all_reported_with_lines(tmp_path):
    spec = write(tmp_path / "bad.yaml", """\
        variants:
          - name: a
            set: {matcher.plugin: hist3d}
          - name: b
            plugins: [missing.py]
          - name: a
        datasets:
          - name: d
            simulate: {n_image: 3}
          - name: e
            simulate: {shape: [256, 256]}
            sweep: {fwhm: [2.0, 0.1]}
          - name: f
        metric: {}
        """)
    with pytest.raises(CompareSpecError) as info:
        load_spec(spec)
    text = str(info.value)
    assert "bad.yaml:14: metric: unknown key; did you mean 'metrics'?" in text
    assert "bad.yaml:13: datasets.2: give either simulate" in text
    with pytest.raises(CompareSpecError, match="problems in the comparison spec"):
        load_spec(spec.with_name("bad.yaml"))
    fixed = write(tmp_path / "bad2.yaml", spec.read_text().replace("metric: {}\n", "").replace(
        "  - name: f\n", ""))
    with pytest.raises(CompareSpecError) as info:
        load_spec(fixed)
    text = str(info.value)
    assert ("bad2.yaml:3: variants.0.set.matcher.plugin: matcher plugin 'hist3d' is not "
            "available") in text
    assert "(variant 'a')" in text
    assert "bad2.yaml:5: variants.1.plugins.0: plugin file not found" in text
    assert "bad2.yaml:6: variants.2.name: duplicate name 'a'" in text
    assert "bad2.yaml:9: datasets.0.simulate.n_image: unknown key; did you mean 'n_images'?" \
        in text
    assert "bad2.yaml:12: datasets.1.sweep.fwhm: fwhm must be a number in [0.3, 100]" in text


def test_command_line(small, tmp_path, capsys):
    spec, out, _ = small
    assert main(["compare", str(spec), "-o", str(out), "--no-plots"]) == 0
    text = capsys.readouterr().out
    assert "| dither | triangles | 2 | 100% |" in text and "0 runs done, 4 reused" in text
    bad = write(tmp_path / "bad.yaml", "variants: []\ndatasets: []\n")
    assert main(["compare", str(bad), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 2 problems in the comparison spec:")
    assert "bad.yaml:1: variants: List should have at least 1 item" in err
    assert main(["compare", str(spec), "-o", str(out), "--jobs", "0"]) == 2


def test_status_rules_and_agreement():
    from aligncore.compare.metrics import agreement, run_status

    def image(status, after, before):
        return {"status": status, "rel_rms_mas": after, "nominal_rel_rms_mas": before}

    assert run_status(0, [image("REFERENCE", 1.0, 5.0), image("SUCCESS", 2.0, 300.0)],
                      False) == "success"
    assert run_status(0, [image("SUCCESS", 400.0, 300.0)], False) == "worse"
    assert run_status(1, [image("SUCCESS", 2.0, 300.0)], False) == "failed"
    assert run_status(0, [], True) == "failed"
    rng = np.random.default_rng(1)
    grid = [[list(150.0 + rng.uniform(0, 0.01, 50)), list(2.0 + rng.uniform(0, 0.01, 50))]
            for _ in range(2)]
    shifted = [[list(np.add(ra, 1e-4)), list(np.add(dec, -2e-4))] for ra, dec in grid]
    assert agreement(grid, grid) == pytest.approx(0.0, abs=1e-6)
    assert agreement(grid, shifted) == pytest.approx(0.0, abs=1e-3)  # common: not counted
    moved = [grid[0], [grid[1][0], list(np.add(grid[1][1], 10.0 / 3.6e6))]]  # 10 mas
    assert 2.0 < agreement(grid, moved) < 10.0


# --- residual maps -------------------------------------------------------------------
def test_residual_vectors_are_the_scored_errors(small):
    from aligncore.compare.maps import residual_panels
    from aligncore.compare.metrics import residual_vectors

    _, out, result = small
    records = [json.loads(p.read_text()) for p in sorted((out / "runs").rglob("*.json"))]
    assert len(records) == 4
    for record in records:
        row = result.results[(result.results["seed"] == record["seed"])
                             & (result.results["variant"] == record["variant"])][0]
        truth = record["truth"]
        assert truth["center"] == [150.0, 2.0] and len(truth["grid"]) == 3
        rel = np.concatenate(residual_vectors(record["grid"], truth["grid"], truth["center"]))
        length = np.hypot(*rel.T)
        assert rel.shape == (3 * 16 * 16, 2)
        assert np.sqrt(np.mean(length**2)) == pytest.approx(row["rel_rms_mas"], rel=1e-6)
        assert length.max() == pytest.approx(row["rel_max_mas"], rel=1e-6)
        absolute = residual_vectors(record["grid"], truth["grid"], truth["center"],
                                    relative=False)
        length = np.hypot(*np.concatenate(absolute).T)
        assert np.sqrt(np.mean(length**2)) == pytest.approx(row["abs_rms_mas"], rel=1e-5)
    # the maps: the first seed, one panel per variant, the run's own error
    panels = residual_panels(records)["dither"]
    assert sorted(panels) == [("hist2d", "-"), ("triangles", "-")]
    panel = panels[("hist2d", "-")]
    assert panel.seed == 1 and len(panel.xy) == 3 and panel.vectors[0].shape == (16, 16, 2)
    first = result.results[(result.results["seed"] == 1) & (result.results["variant"] == "hist2d")]
    assert panel.rms_mas == pytest.approx(first["rel_rms_mas"][0], rel=1e-6)


def test_residual_vector_directions():
    from aligncore.compare.metrics import residual_vectors

    # two images on the same footprint; the second solution is 10 mas too far East
    ra, dec = np.meshgrid(150.0 + np.linspace(-0.005, 0.005, 5),
                          2.0 + np.linspace(-0.004, 0.006, 5))
    ra, dec = ra.ravel(), dec.ravel()
    truth = [[list(ra), list(dec)], [list(ra), list(dec)]]
    east = 10.0 / 3.6e6 / np.cos(np.radians(dec))
    solved = [truth[0], [list(ra + east), list(dec)]]
    image0, image1 = residual_vectors(solved, truth, (150.0, 2.0), relative=False)
    np.testing.assert_allclose(image0, 0.0, atol=1e-9)
    np.testing.assert_allclose(image1, [[10.0, 0.0]] * 25, atol=0.01)
    # relative: the common half of the shift is not observable
    image0, image1 = residual_vectors(solved, truth, (150.0, 2.0))
    np.testing.assert_allclose(image0, [[-5.0, 0.0]] * 25, atol=0.01)
    np.testing.assert_allclose(image1, [[5.0, 0.0]] * 25, atol=0.01)
    with pytest.raises(ValueError, match="grid and truth must hold the same images"):
        residual_vectors(solved[:1], truth, (150.0, 2.0))


# --- the expected physics of the matcher comparison ----------------------------------
def test_hist2d_fails_past_its_search_radius_and_fallbacks_are_counted(tmp_path):
    spec = write(tmp_path / "radius.yaml", """\
        base:
          set: {matcher.params.searchrad: 1.0}
        variants:
          - name: hist2d
            set: {align.fallback: []}
          - name: triangles
            set: {matcher.plugin: triangles, matcher.params: {}, align.fallback: []}
          - name: rescued
            set: {align.fallback: [triangles]}
        metrics: {memory: false}
        datasets:
          - name: p
            simulate: {n_images: 3, shape: [256, 256], n_stars: 60}
            sweep: {pointing_error: [0.3, 3.0]}
        """)
    result = run_compare(spec, tmp_path / "out", plots=False)
    status = {(r["pointing_error"], r["variant"]): (r["status"], r["n_fallback"])
              for r in result.results}
    assert status == {
        (0.3, "hist2d"): ("success", 0), (0.3, "triangles"): ("success", 0),
        (0.3, "rescued"): ("success", 0),
        (3.0, "hist2d"): ("failed", 0), (3.0, "triangles"): ("success", 0),
        (3.0, "rescued"): ("success", 2),  # both non-reference images aligned by triangles
    }
    assert "matched sources" in result.results["reason"][3]
    assert "n_fallback" in result.markdown("summary").splitlines()[0]
    assert list(result.variants["n_fallback"]) == [0, 0, 1]


def test_shipped_specs_are_valid():
    root = Path(__file__).parent.parent / "configs"
    runs = {name: load_spec(root / f"compare-{name}.yaml")
            for name in ("matchers", "centroids", "solvers", "distortion")}
    assert {name: c.n_runs for name, c in runs.items()} == {
        "matchers": 114, "centroids": 72, "solvers": 40, "distortion": 60}
    # the matchers are compared alone, without the default fallback to triangles
    assert all(v.config["align"]["fallback"] == [] for v in runs["matchers"].variants)

