"""Every CLI command, exit codes, one-line errors and no partial output."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import QTable
from astropy.wcs import WCS

import aligncore
from aligncore.cli import main

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = str(ROOT / "configs" / "default.yaml")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_run_writes_corrected_copies_and_report(small_scene, tmp_path, capsys):
    sums = {p: digest(p) for p in small_scene.paths}
    out = tmp_path / "out"
    code = main(["run", DEFAULT, *map(str, small_scene.paths), "-o", str(out),
                 "--set", "output.save_catalogs=true"])
    assert code == 0
    assert {p: digest(p) for p in small_scene.paths} == sums  # inputs untouched
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([p.name for p in small_scene.paths]
                           + [p.stem + "_cat.ecsv" for p in small_scene.paths]
                           + ["combined_cat.ecsv", "report.json", "report.html"])
    from astropy.table import Table

    combined = Table.read(out / "combined_cat.ecsv")
    multiple = combined[combined["n_images"] >= 2]
    assert len(multiple) > 30  # heavily overlapping dithers
    assert np.nanmedian(multiple["scatter_mas"]) < 20.0  # 0.2 pixel: centroid noise level
    report = json.loads((out / "report.json").read_text())
    assert report["ok"] is True
    assert {i["status"] for i in report["images"]} == {"REFERENCE", "SUCCESS"}
    assert report["versions"]["aligncore"] == aligncore.__version__
    assert report["config"]["matcher"]["plugin"] == "hist2d"
    assert report["timings"]["total"] > 0
    corrected = [WCS(fits.getheader(out / p.name, "SCI")) for p in small_scene.paths]
    assert max(small_scene.errors(corrected)["rms_pix"]) < 0.1
    header = fits.getheader(out / small_scene.paths[1].name, "SCI")
    assert header["ALNSTAT"] in ("SUCCESS", "REFERENCE")
    assert header["WCSNAME"] == "FIT-REL" or header["ALNSTAT"] == "REFERENCE"
    assert "SUCCESS" in capsys.readouterr().out


def test_detect_writes_catalogs(small_scene, tmp_path, capsys):
    assert main(["detect", DEFAULT, str(small_scene.paths[0]), "-o", str(tmp_path)]) == 0
    from astropy.table import Table

    table = Table.read(tmp_path / (small_scene.paths[0].stem + "_cat.ecsv"))
    assert len(table) > 50 and {"id", "x", "y", "flux"} <= set(table.colnames)
    assert table.meta["plugin"] == "daofind"
    assert "sources ->" in capsys.readouterr().out


def test_demo_prints_the_truth_table(capsys):
    assert main(["demo", "--n-images", "3", "--seed", "2"]) == 0
    out = capsys.readouterr().out
    assert "err before[mas]" in out and "err after[mas]" in out
    worst = float(out.split("relative error after alignment: max ")[1].split(" mas")[0])
    assert worst < 10.0  # mas, i.e. 0.1 pixel at 0.1"/pixel


def test_validate_plugins_params_hooks(capsys):
    assert main(["validate", str(ROOT / "configs" / "jwst.yaml")]) == 0
    assert "OK" in capsys.readouterr().out
    assert main(["plugins"]) == 0
    listing = capsys.readouterr().out
    for kind, name in (("detector", "daofind"), ("matcher", "hist2d"), ("fitter", "affine"),
                       ("refcatalog", "file"), ("corrector", "fitswcs")):
        assert any(line.split()[:3] == [kind, name, "aligncore"] for line in listing.splitlines())
    assert main(["params", "affine"]) == 0
    text = capsys.readouterr().out
    assert "fitgeometry: 'shift' | 'rshift' | 'rscale' | 'general' | 'auto' = 'rshift'" in text
    assert main(["params", "hist2"]) == 2
    assert "did you mean 'hist2d'?" in capsys.readouterr().err
    assert main(["hooks"]) == 0
    assert "## `aligncore_run_stage`" in capsys.readouterr().out


def test_simulate_command(tmp_path, capsys):
    out = tmp_path / "sim"
    assert main(["simulate", "sparse", "-o", str(out), "--seed", "3", "--n-images", "2",
                 "--size", "256"]) == 0
    scene = aligncore.Scene.load(out)
    assert len(scene.paths) == 2 and scene.params["seed"] == 3
    assert (out / "truth.json").exists() and (out / "refcat.ecsv").exists()


def _bad_inputs(tmp_path: Path, scene) -> dict[str, tuple[list[Path], str]]:
    good = [tmp_path / p.name for p in scene.paths]
    for src, dst in zip(scene.paths, good, strict=True):
        shutil.copy(src, dst)
    text = tmp_path / "notfits.fits"
    text.write_text("hello")
    nowcs = tmp_path / "nowcs.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.ones((16, 16), np.float32),
                                                   name="SCI")]).writeto(nowcs)
    allnan = tmp_path / "allnan.fits"
    with fits.open(good[0]) as hdul:
        hdul["SCI"].data[:] = np.nan
        hdul.writeto(allnan)
    return {
        "missing": ([good[0], tmp_path / "missing.fits"], "missing.fits: file not found"),
        "not-fits": ([good[0], text], "notfits.fits: not a FITS file"),
        "no-wcs": ([good[0], nowcs], "nowcs.fits: no celestial WCS"),
        "all-nan": ([good[0], allnan], "allnan.fits: the science array has no finite pixel"),
        "single": ([good[0]], f"{good[0].name}: a single image cannot be aligned"),
    }


@pytest.mark.parametrize("case", ["missing", "not-fits", "no-wcs", "all-nan", "single"])
def test_bad_input_one_line_error_exit_1_no_output(case, small_scene, tmp_path, capsys):
    paths, message = _bad_inputs(tmp_path, small_scene)[case]
    out = tmp_path / "out"
    code = main(["run", DEFAULT, *map(str, paths), "-o", str(out)])
    err = capsys.readouterr().err
    problems = [line for line in err.splitlines() if not line.startswith("detect ")]
    assert code == 1
    assert len(problems) == 1 and problems[0].startswith("error: ") and message in err
    assert not out.exists()


def test_image_without_sources_fails_with_wcs_untouched(small_scene, tmp_path, capsys):
    paths = [tmp_path / p.name for p in small_scene.paths]
    for src, dst in zip(small_scene.paths, paths, strict=True):
        shutil.copy(src, dst)
    blank = tmp_path / "blank.fits"
    with fits.open(paths[0]) as hdul:
        hdul["SCI"].data = np.random.default_rng(1).normal(100, 5, hdul["SCI"].data.shape).astype(
            np.float32)
        hdul.writeto(blank)
    out = tmp_path / "out"
    assert main(["run", DEFAULT, *map(str, paths), str(blank), "-o", str(out)]) == 1
    assert "blank.fits: no sources detected" in capsys.readouterr().err
    before, after = fits.getheader(blank, "SCI"), fits.getheader(out / "blank.fits", "SCI")
    assert after["ALNSTAT"] == "FAILED"
    for key in ("CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2", "CD1_1", "CD1_2", "CD2_1", "CD2_2"):
        assert after[key] == before[key]
    assert after.get("WCSNAME") == before.get("WCSNAME")


def test_config_error_exit_2(tmp_path, small_scene, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("fitter:\n  plugin: afine\n")
    out = tmp_path / "out"
    assert main(["run", str(bad), *map(str, small_scene.paths), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml:2: fitter.plugin: fitter plugin 'afine' is not available" in err
    assert "did you mean 'affine'?" in err
    assert not out.exists()


def test_absolute_alignment_with_a_file_catalog(tmp_path, capsys):
    scene = aligncore.simulate("dither", n_images=3, seed=9, shape=(512, 512), n_stars=150,
                               common_pointing_error=1.5, outdir=tmp_path / "scene")
    out = tmp_path / "out"
    refcat = tmp_path / "scene" / "refcat.ecsv"
    args = ["run", DEFAULT, *map(str, scene.paths), "-o", str(out), "-q",
            "--set", "absolute.enabled=true", "--set", "absolute.save_gaia_catalog=true",
            "--set", f"absolute.refcat={{plugin: file, params: {{path: '{refcat}'}}}}"]
    assert main(args) == 0
    written = sorted(p.name for p in out.iterdir())
    assert any(name.startswith("refcat_") and name.endswith(".ecsv") for name in written)
    headers = [fits.getheader(out / p.name, "SCI") for p in scene.paths]
    assert all(h["WCSNAME"].startswith("FIT-REL-") for h in headers)
    absolute = scene.errors([WCS(h) for h in headers], relative=False)
    assert max(absolute["rms_pix"]) < 0.1
    report = json.loads((out / "report.json").read_text())
    assert report["meta"]["absolute"]["status"] == "applied"


def test_missing_reference_file_is_an_input_error_before_any_work(small_scene, tmp_path,
                                                                   capsys):
    out = tmp_path / "out"
    missing = tmp_path / "no.ecsv"
    args = ["run", DEFAULT, *map(str, small_scene.paths), "-o", str(out), "-q",
            "--set", "absolute.enabled=true",
            "--set", f"absolute.refcat={{plugin: file, params: {{path: '{missing}'}}}}"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err == f"error: {missing}: reference catalog file not found\n"
    assert not out.exists()


def test_absolute_failure_keeps_relative_and_exits_3(small_scene, tmp_path, capsys):
    out = tmp_path / "out"
    elsewhere = tmp_path / "elsewhere.ecsv"
    QTable({"ra": np.linspace(10.0, 10.1, 20), "dec": np.linspace(-40.0, -39.9, 20)}).write(
        elsewhere)
    args = ["run", DEFAULT, *map(str, small_scene.paths), "-o", str(out), "-q",
            "--set", "absolute.enabled=true",
            "--set", f"absolute.refcat={{plugin: file, params: {{path: '{elsewhere}'}}}}"]
    assert main(args) == 3
    err = capsys.readouterr().err
    assert "warning: absolute alignment not applied" in err
    headers = [fits.getheader(out / p.name, "SCI") for p in small_scene.paths]
    assert {h["WCSNAME"] for h in headers if h["ALNSTAT"] == "SUCCESS"} == {"FIT-REL"}
    corrected = [WCS(h) for h in headers]
    assert max(small_scene.errors(corrected)["rms_pix"]) < 0.1
